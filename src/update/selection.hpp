// What the device should run, decided from verified director metadata: the
// update client's policy as pure functions (no I/O), so every rule is
// unit-tested on its own (docs/ARCHITECTURE.md, "Deployments are rules").
//
// Director targets list, per component, the current deployment's target
// (role "current") and the baseline (role "baseline"), each with
// custom.citadel = {kind, component_id, version, security_version,
// deployment_id, percent, paused, role}; the targets' signed.custom.citadel
// carries {device_group_id, maintenance_window}. Everything here reads
// metadata that TUF has already verified; the parsers are still strict and
// bounded because a verified document can still be wrong.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "tuf/metadata.hpp"
#include "update/update_state.hpp"

namespace citadel::update {

inline constexpr std::string_view kKindApp = "app";
inline constexpr std::string_view kKindOs = "os";
inline constexpr std::string_view kRoleCurrent = "current";
inline constexpr std::string_view kRoleBaseline = "baseline";

struct DirectorTarget {
  tuf::TargetFile file;  // name (file.path), length, hashes as the director signed them
  TargetIdentity identity;
  std::string deployment_id;
  std::int64_t percent = 100;
  bool paused = false;
  std::string role;  // kRoleCurrent | kRoleBaseline

  std::string Sha256() const;
};

// A daily window in UTC: [start, start + duration), wrapping past midnight.
struct MaintenanceWindow {
  int start_minute = 0;      // minutes after 00:00 UTC, 0..1439
  int duration_minutes = 0;  // 1..1440

  bool operator==(const MaintenanceWindow&) const = default;
};

struct DirectorAssignment {
  std::vector<DirectorTarget> targets;
  std::optional<MaintenanceWindow> window;
  // Entries that could not be used, "name: why" (logged by the caller; a
  // broken entry must not stop the others).
  std::vector<std::string> skipped;
};

// custom.citadel of an image repository target: {kind, component_id,
// version, security_version}. kInvalidArgument naming the field otherwise.
Expected<TargetIdentity> ParseTargetIdentity(const Json& custom, std::string_view path);

// Reads the director's verified top-level targets metadata.
Expected<DirectorAssignment> ParseDirectorTargets(const tuf::Metadata<tuf::Targets>& targets);

// {"start":"HH:MM","duration_minutes":N} (N 1..1440), or null for none.
Expected<std::optional<MaintenanceWindow>> ParseMaintenanceWindow(const Json& json, std::string_view path);
bool InMaintenanceWindow(const MaintenanceWindow& window, std::int64_t now_unix_seconds);

// The staged-rollout rule, shared with the service (protocol::InRollout).
using RolloutRule =
    std::function<bool(std::string_view device_id, std::string_view deployment_id, std::int64_t percent)>;

struct Choice {
  std::string component_id;
  DirectorTarget target;
};

// Per component (in component id order), the target this device should
// run: the current deployment's target when the rollout includes the device
// (or it already runs it), and the deployment is not paused for a device
// that does not run it yet; otherwise the baseline. A component with neither
// is left out. `installed_sha256` maps component id to the sha256 of what
// runs now.
std::vector<Choice> ChooseTargets(const std::vector<DirectorTarget>& targets, std::string_view device_id,
                                  const std::map<std::string, std::string>& installed_sha256,
                                  const RolloutRule& in_rollout);

// Mix-and-match defence (Uptane): the image repository's target of the same
// name must have the same length, the same hashes, and the same kind,
// component id, version and security version. kCrypto with what differs.
[[nodiscard]] Expected<void> CheckImageTarget(const DirectorTarget& director, const tuf::TargetFile& image);

// kFailedPrecondition "security version 2 is below this device's floor 3".
[[nodiscard]] Expected<void> CheckFloor(std::int64_t security_version, std::uint64_t floor);

}  // namespace citadel::update
