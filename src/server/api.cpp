#include "server/api.hpp"

#include <set>

#include "server/api_support.hpp"

#include "common/canonical_json.hpp"
#include "common/log.hpp"
#include "server/auth.hpp"
#include "server/data_dir.hpp"
#include "server/deployments.hpp"
#include "server/metrics.hpp"

namespace citadel::server {
namespace {

using http::PathParams;
using http::Request;
using http::Response;
using store::Role;

Json TenantJson(const store::Tenant& t) { return {{"id", t.id}, {"name", t.name}, {"created_at", Time(t.created_at)}}; }
Json ProductJson(const store::Product& p) {
  return {{"id", p.id},
          {"tenant_id", p.tenant_id},
          {"name", p.name},
          {"description", p.description},
          {"created_at", Time(p.created_at)}};
}
Json TokenJson(const store::ApiToken& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"role", store::RoleName(t.role)},
          {"created_at", Time(t.created_at)},
          {"revoked", t.revoked}};
}
Json DeviceJson(const store::Device& d) {
  return {{"id", d.id},
          {"tenant_id", d.tenant_id},
          {"product_id", d.product_id},
          {"device_group_id", d.device_group_id},
          {"rot", d.rot_backend},
          {"first_seen", Time(d.first_seen)},
          {"last_seen", Time(d.last_seen)},
          {"claimed_at", Time(d.claimed_at)},
          {"last_attested_at", Time(d.last_attested_at)},
          {"last_verdict", d.last_verdict},
          {"os_version", d.os_version},
          {"runtime_version", d.runtime_version},
          {"uptime_seconds", d.uptime_seconds},
          {"free_memory_kb", d.free_memory_kb},
          {"certificate_serial", d.certificate_serial},
          {"certificate_expires_at", Time(d.certificate_expires_at)},
          {"revoked", d.revoked},
          {"healthy", store::IsDeviceHealthy(d, Now())}};
}

Response CreateTenant(ApiContext& ctx, const Request& request) {
  auto caller = AuthenticateToken(ctx.store, request);
  if (!caller) return Problem(401, "unauthenticated", "Unauthenticated", caller.error().message());
  if (!caller->IsOperator())
    return Problem(403, "forbidden", "Forbidden", "only the platform operator creates tenants");
  auto body = ParseBody(request, {"name"});
  if (!body) return BodyError(body.error());
  auto name = StringField(*body, "name", true);
  if (!name) return BodyError(name.error());

  store::Tenant tenant{GenerateId("ten"), *name, Now()};
  auto ca = CreateTenantCa(tenant.id, tenant.name, ctx.master_key);
  if (!ca) return ErrorResponse(ca.error());
  if (auto created = ctx.store.CreateTenant(tenant, *ca); !created) return ErrorResponse(created.error());

  auto token = GenerateApiToken();
  store::ApiToken record{GenerateId("tok"), tenant.id, "admin", Role::kAdmin, token.hash_hex, Now(), false};
  if (auto created = ctx.store.CreateApiToken(record); !created) return ErrorResponse(created.error());
  Audit(ctx.store, tenant.id, *caller, "tenant.create", tenant.id, {{"name", tenant.name}});
  log::Info("tenant created", {{"tenant", tenant.id}});
  return JsonResponse(
      201, {{"tenant", TenantJson(tenant)},
            {"admin_token", {{"id", record.id}, {"name", record.name}, {"role", "admin"}, {"token", token.text}}}});
}

Response ListTenants(ApiContext& ctx, const Request& request) {
  auto caller = AuthenticateToken(ctx.store, request);
  if (!caller) return Problem(401, "unauthenticated", "Unauthenticated", caller.error().message());
  Json tenants = Json::array();
  if (caller->IsOperator()) {
    auto all = ctx.store.ListTenants();
    if (!all) return ErrorResponse(all.error());
    for (const auto& t : *all) tenants.push_back(TenantJson(t));
  } else {
    auto own = ctx.store.GetTenant(caller->tenant_id);
    if (!own) return ErrorResponse(own.error());
    tenants.push_back(TenantJson(*own));
  }
  return JsonResponse(200, {{"tenants", tenants}, {"role", store::RoleName(caller->role)}});
}

// ---- app trust: publisher keys and development capabilities

// Bounds a tenant's active publisher keys; devices receive them all at every
// check-in (protocol::kMaxPublisherKeys).
constexpr std::int64_t kMaxActivePublisherKeys = static_cast<std::int64_t>(protocol::kMaxPublisherKeys);

