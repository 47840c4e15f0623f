#include "cli/config.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <system_error>

#include <nlohmann/json.hpp>

#include "common/file.hpp"

namespace citadel::cli {
namespace {

std::optional<std::string> Lookup(const EnvLookup& env, std::string_view name) {
  auto value = env(name);
  if (!value || value->empty()) return std::nullopt;
  return value;
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Expected<std::filesystem::path> ConfigPath(const EnvLookup& env) {
  if (auto explicit_path = Lookup(env, "CITADEL_CONFIG")) return std::filesystem::path(*explicit_path);
  if (auto xdg = Lookup(env, "XDG_CONFIG_HOME")) {
    return std::filesystem::path(*xdg) / "citadel" / "config.json";
  }
  if (auto home = Lookup(env, "HOME")) {
    return std::filesystem::path(*home) / ".config" / "citadel" / "config.json";
  }
  return MakeError(ErrorCode::kFailedPrecondition,
                   "cannot place the config file: set CITADEL_CONFIG, XDG_CONFIG_HOME or HOME");
}

Expected<std::optional<Config>> LoadConfig(const std::filesystem::path& path) {
  auto text = ReadFile(path, 1u << 20);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return std::optional<Config>();
    return std::unexpected(text.error());
  }
  auto json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    return MakeError(ErrorCode::kParse, path.string() + " is not a citadel config (expected a JSON object)");
  }
  Config config;
  for (auto [key, field] :
       {std::pair{"server", &config.server}, std::pair{"token", &config.token}, std::pair{"ca_pem", &config.ca_pem}}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return MakeError(ErrorCode::kParse, path.string() + ": \"" + key + "\" must be a string");
    }
    *field = it->get<std::string>();
  }
  return std::optional<Config>(std::move(config));
}

Expected<void> SaveConfig(const std::filesystem::path& path, const Config& config) {
  if (path.has_parent_path()) CITADEL_TRY_VOID(EnsureDirectory(path.parent_path(), 0700));
  nlohmann::json json = {{"server", config.server}, {"token", config.token}, {"ca_pem", config.ca_pem}};
  return WriteFileAtomic(path, json.dump(2) + "\n", 0600);
}

Expected<bool> RemoveConfig(const std::filesystem::path& path) {
  std::error_code ec;
  bool removed = std::filesystem::remove(path, ec);
  if (ec) return MakeError(ErrorCode::kIo, "cannot remove " + path.string() + ": " + ec.message());
  return removed;
}

bool IsAccessibleByOthers(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return false;
  return (info.st_mode & 077) != 0;
}

Result<ConnectionSettings> ResolveConnection(const ConnectionOverrides& flags, const EnvLookup& env,
                                             const std::optional<Config>& saved) {
  ConnectionSettings settings;
  auto pick = [&](const std::string& flag, std::string_view env_name, const std::string* saved_value,
                  std::string& target, SettingSource& source) {
    if (!flag.empty()) {
      target = flag;
      source = SettingSource::kFlag;
    } else if (auto value = Lookup(env, env_name)) {
      target = *value;
      source = SettingSource::kEnvironment;
    } else if (saved_value != nullptr && !saved_value->empty()) {
      target = *saved_value;
      source = SettingSource::kConfigFile;
    }
  };
  pick(flags.server, "CITADEL_SERVER", saved ? &saved->server : nullptr, settings.server, settings.server_source);
  pick(flags.token, "CITADEL_TOKEN", saved ? &saved->token : nullptr, settings.token, settings.token_source);
  while (!settings.server.empty() && settings.server.back() == '/') settings.server.pop_back();

  std::string ca_file;
  if (!flags.ca_file.empty()) {
    ca_file = flags.ca_file;
    settings.ca_source = SettingSource::kFlag;
  } else if (auto value = Lookup(env, "CITADEL_CA")) {
    ca_file = *value;
    settings.ca_source = SettingSource::kEnvironment;
  } else if (saved && !saved->ca_pem.empty()) {
    settings.ca_pem = saved->ca_pem;
    settings.ca_source = SettingSource::kConfigFile;
  }
  if (!ca_file.empty()) {
    auto pem = ReadFile(ca_file, 1u << 20);
    if (!pem) {
      const char* origin = settings.ca_source == SettingSource::kFlag ? "--ca" : "CITADEL_CA";
      return Fail(pem.error().code() == ErrorCode::kNotFound ? ExitCode::kUsage : ExitCode::kError,
                  "cannot read the CA file named by " + std::string(origin) + ": " + pem.error().message(),
                  "pass the server's service CA, e.g. --ca /var/lib/citadel/service-ca.pem");
    }
    settings.ca_pem = std::move(*pem);
  }
  return settings;
}

Result<void> RequireComplete(const ConnectionSettings& settings) {
  std::string missing;
  auto note = [&](bool absent, std::string_view what) {
    if (!absent) return;
    if (!missing.empty()) missing += ", ";
    missing += what;
  };
  note(settings.server.empty(), "server URL");
  note(settings.token.empty(), "token");
  note(settings.ca_pem.empty(), "service CA");
  if (missing.empty()) return {};
  return Fail(ExitCode::kAuth, "not logged in (missing " + missing + ")",
              "run `citadel login --server URL --token TOKEN --ca FILE`, or pass --server/--token/--ca "
              "(or CITADEL_SERVER/CITADEL_TOKEN/CITADEL_CA)");
}

}  // namespace citadel::cli
