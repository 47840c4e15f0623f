#include "server/api_support.hpp"

#include "server/load_control.hpp"

#include <algorithm>

#include "common/canonical_json.hpp"
#include "common/log.hpp"
#include "server/deployments.hpp"

namespace citadel::server {

using http::Request;
using http::Response;
using store::Role;

std::string MediaType(const Request& request) {
  auto content_type = request.Header("content-type");
  return content_type.substr(0, content_type.find(';'));
}

Response UnsupportedMediaType(std::string_view expected) {
  return Problem(415, "unsupported-media-type", "Unsupported media type",
                 "Content-Type must be " + std::string(expected));
}

Response NoContent() {
  Response response;
  response.status = 204;
  return response;
}

Response JsonResponse(int status, const Json& body) {
  Response response;
  response.status = status;
  response.body = body.dump();
  return response;
}

Response ProblemResponse(const protocol::Problem& problem) {
  Response response;
  response.status = problem.status;
  response.content_type = "application/problem+json";
  response.body = protocol::ProblemToJson(problem).dump();
  return response;
}

Response Problem(int status, std::string_view name, std::string_view title, std::string detail) {
  return ProblemResponse(MakeProblem(status, name, title, std::move(detail)));
}

Response NotFound(std::string what) { return Problem(404, "not-found", "Not found", std::move(what) + " not found"); }

// Maps a store or logic error to a response; internal details are logged,
// not returned.
Response ErrorResponse(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kNotFound:
      return Problem(404, "not-found", "Not found", error.message());
    case ErrorCode::kAlreadyExists:
      return Problem(409, "already-exists", "Already exists", error.message());
    case ErrorCode::kConflict:
      return Problem(409, "conflict", "Conflict", error.message());
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kParse:
      return Problem(400, "invalid-request", "Invalid request", error.message());
    case ErrorCode::kUnauthenticated:
      return Problem(401, "unauthenticated", "Unauthenticated", error.message());
    case ErrorCode::kPermissionDenied:
      return Problem(403, "forbidden", "Forbidden", error.message());
    case ErrorCode::kUnavailable:
      log::Error("store unavailable", {{"error", error.message()}});
      return Problem(503, "unavailable", "Service unavailable", "the service's store is unavailable; retry later");
    default:
      log::Error("internal error", {{"error", error.message()}});
      return Problem(500, "internal", "Internal error", "internal error; see the service log");
  }
}

std::string Time(std::int64_t unix_seconds) {
  return unix_seconds == 0 ? "" : FormatRfc3339(FromUnixSeconds(unix_seconds));
}

// Parses a JSON object body: content type, strict syntax, only known fields.
Expected<Json> ParseBody(const Request& request, std::initializer_list<std::string_view> allowed, bool allow_empty) {
  if (allow_empty && request.body.empty()) return Json::object();
  if (MediaType(request) != "application/json") {
    return MakeError(ErrorCode::kFailedPrecondition, "Content-Type must be application/json");
  }
  CITADEL_TRY(auto body, ParseJsonStrict(request.body));
  if (!body.is_object()) return MakeError(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  for (const auto& [key, _] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field \"" + key + "\"");
    }
  }
  return body;
}

Response BodyError(const Error& error) {
  if (error.code() == ErrorCode::kFailedPrecondition) {
    return Problem(415, "unsupported-media-type", "Unsupported media type", error.message());
  }
  return Problem(400, "invalid-request", "Invalid request", error.message());
}

