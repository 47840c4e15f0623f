// The CLI's view of the public REST API (docs/PROTOCOL.md, "Public API"):
// JSON in, JSON out, bearer token on every call, and every failure already
// turned into a Failure with a hint and an exit code.
#pragma once

#include <memory>
#include <span>
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

// An answer together with its status, for callers that tell answers apart
// (201 created vs 200 already there) or act on one particular non-2xx answer
// (an upload's 409 upload-offset-mismatch says where to resume).
struct ApiAnswer {
  int status = 0;
  nlohmann::json body;  // the parsed JSON body (a problem document for a non-2xx status); null when empty
};

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
  Result<nlohmann::json> Patch(std::string_view path, const nlohmann::json& body, const FailureContext& context = {});
  // PUT of raw bytes (an upload chunk) sent as `content_type`. An answer
  // whose status is in `handled` is returned as an ApiAnswer instead of a
  // Failure, so the caller can read its problem document.
  Result<ApiAnswer> Put(std::string_view path, std::string_view bytes, std::string_view content_type,
                        const FailureContext& context = {}, std::span<const int> handled = {});
  // POST that returns the status with the body; `handled` as for Put.
  Result<ApiAnswer> PostForAnswer(std::string_view path, const nlohmann::json& body, const FailureContext& context = {},
                                  std::span<const int> handled = {});
  // POST of raw bytes (a symbol file) sent as `content_type`; the JSON
  // answer of a 2xx status, a Failure otherwise.
  Result<nlohmann::json> PostBytes(std::string_view path, std::string_view bytes, std::string_view content_type,
                                   const FailureContext& context = {});
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
  // The answer of a 2xx status or one in `handled`; a Failure otherwise.
  // Content-Type is sent when content_type is not empty.
  Result<http::Response> Send(std::string_view method, std::string_view path, std::string_view body,
                              std::string_view content_type, bool authenticate, const FailureContext& context,
                              std::span<const int> handled = {});
  Result<ApiAnswer> SendForAnswer(std::string_view method, std::string_view path, std::string_view body,
                                  std::string_view content_type, const FailureContext& context,
                                  std::span<const int> handled);
  Result<nlohmann::json> ParseJsonBody(const http::Response& response);

  std::unique_ptr<http::Client> client_;
  std::string server_;
  std::string token_;
};

}  // namespace citadel::cli
