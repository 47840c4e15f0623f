// The CLI's view of the public REST API (docs/PROTOCOL.md, "Public API"):
// JSON in, JSON out, bearer token on every call, and every failure already
// turned into a Failure with a hint and an exit code.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/failure.hpp"
#include "http/http.hpp"

namespace citadel::cli {

// Percent-encodes everything but RFC 3986 unreserved characters, for path
// segments and query values.
std::string PercentEncode(std::string_view text);

// "?a=1&b=x%20y" from the non-empty values; "" when all are empty.
std::string QueryString(const std::vector<std::pair<std::string, std::string>>& parameters);

class ApiClient {
 public:
  // client must be connected to `server`; token is sent as
  // "Authorization: Bearer <token>" and never printed.
  ApiClient(std::unique_ptr<http::Client> client, std::string server, std::string token);

  // Each returns the parsed JSON body of a 2xx answer (null for an empty
  // body, e.g. 204), or the Failure for anything else. `context` sharpens
  // the hints (what to list when something is not found, ...).
  Result<nlohmann::json> Get(std::string_view path, const FailureContext& context = {});
  Result<nlohmann::json> Post(std::string_view path, const nlohmann::json& body, const FailureContext& context = {});
  Result<nlohmann::json> Delete(std::string_view path, const FailureContext& context = {});
  // For non-JSON answers (the PEM CA chain).
  Result<std::string> GetText(std::string_view path, const FailureContext& context = {});

  // GET /v1/health without credentials: proves the URL and the pinned CA.
  Result<nlohmann::json> Health();

  // The tenant that tenant-scoped paths use: `override_id` when given, else
  // the one tenant GET /v1/tenants shows (a tenant token sees exactly its
  // own). An operator token sees every tenant and must name one.
  Result<std::string> ResolveTenant(std::string_view override_id);

  const std::string& server() const { return server_; }

 private:
  Result<http::Response> Send(std::string_view method, std::string_view path, std::string_view body, bool authenticate,
                              const FailureContext& context);
  Result<nlohmann::json> ParseJsonBody(const http::Response& response);

  std::unique_ptr<http::Client> client_;
  std::string server_;
  std::string token_;
};

}  // namespace citadel::cli
