// The CLI's saved login and how flags, environment and the saved file
// combine.
//
// The config file holds the API token, so it is written with mode 0600 in a
// 0700 directory, atomically (WriteFileAtomic). Nothing secret is cached
// anywhere else. Format (JSON): {"server": URL, "token": TOKEN, "ca_pem": PEM}
// where ca_pem is the service CA's contents (not a path), so the login keeps
// working when the file it came from moves.
//
// Precedence, highest first, for each of server, token and CA separately:
//   1. flags       --server, --token, --ca FILE
//   2. environment CITADEL_SERVER, CITADEL_TOKEN, CITADEL_CA (a file path)
//   3. the config file at CITADEL_CONFIG, else $XDG_CONFIG_HOME/citadel/config.json,
//      else ~/.config/citadel/config.json.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cli/failure.hpp"
#include "common/error.hpp"

namespace citadel::cli {

// Looks up an environment variable; injectable so tests do not touch the
// process environment. An empty value counts as unset.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup ProcessEnvironment();

struct Config {
  std::string server;
  std::string token;  // secret: never print or log it
  std::string ca_pem;
};

// CITADEL_CONFIG, else $XDG_CONFIG_HOME/citadel/config.json, else
// $HOME/.config/citadel/config.json. kFailedPrecondition when none of the
// variables is set.
Expected<std::filesystem::path> ConfigPath(const EnvLookup& env);

// nullopt when the file does not exist; kParse when it is not a config.
Expected<std::optional<Config>> LoadConfig(const std::filesystem::path& path);

// Creates the parent directory (0700) when missing and writes the file
// atomically with mode 0600.
Expected<void> SaveConfig(const std::filesystem::path& path, const Config& config);

// Deletes the file; false when there was none.
Expected<bool> RemoveConfig(const std::filesystem::path& path);

// True when group or others may read or write the file (a token could leak).
bool IsAccessibleByOthers(const std::filesystem::path& path);

// Command-line overrides; empty strings mean "not given".
struct ConnectionOverrides {
  std::string server;
  std::string token;
  std::string ca_file;
};

// Where a setting came from, for `citadel login` and error messages.
enum class SettingSource { kNone, kFlag, kEnvironment, kConfigFile };

struct ConnectionSettings {
  std::string server;
  std::string token;  // secret
  std::string ca_pem;
  SettingSource server_source = SettingSource::kNone;
  SettingSource token_source = SettingSource::kNone;
  SettingSource ca_source = SettingSource::kNone;
};

// Combines flags, environment and the saved config (see the precedence at
// the top of this file) and reads the CA file when one is named. Missing
// settings stay empty; Require() reports them.
Result<ConnectionSettings> ResolveConnection(const ConnectionOverrides& flags, const EnvLookup& env,
                                             const std::optional<Config>& saved);

// Fails with a hint to log in when the server, token or CA is missing.
Result<void> RequireComplete(const ConnectionSettings& settings);

}  // namespace citadel::cli
