#include "server/deployments.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <utility>

#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "server/data_dir.hpp"

namespace citadel::server {

using json_fields::Child;
using json_fields::Element;
using json_fields::FieldError;
using json_fields::Quote;
using store::Deployment;
using store::DeploymentState;

namespace {

// ListDeployments' own bound; one scope rarely holds more than a handful of
// deployments in force, and the baseline is among the newest superseded.
constexpr std::int64_t kDeploymentScan = 1000;
// Re-read-and-decide rounds when another replica moves a deployment first.
constexpr int kCompareAndSetAttempts = 3;

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// A component is named by its kind and id: an app id and an OS name live in
// different scopes, but the key keeps them apart regardless.
std::string ComponentKey(const store::Image& image) {
  return std::string(store::ImageKindName(image.kind)) + "/" + image.component_id;
}

// Images by target name, read at most once per computation.
class ImageLookup {
 public:
  ImageLookup(store::Store& store, std::string_view tenant_id) : store_(store), tenant_id_(tenant_id) {}

  // nullptr when the tenant has no image of that name.
  Expected<const store::Image*> Find(const std::string& target_name) {
    if (auto it = cache_.find(target_name); it != cache_.end()) return it->second ? &*it->second : nullptr;
    auto image = store_.GetImageByTargetName(tenant_id_, target_name);
    if (!image && image.error().code() != ErrorCode::kNotFound) return std::unexpected(image.error());
    auto& slot = cache_[target_name];
    if (image) slot = std::move(*image);
    return slot ? &*slot : nullptr;
  }

 private:
  store::Store& store_;
  std::string tenant_id_;
  std::map<std::string, std::optional<store::Image>> cache_;
};

// The deployment's components, by component key -> target name. Targets
// whose image is gone (never expected: images are not deleted) are skipped.
Expected<std::map<std::string, std::string>> Components(const Deployment& deployment, ImageLookup& images) {
  std::map<std::string, std::string> components;
  for (const auto& name : DeploymentTargetNames(deployment)) {
    CITADEL_TRY(const store::Image* image, images.Find(name));
    if (image == nullptr) {
      log::Warn("deployment names a target with no image",
                {{"deployment", deployment.id}, {"target", name}, {"tenant", deployment.tenant_id}});
      continue;
    }
    components.emplace(ComponentKey(*image), name);
  }
  return components;
}

Expected<std::vector<Deployment>> ListInScope(store::Store& store, std::string_view tenant_id,
                                              std::string_view group_id, std::string_view os_feed,
                                              std::vector<DeploymentState> states) {
  store::DeploymentFilter filter;
  filter.tenant_id = std::string(tenant_id);
  filter.device_group_id = std::string(group_id);
  filter.os_feed = std::string(os_feed);
  filter.states = std::move(states);
  filter.limit = kDeploymentScan;
  return store.ListDeployments(filter);
}

bool IsInForce(DeploymentState state) { return state == DeploymentState::kActive || state == DeploymentState::kPaused; }

std::string StateName(DeploymentState state) { return std::string(store::DeploymentStateName(state)); }

Expected<std::vector<RolloutBatch>> StoredBatches(const Deployment& deployment) {
  if (deployment.batches_json.empty()) return std::vector<RolloutBatch>{};
  CITADEL_TRY(Json json, ParseJsonStrict(deployment.batches_json));
  return ParseBatches(json);
}

// One director entry: the image repository's description of the target
// (so the device's mix-and-match check compares equal) with the
// deployment's custom.
DirectorTarget MakeDirectorTarget(const tuf::TargetFile& file, const store::Image& image, const Deployment& deployment,
                                  std::int64_t percent, bool paused, std::string_view role) {
  DirectorTarget target;
  target.name = file.path;
  target.length = static_cast<std::uint64_t>(file.length);
  target.hashes = file.hashes;
  target.custom = {{"citadel",
                    {{"kind", store::ImageKindName(image.kind)},
                     {"component_id", image.component_id},
                     {"version", image.version},
                     {"security_version", image.security_version},
                     {"deployment_id", deployment.id},
                     {"percent", percent},
                     {"paused", paused},
                     {"role", role}}}};
  return target;
}

}  // namespace

// ---------------------------------------------------------------- validation helpers

bool IsValidOsFeed(std::string_view feed) {
  if (feed.empty() || feed.size() > 32) return false;
  return std::all_of(feed.begin(), feed.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

Expected<std::string> NormalizeMaintenanceWindow(const Json& window) {
  if (window.is_null()) return std::string();
  CITADEL_TRY_VOID(json_fields::ExpectObject(window, "maintenance_window", {"start", "duration_minutes"}));
  CITADEL_TRY(const Json* start, json_fields::Require(window, "maintenance_window", "start"));
  CITADEL_TRY(std::string text, json_fields::ReadString(*start, "maintenance_window.start", 5));
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (text.size() != 5 || !digit(text[0]) || !digit(text[1]) || text[2] != ':' || !digit(text[3]) || !digit(text[4]) ||
      (text[0] - '0') * 10 + (text[1] - '0') > 23 || text[3] > '5') {
    return FieldError("maintenance_window.start", "expected \"HH:MM\" (UTC, 00:00 to 23:59)");
  }
  CITADEL_TRY(const Json* duration, json_fields::Require(window, "maintenance_window", "duration_minutes"));
  CITADEL_TRY(std::int64_t minutes,
              json_fields::ReadInteger(*duration, "maintenance_window.duration_minutes", 1, 1440));
  return CanonicalJson(Json{{"start", text}, {"duration_minutes", minutes}});
}

Json MaintenanceWindowJson(std::string_view stored) {
  if (stored.empty()) return nullptr;
  auto parsed = ParseJsonStrict(stored);
  // The service wrote it after validating; anything else means "any time"
  // would be wrong to assume silently, so it is logged.
  if (!parsed) {
    log::Error("stored maintenance window is not JSON", {{"error", parsed.error().message()}});
    return nullptr;
  }
  return *parsed;
}

Expected<std::vector<RolloutBatch>> ParseBatches(const Json& batches) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(batches, "batches", kMaxDeploymentBatches));
  std::vector<RolloutBatch> out;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const std::string path = Element("batches", i);
    CITADEL_TRY_VOID(json_fields::ExpectObject(batches[i], path, {"percent", "after_seconds"}));
    CITADEL_TRY(const Json* percent, json_fields::Require(batches[i], path, "percent"));
    CITADEL_TRY(const Json* after, json_fields::Require(batches[i], path, "after_seconds"));
    RolloutBatch batch;
    CITADEL_TRY(batch.percent, json_fields::ReadInteger(*percent, Child(path, "percent"), 1, 100));
    CITADEL_TRY(batch.after_seconds,
                json_fields::ReadInteger(*after, Child(path, "after_seconds"), 0, kMaxBatchOffsetSeconds));
    if (!out.empty() && batch.percent <= out.back().percent) {
      return FieldError(Child(path, "percent"), "batch percents must ascend");
    }
    if (!out.empty() && batch.after_seconds <= out.back().after_seconds) {
      return FieldError(Child(path, "after_seconds"), "batch offsets must ascend");
    }
    out.push_back(batch);
  }
  return out;
}

