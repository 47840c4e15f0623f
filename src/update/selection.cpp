#include "update/selection.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "common/json_fields.hpp"
#include "protocol/protocol.hpp"

namespace citadel::update {
namespace {

namespace jf = json_fields;

constexpr std::size_t kMaxText = 256;
// Component ids end up in RoT counter names ("floor.<id>", at most 64
// characters of [A-Za-z0-9._-]) and in file names.
constexpr std::size_t kMaxComponentId = 58;
constexpr std::int64_t kMaxSecurityVersion = 1'000'000;
constexpr int kMinutesPerDay = 24 * 60;
constexpr std::int64_t kSecondsPerDay = 24 * 60 * 60;

bool IsComponentIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

Expected<std::string> ReadComponentId(const Json& value, std::string_view path) {
  CITADEL_TRY(std::string id, jf::ReadString(value, path, kMaxComponentId));
  if (!std::all_of(id.begin(), id.end(), IsComponentIdChar) || id.front() == '.') {
    return jf::FieldError(path, "must be letters, digits, '.', '_' or '-'");
  }
  return id;
}

Expected<std::string> Member(const Json& object, std::string_view path, std::string_view key) {
  CITADEL_TRY(const Json* value, jf::Require(object, path, key));
  return jf::ReadString(*value, jf::Child(path, key), kMaxText);
}

Expected<DirectorTarget> ParseDirectorTarget(const tuf::TargetFile& file) {
  const std::string path = "custom.citadel";
  const Json* citadel = file.custom.is_object() ? jf::Find(file.custom, "citadel") : nullptr;
  if (citadel == nullptr) return jf::FieldError(path, "missing");
  DirectorTarget target;
  target.file = file;
  CITADEL_TRY(target.identity, ParseTargetIdentity(file.custom, "custom"));
  // Bounded as the check-in's reports are: a report naming it must fit.
  CITADEL_TRY(const Json* deployment, jf::Require(*citadel, path, "deployment_id"));
  CITADEL_TRY(target.deployment_id,
              jf::ReadString(*deployment, jf::Child(path, "deployment_id"), protocol::kMaxDeploymentIdBytes));
  if (file.path.size() > protocol::kMaxTargetNameBytes) return jf::FieldError("name", "too long");
  CITADEL_TRY(const Json* percent, jf::Require(*citadel, path, "percent"));
  CITADEL_TRY(target.percent, jf::ReadInteger(*percent, jf::Child(path, "percent"), 0, 100));
  CITADEL_TRY(const Json* paused, jf::Require(*citadel, path, "paused"));
  CITADEL_TRY(target.paused, jf::ReadBool(*paused, jf::Child(path, "paused")));
  CITADEL_TRY(target.role, Member(*citadel, path, "role"));
  if (target.role != kRoleCurrent && target.role != kRoleBaseline) {
    return jf::FieldError(jf::Child(path, "role"), "must be \"current\" or \"baseline\"");
  }
  if (target.Sha256().empty()) return jf::FieldError("hashes", "no sha256");
  return target;
}

Expected<int> ParseClock(std::string_view text, std::string_view path) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (text.size() != 5 || text[2] != ':' || !digit(text[0]) || !digit(text[1]) || !digit(text[3]) || !digit(text[4])) {
    return jf::FieldError(path, "expected \"HH:MM\"");
  }
  const int hours = (text[0] - '0') * 10 + (text[1] - '0');
  const int minutes = (text[3] - '0') * 10 + (text[4] - '0');
  if (hours > 23 || minutes > 59) return jf::FieldError(path, "not a time of day");
  return hours * 60 + minutes;
}

}  // namespace

std::string DirectorTarget::Sha256() const {
  auto found = file.hashes.find("sha256");
  return found == file.hashes.end() ? std::string() : found->second;
}

Expected<TargetIdentity> ParseTargetIdentity(const Json& custom, std::string_view path) {
  const std::string citadel_path = jf::Child(path, "citadel");
  const Json* citadel = custom.is_object() ? jf::Find(custom, "citadel") : nullptr;
  if (citadel == nullptr) return jf::FieldError(citadel_path, "missing");
  // The director adds deployment members; the image repository may grow.
  CITADEL_TRY_VOID(jf::ExpectObject(*citadel, citadel_path, {}, jf::UnknownFields::kIgnore));
  TargetIdentity identity;
  CITADEL_TRY(identity.kind, Member(*citadel, citadel_path, "kind"));
  if (identity.kind != kKindApp && identity.kind != kKindOs) {
    return jf::FieldError(jf::Child(citadel_path, "kind"), "must be \"app\" or \"os\"");
  }
  CITADEL_TRY(const Json* component, jf::Require(*citadel, citadel_path, "component_id"));
  CITADEL_TRY(identity.component_id, ReadComponentId(*component, jf::Child(citadel_path, "component_id")));
  CITADEL_TRY(const Json* version, jf::Require(*citadel, citadel_path, "version"));
  CITADEL_TRY(identity.version,
              jf::ReadString(*version, jf::Child(citadel_path, "version"), protocol::kMaxVersionBytes));
  CITADEL_TRY(const Json* security, jf::Require(*citadel, citadel_path, "security_version"));
  CITADEL_TRY(identity.security_version,
              jf::ReadInteger(*security, jf::Child(citadel_path, "security_version"), 0, kMaxSecurityVersion));
  return identity;
}

