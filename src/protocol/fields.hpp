// Field shorthands shared by the protocol's parsers (protocol.cpp,
// failure_report.cpp). Internal to citadel_protocol: other components use
// common/json_fields.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"

namespace citadel::protocol::detail {

// The largest integer every JSON implementation reads exactly (2^53 - 1).
inline constexpr std::int64_t kMaxSafeInteger = (std::int64_t{1} << 53) - 1;

// Size check, then ParseJsonStrict with the protocol's nesting bound; `what`
// names the message in errors ("check-in").
Expected<Json> ParseBody(std::string_view body, std::size_t max_bytes, std::string_view what);
bool IsLowerHex(std::string_view text);
// Look `key` up in `object` (at `path`) and read it; an absent optional
// string reads as "".
Expected<std::string> RequiredString(const Json& object, std::string_view path, std::string_view key,
                                     std::size_t max_bytes, bool allow_empty);
Expected<std::string> OptionalString(const Json& object, std::string_view path, std::string_view key,
                                     std::size_t max_bytes);
Expected<std::int64_t> RequiredInteger(const Json& object, std::string_view path, std::string_view key,
                                       std::int64_t min, std::int64_t max);
// A base64 string field decoding to 1..max_bytes bytes ("expected base64
// of at most N bytes" otherwise).
Expected<Bytes> RequiredBase64(const Json& object, std::string_view path, std::string_view key, std::size_t max_bytes);

}  // namespace citadel::protocol::detail
