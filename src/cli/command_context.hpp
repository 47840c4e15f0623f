// Internal to src/cli: what every command implementation gets, and the
// registration functions of each group of commands.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"
#include "cli/config.hpp"
#include "cli/failure.hpp"

namespace CLI {
class App;
}

namespace citadel::cli {

// Options every command accepts (they are defined on the root and fall
// through from subcommands, so `citadel device list --json` works).
struct GlobalOptions {
  bool json = false;
  std::string server;
  std::string token;
  std::string ca_file;
  std::string tenant;
};

class CommandContext {
 public:
  CommandContext(const Environment& environment, const GlobalOptions& options);

  std::ostream& out() { return *environment_.out; }
  std::ostream& err() { return *environment_.err; }
  bool json() const { return options_.json; }
  TimePoint now() const { return environment_.now(); }
  const GlobalOptions& options() const { return options_; }
  const EnvLookup& env() const { return environment_.env; }

  Result<std::filesystem::path> ConfigFile();
  // The saved config (nullopt when none); warns once when its mode is open.
  Result<std::optional<Config>> SavedConfig();
  // Flags > environment > saved config; `require` fails when incomplete.
  Result<ConnectionSettings> Connection(bool require = true);
  // Connected API client for Connection(); created on first use.
  Result<ApiClient*> Api();
  // Creates a client for explicit settings (login checks before saving).
  Result<std::unique_ptr<ApiClient>> Connect(const ConnectionSettings& settings);
  // --tenant / CITADEL_TENANT, else the token's own tenant.
  Result<std::string> Tenant();
  // "/v1/tenants/<tenant>" + suffix.
  Result<std::string> TenantPath(std::string_view suffix);

  // Pretty-printed JSON and a newline on out().
  void PrintJson(const nlohmann::json& value);
  // "warning: ..." on err().
  void Warn(std::string_view message);

 private:
  const Environment& environment_;
  const GlobalOptions& options_;
  std::optional<std::filesystem::path> config_path_;
  std::optional<std::optional<Config>> saved_config_;
  std::unique_ptr<ApiClient> api_;
  std::optional<std::string> tenant_;
};

using Action = std::function<Result<void>(CommandContext&)>;

// Builds the command tree on a CLI11 app and remembers each command's action.
class CommandSet {
 public:
  explicit CommandSet(CLI::App& root) : root_(root) {}

  // A noun ("device") that only groups subcommands. Another file's group of
  // the same name under `parent` is returned as it is, so several files can
  // add commands to one noun.
  CLI::App* Group(CLI::App* parent, const std::string& name, const std::string& description);
  // A runnable command with a one-line description and an example footer.
  CLI::App* Command(CLI::App* parent, const std::string& name, const std::string& description,
                    const std::string& example, Action action);

  CLI::App& root() { return root_; }
  // The action of a command built by Command(); nullptr for groups and root.
  const Action* Find(const CLI::App* command) const;

 private:
  CLI::App& root_;
  std::map<const CLI::App*, Action> actions_;
};

void RegisterAccountCommands(CommandSet& commands);       // login, logout, tenant, token
void RegisterFleetCommands(CommandSet& commands);         // product, device-group, device, ca-certificate
void RegisterPolicyCommands(CommandSet& commands);        // policy, audit
void RegisterManufacturerCommands(CommandSet& commands);  // manufacturer (local)
void RegisterImageCommands(CommandSet& commands);         // image, publisher-key (local)
void RegisterRepositoryCommands(CommandSet& commands);    // keys, repo (TUF key ceremony, signing)
void RegisterUpdateCommands(CommandSet& commands);        // image upload/list, deployment, group updates
void RegisterDeviceAppsCommands(
    CommandSet& commands);                         // device sideload, device app ..., device apply-development (local)
void RegisterIssueCommands(CommandSet& commands);  // symbols, issue, device report list, device telemetry

// Shared rendering helpers.
std::string JsonText(const nlohmann::json& object, std::string_view key);
// RFC 3339 string or Unix seconds -> "3m ago"; "" -> "never".
std::string TimeCell(const nlohmann::json& object, std::string_view key, TimePoint now);
// "2026-11-21T10:00:00Z (3m ago)".
std::string TimeDetail(const nlohmann::json& object, std::string_view key, TimePoint now);
// The array under `key`, or an empty array.
nlohmann::json JsonArray(const nlohmann::json& object, std::string_view key);

}  // namespace citadel::cli
