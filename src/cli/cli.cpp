#include "cli/cli.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command_context.hpp"
#include "cli/table.hpp"

#ifndef CITADEL_VERSION
#define CITADEL_VERSION "0.0.0"
#endif

namespace citadel::cli {
namespace {

constexpr const char* kGlobalOptionsNote =
    "Global options (see `citadel --help`): --json, --server URL, --token TOKEN, --ca FILE, --tenant ID";

constexpr const char* kRootFooter = R"(Getting started:
  citadel login --server https://127.0.0.1:8443 --token cit_... --ca DATA/service-ca.pem
  citadel product create thermostat
  citadel device list

Add --json to any command for machine-readable output. Run `citadel COMMAND --help`
(e.g. `citadel device list --help`) for a command's options and an example.

Environment:
  CITADEL_SERVER   server URL (like --server)
  CITADEL_TOKEN    API token (like --token; safer than --token, which other users can see in ps)
  CITADEL_CA       service CA file (like --ca)
  CITADEL_TENANT   tenant ID for tenant-scoped commands (like --tenant)
  CITADEL_CONFIG   config file (default $XDG_CONFIG_HOME/citadel/config.json or
                   ~/.config/citadel/config.json, mode 0600)
Flags override the environment, which overrides the saved login.

Exit codes:
  0  success
  1  error
  2  usage error (bad arguments)
  3  authentication or permission denied
  4  not found
  5  conflict (already exists, claimed elsewhere)
  6  server unreachable)";

}  // namespace

// ---- CommandContext ---------------------------------------------------------

CommandContext::CommandContext(const Environment& environment, const GlobalOptions& options)
    : environment_(environment), options_(options) {}

Result<std::filesystem::path> CommandContext::ConfigFile() {
  if (!config_path_) {
    auto path = ConfigPath(environment_.env);
    if (!path) return Fail(ExitCode::kError, path.error().message());
    config_path_ = *path;
  }
  return *config_path_;
}

Result<std::optional<Config>> CommandContext::SavedConfig() {
  if (saved_config_) return *saved_config_;
  CITADEL_TRY(auto path, ConfigFile());
  auto config = LoadConfig(path);
  if (!config) {
    return Fail(ExitCode::kError, config.error().message(), "fix or delete the file, then run `citadel login` again");
  }
  if (config->has_value() && IsAccessibleByOthers(path)) {
    Warn(path.string() + " holds your token but other users may read it; run `chmod 600 " + path.string() + "`");
  }
  saved_config_ = std::move(*config);
  return *saved_config_;
}

Result<ConnectionSettings> CommandContext::Connection(bool require) {
  ConnectionOverrides flags{options_.server, options_.token, options_.ca_file};
  // The saved login is read only when some setting is still missing.
  std::optional<Config> saved;
  bool need_saved = flags.server.empty() && !environment_.env("CITADEL_SERVER").has_value();
  need_saved = need_saved || (flags.token.empty() && !environment_.env("CITADEL_TOKEN").has_value());
  need_saved = need_saved || (flags.ca_file.empty() && !environment_.env("CITADEL_CA").has_value());
  if (need_saved) {
    CITADEL_TRY(saved, SavedConfig());
  }
  CITADEL_TRY(auto settings, ResolveConnection(flags, environment_.env, saved));
  if (require) CITADEL_TRY_VOID(RequireComplete(settings));
  return settings;
}

Result<std::unique_ptr<ApiClient>> CommandContext::Connect(const ConnectionSettings& settings) {
  if (!settings.server.starts_with("https://")) {
    return Fail(ExitCode::kUsage, "the server URL must start with https:// (got \"" + settings.server + "\")",
                "pass e.g. --server https://127.0.0.1:8443");
  }
  http::ClientOptions options;
  options.base_url = settings.server;
  options.ca_certificate_pem = settings.ca_pem;
  options.user_agent = std::string("citadel-cli/") + CITADEL_VERSION;
  auto client = environment_.make_client(std::move(options));
  if (!client) {
    auto failure = FailureFromError(client.error(), FailureContext{settings.server, {}, {}});
    if (client.error().code() == ErrorCode::kInvalidArgument || client.error().code() == ErrorCode::kParse ||
        client.error().code() == ErrorCode::kCrypto) {
      failure.exit_code = ExitCode::kUsage;
      failure.hint = "check --server (https://HOST:PORT) and that --ca is a PEM certificate";
    }
    return std::unexpected(failure);
  }
  return std::make_unique<ApiClient>(std::move(*client), settings.server, settings.token);
}

Result<ApiClient*> CommandContext::Api() {
  if (!api_) {
    CITADEL_TRY(auto settings, Connection());
    CITADEL_TRY(api_, Connect(settings));
  }
  return api_.get();
}

Result<std::string> CommandContext::Tenant() {
  if (tenant_) return *tenant_;
  std::string override_id = options_.tenant;
  if (override_id.empty()) override_id = environment_.env("CITADEL_TENANT").value_or("");
  CITADEL_TRY(auto* api, Api());
  CITADEL_TRY(auto tenant, api->ResolveTenant(override_id));
  tenant_ = tenant;
  return tenant;
}

Result<std::string> CommandContext::TenantPath(std::string_view suffix) {
  CITADEL_TRY(auto tenant, Tenant());
  return "/v1/tenants/" + PercentEncode(tenant) + std::string(suffix);
}

