// Parsing and answering single broker messages (protocol.hpp): the part of
// the broker that reads untrusted bytes, kept free of sockets and state so
// it can be tested on its own.
//
// SECURITY: every function here treats its input as hostile: sizes are
// checked before parsing, JSON goes through ParseJsonStrict, and each field
// is checked for type and bound before use. Nothing throws.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"

namespace citadel::broker {

// A refused request: the errno the app sees and a message for its log.
struct Failure {
  int error_number = 0;
  std::string message;
};

template <typename T>
using Checked = std::expected<T, Failure>;

inline std::unexpected<Failure> Fail(int error_number, std::string message) {
  return std::unexpected<Failure>(Failure{error_number, std::move(message)});
}

struct Request {
  std::uint64_t id = 0;
  std::string op;
  Json body;  // the whole request object
};

// Parses one message. On failure, *id_out (when given) holds the request id
// if one could be read, so the error response can still be matched.
Checked<Request> ParseRequest(std::string_view message, std::optional<std::uint64_t>* id_out = nullptr);

// Typed field access; errors (EINVAL) name the field.
Checked<std::string> StringField(const Json& body, std::string_view name, std::size_t max_bytes);
Checked<std::uint64_t> UnsignedField(const Json& body, std::string_view name, std::uint64_t max);
Checked<std::int64_t> IntegerField(const Json& body, std::string_view name);
Checked<bool> BoolField(const Json& body, std::string_view name);
// Lower-case or upper-case hex; an absent field is an empty byte string
// only when optional is true.
Checked<Bytes> HexField(const Json& body, std::string_view name, std::size_t max_bytes, bool optional = false);

// Response text. `id` is null when the request's id could not be read.
std::string OkResponse(std::optional<std::uint64_t> id, Json results, bool has_fd);
std::string ErrorResponse(std::optional<std::uint64_t> id, const Failure& failure);

}  // namespace citadel::broker
