// HexEncode/HexDecode (common/encoding.hpp), apart from the OpenSSL-backed
// Base64 in encoding.cpp so that programs needing only hex (citadel-sandbox,
// which every app start execs) do not load libcrypto.
#include "common/encoding.hpp"

namespace citadel {

std::string HexEncode(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  return out;
}

Expected<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return MakeError(ErrorCode::kParse, "hex string has odd length");
  Bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexDigitValue(hex[i]);
    int lo = HexDigitValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return MakeError(ErrorCode::kParse, "not a hex string");
    out.push_back(static_cast<std::uint8_t>((hi << 4) | lo));
  }
  return out;
}

}  // namespace citadel