Json BatchesJson(const std::vector<RolloutBatch>& batches) {
  Json out = Json::array();
  for (const auto& b : batches) out.push_back({{"percent", b.percent}, {"after_seconds", b.after_seconds}});
  return out;
}

std::int64_t EffectivePercent(const Deployment& deployment, std::int64_t now) {
  if (deployment.state != DeploymentState::kActive) return deployment.percent;
  auto batches = StoredBatches(deployment);
  if (!batches) {
    log::Error("stored deployment batches are invalid",
               {{"deployment", deployment.id}, {"error", batches.error().message()}});
    return deployment.percent;
  }
  // The batch reached at the last change anchors the schedule.
  std::int64_t anchor = 0;
  for (const auto& batch : *batches) {
    if (batch.percent <= deployment.percent) anchor = batch.after_seconds;
  }
  const std::int64_t elapsed = now - deployment.updated_at;
  std::int64_t percent = deployment.percent;
  for (const auto& batch : *batches) {
    if (batch.percent > percent && batch.after_seconds - anchor <= elapsed) percent = batch.percent;
  }
  return percent;
}

std::vector<std::string> DeploymentTargetNames(const Deployment& deployment) {
  std::vector<std::string> names;
  auto parsed = ParseJsonStrict(deployment.target_names_json);
  if (!parsed || !parsed->is_array()) {
    log::Error("stored deployment targets are invalid", {{"deployment", deployment.id}});
    return names;
  }
  for (const auto& name : *parsed) {
    if (name.is_string()) names.push_back(name.get<std::string>());
  }
  return names;
}

// ---------------------------------------------------------------- create

