// Deployments are rules (docs/ARCHITECTURE.md, "Deployments are rules"): a
// row says "this device group (or every group following this OS feed)
// should run these targets, at this percent". No per-device rows are
// written up front; the director metadata of each group is computed from
// the rules and published through the Repository, and every device decides
// by itself whether it is in the rollout (protocol::InRollout).
//
// Policy decisions (also in docs/PROTOCOL.md, "Updates"):
//   * Scope and kind: a device-group deployment carries app targets only,
//     an OS-feed deployment OS targets only. A group that needs its own OS
//     follows its own feed (feeds are free names, [a-z0-9-]{1,32}).
//   * One target per component per deployment. A new deployment supersedes
//     every earlier active or paused deployment of the same scope that names
//     one of its components. It is refused (409) when that would cut short
//     the rollout (< 100%) of a component the new deployment does not name:
//     include that component or roll the old deployment back first.
//   * Baseline of a component: the newest superseded deployment of the scope
//     naming it that had reached 100%. Rolled-back deployments never are.
//   * Batches: ascending percents with ascending after_seconds. While the
//     deployment is active, a batch takes effect after_seconds(batch) -
//     after_seconds(batch reached) seconds after the last change (creation,
//     resume, percent); each change first records the percent reached, so
//     paused time is not counted, and the wait for the next batch restarts.
//   * The effective percent only rises: SetPercent refuses to go down.
//
// Threading: stateless over the store and the repository; construct one per
// request. Every state change is a compare-and-set in the store, so
// replicas racing on one deployment cannot both win.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "protocol/protocol.hpp"
#include "server/repository.hpp"
#include "store/store.hpp"

namespace citadel::server {

inline constexpr std::size_t kMaxDeploymentTargets = 16;
inline constexpr std::size_t kMaxDeploymentBatches = 16;
inline constexpr std::int64_t kMaxBatchOffsetSeconds = 366LL * 24 * 60 * 60;

// One step of a staged rollout: `percent` applies `after_seconds` into the
// schedule (see the header comment for how paused time is handled).
struct RolloutBatch {
  std::int64_t percent = 0;
  std::int64_t after_seconds = 0;
};

struct DeploymentRequest {
  std::string device_group_id;  // exactly one of device_group_id and os_feed
  std::string os_feed;
  std::vector<std::string> target_names;
  // Exactly one of percent and batches.
  std::optional<std::int64_t> percent;
  std::vector<RolloutBatch> batches;
  std::string created_by;  // the audit actor
};

// What the devices of a deployment's scope reported.
struct DeploymentProgress {
  // Claimed devices in the scope times the effective percent / 100, rounded
  // down: how many devices the rollout currently aims at.
  std::int64_t eligible = 0;
  std::map<store::UpdateState, std::int64_t> states;  // every state, zeros included
};

// The director metadata a group should publish now.
struct DirectorContent {
  std::vector<DirectorTarget> targets;
  Json custom;  // the targets' signed.custom: {"citadel": {device_group_id, maintenance_window}}
};

// An OS feed name: [a-z0-9-]{1,32}.
bool IsValidOsFeed(std::string_view feed);
// Validates {"start":"HH:MM","duration_minutes":1..1440} (or null) and
// returns the text the store keeps: canonical JSON, or "" for null.
Expected<std::string> NormalizeMaintenanceWindow(const Json& window);
// The stored text back as JSON (null for "").
Json MaintenanceWindowJson(std::string_view stored);

// Batches from/to their stored JSON text ("[]" or "" for none). Parse
// validates as Create does (kInvalidArgument naming the batch).
Expected<std::vector<RolloutBatch>> ParseBatches(const Json& batches);
Json BatchesJson(const std::vector<RolloutBatch>& batches);

// The percent in force at `now` (see the header comment); the stored
// percent for a deployment that is not active or has no batches.
std::int64_t EffectivePercent(const store::Deployment& deployment, std::int64_t now);
// The target names of a deployment (its stored JSON array).
std::vector<std::string> DeploymentTargetNames(const store::Deployment& deployment);

class DeploymentService {
 public:
  DeploymentService(store::Store& store, Repository& repository) : store_(store), repository_(repository) {}

  // Errors: kInvalidArgument (a bad request, the message says which field),
  // kNotFound (the group is not the tenant's), kFailedPrecondition (the
  // tenant has no image targets yet), kConflict (the supersede rule above).
  Expected<store::Deployment> Create(std::string_view tenant_id, const DeploymentRequest& request, std::int64_t now);
  // State changes. kNotFound for another tenant's id; kConflict when the
  // state does not allow it (paused/active/rolled-back/superseded) or when
  // SetPercent would lower the percent.
  Expected<store::Deployment> Pause(std::string_view tenant_id, std::string_view deployment_id, std::int64_t now);
  Expected<store::Deployment> Resume(std::string_view tenant_id, std::string_view deployment_id, std::int64_t now);
  Expected<store::Deployment> Rollback(std::string_view tenant_id, std::string_view deployment_id, std::int64_t now);
  Expected<store::Deployment> SetPercent(std::string_view tenant_id, std::string_view deployment_id,
                                         std::int64_t percent, std::int64_t now);

  Expected<DeploymentProgress> Progress(const store::Deployment& deployment, std::int64_t now);
  // The groups whose director metadata the deployment feeds: its group, or
  // every group following its feed.
  Expected<std::vector<std::string>> AffectedGroups(const store::Deployment& deployment);

  // Computes the group's director targets from the deployments in force.
  // Targets no longer in the image repository's latest targets are left out
  // (a device would refuse them anyway: mix-and-match) and logged.
  Expected<DirectorContent> DirectorTargetsFor(std::string_view tenant_id, std::string_view group_id, std::int64_t now);
  // Computes and publishes (a no-op when unchanged and fresh); returns the
  // group's director timestamp version. kFailedPrecondition / kNotFound
  // while the tenant's repositories are not set up.
  Expected<std::int64_t> EnsureDirector(std::string_view tenant_id, std::string_view group_id, std::int64_t now);
  // EnsureDirector for each group; failures are logged, not returned: the
  // change is committed, and the next check-in of a device publishes again.
  void EnsureDirectors(std::string_view tenant_id, const std::vector<std::string>& group_ids, std::int64_t now);

  // Check-in: records the device's reports and returns how many were
  // handled (all of them: a report naming no deployment of the tenant is
  // logged and dropped, so the device stops re-sending it). A report dated
  // after `now` counts as `now`. Store failures are returned.
  Expected<std::int64_t> RecordReports(std::string_view tenant_id, std::string_view device_id,
                                       const std::vector<protocol::UpdateReportEntry>& reports, std::int64_t now);
  // Check-in: the reply's update member for a claimed device, or nullopt
  // when the device has no group, the tenant's repositories are not set up,
  // or the director cannot be published now (logged). Takes (clears) the
  // device's update-now flag only when it returns a value and `device` (the
  // registry row the check-in's authentication read) has the flag set: a
  // flag set since is taken at the next check-in.
  Expected<std::optional<protocol::CheckInUpdateReply>> CheckInReply(const store::Device& device,
                                                                     std::int64_t acknowledged, std::int64_t now);

 private:
  enum class Change { kPause, kResume, kRollback, kSetPercent };
  Expected<store::Deployment> Transition(std::string_view tenant_id, std::string_view deployment_id, Change change,
                                         std::int64_t now, std::int64_t new_percent = 0);

  store::Store& store_;
  Repository& repository_;
};

}  // namespace citadel::server
