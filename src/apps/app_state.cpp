#include "apps/app_state.hpp"

#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file.hpp"

namespace citadel::apps {
namespace {

constexpr std::int64_t kStateSchemaVersion = 1;

Expected<std::string> StringField(const Json& object, std::string_view key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return MakeError(ErrorCode::kParse, std::string(where) + "." + std::string(key) + ": missing or not a string");
  }
  return it->get<std::string>();
}

Expected<InstalledApp> ParseApp(const std::string& component_id, const Json& value) {
  std::string where = "apps[\"" + component_id + "\"]";
  if (!value.is_object()) return MakeError(ErrorCode::kParse, where + ": not an object");
  InstalledApp app;
  app.component_id = component_id;
  CITADEL_TRY(app.name, StringField(value, "name", where));
  CITADEL_TRY(app.digest, StringField(value, "digest", where));
  CITADEL_TRY(app.image_signer, StringField(value, "image_signer", where));
  CITADEL_TRY(app.installed_at, StringField(value, "installed_at", where));
  CITADEL_TRY(auto desired, StringField(value, "desired", where));
  if (desired == "running") {
    app.desired = DesiredState::kRunning;
  } else if (desired == "stopped") {
    app.desired = DesiredState::kStopped;
  } else {
    return MakeError(ErrorCode::kParse, where + ".desired: \"" + desired + "\" is not running or stopped");
  }
  auto slot = value.find("slot");
  if (slot == value.end() || !slot->is_number_unsigned() || slot->get<std::uint64_t>() >= kMaxAppSlots) {
    return MakeError(ErrorCode::kParse, where + ".slot: missing or not in 0.." + std::to_string(kMaxAppSlots - 1));
  }
  app.slot = static_cast<std::uint32_t>(slot->get<std::uint64_t>());
  auto sideloaded = value.find("sideloaded");
  if (sideloaded == value.end() || !sideloaded->is_boolean()) {
    return MakeError(ErrorCode::kParse, where + ".sideloaded: missing or not a boolean");
  }
  app.sideloaded = sideloaded->get<bool>();
  return app;
}

}  // namespace

std::string_view DesiredStateName(DesiredState state) {
  return state == DesiredState::kRunning ? "running" : "stopped";
}

Expected<AppsState> LoadAppsState(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return AppsState{};
  auto text = ReadFile(path, kMaxStateBytes);
  if (!text) return WrapError(text.error(), "reading " + path.string());
  auto json = ParseJsonStrict(*text);
  if (!json) return WrapError(json.error(), path.string());
  if (!json->is_object()) return MakeError(ErrorCode::kParse, path.string() + ": not a JSON object");
  auto version = json->find("schema_version");
  if (version == json->end() || !version->is_number_integer() || version->get<std::int64_t>() != kStateSchemaVersion) {
    return MakeError(ErrorCode::kParse, path.string() + ": schema_version must be 1");
  }
  auto apps = json->find("apps");
  if (apps == json->end() || !apps->is_object()) {
    return MakeError(ErrorCode::kParse, path.string() + ": apps: missing or not an object");
  }
  AppsState state;
  std::map<std::uint32_t, std::string> slots;
  for (const auto& [component_id, value] : apps->items()) {
    auto app = ParseApp(component_id, value);
    if (!app) return WrapError(app.error(), path.string());
    auto [it, inserted] = slots.emplace(app->slot, component_id);
    if (!inserted) {
      return MakeError(ErrorCode::kParse, path.string() + ": apps " + it->second + " and " + component_id +
                                              " share slot " + std::to_string(app->slot));
    }
    state.apps.emplace(component_id, std::move(*app));
  }
  return state;
}

Expected<void> SaveAppsState(const std::filesystem::path& path, const AppsState& state) {
  Json apps = Json::object();
  for (const auto& [component_id, app] : state.apps) {
    apps[component_id] = Json{{"name", app.name},
                              {"digest", app.digest},
                              {"slot", app.slot},
                              {"image_signer", app.image_signer},
                              {"sideloaded", app.sideloaded},
                              {"desired", DesiredStateName(app.desired)},
                              {"installed_at", app.installed_at}};
  }
  Json document{{"schema_version", kStateSchemaVersion}, {"apps", std::move(apps)}};
  auto written = WriteFileAtomic(path, document.dump(2) + "\n", 0600);
  if (!written) return WrapError(written.error(), "writing " + path.string());
  return kOk;
}

}  // namespace citadel::apps
