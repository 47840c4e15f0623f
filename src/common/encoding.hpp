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
// Inline so that code needing only this (the sandbox helper) does not link
// the rest of this unit, and with it OpenSSL.
inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Lower-case hex.
std::string HexEncode(std::span<const std::uint8_t> bytes);
Expected<Bytes> HexDecode(std::string_view hex);

// Standard base64 (RFC 4648 section 4) with padding; base64url without.
std::string Base64Encode(std::span<const std::uint8_t> bytes);
Expected<Bytes> Base64Decode(std::string_view text);
std::string Base64UrlEncode(std::span<const std::uint8_t> bytes);

}  // namespace citadel