Expected<Deployment> DeploymentService::Create(std::string_view tenant_id, const DeploymentRequest& request,
                                               std::int64_t now) {
  const bool group_scope = !request.device_group_id.empty();
  if (group_scope == !request.os_feed.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "name either \"device_group_id\" or \"os_feed\"");
  }
  if (!group_scope && !IsValidOsFeed(request.os_feed)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"os_feed\" must be 1 to 32 of a-z, 0-9 and -");
  }
  if (request.percent.has_value() == !request.batches.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "give either \"percent\" or \"batches\"");
  }
  if (request.percent && (*request.percent < 0 || *request.percent > 100)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"percent\" must be 0..100");
  }
  // Re-validates batches built by a caller other than the route.
  CITADEL_TRY_VOID(ParseBatches(BatchesJson(request.batches)));
  if (request.target_names.empty() || request.target_names.size() > kMaxDeploymentTargets) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"targets\" must name 1 to " + std::to_string(kMaxDeploymentTargets) + " targets");
  }
  if (group_scope) {
    auto group = store_.GetDeviceGroup(tenant_id, request.device_group_id);
    if (!group) return std::unexpected(group.error());
  }

  // Every target must be signed by the maker (in the latest image targets)
  // and fit the scope; one per component.
  auto image_targets = repository_.LatestImageTargets(tenant_id);
  if (!image_targets) {
    if (image_targets.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the tenant's image repository has no targets yet; upload images and sign targets first");
    }
    return std::unexpected(image_targets.error());
  }
  ImageLookup images(store_, tenant_id);
  std::map<std::string, std::string> components;  // component key -> target name
  for (const auto& name : request.target_names) {
    if (!image_targets->targets.contains(name)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "target " + Quote(name) + " is not in the image repository's latest signed targets");
    }
    CITADEL_TRY(const store::Image* image, images.Find(name));
    if (image == nullptr) {
      return MakeError(ErrorCode::kInvalidArgument, "target " + Quote(name) + " names no uploaded image");
    }
    if (group_scope && image->kind != store::ImageKind::kApp) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "target " + Quote(name) +
                           " is an OS image; OS images are deployed to an OS feed (\"os_feed\"), not a device group");
    }
    if (!group_scope && image->kind != store::ImageKind::kOs) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "target " + Quote(name) + " is an app image; apps are deployed to a device group");
    }
    if (!components.emplace(ComponentKey(*image), name).second) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "targets " + Quote(components[ComponentKey(*image)]) + " and " + Quote(name) +
                           " are the same component; a deployment names one target per component");
    }
  }

  Deployment deployment;
  deployment.id = GenerateId("dep");
  deployment.tenant_id = std::string(tenant_id);
  deployment.device_group_id = request.device_group_id;
  deployment.os_feed = request.os_feed;
  Json names = Json::array();
  for (const auto& name : request.target_names) names.push_back(name);
  deployment.target_names_json = names.dump();
  deployment.batches_json = BatchesJson(request.batches).dump();
  deployment.state = DeploymentState::kActive;
  deployment.created_at = now;
  deployment.updated_at = now;
  deployment.created_by = request.created_by;
  deployment.percent = request.percent.value_or(0);
  // A first batch at offset 0 applies at once.
  deployment.percent = EffectivePercent(deployment, now);

  for (int attempt = 0; attempt < kCompareAndSetAttempts; ++attempt) {
    CITADEL_TRY(auto in_force, ListInScope(store_, tenant_id, request.device_group_id, request.os_feed,
                                           {DeploymentState::kActive, DeploymentState::kPaused}));
    std::vector<std::string> supersede;
    for (const auto& old : in_force) {
      CITADEL_TRY(auto old_components, Components(old, images));
      std::set<std::string> shared;
      std::set<std::string> left_out;
      for (const auto& [component, name] : old_components) {
        (components.contains(component) ? shared : left_out).insert(name);
      }
      if (shared.empty()) continue;
      const std::int64_t reached = EffectivePercent(old, now);
      if (!left_out.empty() && reached < 100) {
        return MakeError(ErrorCode::kConflict,
                         "deployment " + old.id + " is rolling out " + Join(left_out) + " (" + std::to_string(reached) +
                             "%), which this deployment would supersede without naming; include those targets or "
                             "roll " +
                             old.id + " back first");
      }
      // Record the percent reached, so that a superseded deployment that
      // got to 100% by its schedule is a baseline.
      if (reached != old.percent) {
        auto recorded = store_.UpdateDeployment(tenant_id, old.id, old.state, old.state, reached, now);
        if (!recorded && recorded.error().code() != ErrorCode::kConflict) return std::unexpected(recorded.error());
      }
      supersede.push_back(old.id);
    }
    auto created = store_.CreateDeployment(deployment, supersede);
    if (created) {
      log::Info("deployment created", {{"tenant", deployment.tenant_id},
                                       {"deployment", deployment.id},
                                       {"superseded", std::to_string(supersede.size())}});
      return deployment;
    }
    // Another replica moved one of the superseded deployments: decide again.
    if (created.error().code() != ErrorCode::kConflict) return std::unexpected(created.error());
  }
  return MakeError(ErrorCode::kConflict, "the deployments of this scope kept changing; retry");
}

