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

// The two canonical byte forms Citadel signs over. They share everything
// (no white space; object members sorted by key bytes, i.e. code point
// order; floats refused; nesting deeper than 64 refused) except:
//   kJcs   RFC 8785 (JCS) for Citadel's own protocol: strings escaped as
//          JSON ('"', '\\', control characters), integers within
//          ±(2^53 − 1) so every JSON implementation reads them exactly;
//   kOlpc  OLPC canonical JSON, securesystemslib's encode_canonical, which
//          TUF signatures cover: strings escape ONLY '"' and '\\' (every
//          other byte raw, so the output may not be valid JSON text: it is
//          only hashed or signed), integers of any magnitude. A TUF
//          signature over kJcs bytes would not verify in other TUF clients.
enum class CanonicalForm { kJcs, kOlpc };

// Returns the canonical bytes of value (kInvalidArgument on a float, an
// integer outside the form's range, a binary value or too deep nesting).
Expected<std::string> CanonicalJson(const Json& value, CanonicalForm form = CanonicalForm::kJcs);

}  // namespace citadel
