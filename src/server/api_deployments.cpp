// Deployment routes (docs/PROTOCOL.md, "Management API"): deployments and
// their state changes, a group's update settings, and "update now" for a
// device. Every change is audited and then republishes the director
// metadata of each group it affects, so devices see it at their next
// check-in without waiting for a schedule.
#include <optional>
#include <string>
#include <vector>

#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "server/api.hpp"
#include "server/api_support.hpp"
#include "server/deployments.hpp"
#include "server/metrics.hpp"

namespace citadel::server {
namespace {

using http::PathParams;
using http::Request;
using http::Response;
using store::Role;

Json DeploymentJson(const store::Deployment& d, std::int64_t now) {
  Json targets = Json::array();
  for (const auto& name : DeploymentTargetNames(d)) targets.push_back(name);
  Json batches = Json::array();
  if (auto parsed = ParseJsonStrict(d.batches_json.empty() ? "[]" : d.batches_json); parsed) batches = *parsed;
  return {{"id", d.id},
          {"tenant_id", d.tenant_id},
          {"device_group_id", d.device_group_id.empty() ? Json(nullptr) : Json(d.device_group_id)},
          {"os_feed", d.os_feed.empty() ? Json(nullptr) : Json(d.os_feed)},
          {"targets", targets},
          {"percent", EffectivePercent(d, now)},
          {"batches", batches},
          {"state", store::DeploymentStateName(d.state)},
          {"created_at", Time(d.created_at)},
          {"updated_at", Time(d.updated_at)},
          {"created_by", d.created_by}};
}

Json ProgressJson(const DeploymentProgress& progress) {
  Json json{{"eligible", progress.eligible}};
  for (const auto& [state, count] : progress.states) json[std::string(store::UpdateStateName(state))] = count;
  return json;
}

// Deployment errors as problems: a state that does not allow the change is
// a 409 the caller can act on, and so is a tenant without image targets.
Response DeploymentProblem(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kConflict:
      return Problem(409, "deployment-conflict", "Deployment conflict", error.message());
    case ErrorCode::kFailedPrecondition:
      return Problem(409, "no-image-targets", "No image targets", error.message());
    case ErrorCode::kNotFound:
      return NotFound("deployment");
    default:
      return ErrorResponse(error);
  }
}

Expected<DeploymentRequest> ParseDeploymentRequest(const Json& body) {
  DeploymentRequest request;
  CITADEL_TRY(request.device_group_id, StringField(body, "device_group_id", false));
  CITADEL_TRY(request.os_feed, StringField(body, "os_feed", false, 32));
  CITADEL_TRY(const Json* targets, json_fields::Require(body, "", "targets"));
  CITADEL_TRY_VOID(json_fields::ExpectArray(*targets, "targets", kMaxDeploymentTargets));
  for (std::size_t i = 0; i < targets->size(); ++i) {
    CITADEL_TRY(auto name, json_fields::ReadString((*targets)[i], json_fields::Element("targets", i),
                                                   protocol::kMaxTargetNameBytes));
    request.target_names.push_back(std::move(name));
  }
  if (const Json* percent = json_fields::Find(body, "percent"); percent != nullptr) {
    CITADEL_TRY(request.percent, json_fields::ReadInteger(*percent, "percent", 0, 100));
  }
  if (const Json* batches = json_fields::Find(body, "batches"); batches != nullptr) {
    CITADEL_TRY(request.batches, ParseBatches(*batches));
    if (request.batches.empty()) return MakeError(ErrorCode::kInvalidArgument, "\"batches\" must not be empty");
  }
  return request;
}

// Reads the deployment after a change and republishes the groups it feeds.
void RepublishFor(DeploymentService& service, const store::Deployment& deployment, std::int64_t now) {
  auto groups = service.AffectedGroups(deployment);
  if (!groups) {
    log::Warn("cannot list the groups of a deployment; the next check-in publishes",
              {{"deployment", deployment.id}, {"error", groups.error().message()}});
    return;
  }
  service.EnsureDirectors(deployment.tenant_id, *groups, now);
}

Response CreateDeployment(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id) {
  auto body = ParseBody(request, {"device_group_id", "os_feed", "targets", "percent", "batches"});
  if (!body) return BodyError(body.error());
  auto parsed = ParseDeploymentRequest(*body);
  if (!parsed) return BodyError(parsed.error());
  parsed->created_by = caller.Actor();
  DeploymentService service(ctx.store, ctx.repository);
  const std::int64_t now = Now();
  auto deployment = service.Create(tenant_id, *parsed, now);
  if (!deployment) {
    // The only thing Create looks up by id is the group.
    if (deployment.error().code() == ErrorCode::kNotFound) return NotFound("device group");
    return DeploymentProblem(deployment.error());
  }
  ctx.metrics.DeploymentAction("create");
  Audit(ctx.store, tenant_id, caller, "deployment.create", deployment->id,
        {{"device_group_id", deployment->device_group_id},
         {"os_feed", deployment->os_feed},
         {"targets", parsed->target_names},
         {"percent", deployment->percent},
         {"batches", BatchesJson(parsed->batches)}});
  RepublishFor(service, *deployment, now);
  return JsonResponse(201, DeploymentJson(*deployment, now));
}

Response ListDeploymentsRoute(ApiContext& ctx, const Request& request, const std::string& tenant_id) {
  auto limit = PageLimit(request);
  if (!limit) return BadPageLimit();
  store::DeploymentFilter filter;
  filter.tenant_id = tenant_id;
  filter.device_group_id = request.QueryParameter("device_group");
  filter.os_feed = request.QueryParameter("os_feed");
  filter.limit = *limit;
  // state=active or state=active,paused
  std::string states = request.QueryParameter("state");
  for (std::size_t start = 0; !states.empty() && start <= states.size();) {
    std::size_t end = states.find(',', start);
    if (end == std::string::npos) end = states.size();
    auto state = store::ParseDeploymentState(std::string_view(states).substr(start, end - start));
    if (!state) {
      return Problem(400, "invalid-request", "Invalid request",
                     "state must be active, paused, rolled-back or superseded (comma-separated)");
    }
    filter.states.push_back(*state);
    start = end + 1;
  }
  auto deployments = ctx.store.ListDeployments(filter);
  if (!deployments) return ErrorResponse(deployments.error());
  const std::int64_t now = Now();
  Json list = Json::array();
  for (const auto& d : *deployments) list.push_back(DeploymentJson(d, now));
  return JsonResponse(200, {{"deployments", list}});
}

Response GetDeploymentRoute(ApiContext& ctx, const std::string& tenant_id, const std::string& deployment_id) {
  auto deployment = ctx.store.GetDeployment(tenant_id, deployment_id);
  if (!deployment) return DeploymentProblem(deployment.error());
  DeploymentService service(ctx.store, ctx.repository);
  const std::int64_t now = Now();
  auto progress = service.Progress(*deployment, now);
  if (!progress) return DeploymentProblem(progress.error());
  Json json = DeploymentJson(*deployment, now);
  json["progress"] = ProgressJson(*progress);
  return JsonResponse(200, json);
}

// pause, resume, rollback, percent.
Response ChangeDeployment(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                          const std::string& deployment_id, std::string_view action) {
  const bool with_percent = action == "percent";
  auto body = with_percent ? ParseBody(request, {"percent"}) : ParseBody(request, {}, /*allow_empty=*/true);
  if (!body) return BodyError(body.error());
  DeploymentService service(ctx.store, ctx.repository);
  const std::int64_t now = Now();
  Expected<store::Deployment> changed = MakeError(ErrorCode::kInternal, "unknown action");
  Json details = Json::object();
  if (with_percent) {
    auto field = json_fields::Require(*body, "", "percent");
    if (!field) return BodyError(field.error());
    auto percent = json_fields::ReadInteger(**field, "percent", 0, 100);
    if (!percent) return BodyError(percent.error());
    details["percent"] = *percent;
    changed = service.SetPercent(tenant_id, deployment_id, *percent, now);
  } else if (action == "pause") {
    changed = service.Pause(tenant_id, deployment_id, now);
  } else if (action == "resume") {
    changed = service.Resume(tenant_id, deployment_id, now);
  } else if (action == "rollback") {
    changed = service.Rollback(tenant_id, deployment_id, now);
  }
  if (!changed) return DeploymentProblem(changed.error());
  ctx.metrics.DeploymentAction(action);
  Audit(ctx.store, tenant_id, caller, "deployment." + std::string(action), deployment_id, details);
  log::Info("deployment changed", {{"tenant", tenant_id}, {"deployment", deployment_id}, {"action", action}});
  RepublishFor(service, *changed, now);
  return JsonResponse(200, DeploymentJson(*changed, now));
}

Response PatchDeviceGroup(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                          const std::string& group_id) {
  auto body = ParseBody(request, {"os_feed", "maintenance_window", "crash_dumps"});
  if (!body) return BodyError(body.error());
  auto group = ctx.store.GetDeviceGroup(tenant_id, group_id);
  if (!group) {
    return group.error().code() == ErrorCode::kNotFound ? NotFound("device group") : ErrorResponse(group.error());
  }
  std::string os_feed = group->os_feed;
  std::string window = group->maintenance_window;
  Json details = Json::object();
  if (body->contains("os_feed")) {
    auto feed = StringField(*body, "os_feed", true, 32);
    if (!feed) return BodyError(feed.error());
    if (!IsValidOsFeed(*feed)) {
      return Problem(400, "invalid-request", "Invalid request", "\"os_feed\" must be 1 to 32 of a-z, 0-9 and -");
    }
    os_feed = *feed;
    details["os_feed"] = os_feed;
  }
  if (const Json* value = json_fields::Find(*body, "maintenance_window"); value != nullptr) {
    auto normalized = NormalizeMaintenanceWindow(*value);
    if (!normalized) return BodyError(normalized.error());
    window = *normalized;
    details["maintenance_window"] = *value;
  }
  std::optional<bool> crash_dumps;
  if (const Json* value = json_fields::Find(*body, "crash_dumps"); value != nullptr) {
    if (!value->is_boolean()) {
      return Problem(400, "invalid-request", "Invalid request", "\"crash_dumps\" must be true or false");
    }
    crash_dumps = value->get<bool>();
    details["crash_dumps"] = *crash_dumps;
  }
  if (auto updated = ctx.store.SetDeviceGroupUpdateSettings(tenant_id, group_id, os_feed, window); !updated) {
    return updated.error().code() == ErrorCode::kNotFound ? NotFound("device group") : ErrorResponse(updated.error());
  }
  if (crash_dumps) {
    if (auto updated = ctx.store.SetDeviceGroupCrashDumps(tenant_id, group_id, *crash_dumps); !updated) {
      return updated.error().code() == ErrorCode::kNotFound ? NotFound("device group") : ErrorResponse(updated.error());
    }
    group->crash_dumps = *crash_dumps;
  }
  ctx.check_in_memo.groups.Forget({tenant_id, group_id});
  group->os_feed = os_feed;
  group->maintenance_window = window;
  Audit(ctx.store, tenant_id, caller, "device-group.update", group_id, details);
  // The feed decides the OS targets and the window is in the metadata.
  DeploymentService service(ctx.store, ctx.repository);
  service.EnsureDirectors(tenant_id, {group_id}, Now());
  return JsonResponse(200, GroupJson(*group));
}

Response UpdateNow(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                   const std::string& device_id) {
  auto body = ParseBody(request, {}, /*allow_empty=*/true);
  if (!body) return BodyError(body.error());
  // Only a device this tenant holds; anything else is the same 404.
  auto device = ctx.store.GetDevice(device_id);
  if (!device) {
    return device.error().code() == ErrorCode::kNotFound ? NotFound("device") : ErrorResponse(device.error());
  }
  if (device->tenant_id != tenant_id) return NotFound("device");
  if (auto set = ctx.store.SetDeviceUpdateNow(tenant_id, device_id, true); !set) {
    return set.error().code() == ErrorCode::kNotFound ? NotFound("device") : ErrorResponse(set.error());
  }
  Audit(ctx.store, tenant_id, caller, "device.update-now", device_id);
  log::Info("update now requested", {{"tenant", tenant_id}, {"device_id", device_id}});
  return JsonResponse(202, Json::object());
}

}  // namespace