// ---------------------------------------------------------------- state changes

Expected<Deployment> DeploymentService::Transition(std::string_view tenant_id, std::string_view deployment_id,
                                                   Change change, std::int64_t now, std::int64_t new_percent) {
  if (change == Change::kSetPercent && (new_percent < 0 || new_percent > 100)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"percent\" must be 0..100");
  }
  for (int attempt = 0; attempt < kCompareAndSetAttempts; ++attempt) {
    CITADEL_TRY(Deployment deployment, store_.GetDeployment(tenant_id, deployment_id));
    const std::int64_t reached = EffectivePercent(deployment, now);
    const std::string state = StateName(deployment.state);
    DeploymentState next = deployment.state;
    std::int64_t percent = reached;
    switch (change) {
      case Change::kPause:
        if (deployment.state != DeploymentState::kActive) {
          return MakeError(ErrorCode::kConflict, "deployment " + deployment.id + " is " + state +
                                                     "; only an active "
                                                     "deployment pauses");
        }
        next = DeploymentState::kPaused;
        break;
      case Change::kResume:
        if (deployment.state != DeploymentState::kPaused) {
          return MakeError(ErrorCode::kConflict,
                           "deployment " + deployment.id + " is " + state + "; only a paused deployment resumes");
        }
        next = DeploymentState::kActive;
        break;
      case Change::kRollback:
        if (!IsInForce(deployment.state)) {
          return MakeError(ErrorCode::kConflict, "deployment " + deployment.id + " is " + state +
                                                     "; only an active or paused deployment rolls back");
        }
        next = DeploymentState::kRolledBack;
        break;
      case Change::kSetPercent:
        if (!IsInForce(deployment.state)) {
          return MakeError(ErrorCode::kConflict, "deployment " + deployment.id + " is " + state +
                                                     "; only an active or paused deployment changes its percent");
        }
        if (new_percent < reached) {
          return MakeError(ErrorCode::kConflict, "deployment " + deployment.id + " is at " + std::to_string(reached) +
                                                     "%; the percent only goes up (roll back to withdraw it)");
        }
        percent = new_percent;
        break;
    }
    auto updated = store_.UpdateDeployment(tenant_id, deployment_id, deployment.state, next, percent, now);
    if (updated) {
      deployment.state = next;
      deployment.percent = percent;
      deployment.updated_at = now;
      return deployment;
    }
    if (updated.error().code() != ErrorCode::kConflict) return std::unexpected(updated.error());
  }
  return MakeError(ErrorCode::kConflict, "deployment " + std::string(deployment_id) + " kept changing; retry");
}

Expected<Deployment> DeploymentService::Pause(std::string_view tenant_id, std::string_view deployment_id,
                                              std::int64_t now) {
  return Transition(tenant_id, deployment_id, Change::kPause, now);
}

Expected<Deployment> DeploymentService::Resume(std::string_view tenant_id, std::string_view deployment_id,
                                               std::int64_t now) {
  return Transition(tenant_id, deployment_id, Change::kResume, now);
}

Expected<Deployment> DeploymentService::Rollback(std::string_view tenant_id, std::string_view deployment_id,
                                                 std::int64_t now) {
  return Transition(tenant_id, deployment_id, Change::kRollback, now);
}

Expected<Deployment> DeploymentService::SetPercent(std::string_view tenant_id, std::string_view deployment_id,
                                                   std::int64_t percent, std::int64_t now) {
  return Transition(tenant_id, deployment_id, Change::kSetPercent, now, percent);
}

// ---------------------------------------------------------------- progress

Expected<std::vector<std::string>> DeploymentService::AffectedGroups(const Deployment& deployment) {
  if (!deployment.device_group_id.empty()) return std::vector<std::string>{deployment.device_group_id};
  CITADEL_TRY(auto groups, store_.ListDeviceGroupsByOsFeed(deployment.tenant_id, deployment.os_feed));
  std::vector<std::string> ids;
  ids.reserve(groups.size());
  for (const auto& group : groups) ids.push_back(group.id);
  return ids;
}

