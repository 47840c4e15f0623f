// device sideload / device app ... / device apply-development: talk to a
// device's local development interface (STATE/dev.sock, served by
// `citadeld run --board ...` or `citadeld apps serve`), not to the service.
// The wire format and the checks live in src/apps; this file only sends
// requests and renders answers.
#include <CLI/CLI.hpp>

#include <algorithm>

#include "apps/dev_protocol.hpp"
#include "cli/command_context.hpp"
#include "cli/table.hpp"
#include "common/file.hpp"
#include "image/image.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kDeviceHelp =
    "The device: its state directory (uses DIR/dev.sock) or the socket itself (env CITADEL_DEVICE)";
constexpr std::size_t kMaxCapabilityFileBytes = 64 << 10;

struct DeviceOptions {
  std::string device;
};

struct AppOptions : DeviceOptions {
  std::string app;
  std::size_t lines = 50;
};

struct FileOptions : DeviceOptions {
  fs::path file;
  bool no_start = false;
};

Result<fs::path> DeviceSocket(CommandContext& context, const DeviceOptions& options) {
  std::string device = options.device;
  if (device.empty()) device = context.env()("CITADEL_DEVICE").value_or("");
  if (device.empty()) {
    return Fail(ExitCode::kUsage, "which device? pass --device STATE_DIR (or the dev.sock path)",
                "e.g. --device ./var/device (the directory given to `citadeld --state`), or set CITADEL_DEVICE");
  }
  return apps::ResolveDevSocket(device);
}

Failure DeviceFailure(const Error& error, const fs::path& socket, const std::string& app) {
  Failure failure = FailureFromError(error, {});
  failure.hint.clear();
  switch (error.code()) {
    case ErrorCode::kUnavailable:
      if (error.message().starts_with("cannot connect")) {
        failure.exit_code = ExitCode::kUnreachable;
        failure.hint =
            "start the device runtime with apps: `citadeld run ... --board boards/simulated.json` or "
            "`citadeld apps serve --state DIR --board boards/simulated.json`";
      } else {
        failure.hint = "try again in a moment";
      }
      break;
    case ErrorCode::kNotFound:
      failure.hint = "list the device's apps with `citadel device app list --device " + socket.string() + "`";
      break;
    case ErrorCode::kFailedPrecondition:
      if (error.message().find("development mode is not enabled") != std::string::npos) {
        failure.hint =
            "after `citadel device enable-development <device-id>`, copy the capability to the device "
            "with `citadel device apply-development CAPABILITY.json --device " +
            socket.string() + "`";
      } else if (!app.empty()) {
        failure.hint =
            "see what the app printed: `citadel device app logs " + app + " --device " + socket.string() + "`";
      }
      break;
    case ErrorCode::kCrypto:
      failure.hint =
          "the image is not signed by a key this device trusts; sign it with your tenant's publisher key "
          "(or, in development mode, a developer key listed in the capability)";
      break;
    case ErrorCode::kConflict:
      failure.hint = "remove the app holding the resource (`citadel device app remove NAME`) or change the manifest";
      break;
    default:
      break;
  }
  return failure;
}

Result<json> Call(CommandContext& context, const DeviceOptions& options, const json& header, const Bytes& body = {},
                  const std::string& app = {}) {
  CITADEL_TRY(auto socket, DeviceSocket(context, options));
  auto result = apps::DevCall(socket, header, body);
  if (!result) return std::unexpected(DeviceFailure(result.error(), socket, app));
  return *result;
}

std::string Cell(const json& object, std::string_view key) { return SanitizeForTerminal(JsonText(object, key)); }

void RenderStatus(CommandContext& context, const json& status) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Name", Cell(status, "name")},
      {"Component ID", Cell(status, "component_id")},
      {"State", Cell(status, "state") + " (desired: " + Cell(status, "desired") + ")"},
  };
  if (!JsonText(status, "pid").empty()) rows.emplace_back("PID", Cell(status, "pid"));
  rows.emplace_back("UID", Cell(status, "uid"));
  rows.emplace_back("Image digest", "sha256:" + Cell(status, "digest"));
  rows.emplace_back("Signed by",
                    Cell(status, "image_signer") + (status.value("sideloaded", false) ? " (sideloaded)" : ""));
  if (!JsonText(status, "last_exit").empty()) rows.emplace_back("Last exit", Cell(status, "last_exit"));
  if (status.value("restarts", 0) > 0) rows.emplace_back("Restarts", Cell(status, "restarts"));
  if (!JsonText(status, "next_restart_ms").empty()) {
    rows.emplace_back("Next restart", "in " + Cell(status, "next_restart_ms") + " ms");
  }
  if (status.value("violations", 0) > 0) rows.emplace_back("Violations", Cell(status, "violations"));
  if (!JsonText(status, "problem").empty()) rows.emplace_back("Problem", Cell(status, "problem"));
  RenderKeyValues(context.out(), rows);
}