Json PublisherKeyJson(const store::PublisherKey& k) {
  return {{"key_id", k.key_id},
          {"name", k.name},
          {"public_key_pem", k.public_key_pem},
          {"created_at", Time(k.created_at)},
          {"revoked_at", Time(k.revoked_at)},
          {"revoked", k.revoked_at != 0}};
}

// An EC P-256 public key from a PEM string. A private key is refused
// rather than reduced to its public half: it must never travel to the
// service, and a caller that sent one needs to hear so.
Expected<crypto::PublicKey> ParsePublicKeyPem(std::string_view pem, std::string_view what) {
  if (pem.find("PRIVATE KEY") != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + " is a private key; send only the public key (the CLI derives it)");
  }
  auto key = crypto::PublicKey::FromPem(pem);
  if (!key) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " is not a PEM public key");
  if (!key->IsP256()) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " is not an EC P-256 key");
  return *key;
}

// A random (version 4) UUID: the capability id.
std::string NewUuid() {
  Bytes bytes = crypto::RandomBytes(16);
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(bytes);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

Response RegisterPublisherKey(ApiContext& ctx, const Request& request, const Caller& caller,
                              const std::string& tenant_id) {
  auto body = ParseBody(request, {"name", "public_key_pem"});
  if (!body) return BodyError(body.error());
  auto name = StringField(*body, "name", true);
  if (!name) return BodyError(name.error());
  auto it = body->find("public_key_pem");
  if (it == body->end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return Problem(400, "invalid-request", "Invalid request", "\"public_key_pem\" must be a non-empty string");
  }
  const auto& pem = it->get_ref<const std::string&>();
  if (pem.size() > protocol::kMaxPublisherKeyPemBytes) {
    return Problem(400, "invalid-request", "Invalid request", "\"public_key_pem\" is too long for a P-256 key");
  }
  auto key = ParsePublicKeyPem(pem, "public_key_pem");
  if (!key) return Problem(400, "invalid-publisher-key", "Invalid publisher key", key.error().message());
  store::PublisherKey record{tenant_id, protocol::KeyId(*key), key->Pem(), *name, Now(), 0};
  if (auto added = ctx.store.AddPublisherKey(record, kMaxActivePublisherKeys); !added) {
    if (added.error().code() == ErrorCode::kAlreadyExists) {
      return Problem(409, "publisher-key-exists", "Publisher key already registered",
                     "publisher key " + record.key_id +
                         " is already registered for this tenant (a revoked key cannot be registered again; "
                         "create a new key)");
    }
    if (added.error().code() == ErrorCode::kConflict) {
      return Problem(409, "too-many-publisher-keys", "Too many publisher keys", added.error().message());
    }
    return ErrorResponse(added.error());
  }
  ctx.check_in_memo.publisher_keys.Forget(tenant_id);
  Audit(ctx.store, tenant_id, caller, "publisher-key.register", record.key_id, {{"name", record.name}});
  log::Info("publisher key registered", {{"tenant", tenant_id}, {"key_id", record.key_id}});
  return JsonResponse(201, PublisherKeyJson(record));
}

Response EnableDevelopment(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                           const std::string& device_id) {
  auto body = ParseBody(request, {"developer_keys"}, /*allow_empty=*/true);
  if (!body) return BodyError(body.error());
  protocol::DevelopmentCapabilityClaims claims;
  if (auto it = body->find("developer_keys"); it != body->end()) {
    if (!it->is_array()) {
      return Problem(400, "invalid-request", "Invalid request", "\"developer_keys\" must be an array of PEM strings");
    }
    if (it->size() > protocol::kMaxDeveloperKeys) {
      return Problem(400, "invalid-request", "Invalid request",
                     "at most " + std::to_string(protocol::kMaxDeveloperKeys) + " developer keys");
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < it->size(); ++i) {
      const Json& element = (*it)[i];
      const std::string what = "developer_keys[" + std::to_string(i) + "]";
      if (!element.is_string() || element.get_ref<const std::string&>().size() > protocol::kMaxPublisherKeyPemBytes) {
        return Problem(400, "invalid-request", "Invalid request", what + " must be a PEM public key");
      }
      auto key = ParsePublicKeyPem(element.get_ref<const std::string&>(), what);
      if (!key) return Problem(400, "invalid-publisher-key", "Invalid developer key", key.error().message());
      if (seen.insert(protocol::KeyId(*key)).second) claims.developer_keys.push_back(std::move(*key));
    }
  }
  // Only a device this tenant holds; anything else is the same 404.
  auto device = ctx.store.GetDevice(device_id);
  if (!device) {
    return device.error().code() == ErrorCode::kNotFound ? NotFound("device") : ErrorResponse(device.error());
  }
  if (device->tenant_id != tenant_id) return NotFound("device");
  auto authority = ctx.authorities.Get(tenant_id);
  if (!authority) return ErrorResponse(authority.error());

  const std::int64_t now = Now();
  claims.device_id = device_id;
  claims.tenant_id = tenant_id;
  claims.issued_at = FormatRfc3339(FromUnixSeconds(now));
  claims.capability_id = NewUuid();
  auto envelope =
      protocol::CreateDevelopmentCapabilityEnvelope(claims, (*authority)->issuing_key, (*authority)->issuing);
  if (!envelope) return ErrorResponse(envelope.error());
  store::DevelopmentCapability record{claims.capability_id, tenant_id, device_id, envelope->dump(), now, 0};
  if (auto replaced = ctx.store.ReplaceDevelopmentCapability(record); !replaced) {
    // The device was released between the read above and the write.
    if (replaced.error().code() == ErrorCode::kFailedPrecondition) return NotFound("device");
    return ErrorResponse(replaced.error());
  }
  Json key_ids = Json::array();
  for (const auto& key : claims.developer_keys) key_ids.push_back(protocol::KeyId(key));
  Audit(ctx.store, tenant_id, caller, "device.development.enable", device_id,
        {{"capability_id", claims.capability_id}, {"developer_key_ids", key_ids}});
  log::Info("app development enabled", {{"tenant", tenant_id}, {"device_id", device_id}});
  return JsonResponse(201, *envelope);
}

}  // namespace