Expected<DirectorAssignment> ParseDirectorTargets(const tuf::Metadata<tuf::Targets>& targets) {
  DirectorAssignment assignment;
  const Json* custom = jf::Find(targets.signed_json, "custom");
  const Json* citadel = custom != nullptr ? jf::Find(*custom, "citadel") : nullptr;
  if (citadel != nullptr) {
    if (const Json* window = jf::Find(*citadel, "maintenance_window")) {
      CITADEL_TRY(assignment.window, ParseMaintenanceWindow(*window, "custom.citadel.maintenance_window"));
    }
  }
  std::set<std::pair<std::string, std::string>> seen;  // (component, role)
  for (const auto& [name, file] : targets.body.targets) {
    auto parsed = ParseDirectorTarget(file);
    if (!parsed) {
      assignment.skipped.push_back(name + ": " + parsed.error().message());
      continue;
    }
    if (!seen.emplace(parsed->identity.component_id, parsed->role).second) {
      assignment.skipped.push_back(name + ": a second " + parsed->role + " target for component " +
                                   parsed->identity.component_id);
      continue;
    }
    assignment.targets.push_back(std::move(*parsed));
  }
  return assignment;
}

Expected<std::optional<MaintenanceWindow>> ParseMaintenanceWindow(const Json& json, std::string_view path) {
  if (json.is_null()) return std::optional<MaintenanceWindow>();
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {"start", "duration_minutes"}));
  MaintenanceWindow window;
  CITADEL_TRY(std::string start, Member(json, path, "start"));
  CITADEL_TRY(window.start_minute, ParseClock(start, jf::Child(path, "start")));
  CITADEL_TRY(const Json* duration, jf::Require(json, path, "duration_minutes"));
  CITADEL_TRY(std::int64_t minutes, jf::ReadInteger(*duration, jf::Child(path, "duration_minutes"), 1, kMinutesPerDay));
  window.duration_minutes = static_cast<int>(minutes);
  return std::optional<MaintenanceWindow>(window);
}

bool InMaintenanceWindow(const MaintenanceWindow& window, std::int64_t now_unix_seconds) {
  if (window.duration_minutes >= kMinutesPerDay) return true;
  // Floor modulo, so times before 1970 do not land on a negative minute.
  const std::int64_t second_of_day = ((now_unix_seconds % kSecondsPerDay) + kSecondsPerDay) % kSecondsPerDay;
  const std::int64_t minute = second_of_day / 60;
  const std::int64_t since_start = (minute - window.start_minute + kMinutesPerDay) % kMinutesPerDay;
  return since_start < window.duration_minutes;
}

std::vector<Choice> ChooseTargets(const std::vector<DirectorTarget>& targets, std::string_view device_id,
                                  const std::map<std::string, std::string>& installed_sha256,
                                  const RolloutRule& in_rollout) {
  struct Candidates {
    const DirectorTarget* current = nullptr;
    const DirectorTarget* baseline = nullptr;
  };
  std::map<std::string, Candidates> by_component;
  for (const auto& target : targets) {
    auto& candidates = by_component[target.identity.component_id];
    (target.role == kRoleCurrent ? candidates.current : candidates.baseline) = &target;
  }
  std::vector<Choice> choices;
  for (const auto& [component, candidates] : by_component) {
    const DirectorTarget* chosen = candidates.baseline;
    if (const DirectorTarget* current = candidates.current) {
      auto installed = installed_sha256.find(component);
      const bool runs_it = installed != installed_sha256.end() && installed->second == current->Sha256();
      const bool included = runs_it || in_rollout(device_id, current->deployment_id, current->percent);
      // Paused: only the devices that already run it keep it.
      if (included && (!current->paused || runs_it)) chosen = current;
    }
    if (chosen != nullptr) choices.push_back(Choice{component, *chosen});
  }
  return choices;
}

Expected<void> CheckImageTarget(const DirectorTarget& director, const tuf::TargetFile& image) {
  const std::string what = "target " + jf::Quote(director.file.path) + ": ";
  if (image.length != director.file.length) {
    return MakeError(ErrorCode::kCrypto, what + "the director says " + std::to_string(director.file.length) +
                                             " bytes, the image repository " + std::to_string(image.length));
  }
  if (image.hashes != director.file.hashes) {
    return MakeError(ErrorCode::kCrypto, what + "the director's and the image repository's hashes differ");
  }
  auto identity = ParseTargetIdentity(image.custom, "custom");
  if (!identity) {
    return MakeError(ErrorCode::kCrypto, what + "the image repository's entry: " + identity.error().message());
  }
  if (!(*identity == director.identity)) {
    return MakeError(ErrorCode::kCrypto,
                     what +
                         "the director's kind, component, version or security version differ from the image "
                         "repository's");
  }
  return kOk;
}

Expected<void> CheckFloor(std::int64_t security_version, std::uint64_t floor) {
  if (security_version < 0 || static_cast<std::uint64_t>(security_version) < floor) {
    return MakeError(ErrorCode::kFailedPrecondition, "security version " + std::to_string(security_version) +
                                                         " is below this device's floor " + std::to_string(floor));
  }
  return kOk;
}

}  // namespace citadel::update