Result<Bytes> ReadInput(const fs::path& path, std::size_t limit, const std::string& what) {
  auto text = ReadFile(path, limit);
  if (!text) {
    auto failure = FailureFromError(text.error(), {});
    failure.hint = "check the path of the " + what;
    return std::unexpected(failure);
  }
  return Bytes(text->begin(), text->end());
}

Result<void> Install(CommandContext& context, const FileOptions& options, const char* op) {
  CITADEL_TRY(auto image, ReadInput(options.file, image::kMaxImageBytes, "image (made by `citadel image pack`)"));
  CITADEL_TRY(auto status, Call(context, options, {{"op", op}, {"start", !options.no_start}}, image));
  if (context.json()) {
    context.PrintJson(status);
    return {};
  }
  context.out() << (std::string_view(op) == "sideload" ? "Sideloaded " : "Installed ") << options.file.string()
                << ":\n";
  RenderStatus(context, status);
  context.out() << "\nFollow its output with `citadel device app logs " << Cell(status, "name") << " --device "
                << options.device << "`.\n";
  return {};
}

Result<void> List(CommandContext& context, const DeviceOptions& options) {
  CITADEL_TRY(auto result, Call(context, options, {{"op", "app-list"}}));
  if (context.json()) {
    context.PrintJson(result);
    return {};
  }
  auto apps = JsonArray(result, "apps");
  if (apps.empty()) {
    context.out() << "No apps installed. Sideload one with `citadel device sideload APP.img --device DIR`.\n";
    return {};
  }
  Table table({"NAME", "VERSION", "COMPONENT ID", "STATE", "PID", "RESTARTS", "SIGNER", "LAST EXIT"});
  for (const auto& app : apps) {
    std::string state = Cell(app, "state");
    if (state != Cell(app, "desired")) state += " (wants " + Cell(app, "desired") + ")";
    std::string version = Cell(app, "version");
    if (app.value("on_trial", false)) version += " (on trial)";
    table.AddRow({Cell(app, "name"), version, ShortenId(Cell(app, "component_id")), state, Cell(app, "pid"),
                  Cell(app, "restarts"),
                  ShortenId(Cell(app, "image_signer")) + (app.value("sideloaded", false) ? " (dev)" : ""),
                  Cell(app, "last_exit")});
  }
  table.Render(context.out());
  return {};
}

Result<void> Lifecycle(CommandContext& context, const AppOptions& options, const std::string& op) {
  CITADEL_TRY(auto status, Call(context, options, {{"op", op}, {"app", options.app}}, {}, options.app));
  if (context.json()) {
    context.PrintJson(status);
    return {};
  }
  if (op == "app-remove") {
    context.out() << "Removed " << Cell(status, "name") << " (" << Cell(status, "removed")
                  << "): its files, storage and resources are gone.\n";
    return {};
  }
  RenderStatus(context, status);
  return {};
}

Result<void> Logs(CommandContext& context, const AppOptions& options) {
  CITADEL_TRY(auto result, Call(context, options, {{"op", "app-logs"}, {"app", options.app}, {"lines", options.lines}},
                                {}, options.app));
  if (context.json()) {
    context.PrintJson(result);
    return {};
  }
  auto lines = JsonArray(result, "lines");
  if (lines.empty()) context.out() << "(no output yet)\n";
  for (const auto& line : lines) context.out() << Cell(line, "time") << "  " << Cell(line, "text") << "\n";
  auto violations = JsonArray(result, "violations");
  if (!violations.empty()) {
    context.out() << "\nPolicy violations (denied by the sandbox; the manifest does not grant them):\n";
    Table table({"TIME", "SYSCALL", "DETAIL"});
    for (const auto& violation : violations) {
      table.AddRow({Cell(violation, "time"), Cell(violation, "syscall"), Cell(violation, "detail")});
    }
    table.Render(context.out());
  }
  return {};
}

Result<void> ApplyDevelopment(CommandContext& context, const FileOptions& options) {
  CITADEL_TRY(auto envelope, ReadInput(options.file, kMaxCapabilityFileBytes,
                                       "capability (from `citadel device enable-development`)"));
  CITADEL_TRY(auto result, Call(context, options, {{"op", "apply-capability"}}, envelope));
  if (context.json()) {
    context.PrintJson(result);
    return {};
  }
  context.out() << "Development mode is on: the device now accepts sideloaded apps.\n";
  RenderKeyValues(context.out(), {{"  Capability", Cell(result, "capability_id")},
                                  {"  Device", Cell(result, "device_id")},
                                  {"  Tenant", Cell(result, "tenant_id")},
                                  {"  Developer keys", Cell(result, "developer_keys")}});
  context.out() << "\nSideload with `citadel device sideload APP.img --device " << options.device << "`.\n";
  return {};
}

