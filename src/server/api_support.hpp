// What every API route file shares: responses (JSON, problem+json), the
// mapping of errors to statuses, strict body parsing, the audit trail, and
// the guard each tenant route runs first (TenantRoute: authenticate the
// token, hide other tenants as 404, check the role, check the tenant
// exists). Route files: api.cpp (tenants, devices, app trust, check-in),
// and one file per later capability.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "http/http.hpp"
#include "protocol/protocol.hpp"
#include "server/api.hpp"
#include "server/auth.hpp"
#include "store/store.hpp"

namespace citadel::server {

inline constexpr std::size_t kMaxNameLength = 128;

http::Response JsonResponse(int status, const Json& body);
// 204 No Content.
http::Response NoContent();
// The request's media type: Content-Type without its parameters.
std::string MediaType(const http::Request& request);
// 415 "Content-Type must be <expected>".
http::Response UnsupportedMediaType(std::string_view expected);
http::Response ProblemResponse(const protocol::Problem& problem);
http::Response Problem(int status, std::string_view name, std::string_view title, std::string detail);
http::Response NotFound(std::string what);
// Maps a store or logic error to a response; internal details are logged,
// not returned.
http::Response ErrorResponse(const Error& error);
// RFC 3339, or "" for 0 (never).
std::string Time(std::int64_t unix_seconds);
std::int64_t Now();

// Parses a JSON object body: content type, strict syntax, only known fields.
Expected<Json> ParseBody(const http::Request& request, std::initializer_list<std::string_view> allowed,
                         bool allow_empty = false);
// 415 for a wrong content type, else 400.
http::Response BodyError(const Error& error);
// Reads a string field: required or optional, bounded, printable.
Expected<std::string> StringField(const Json& body, std::string_view name, bool required,
                                  std::size_t max_length = kMaxNameLength);
// ?limit= in [1, max], `fallback` when absent; nullopt when malformed.
std::optional<std::int64_t> ParseLimit(const std::string& text, std::int64_t fallback, std::int64_t max);

// A device group as the API shows it (group routes, PATCH update settings).
Json GroupJson(const store::DeviceGroup& g);

// A paginated list route's ?limit=: 100 when absent, 1..1000; nullopt when
// malformed (answer BadPageLimit()).
std::optional<std::int64_t> PageLimit(const http::Request& request);
http::Response BadPageLimit();

// {"<field>": [to_json(item)...], "next": next_key(last item) when the page
// is full, else null}: the client passes "next" back as ?after=.
template <typename Item, typename ToJson, typename NextKey>
http::Response PageResponse(std::string_view field, const std::vector<Item>& items, std::int64_t limit,
                            const ToJson& to_json, const NextKey& next_key) {
  Json list = Json::array();
  for (const auto& item : items) list.push_back(to_json(item));
  Json next = nullptr;
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) next = next_key(items.back());
  return JsonResponse(200, {{std::string(field), std::move(list)}, {"next", std::move(next)}});
}

void Audit(store::Store& store, std::string_view tenant, const Caller& caller, std::string_view action,
           std::string_view target, const Json& details = Json::object());

// A failed device authentication: 401 device-certificate-invalid (the
// device re-attests), or the store error.
http::Response DeviceProblemFromAuth(const Error& error);

// The guard every tenant route runs first.
struct Guarded {
  std::optional<Caller> caller;
  std::optional<http::Response> refusal;
};

// Authenticates the token, then applies the tenant's rate limit (429).
Guarded Guard(ApiContext& ctx, const http::Request& request, std::string_view tenant_id, store::Role minimum);

// The guard of every device route (mutual TLS): AuthenticateDevice, then the
// device's and its tenant's rate limits (429).
struct DeviceGate {
  std::optional<DeviceCaller> device;
  std::optional<http::Response> refusal;
};
DeviceGate AuthorizeDevice(ApiContext& ctx, const http::Request& request);

// Every tenant route has the same shape; this keeps it in one place.
template <typename Fn>
http::RouteHandler TenantRoute(ApiContext& ctx, store::Role minimum, Fn fn) {
  return [&ctx, minimum, fn](const http::Request& request, const http::PathParams& params) -> http::Response {
    const auto& tenant_id = params.at("tenant");
    auto guarded = Guard(ctx, request, tenant_id, minimum);
    if (guarded.refusal) return *guarded.refusal;
    if (auto tenant = ctx.store.GetTenant(tenant_id); !tenant) {
      return tenant.error().code() == ErrorCode::kNotFound ? NotFound("tenant") : ErrorResponse(tenant.error());
    }
    return fn(request, params, *guarded.caller, tenant_id);
  };
}

}  // namespace citadel::server
