// Canonical JSON: the one byte form of every document Citadel signs.
//
// The rules (docs/PROTOCOL.md, "Canonical JSON") follow RFC 8785 (JCS) for
// the subset Citadel uses:
//   * no insignificant white space;
//   * object members sorted by key, comparing the UTF-8 bytes (Citadel keys
//     are ASCII, where this equals JCS's UTF-16 order);
//   * strings as UTF-8, escaping only '"', '\\' and control characters
//     (\b \f \n \r \t, others as \u00xx in lower-case hex);
//   * numbers must be integers in [-2^53+1, 2^53-1]; floats are refused so
//     that no two implementations can disagree on a number's text;
//   * duplicate keys are refused when parsing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace citadel {

using Json = nlohmann::json;

inline constexpr std::size_t kDefaultMaxJsonDepth = 32;

// Parses untrusted JSON text. Refuses invalid UTF-8, duplicate object keys,
// nesting deeper than max_depth, and trailing garbage. Never throws.
Expected<Json> ParseJsonStrict(std::string_view text, std::size_t max_depth = kDefaultMaxJsonDepth);

// Returns the canonical bytes of value, or an error if value holds a
// floating-point number or an integer outside the safe range.
Expected<std::string> CanonicalJson(const Json& value);

}  // namespace citadel