Expected<DeploymentProgress> DeploymentService::Progress(const Deployment& deployment, std::int64_t now) {
  DeploymentProgress progress;
  CITADEL_TRY(progress.states, store_.CountUpdateReports(deployment.tenant_id, deployment.id));
  CITADEL_TRY(auto groups, AffectedGroups(deployment));
  std::int64_t devices = 0;
  for (const auto& group : groups) {
    CITADEL_TRY(std::int64_t count, store_.CountDevices(deployment.tenant_id, group));
    devices += count;
  }
  progress.eligible = devices * EffectivePercent(deployment, now) / 100;
  return progress;
}

// ---------------------------------------------------------------- director

Expected<DirectorContent> DeploymentService::DirectorTargetsFor(std::string_view tenant_id, std::string_view group_id,
                                                                std::int64_t now) {
  CITADEL_TRY(store::DeviceGroup group, store_.GetDeviceGroup(tenant_id, group_id));
  tuf::Targets image_targets;
  if (auto latest = repository_.LatestImageTargets(tenant_id); latest) {
    image_targets = std::move(*latest);
  } else if (latest.error().code() != ErrorCode::kNotFound) {
    return std::unexpected(latest.error());
  }

  ImageLookup images(store_, tenant_id);
  std::map<std::string, DirectorTarget> entries;  // by target name: names are unique in TUF targets
  auto add = [&](const Deployment& deployment, const std::string& name, std::int64_t percent, bool paused,
                 std::string_view role) -> Expected<void> {
    if (entries.contains(name)) return kOk;  // current wins over a baseline of the same target
    auto file = image_targets.targets.find(name);
    CITADEL_TRY(const store::Image* image, images.Find(name));
    if (file == image_targets.targets.end() || image == nullptr) {
      log::Warn("deployment target is not in the latest image targets; left out of the director",
                {{"tenant", deployment.tenant_id}, {"deployment", deployment.id}, {"target", name}});
      return kOk;
    }
    entries.emplace(name, MakeDirectorTarget(file->second, *image, deployment, percent, paused, role));
    return kOk;
  };

  // Apps come from the group's deployments, the OS from its feed's.
  const std::array<std::pair<std::string, std::string>, 2> scopes = {{{group.id, ""}, {"", group.os_feed}}};
  for (const auto& [scope_group, scope_feed] : scopes) {
    CITADEL_TRY(auto in_force, ListInScope(store_, tenant_id, scope_group, scope_feed,
                                           {DeploymentState::kActive, DeploymentState::kPaused}));
    CITADEL_TRY(auto superseded,
                ListInScope(store_, tenant_id, scope_group, scope_feed, {DeploymentState::kSuperseded}));
    // Newest first: the first deployment naming a component is the one that
    // counts (two in force for one component only after a replica race).
    std::map<std::string, std::pair<const Deployment*, std::string>> current;
    std::map<std::string, std::pair<const Deployment*, std::string>> baseline;
    for (const auto& deployment : in_force) {
      CITADEL_TRY(auto components, Components(deployment, images));
      for (const auto& [component, name] : components) current.try_emplace(component, &deployment, name);
    }
    for (const auto& deployment : superseded) {
      if (deployment.percent < 100) continue;
      CITADEL_TRY(auto components, Components(deployment, images));
      for (const auto& [component, name] : components) baseline.try_emplace(component, &deployment, name);
    }
    for (const auto& [component, entry] : current) {
      const Deployment& deployment = *entry.first;
      CITADEL_TRY_VOID(add(deployment, entry.second, EffectivePercent(deployment, now),
                           deployment.state == DeploymentState::kPaused, "current"));
    }
    for (const auto& [component, entry] : baseline) {
      CITADEL_TRY_VOID(add(*entry.first, entry.second, 100, false, "baseline"));
    }
  }

  DirectorContent content;
  for (auto& [name, target] : entries) content.targets.push_back(std::move(target));
  content.custom = {
      {"citadel",
       {{"device_group_id", group.id}, {"maintenance_window", MaintenanceWindowJson(group.maintenance_window)}}}};
  return content;
}