void AddDeviceOption(CLI::App* command, DeviceOptions& options) {
  command->add_option("--device", options.device, kDeviceHelp)->type_name("DIR|SOCKET");
}

}  // namespace

void RegisterDeviceAppsCommands(CommandSet& commands) {
  auto* device = commands.Group(&commands.root(), "device", "Devices");

  auto sideload = std::make_shared<FileOptions>();
  auto* sideload_command =
      commands.Command(device, "sideload",
                       "Install an image on a device in development mode, over its local dev interface, and start it",
                       "citadel device sideload blink.img --device ./var/device",
                       [sideload](CommandContext& context) { return Install(context, *sideload, "sideload"); });
  sideload_command->add_option("IMAGE", sideload->file, "Image file (`citadel image pack`)")->required();
  AddDeviceOption(sideload_command, *sideload);
  sideload_command->add_flag("--no-start", sideload->no_start, "Install only; start later with `device app start`");
  sideload_command->footer(
      "The device must be in development mode (`citadel device enable-development <device-id>`, then\n"
      "`citadel device apply-development FILE --device ...`). The image must still be signed: by a tenant\n"
      "publisher key or a developer key listed in the capability.\n\n"
      "Example:\n  citadel device sideload blink.img --device ./var/device");

  auto apply = std::make_shared<FileOptions>();
  auto* apply_command = commands.Command(
      device, "apply-development", "Give a device its signed AppDevelopment capability (enables sideloading)",
      "citadel device apply-development capability.json --device ./var/device",
      [apply](CommandContext& context) { return ApplyDevelopment(context, *apply); });
  apply_command->add_option("FILE", apply->file, "Capability envelope (JSON) from `citadel device enable-development`")
      ->required();
  AddDeviceOption(apply_command, *apply);

  auto* app_group = commands.Group(device, "app", "Manage the apps on a device over its local dev interface");
  app_group->footer(
      "Run `citadel device app COMMAND --help` for a command's options and an example.\n"
      "--device DIR|SOCKET names the device: its state directory or dev.sock (env CITADEL_DEVICE).");

  auto list = std::make_shared<DeviceOptions>();
  auto* list_command = commands.Command(app_group, "list", "List the installed apps and their state",
                                        "citadel device app list --device ./var/device",
                                        [list](CommandContext& context) { return List(context, *list); });
  AddDeviceOption(list_command, *list);

  auto install = std::make_shared<FileOptions>();
  auto* install_command =
      commands.Command(app_group, "install", "Install a tenant-signed image (no development mode needed) and start it",
                       "citadel device app install blink.img --device ./var/device",
                       [install](CommandContext& context) { return Install(context, *install, "app-install"); });
  install_command->add_option("IMAGE", install->file, "Image signed with a tenant publisher key")->required();
  AddDeviceOption(install_command, *install);
  install_command->add_flag("--no-start", install->no_start, "Install only");

  struct LifecycleCommand {
    const char* name;
    const char* op;
    const char* description;
  };
  for (const auto& entry :
       {LifecycleCommand{"start", "app-start", "Start an app (it restarts after crashes and reboots)"},
        LifecycleCommand{"stop", "app-stop", "Stop an app (SIGTERM, then SIGKILL after 3 s)"},
        LifecycleCommand{"remove", "app-remove", "Stop and uninstall an app, deleting its storage"}}) {
    auto options = std::make_shared<AppOptions>();
    std::string op = entry.op;
    auto* command =
        commands.Command(app_group, entry.name, entry.description,
                         std::string("citadel device app ") + entry.name + " blink --device ./var/device",
                         [options, op](CommandContext& context) { return Lifecycle(context, *options, op); });
    command->add_option("APP", options->app, "The app's name or component id")->required();
    AddDeviceOption(command, *options);
  }

  auto logs = std::make_shared<AppOptions>();
  auto* logs_command = commands.Command(app_group, "logs", "Show an app's recent output and policy violations",
                                        "citadel device app logs blink -n 100 --device ./var/device",
                                        [logs](CommandContext& context) { return Logs(context, *logs); });
  logs_command->add_option("APP", logs->app, "The app's name or component id")->required();
  logs_command->add_option("-n,--lines", logs->lines, "How many of the last lines (at most 256)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  AddDeviceOption(logs_command, *logs);
}

}  // namespace citadel::cli
