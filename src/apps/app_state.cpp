#include "apps/app_state.hpp"

#include <system_error>

#include "app/manifest.hpp"
#include "common/canonical_json.hpp"
#include "common/file.hpp"

namespace citadel::apps {
namespace {

constexpr std::int64_t kStateSchemaVersion = 1;
using app::kMaxSecurityVersion;

Expected<std::string> StringField(const Json& object, std::string_view key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return MakeError(ErrorCode::kParse, std::string(where) + "." + std::string(key) + ": missing or not a string");
  }
  return it->get<std::string>();
}

// An optional string: "" when absent.
Expected<std::string> OptionalStringField(const Json& object, std::string_view key, std::string_view where) {
  if (object.find(key) == object.end()) return std::string();
  return StringField(object, key, where);
}

Expected<InstalledApp> ParseApp(const std::string& component_id, const Json& value, const std::string& where) {
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
  CITADEL_TRY(app.version, OptionalStringField(value, "version", where));
  CITADEL_TRY(app.image_sha256, OptionalStringField(value, "image_sha256", where));
  if (auto security = value.find("security_version"); security != value.end()) {
    if (!security->is_number_integer() || security->get<std::int64_t>() < 0 ||
        security->get<std::int64_t>() > kMaxSecurityVersion) {
      return MakeError(ErrorCode::kParse,
                       where + ".security_version: not an integer in 0.." + std::to_string(kMaxSecurityVersion));
    }
    app.security_version = security->get<std::int64_t>();
  }
  return app;
}

Json AppJson(const InstalledApp& app) {
  return Json{{"name", app.name},
              {"digest", app.digest},
              {"slot", app.slot},
              {"image_signer", app.image_signer},
              {"sideloaded", app.sideloaded},
              {"desired", DesiredStateName(app.desired)},
              {"installed_at", app.installed_at},
              {"version", app.version},
              {"security_version", app.security_version},
              {"image_sha256", app.image_sha256}};
}

Expected<TrialRecord> ParseTrial(const std::string& component_id, const Json& value, const InstalledApp& app,
                                 const std::string& where) {
  if (!value.is_object()) return MakeError(ErrorCode::kParse, where + ": not an object");
  TrialRecord trial;
  CITADEL_TRY(trial.image_sha256, StringField(value, "image_sha256", where));
  CITADEL_TRY(trial.started_at, StringField(value, "started_at", where));
  CITADEL_TRY(auto phase, StringField(value, "phase", where));
  if (phase == "open") {
    trial.phase = TrialPhase::kOpen;
  } else if (phase == "reverting") {
    trial.phase = TrialPhase::kReverting;
  } else {
    return MakeError(ErrorCode::kParse, where + ".phase: \"" + phase + "\" is not open or reverting");
  }
  auto exits = value.find("exits");
  if (exits == value.end() || !exits->is_number_unsigned() || exits->get<std::uint64_t>() > UINT32_MAX) {
    return MakeError(ErrorCode::kParse, where + ".exits: missing or not a count");
  }
  trial.exits = static_cast<std::uint32_t>(exits->get<std::uint64_t>());
  auto immediate = value.find("immediate");
  if (immediate == value.end() || !immediate->is_boolean()) {
    return MakeError(ErrorCode::kParse, where + ".immediate: missing or not a boolean");
  }
  trial.immediate = immediate->get<bool>();
  auto previous = value.find("previous");
  if (previous == value.end()) return MakeError(ErrorCode::kParse, where + ".previous: missing");
  if (!previous->is_null()) {
    CITADEL_TRY(trial.previous, ParseApp(component_id, *previous, where + ".previous"));
    // The slot is the app's for life: its uid owns the storage image.
    if (trial.previous->slot != app.slot) {
      return MakeError(ErrorCode::kParse, where + ".previous.slot: differs from the installed app's slot");
    }
  }
  return trial;
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
    auto app = ParseApp(component_id, value, "apps[\"" + component_id + "\"]");
    if (!app) return WrapError(app.error(), path.string());
    auto [it, inserted] = slots.emplace(app->slot, component_id);
    if (!inserted) {
      return MakeError(ErrorCode::kParse, path.string() + ": apps " + it->second + " and " + component_id +
                                              " share slot " + std::to_string(app->slot));
    }
    state.apps.emplace(component_id, std::move(*app));
  }
  if (auto trials = json->find("trials"); trials != json->end()) {
    if (!trials->is_object()) return MakeError(ErrorCode::kParse, path.string() + ": trials: not an object");
    for (const auto& [component_id, value] : trials->items()) {
      std::string where = "trials[\"" + component_id + "\"]";
      auto app = state.apps.find(component_id);
      if (app == state.apps.end()) {
        return MakeError(ErrorCode::kParse, path.string() + ": " + where + ": no such app is installed");
      }
      auto trial = ParseTrial(component_id, value, app->second, where);
      if (!trial) return WrapError(trial.error(), path.string());
      state.trials.emplace(component_id, std::move(*trial));
    }
  }
  return state;
}

Expected<void> SaveAppsState(const std::filesystem::path& path, const AppsState& state) {
  Json apps = Json::object();
  for (const auto& [component_id, app] : state.apps) apps[component_id] = AppJson(app);
  Json trials = Json::object();
  for (const auto& [component_id, trial] : state.trials) {
    trials[component_id] = Json{{"image_sha256", trial.image_sha256},
                                {"started_at", trial.started_at},
                                {"exits", trial.exits},
                                {"phase", trial.phase == TrialPhase::kOpen ? "open" : "reverting"},
                                {"immediate", trial.immediate},
                                {"previous", trial.previous ? AppJson(*trial.previous) : Json(nullptr)}};
  }
  Json document{{"schema_version", kStateSchemaVersion}, {"apps", std::move(apps)}, {"trials", std::move(trials)}};
  auto written = WriteFileAtomic(path, document.dump(2) + "\n", 0600);
  if (!written) return WrapError(written.error(), "writing " + path.string());
  return kOk;
}

}  // namespace citadel::apps