void RegisterDeploymentRoutes(http::Router& router, ApiContext& ctx) {
  router.Add(
      "POST", "/v1/tenants/{tenant}/deployments",
      TenantRoute(ctx, Role::kContributor,
                  [&ctx](const Request& request, const PathParams&, const Caller& caller,
                         const std::string& tenant_id) { return CreateDeployment(ctx, request, caller, tenant_id); }));
  router.Add(
      "GET", "/v1/tenants/{tenant}/deployments",
      TenantRoute(ctx, Role::kReader,
                  [&ctx](const Request& request, const PathParams&, const Caller&, const std::string& tenant_id) {
                    return ListDeploymentsRoute(ctx, request, tenant_id);
                  }));
  router.Add("GET", "/v1/tenants/{tenant}/deployments/{deployment}",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams& params, const Caller&, const std::string& tenant_id) {
                           return GetDeploymentRoute(ctx, tenant_id, params.at("deployment"));
                         }));
  for (const char* action : {"pause", "resume", "rollback", "percent"}) {
    router.Add("POST", std::string("/v1/tenants/{tenant}/deployments/{deployment}/") + action,
               TenantRoute(ctx, Role::kContributor,
                           [&ctx, action](const Request& request, const PathParams& params, const Caller& caller,
                                          const std::string& tenant_id) {
                             return ChangeDeployment(ctx, request, caller, tenant_id, params.at("deployment"), action);
                           }));
  }
  router.Add("PATCH", "/v1/tenants/{tenant}/device-groups/{group}",
             TenantRoute(ctx, Role::kContributor,
                         [&ctx](const Request& request, const PathParams& params, const Caller& caller,
                                const std::string& tenant_id) {
                           return PatchDeviceGroup(ctx, request, caller, tenant_id, params.at("group"));
                         }));
  router.Add("POST", "/v1/tenants/{tenant}/devices/{device}/update-now",
             TenantRoute(ctx, Role::kContributor,
                         [&ctx](const Request& request, const PathParams& params, const Caller& caller,
                                const std::string& tenant_id) {
                           return UpdateNow(ctx, request, caller, tenant_id, params.at("device"));
                         }));
}

}  // namespace citadel::server
