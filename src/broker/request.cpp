#include "broker/request.hpp"

#include <cerrno>

#include "broker/protocol.hpp"

namespace citadel::broker {

namespace {

constexpr std::size_t kMaxOpBytes = 32;
// Responses carry short messages; a request field echoed into one is cut.
constexpr std::size_t kMaxErrorMessageBytes = 512;

std::string FieldError(std::string_view name, std::string_view problem) {
  return "field \"" + std::string(name) + "\" " + std::string(problem);
}

const Json* FindField(const Json& body, std::string_view name) {
  auto it = body.find(name);
  return it == body.end() ? nullptr : &*it;
}

}  // namespace

Checked<Request> ParseRequest(std::string_view message, std::optional<std::uint64_t>* id_out) {
  if (message.size() > protocol::kMaxMessageBytes) return Fail(EMSGSIZE, "request exceeds the message size limit");
  if (message.empty()) return Fail(EINVAL, "empty request");
  auto parsed = ParseJsonStrict(message);
  if (!parsed) return Fail(EINVAL, "malformed request: " + parsed.error().message());
  if (!parsed->is_object()) return Fail(EINVAL, "request is not a JSON object");
  Request request;
  auto id = UnsignedField(*parsed, "id", UINT64_MAX);
  if (!id) return std::unexpected(id.error());
  request.id = *id;
  if (id_out != nullptr) *id_out = *id;
  auto op = StringField(*parsed, "op", kMaxOpBytes);
  if (!op) return std::unexpected(op.error());
  if (op->empty()) return Fail(EINVAL, FieldError("op", "is empty"));
  request.op = std::move(*op);
  request.body = std::move(*parsed);
  return request;
}

Checked<std::string> StringField(const Json& body, std::string_view name, std::size_t max_bytes) {
  const Json* field = FindField(body, name);
  if (field == nullptr) return Fail(EINVAL, FieldError(name, "is missing"));
  if (!field->is_string()) return Fail(EINVAL, FieldError(name, "is not a string"));
  const auto& text = field->get_ref<const std::string&>();
  if (text.size() > max_bytes) return Fail(EINVAL, FieldError(name, "is too long"));
  return text;
}

Checked<std::uint64_t> UnsignedField(const Json& body, std::string_view name, std::uint64_t max) {
  const Json* field = FindField(body, name);
  if (field == nullptr) return Fail(EINVAL, FieldError(name, "is missing"));
  if (!field->is_number_unsigned()) {
    // nlohmann stores non-negative literals as unsigned; anything else is
    // negative, fractional or not a number.
    return Fail(EINVAL, FieldError(name, "is not a non-negative integer"));
  }
  auto value = field->get<std::uint64_t>();
  if (value > max) return Fail(EINVAL, FieldError(name, "is out of range"));
  return value;
}

Checked<std::int64_t> IntegerField(const Json& body, std::string_view name) {
  const Json* field = FindField(body, name);
  if (field == nullptr) return Fail(EINVAL, FieldError(name, "is missing"));
  if (field->is_number_integer() && !field->is_number_unsigned()) return field->get<std::int64_t>();
  if (field->is_number_unsigned()) {
    auto value = field->get<std::uint64_t>();
    if (value > static_cast<std::uint64_t>(INT64_MAX)) return Fail(EINVAL, FieldError(name, "is out of range"));
    return static_cast<std::int64_t>(value);
  }
  return Fail(EINVAL, FieldError(name, "is not an integer"));
}

Checked<bool> BoolField(const Json& body, std::string_view name) {
  const Json* field = FindField(body, name);
  if (field == nullptr) return Fail(EINVAL, FieldError(name, "is missing"));
  if (!field->is_boolean()) return Fail(EINVAL, FieldError(name, "is not a boolean"));
  return field->get<bool>();
}

Checked<Bytes> HexField(const Json& body, std::string_view name, std::size_t max_bytes, bool optional) {
  const Json* field = FindField(body, name);
  if (field == nullptr) {
    if (optional) return Bytes{};
    return Fail(EINVAL, FieldError(name, "is missing"));
  }
  if (!field->is_string()) return Fail(EINVAL, FieldError(name, "is not a hex string"));
  const auto& text = field->get_ref<const std::string&>();
  if (text.size() > 2 * max_bytes) return Fail(EINVAL, FieldError(name, "is too long"));
  auto bytes = HexDecode(text);
  if (!bytes) return Fail(EINVAL, FieldError(name, "is not valid hex"));
  return std::move(*bytes);
}

std::string OkResponse(std::optional<std::uint64_t> id, Json results, bool has_fd) {
  Json response = results.is_object() ? std::move(results) : Json::object();
  response["id"] = id ? Json(*id) : Json(nullptr);
  response["ok"] = true;
  if (has_fd) response["fd"] = true;
  // The broker writes only valid UTF-8 it produced or checked, so dump()
  // cannot throw; replace keeps that true if a board name ever is not.
  return response.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ErrorResponse(std::optional<std::uint64_t> id, const Failure& failure) {
  Json response = Json::object();
  response["id"] = id ? Json(*id) : Json(nullptr);
  response["ok"] = false;
  response["errno"] = failure.error_number;
  response["error"] = failure.message.substr(0, kMaxErrorMessageBytes);
  return response.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace citadel::broker