void CommandContext::PrintJson(const nlohmann::json& value) {
  out() << value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void CommandContext::Warn(std::string_view message) { err() << "warning: " << message << '\n'; }

// ---- CommandSet -------------------------------------------------------------

CLI::App* CommandSet::Group(CLI::App* parent, const std::string& name, const std::string& description) {
  auto existing = parent->get_subcommands([&name](CLI::App* command) { return command->get_name() == name; });
  if (!existing.empty()) return existing.front();
  auto* group = parent->add_subcommand(name, description);
  group->require_subcommand(0, 1);
  group->footer("Run `citadel " + name + " COMMAND --help` for a command's options and an example.\n" +
                kGlobalOptionsNote);
  return group;
}

CLI::App* CommandSet::Command(CLI::App* parent, const std::string& name, const std::string& description,
                              const std::string& example, Action action) {
  auto* command = parent->add_subcommand(name, description);
  command->require_subcommand(0, 0);
  command->footer("Example:\n  " + example + "\n\n" + kGlobalOptionsNote);
  actions_[command] = std::move(action);
  return command;
}

const Action* CommandSet::Find(const CLI::App* command) const {
  auto found = actions_.find(command);
  return found == actions_.end() ? nullptr : &found->second;
}

// ---- helpers ----------------------------------------------------------------

std::string JsonText(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  return it->dump();
}

namespace {

std::optional<TimePoint> JsonTime(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_integer()) {
    auto seconds = it->get<std::int64_t>();
    if (seconds == 0) return std::nullopt;
    return FromUnixSeconds(seconds);
  }
  if (it->is_string() && !it->get_ref<const std::string&>().empty()) {
    auto parsed = ParseRfc3339(it->get_ref<const std::string&>());
    if (parsed) return *parsed;
  }
  return std::nullopt;
}

}  // namespace

std::string TimeCell(const nlohmann::json& object, std::string_view key, TimePoint now) {
  if (auto t = JsonTime(object, key)) return FormatRelativeTime(*t, now);
  auto text = JsonText(object, key);
  return text.empty() ? "never" : text;
}

std::string TimeDetail(const nlohmann::json& object, std::string_view key, TimePoint now) {
  if (auto t = JsonTime(object, key)) return FormatRfc3339(*t) + " (" + FormatRelativeTime(*t, now) + ")";
  auto text = JsonText(object, key);
  return text.empty() ? "never" : text;
}

nlohmann::json JsonArray(const nlohmann::json& object, std::string_view key) {
  if (object.is_object()) {
    auto it = object.find(key);
    if (it != object.end() && it->is_array()) return *it;
  }
  return nlohmann::json::array();
}

// ---- entry points -----------------------------------------------------------

Environment ProcessEnvironmentForMain() {
  Environment environment;
  environment.env = ProcessEnvironment();
  environment.out = &std::cout;
  environment.err = &std::cerr;
  environment.make_client = [](http::ClientOptions options) { return http::Client::Create(std::move(options)); };
  environment.now = [] { return Clock::now(); };
  return environment;
}

int RunCli(const std::vector<std::string>& args, const Environment& environment) {
  GlobalOptions options;
  CLI::App app(
      "citadel - manage a Citadel security service: tenants, tokens, products, device groups,\n"
      "devices, attestation policy and the audit log.",
      "citadel");
  app.set_version_flag("--version", CITADEL_VERSION);
  app.fallthrough();  // subcommands pass the global options up to here
  app.require_subcommand(0, 1);
  app.add_flag("--json", options.json, "Print machine-readable JSON instead of tables");
  app.add_option("--server", options.server, "Server URL, e.g. https://127.0.0.1:8443 (env CITADEL_SERVER)")
      ->type_name("URL");
  app.add_option("--token", options.token, "API token (env CITADEL_TOKEN)")->type_name("TOKEN");
  app.add_option("--ca", options.ca_file, "Service CA file that pins the server (env CITADEL_CA)")->type_name("FILE");
  app.add_option("--tenant", options.tenant,
                 "Tenant ID for tenant-scoped commands; default: the token's tenant (env CITADEL_TENANT)")
      ->type_name("ID");

  CommandSet commands(app);
  RegisterAccountCommands(commands);
  RegisterFleetCommands(commands);
  RegisterDeviceAppsCommands(commands);  // adds to the "device" group, so after fleet
  RegisterPolicyCommands(commands);
  RegisterManufacturerCommands(commands);
  RegisterImageCommands(commands);
  RegisterRepositoryCommands(commands);
  RegisterUpdateCommands(commands);
  RegisterIssueCommands(commands);  // adds to the "device" group, so after fleet
  app.footer(kRootFooter);

  std::ostream& out = *environment.out;
  std::ostream& err = *environment.err;
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& arg : args) argv.push_back(arg.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& error) {
    int code = app.exit(error, out, err);
    return code == 0 ? 0 : static_cast<int>(ExitCode::kUsage);
  }

  // The deepest (sub)command the arguments named.
  CLI::App* current = &app;
  while (!current->get_subcommands().empty()) current = current->get_subcommands().front();
  const Action* action = commands.Find(current);
  if (action == nullptr) {
    // A bare `citadel` teaches; a bare group (`citadel device`) is a usage error.
    if (current == &app) {
      out << app.help();
      return 0;
    }
    err << current->help("citadel");
    return static_cast<int>(ExitCode::kUsage);
  }

  CommandContext context(environment, options);
  auto result = (*action)(context);
  if (!result) {
    PrintFailure(err, result.error());
    return static_cast<int>(result.error().exit_code);
  }
  return 0;
}

}  // namespace citadel::cli
