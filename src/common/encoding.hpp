// Hex and base64 text forms of byte strings.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel {

using Bytes = std::vector<std::uint8_t>;

inline std::span<const std::uint8_t> AsBytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}
inline std::string_view AsText(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The value of one hex digit (either case), or -1.
int HexDigitValue(char c);

// Lower-case hex.
std::string HexEncode(std::span<const std::uint8_t> bytes);
Expected<Bytes> HexDecode(std::string_view hex);

// Standard base64 (RFC 4648 section 4) with padding; base64url without.
std::string Base64Encode(std::span<const std::uint8_t> bytes);
Expected<Bytes> Base64Decode(std::string_view text);
std::string Base64UrlEncode(std::span<const std::uint8_t> bytes);

}  // namespace citadel