void RegisterRoutes(http::Router& router, ApiContext& ctx) {
  RegisterRepositoryRoutes(router, ctx);
  RegisterDeploymentRoutes(router, ctx);
  RegisterReportRoutes(router, ctx);
  router.Add("GET", "/v1/health", [&ctx](const Request&, const PathParams&) {
    return JsonResponse(200, {{"status", "ok"}, {"store", ctx.store.Backend()}});
  });

  // Prometheus scrapes with the metrics token (--metrics-token-file) or the
  // operator's; labels carry no ids (server/metrics.hpp).
  router.Add("GET", "/metrics", [&ctx](const Request& request, const PathParams&) {
    bool allowed = false;
    if (auto presented = BearerTokenHash(request); presented && !ctx.options.metrics_token_hash.empty()) {
      allowed = crypto::ConstantTimeEqual(*presented, ctx.options.metrics_token_hash);
    }
    if (!allowed) {
      auto caller = AuthenticateToken(ctx.store, request);
      if (!caller) {
        Response r = Problem(401, "unauthenticated", "Unauthenticated", caller.error().message());
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
      }
      if (!caller->IsOperator()) {
        return Problem(403, "forbidden", "Forbidden", "metrics need the metrics token or the operator token");
      }
    }
    Response response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = ctx.metrics.Render();
    return response;
  });
  // Device attestation: unauthenticated by design (the evidence is the
  // credential); see docs/PROTOCOL.md.
  router.Add("POST", "/v1/attestation/challenge", [&ctx](const Request&, const PathParams&) {
    auto challenge = ctx.attestor.CreateChallenge(Clock::now());
    if (!challenge) return ErrorResponse(challenge.error());
    return JsonResponse(200, protocol::ChallengeToJson(*challenge));
  });
  router.Add("POST", "/v1/attestation", [&ctx](const Request& request, const PathParams&) {
    if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
    auto outcome = ctx.attestor.Attest(request.body, Clock::now());
    if (!outcome) {
      std::string_view type = outcome.error().type;
      ctx.metrics.Attestation(type.substr(type.rfind(':') + 1));
      return ProblemResponse(outcome.error());
    }
    ctx.metrics.Attestation(outcome->verdict);
    return JsonResponse(200, protocol::AttestationResultToJson(*outcome));
  });
  // TPM credential activation: unauthenticated like the attestation (the
  // secret only the device's TPM could open is the credential).
  router.Add("POST", "/v1/attestation/activate", [&ctx](const Request& request, const PathParams&) {
    if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
    auto activated = ctx.attestor.Activate(request.body, Clock::now());
    if (!activated) return ProblemResponse(activated.error());
    return NoContent();
  });

  router.Add("POST", "/v1/device/check-in", [&ctx](const Request& request, const PathParams&) {
    auto gate = AuthorizeDevice(ctx, request);
    if (gate.refusal) return *gate.refusal;
    const DeviceCaller* device = &*gate.device;
    if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
    auto check_in = protocol::ParseCheckIn(request.body);
    if (!check_in) return Problem(400, "invalid-request", "Invalid request", check_in.error().message());
    const std::int64_t now = Now();
    // The device row and the day's telemetry row (docs/PROTOCOL.md,
    // "Failure reports", "Check-in additions") in one commit.
    store::TelemetrySample sample;
    sample.tenant_id = device->tenant_id;
    sample.device_id = device->device_id;
    sample.now = now;
    sample.uptime_seconds = check_in->uptime_seconds;
    sample.free_memory_kb = check_in->free_memory_kb;
    sample.has_counters = check_in->telemetry.has_value();
    if (check_in->telemetry) {
      sample.app_restarts = check_in->telemetry->app_restarts;
      sample.rx_bytes = check_in->telemetry->rx_bytes;
      sample.tx_bytes = check_in->telemetry->tx_bytes;
    }
    if (auto recorded = ctx.store.RecordCheckInWithTelemetry(check_in->os_version, check_in->runtime_version, sample);
        !recorded) {
      return ErrorResponse(recorded.error());
    }
    // Updates (docs/PROTOCOL.md, "Check-in additions"): record the reports,
    // then point the device at its repositories. Devices without the update
    // client omit the member and may ignore the reply's.
    DeploymentService deployments(ctx.store, ctx.repository);
    std::int64_t acknowledged = 0;
    if (check_in->update) {
      auto handled = deployments.RecordReports(device->tenant_id, device->device_id, check_in->update->reports, now);
      if (!handled) return ErrorResponse(handled.error());
      for (const auto& report : check_in->update->reports) ctx.metrics.UpdateReport(report.state);
      acknowledged = *handled;
    }
    auto update = deployments.CheckInReply(device->record, acknowledged, now);
    if (!update) return ErrorResponse(update.error());
    protocol::CheckInReply reply;
    reply.update = std::move(*update);
    reply.device_id = device->device_id;
    reply.tenant_id = device->tenant_id;
    reply.next_check_in_seconds = ctx.options.check_in_interval.count();
    auto keys = ctx.check_in_memo.publisher_keys.Get(
        device->tenant_id, [&] { return ctx.store.ListPublisherKeys(device->tenant_id, /*include_revoked=*/false); });
    if (!keys) return ErrorResponse(keys.error());
    for (const auto& key : *keys) reply.publisher_keys.push_back({key.key_id, key.public_key_pem});
    // Failure reporting settings of the device's group.
    auto group = ctx.check_in_memo.groups.Get({device->tenant_id, device->record.device_group_id}, [&] {
      return ctx.store.GetDeviceGroup(device->tenant_id, device->record.device_group_id);
    });
    if (!group) return ErrorResponse(group.error());
    reply.reporting = protocol::ReportingSettings{group->crash_dumps};
    reply.app_development = nullptr;
    if (auto capability = ctx.store.GetDevelopmentCapability(device->tenant_id, device->device_id); capability) {
      auto document = ParseJsonStrict(capability->document);
      if (!document) return ErrorResponse(Error(ErrorCode::kInternal, "stored development capability is corrupt"));
      reply.app_development = std::move(*document);
    } else if (capability.error().code() != ErrorCode::kNotFound) {
      return ErrorResponse(capability.error());
    }
    return JsonResponse(200, protocol::CheckInReplyToJson(reply));
  });

  router.Add("POST", "/v1/tenants",
             [&ctx](const Request& request, const PathParams&) { return CreateTenant(ctx, request); });
  router.Add("GET", "/v1/tenants",
             [&ctx](const Request& request, const PathParams&) { return ListTenants(ctx, request); });
  router.Add("GET", "/v1/tenants/{tenant}",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto tenant = ctx.store.GetTenant(tenant_id);
                           if (!tenant) return ErrorResponse(tenant.error());
                           return JsonResponse(200, TenantJson(*tenant));
                         }));

  // Tokens.
  router.Add("POST", "/v1/tenants/{tenant}/tokens",
             TenantRoute(
                 ctx, Role::kAdmin,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   auto body = ParseBody(request, {"name", "role"});
                   if (!body) return BodyError(body.error());
                   auto name = StringField(*body, "name", true);
                   if (!name) return BodyError(name.error());
                   auto role_name = StringField(*body, "role", true);
                   if (!role_name) return BodyError(role_name.error());
                   auto role = store::ParseRole(*role_name);
                   if (!role || *role == Role::kOperator) {
                     return Problem(400, "invalid-request", "Invalid request",
                                    "role must be admin, contributor or reader");
                   }
                   auto token = GenerateApiToken();
                   store::ApiToken record{GenerateId("tok"), tenant_id, *name, *role, token.hash_hex, Now(), false};
                   if (auto created = ctx.store.CreateApiToken(record); !created) return ErrorResponse(created.error());
                   Audit(ctx.store, tenant_id, caller, "token.create", record.id, {{"role", *role_name}});
                   return JsonResponse(
                       201, {{"id", record.id}, {"name", record.name}, {"role", *role_name}, {"token", token.text}});
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/tokens",
             TenantRoute(ctx, Role::kAdmin,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto tokens = ctx.store.ListApiTokens(tenant_id);
                           if (!tokens) return ErrorResponse(tokens.error());
                           Json list = Json::array();
                           for (const auto& t : *tokens) list.push_back(TokenJson(t));
                           return JsonResponse(200, {{"tokens", list}});
                         }));
  router.Add(
      "DELETE", "/v1/tenants/{tenant}/tokens/{token}",
      TenantRoute(ctx, Role::kAdmin,
                  [&ctx](const Request&, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
                    if (auto revoked = ctx.store.RevokeApiToken(tenant_id, params.at("token")); !revoked) {
                      return ErrorResponse(revoked.error());
                    }
                    Audit(ctx.store, tenant_id, caller, "token.revoke", params.at("token"));
                    return NoContent();
                  }));

  // Products and device groups.
  router.Add("POST", "/v1/tenants/{tenant}/products",
             TenantRoute(
                 ctx, Role::kContributor,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   auto body = ParseBody(request, {"name", "description"});
                   if (!body) return BodyError(body.error());
                   auto name = StringField(*body, "name", true);
                   if (!name) return BodyError(name.error());
                   auto description = StringField(*body, "description", false, 1024);
                   if (!description) return BodyError(description.error());
                   store::Product product{GenerateId("prd"), tenant_id, *name, *description, Now()};
                   std::vector<store::DeviceGroup> groups;
                   for (const char* group_name : {"Development", "Field Test", "Production"}) {
                     groups.push_back({GenerateId("grp"), tenant_id, product.id, group_name, product.created_at});
                   }
                   if (auto created = ctx.store.CreateProduct(product, groups); !created) {
                     if (created.error().code() == ErrorCode::kAlreadyExists) {
                       return Problem(409, "already-exists", "Already exists",
                                      "a product named \"" + *name + "\" already exists");
                     }
                     return ErrorResponse(created.error());
                   }
                   Audit(ctx.store, tenant_id, caller, "product.create", product.id, {{"name", product.name}});
                   Json group_list = Json::array();
                   for (const auto& g : groups) group_list.push_back(GroupJson(g));
                   return JsonResponse(201, {{"product", ProductJson(product)}, {"device_groups", group_list}});
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/products",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto products = ctx.store.ListProducts(tenant_id);
                           if (!products) return ErrorResponse(products.error());
                           Json list = Json::array();
                           for (const auto& p : *products) list.push_back(ProductJson(p));
                           return JsonResponse(200, {{"products", list}});
                         }));
  router.Add(
      "GET", "/v1/tenants/{tenant}/device-groups",
      TenantRoute(ctx, Role::kReader,
                  [&ctx](const Request& request, const PathParams&, const Caller&, const std::string& tenant_id) {
                    auto groups = ctx.store.ListDeviceGroups(tenant_id, request.QueryParameter("product"));
                    if (!groups) return ErrorResponse(groups.error());
                    Json list = Json::array();
                    for (const auto& g : *groups) list.push_back(GroupJson(g));
                    return JsonResponse(200, {{"device_groups", list}});
                  }));
  router.Add("POST", "/v1/tenants/{tenant}/device-groups",
             TenantRoute(
                 ctx, Role::kContributor,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   auto body = ParseBody(request, {"name", "product_id"});
                   if (!body) return BodyError(body.error());
                   auto name = StringField(*body, "name", true);
                   if (!name) return BodyError(name.error());
                   auto product_id = StringField(*body, "product_id", true);
                   if (!product_id) return BodyError(product_id.error());
                   if (auto product = ctx.store.GetProduct(tenant_id, *product_id); !product) {
                     return product.error().code() == ErrorCode::kNotFound ? NotFound("product")
                                                                           : ErrorResponse(product.error());
                   }
                   store::DeviceGroup group{GenerateId("grp"), tenant_id, *product_id, *name, Now()};
                   if (auto created = ctx.store.CreateDeviceGroup(group); !created)
                     return ErrorResponse(created.error());
                   Audit(ctx.store, tenant_id, caller, "device-group.create", group.id, {{"name", group.name}});
                   return JsonResponse(201, GroupJson(group));
                 }));

  // Devices.
  router.Add(
      "POST", "/v1/tenants/{tenant}/devices/{device}/claim",
      TenantRoute(
          ctx, Role::kContributor,
          [&ctx](const Request& request, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
            auto body = ParseBody(request, {"device_group_id"}, /*allow_empty=*/true);
            if (!body) return BodyError(body.error());
            auto group_id = StringField(*body, "device_group_id", false);
            if (!group_id) return BodyError(group_id.error());
            const auto& device_id = params.at("device");
            // Say who holds the device before asking for a group: that is
            // the answer a caller needs first. (The store re-checks
            // atomically below; this read only shapes the message.)
            if (auto existing = ctx.store.GetDevice(device_id); existing && !existing->tenant_id.empty()) {
              return existing->tenant_id == tenant_id
                         ? Problem(409, "device-already-claimed", "Device already claimed",
                                   "device " + device_id + " is already claimed by your tenant")
                         : Problem(409, "device-claimed-elsewhere", "Device claimed by another tenant",
                                   "device " + device_id +
                                       " is claimed by another tenant; it must be released by that tenant first");
            }
            std::string product_id;
            if (group_id->empty()) {
              // Without a group, a tenant with one product claims into its
              // Development group; with several, the caller must choose.
              auto products = ctx.store.ListProducts(tenant_id);
              if (!products) return ErrorResponse(products.error());
              if (products->size() != 1) {
                return Problem(400, "device-group-required", "Device group required",
                               products->empty() ? "create a product first (citadel product create NAME)"
                                                 : "this tenant has several products; name a device group "
                                                   "(citadel device-group list, then --device-group ID)");
              }
              auto groups = ctx.store.ListDeviceGroups(tenant_id, products->front().id);
              if (!groups) return ErrorResponse(groups.error());
              for (const auto& g : *groups) {
                if (g.name == "Development") *group_id = g.id;
              }
              if (group_id->empty()) {
                return Problem(400, "device-group-required", "Device group required",
                               "name a device group with --device-group ID");
              }
            }
            {
              auto group = ctx.store.GetDeviceGroup(tenant_id, *group_id);
              if (!group) {
                return group.error().code() == ErrorCode::kNotFound ? NotFound("device group")
                                                                    : ErrorResponse(group.error());
              }
              product_id = group->product_id;
            }
            auto claimed = ctx.store.ClaimDevice(device_id, tenant_id, product_id, *group_id, Now());
            if (!claimed) {
              switch (claimed.error().code()) {
                case ErrorCode::kConflict:
                  return Problem(409, "device-claimed-elsewhere", "Device claimed by another tenant",
                                 "device " + device_id +
                                     " is claimed by another tenant; it must be released by that tenant first");
                case ErrorCode::kAlreadyExists:
                  return Problem(409, "device-already-claimed", "Device already claimed",
                                 "device " + device_id + " is already claimed by your tenant");
                case ErrorCode::kNotFound:
                  return Problem(404, "device-unknown", "Device unknown",
                                 "the service has never seen device " + device_id +
                                     "; start it once so it attests, then claim it");
                default:
                  return ErrorResponse(claimed.error());
              }
            }
            Audit(ctx.store, tenant_id, caller, "device.claim", device_id, {{"device_group_id", *group_id}});
            log::Info("device claimed", {{"device_id", device_id}, {"tenant", tenant_id}});
            auto device = ctx.store.GetDevice(device_id);
            if (!device) return ErrorResponse(device.error());
            return JsonResponse(200, DeviceJson(*device));
          }));
  router.Add("GET", "/v1/tenants/{tenant}/devices",
             TenantRoute(
                 ctx, Role::kReader,
                 [&ctx](const Request& request, const PathParams&, const Caller&, const std::string& tenant_id) {
                   auto limit = PageLimit(request);
                   if (!limit) return BadPageLimit();
                   store::DeviceFilter filter;
                   filter.tenant_id = tenant_id;
                   filter.device_group_id = request.QueryParameter("device_group");
                   filter.os_version = request.QueryParameter("os_version");
                   if (auto health = request.QueryParameter("health"); !health.empty()) {
                     auto parsed = store::ParseDeviceHealth(health);
                     if (!parsed) {
                       return Problem(400, "invalid-request", "Invalid request", "health must be healthy or unhealthy");
                     }
                     filter.health = *parsed;
                     filter.now = Now();
                   }
                   filter.after_id = request.QueryParameter("after");
                   filter.limit = *limit;
                   auto devices = ctx.store.ListDevices(filter);
                   if (!devices) return ErrorResponse(devices.error());
                   return PageResponse("devices", *devices, *limit, DeviceJson,
                                       [](const store::Device& d) { return d.id; });
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/devices/{device}",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams& params, const Caller&, const std::string& tenant_id) {
                           auto device = ctx.store.GetDevice(params.at("device"));
                           if (!device) {
                             return device.error().code() == ErrorCode::kNotFound ? NotFound("device")
                                                                                  : ErrorResponse(device.error());
                           }
                           if (device->tenant_id != tenant_id) return NotFound("device");
                           return JsonResponse(200, DeviceJson(*device));
                         }));
  router.Add(
      "POST", "/v1/tenants/{tenant}/devices/{device}/certificate/revoke",
      TenantRoute(ctx, Role::kAdmin,
                  [&ctx](const Request&, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
                    auto device = ctx.store.GetDevice(params.at("device"));
                    if (!device || device->tenant_id != tenant_id) return NotFound("device");
                    if (device->certificate_serial.empty()) {
                      return Problem(409, "conflict", "Conflict", "the device holds no certificate");
                    }
                    if (auto revoked = ctx.store.RevokeCertificate(device->certificate_serial); !revoked) {
                      return ErrorResponse(revoked.error());
                    }
                    Audit(ctx.store, tenant_id, caller, "certificate.revoke", device->id,
                          {{"serial", device->certificate_serial}});
                    return JsonResponse(200, {{"revoked", device->certificate_serial}});
                  }));
  router.Add("GET", "/v1/tenants/{tenant}/ca-certificates",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto authority = ctx.authorities.Get(tenant_id);
                           if (!authority) return ErrorResponse(authority.error());
                           Response r;
                           r.content_type = "application/x-pem-file";
                           r.body = (*authority)->chain_pem;
                           return r;
                         }));

  // App trust: publisher keys and development capabilities.
  router.Add("POST", "/v1/tenants/{tenant}/publisher-keys",
             TenantRoute(
                 ctx, Role::kAdmin,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   return RegisterPublisherKey(ctx, request, caller, tenant_id);
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/publisher-keys",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto keys = ctx.store.ListPublisherKeys(tenant_id, /*include_revoked=*/true);
                           if (!keys) return ErrorResponse(keys.error());
                           Json list = Json::array();
                           for (const auto& k : *keys) list.push_back(PublisherKeyJson(k));
                           return JsonResponse(200, {{"publisher_keys", list}});
                         }));
  router.Add(
      "DELETE", "/v1/tenants/{tenant}/publisher-keys/{key_id}",
      TenantRoute(ctx, Role::kAdmin,
                  [&ctx](const Request&, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
                    const auto& key_id = params.at("key_id");
                    auto revoked = ctx.store.RevokePublisherKey(tenant_id, key_id, Now());
                    if (!revoked) {
                      if (revoked.error().code() == ErrorCode::kNotFound) return NotFound("publisher key");
                      if (revoked.error().code() == ErrorCode::kConflict) {
                        return Problem(409, "publisher-key-revoked", "Publisher key already revoked",
                                       revoked.error().message());
                      }
                      return ErrorResponse(revoked.error());
                    }
                    ctx.check_in_memo.publisher_keys.Forget(tenant_id);
                    Audit(ctx.store, tenant_id, caller, "publisher-key.revoke", key_id);
                    log::Info("publisher key revoked", {{"tenant", tenant_id}, {"key_id", key_id}});
                    return NoContent();
                  }));
  router.Add("POST", "/v1/tenants/{tenant}/devices/{device}/app-development",
             TenantRoute(ctx, Role::kAdmin,
                         [&ctx](const Request& request, const PathParams& params, const Caller& caller,
                                const std::string& tenant_id) {
                           return EnableDevelopment(ctx, request, caller, tenant_id, params.at("device"));
                         }));
  router.Add(
      "DELETE", "/v1/tenants/{tenant}/devices/{device}/app-development",
      TenantRoute(ctx, Role::kAdmin,
                  [&ctx](const Request&, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
                    const auto& device_id = params.at("device");
                    auto device = ctx.store.GetDevice(device_id);
                    if (!device || device->tenant_id != tenant_id) return NotFound("device");
                    auto revoked = ctx.store.RevokeDevelopmentCapability(tenant_id, device_id, Now());
                    if (!revoked) {
                      if (revoked.error().code() == ErrorCode::kNotFound) {
                        return Problem(404, "not-found", "Not found",
                                       "device " + device_id + " has no development capability");
                      }
                      return ErrorResponse(revoked.error());
                    }
                    Audit(ctx.store, tenant_id, caller, "device.development.disable", device_id);
                    log::Info("app development disabled", {{"tenant", tenant_id}, {"device_id", device_id}});
                    return NoContent();
                  }));

  // Appraisal policy.
  router.Add("GET", "/v1/tenants/{tenant}/policy",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto rules = ctx.store.ListPolicyRules(tenant_id);
                           if (!rules) return ErrorResponse(rules.error());
                           Json list = Json::array();
                           for (const auto& r : *rules) {
                             list.push_back({{"kind", r.kind}, {"value", r.value}, {"created_at", Time(r.created_at)}});
                           }
                           return JsonResponse(200, {{"rules", list}});
                         }));
  router.Add(
      "POST", "/v1/tenants/{tenant}/policy/rules",
      TenantRoute(
          ctx, Role::kAdmin,
          [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
            auto body = ParseBody(request, {"kind", "value"});
            if (!body) return BodyError(body.error());
            auto kind = StringField(*body, "kind", true);
            if (!kind) return BodyError(kind.error());
            auto value = StringField(*body, "value", true);
            if (!value) return BodyError(value.error());
            if (*kind != "revoked-os-version" && *kind != "revoked-runtime-digest" &&
                *kind != "accepted-runtime-digest" && *kind != "require-published-apps") {
              return Problem(400, "invalid-request", "Invalid request",
                             "kind must be revoked-os-version, revoked-runtime-digest, accepted-runtime-digest or "
                             "require-published-apps");
            }
            if ((*kind == "revoked-runtime-digest" || *kind == "accepted-runtime-digest") &&
                (value->size() != 64 || value->find_first_not_of("0123456789abcdef") != std::string::npos)) {
              return Problem(400, "invalid-request", "Invalid request",
                             "a runtime digest is 64 lower-case hex characters");
            }
            if (*kind == "require-published-apps" && *value != "true") {
              return Problem(400, "invalid-request", "Invalid request", "require-published-apps takes the value true");
            }
            store::PolicyRule rule{tenant_id, *kind, *value, Now()};
            if (auto added = ctx.store.AddPolicyRule(rule); !added) return ErrorResponse(added.error());
            Audit(ctx.store, tenant_id, caller, "policy.add", *kind, {{"value", *value}});
            return JsonResponse(201, {{"kind", *kind}, {"value", *value}, {"created_at", Time(rule.created_at)}});
          }));
  router.Add("DELETE", "/v1/tenants/{tenant}/policy/rules",
             TenantRoute(
                 ctx, Role::kAdmin,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   auto kind = request.QueryParameter("kind");
                   auto value = request.QueryParameter("value");
                   if (auto removed = ctx.store.RemovePolicyRule(tenant_id, kind, value); !removed) {
                     return ErrorResponse(removed.error());
                   }
                   Audit(ctx.store, tenant_id, caller, "policy.remove", kind, {{"value", value}});
                   return NoContent();
                 }));

  router.Add(
      "GET", "/v1/tenants/{tenant}/audit",
      TenantRoute(ctx, Role::kAdmin,
                  [&ctx](const Request& request, const PathParams&, const Caller&, const std::string& tenant_id) {
                    auto limit = PageLimit(request);
                    if (!limit) return BadPageLimit();
                    auto events = ctx.store.ListAudit(tenant_id, *limit);
                    if (!events) return ErrorResponse(events.error());
                    Json list = Json::array();
                    for (const auto& e : *events) {
                      auto details = ParseJsonStrict(e.details_json);
                      list.push_back({{"id", e.id},
                                      {"time", Time(e.time)},
                                      {"actor", e.actor},
                                      {"action", e.action},
                                      {"target", e.target},
                                      {"details", details ? *details : Json::object()}});
                    }
                    return JsonResponse(200, {{"events", list}});
                  }));
}

}  // namespace citadel::server
