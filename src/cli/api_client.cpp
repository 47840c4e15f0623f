#include "cli/api_client.hpp"

#include <algorithm>

namespace citadel::cli {

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    bool unreserved = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') ||
                      byte == '-' || byte == '.' || byte == '_' || byte == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0F];
    }
  }
  return out;
}

std::string QueryString(const std::vector<std::pair<std::string, std::string>>& parameters) {
  std::string query;
  for (const auto& [name, value] : parameters) {
    if (value.empty()) continue;
    query += query.empty() ? '?' : '&';
    query += PercentEncode(name) + "=" + PercentEncode(value);
  }
  return query;
}

ApiClient::ApiClient(std::unique_ptr<http::Client> client, std::string server, std::string token)
    : client_(std::move(client)), server_(std::move(server)), token_(std::move(token)) {}

Result<http::Response> ApiClient::Send(std::string_view method, std::string_view path, std::string_view body,
                                       std::string_view content_type, bool authenticate, const FailureContext& context,
                                       std::span<const int> handled) {
  FailureContext full_context = context;
  if (full_context.server.empty()) full_context.server = server_;
  std::vector<std::pair<std::string, std::string>> headers = {{"Accept", "application/json"}};
  if (authenticate) headers.emplace_back("Authorization", "Bearer " + token_);
  if (!content_type.empty()) headers.emplace_back("Content-Type", std::string(content_type));
  auto response = client_->Send(method, path, body, headers);
  if (!response) {
    // The HTTP client's message already names the server and what failed.
    return std::unexpected(FailureFromError(response.error(), full_context));
  }
  const bool is_handled = std::find(handled.begin(), handled.end(), response->status) != handled.end();
  if ((response->status < 200 || response->status > 299) && !is_handled) {
    return std::unexpected(FailureFromResponse(response->status, response->body, full_context));
  }
  return std::move(*response);
}

Result<nlohmann::json> ApiClient::ParseJsonBody(const http::Response& response) {
  if (response.body.empty()) return nlohmann::json();
  auto json = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return Fail(ExitCode::kError, "the server at " + server_ + " answered with something that is not JSON",
                "check that --server points at citadel-server");
  }
  return json;
}

Result<ApiAnswer> ApiClient::SendForAnswer(std::string_view method, std::string_view path, std::string_view body,
                                           std::string_view content_type, const FailureContext& context,
                                           std::span<const int> handled) {
  CITADEL_TRY(auto response, Send(method, path, body, content_type, true, context, handled));
  if (response.status >= 200 && response.status <= 299) {
    CITADEL_TRY(auto json, ParseJsonBody(response));
    return ApiAnswer{response.status, std::move(json)};
  }
  // A handled refusal: its problem document when it is JSON, else null (the
  // caller goes by the status).
  auto json = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  return ApiAnswer{response.status, json.is_discarded() ? nlohmann::json() : std::move(json)};
}

Result<nlohmann::json> ApiClient::Get(std::string_view path, const FailureContext& context) {
  CITADEL_TRY(auto response, Send("GET", path, {}, {}, true, context));
  return ParseJsonBody(response);
}

Result<nlohmann::json> ApiClient::Post(std::string_view path, const nlohmann::json& body,
                                       const FailureContext& context) {
  CITADEL_TRY(auto response, Send("POST", path, body.dump(), "application/json", true, context));
  return ParseJsonBody(response);
}

Result<nlohmann::json> ApiClient::Patch(std::string_view path, const nlohmann::json& body,
                                        const FailureContext& context) {
  CITADEL_TRY(auto response, Send("PATCH", path, body.dump(), "application/json", true, context));
  return ParseJsonBody(response);
}

Result<ApiAnswer> ApiClient::Put(std::string_view path, std::string_view bytes, std::string_view content_type,
                                 const FailureContext& context, std::span<const int> handled) {
  return SendForAnswer("PUT", path, bytes, content_type, context, handled);
}

Result<ApiAnswer> ApiClient::PostForAnswer(std::string_view path, const nlohmann::json& body,
                                           const FailureContext& context, std::span<const int> handled) {
  return SendForAnswer("POST", path, body.dump(), "application/json", context, handled);
}

Result<nlohmann::json> ApiClient::PostBytes(std::string_view path, std::string_view bytes,
                                            std::string_view content_type, const FailureContext& context) {
  CITADEL_TRY(auto response, Send("POST", path, bytes, content_type, true, context));
  return ParseJsonBody(response);
}

Result<nlohmann::json> ApiClient::Delete(std::string_view path, const FailureContext& context) {
  CITADEL_TRY(auto response, Send("DELETE", path, {}, {}, true, context));
  return ParseJsonBody(response);
}

Result<std::string> ApiClient::GetText(std::string_view path, const FailureContext& context) {
  CITADEL_TRY(auto response, Send("GET", path, {}, {}, true, context));
  return std::move(response.body);
}

Result<nlohmann::json> ApiClient::Health() {
  CITADEL_TRY(auto response, Send("GET", "/v1/health", {}, {}, false, {}));
  return ParseJsonBody(response);
}

Result<std::string> ApiClient::ResolveTenant(std::string_view override_id) {
  if (!override_id.empty()) return std::string(override_id);
  CITADEL_TRY(auto answer, Get("/v1/tenants"));
  auto tenants = answer.is_object() ? answer.value("tenants", nlohmann::json::array()) : nlohmann::json();
  if (!tenants.is_array()) {
    return Fail(ExitCode::kError, "unexpected answer to GET /v1/tenants (no \"tenants\" array)");
  }
  if (tenants.size() == 1 && tenants[0].is_object() && tenants[0].contains("id") && tenants[0]["id"].is_string()) {
    return tenants[0]["id"].get<std::string>();
  }
  if (tenants.empty()) {
    return Fail(ExitCode::kUsage, "this token sees no tenant",
                "with the operator token, create a tenant (`citadel tenant create NAME`) or name one "
                "with --tenant ID");
  }
  return Fail(ExitCode::kUsage, "this token sees " + std::to_string(tenants.size()) + " tenants; name the one to use",
              "pass --tenant ID (or set CITADEL_TENANT); `citadel tenant list` shows the IDs");
}

}  // namespace citadel::cli