Expected<std::int64_t> DeploymentService::EnsureDirector(std::string_view tenant_id, std::string_view group_id,
                                                         std::int64_t now) {
  CITADEL_TRY(DirectorContent content, DirectorTargetsFor(tenant_id, group_id, now));
  return repository_.PublishDirectorTargets(tenant_id, group_id, content.targets, content.custom, now);
}

void DeploymentService::EnsureDirectors(std::string_view tenant_id, const std::vector<std::string>& group_ids,
                                        std::int64_t now) {
  for (const auto& group_id : group_ids) {
    auto version = EnsureDirector(tenant_id, group_id, now);
    if (version) continue;
    const ErrorCode code = version.error().code();
    if (code == ErrorCode::kFailedPrecondition || code == ErrorCode::kNotFound) {
      log::Debug("director not published: repositories not set up",
                 {{"tenant", tenant_id}, {"device_group", group_id}, {"error", version.error().message()}});
    } else {
      log::Warn("cannot publish the director metadata; the next check-in retries",
                {{"tenant", tenant_id}, {"device_group", group_id}, {"error", version.error().message()}});
    }
  }
}

// ---------------------------------------------------------------- check-in

Expected<std::int64_t> DeploymentService::RecordReports(std::string_view tenant_id, std::string_view device_id,
                                                        const std::vector<protocol::UpdateReportEntry>& reports,
                                                        std::int64_t now) {
  std::int64_t handled = 0;
  for (const auto& entry : reports) {
    ++handled;
    auto state = store::ParseUpdateState(entry.state);
    auto at = ParseRfc3339(entry.reported_at);
    if (!state || !at) {
      // protocol::ParseCheckIn checked both; a caller that did not is told
      // in the log, and the report is dropped like any invalid one.
      log::Warn("update report dropped: invalid state or time", {{"device_id", device_id}});
      continue;
    }
    store::UpdateReport report;
    report.tenant_id = std::string(tenant_id);
    report.device_id = std::string(device_id);
    report.deployment_id = entry.deployment_id;
    report.target_name = entry.target_name;
    report.state = *state;
    report.reason = entry.reason;
    // A device clock running ahead must not pin the row: later reports
    // would all look older than it.
    report.reported_at = std::min(ToUnixSeconds(*at), now);
    report.updated_at = now;
    auto recorded = store_.RecordUpdateReport(report);
    if (recorded) continue;
    if (recorded.error().code() == ErrorCode::kNotFound || recorded.error().code() == ErrorCode::kInvalidArgument) {
      log::Warn("update report names no deployment of the device's tenant; dropped",
                {{"tenant", tenant_id}, {"device_id", device_id}, {"deployment", Quote(entry.deployment_id)}});
      continue;
    }
    return std::unexpected(recorded.error());
  }
  return handled;
}

Expected<std::optional<protocol::CheckInUpdateReply>> DeploymentService::CheckInReply(const store::Device& device,
                                                                                      std::int64_t acknowledged,
                                                                                      std::int64_t now) {
  using Reply = std::optional<protocol::CheckInUpdateReply>;
  const std::string& tenant_id = device.tenant_id;
  if (tenant_id.empty() || device.device_group_id.empty()) return Reply{};
  auto version = repository_.CheckedDirectorVersion(
      tenant_id, device.device_group_id, [&] { return EnsureDirector(tenant_id, device.device_group_id, now); });
  if (!version) {
    // The rest of the check-in stands; without the member the device only
    // skips this round's director refresh.
    const ErrorCode code = version.error().code();
    if (code == ErrorCode::kFailedPrecondition || code == ErrorCode::kNotFound) {
      log::Debug("no update member: repositories not set up", {{"tenant", tenant_id}});
    } else {
      log::Warn(
          "no update member: cannot publish the director metadata",
          {{"tenant", tenant_id}, {"device_group", device.device_group_id}, {"error", version.error().message()}});
    }
    return Reply{};
  }
  // Taking the flag is atomic: of two check-ins racing, one carries it. A
  // device without the flag (nearly every check-in) writes nothing.
  bool update_now = false;
  if (device.update_now) {
    CITADEL_TRY(update_now, store_.SetDeviceUpdateNow(tenant_id, device.id, false));
  }
  protocol::CheckInUpdateReply reply;
  reply.image_repository = "/v1/repo/" + std::string(tenant_id) + "/image";
  reply.director = "/v1/repo/" + std::string(tenant_id) + "/director/" + device.device_group_id;
  reply.director_timestamp_version = *version;
  reply.update_now = update_now;
  reply.acknowledged = acknowledged;
  return Reply{std::move(reply)};
}

}  // namespace citadel::server