// Reads a string field: required or optional, bounded, printable.
Expected<std::string> StringField(const Json& body, std::string_view name, bool required, std::size_t max_length) {
  auto it = body.find(std::string(name));
  if (it == body.end()) {
    if (required) return MakeError(ErrorCode::kInvalidArgument, "missing field \"" + std::string(name) + "\"");
    return std::string();
  }
  if (!it->is_string()) return MakeError(ErrorCode::kInvalidArgument, "\"" + std::string(name) + "\" must be a string");
  auto value = it->get<std::string>();
  if (required && value.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + std::string(name) + "\" must not be empty");
  }
  if (value.size() > max_length) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + std::string(name) + "\" is longer than " + std::to_string(max_length) + " characters");
  }
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      return MakeError(ErrorCode::kInvalidArgument, "\"" + std::string(name) + "\" contains control characters");
    }
  }
  return value;
}

std::int64_t Now() { return ToUnixSeconds(Clock::now()); }

void Audit(store::Store& store, std::string_view tenant, const Caller& caller, std::string_view action,
           std::string_view target, const Json& details) {
  store::AuditEvent event;
  event.time = Now();
  event.tenant_id = std::string(tenant);
  event.actor = caller.Actor();
  event.action = std::string(action);
  event.target = std::string(target);
  event.details_json = details.dump();
  if (auto appended = store.AppendAudit(event); !appended) {
    log::Warn("cannot append audit event", {{"action", action}, {"error", appended.error().message()}});
  }
}

Guarded Guard(ApiContext& ctx, const Request& request, std::string_view tenant_id, Role minimum) {
  auto caller = AuthenticateToken(ctx.store, request);
  if (!caller) {
    if (caller.error().code() == ErrorCode::kUnauthenticated) {
      Response r = Problem(401, "unauthenticated", "Unauthenticated", caller.error().message());
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return {std::nullopt, r};
    }
    return {std::nullopt, ErrorResponse(caller.error())};
  }
  ctx.load.RememberToken(request, *caller);
  if (!caller->CanSeeTenant(tenant_id)) return {std::nullopt, NotFound("tenant")};
  if (!caller->Allows(tenant_id, minimum)) {
    return {std::nullopt, Problem(403, "forbidden", "Forbidden",
                                  "this needs the " + std::string(store::RoleName(minimum)) + " role; your token has " +
                                      std::string(store::RoleName(caller->role)))};
  }
  if (!caller->IsOperator()) {
    if (auto limited = ctx.load.AdmitTenant(caller->tenant_id)) return {std::nullopt, std::move(limited)};
  }
  return {*caller, std::nullopt};
}

DeviceGate AuthorizeDevice(ApiContext& ctx, const Request& request) {
  auto device = AuthenticateDevice(ctx.store, ctx.authorities, request, Clock::now());
  if (!device) return {std::nullopt, DeviceProblemFromAuth(device.error())};
  if (auto limited = ctx.load.AdmitDevice(*device)) return {std::nullopt, std::move(limited)};
  return {std::move(*device), std::nullopt};
}

std::optional<std::int64_t> ParseLimit(const std::string& text, std::int64_t fallback, std::int64_t max) {
  if (text.empty()) return fallback;
  if (text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  auto value = std::stoll(text);
  if (value < 1 || value > max) return std::nullopt;
  return value;
}

Json GroupJson(const store::DeviceGroup& g) {
  return {{"id", g.id},
          {"tenant_id", g.tenant_id},
          {"product_id", g.product_id},
          {"name", g.name},
          {"created_at", Time(g.created_at)},
          {"os_feed", g.os_feed},
          {"maintenance_window", MaintenanceWindowJson(g.maintenance_window)},
          {"crash_dumps", g.crash_dumps}};
}

std::optional<std::int64_t> PageLimit(const http::Request& request) {
  return ParseLimit(request.QueryParameter("limit"), 100, 1000);
}

http::Response BadPageLimit() { return Problem(400, "invalid-request", "Invalid request", "limit must be 1..1000"); }

Response DeviceProblemFromAuth(const Error& error) {
  if (error.code() == ErrorCode::kUnauthenticated) {
    return Problem(401, "device-certificate-invalid", "Device certificate invalid", error.message());
  }
  return ErrorResponse(error);
}

}  // namespace citadel::server
