#include "common/encoding.hpp"

#include <openssl/evp.h>

namespace citadel {

// Base64 goes through OpenSSL's EVP encoder rather than a hand-written table.
std::string Base64Encode(std::span<const std::uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Expected<Bytes> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return MakeError(ErrorCode::kParse, "base64 length is not a multiple of 4");
  if (text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
      std::string_view::npos) {
    return MakeError(ErrorCode::kParse, "not a base64 string");
  }
  Bytes out(3 * (text.size() / 4) + 1);
  int n =
      EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return MakeError(ErrorCode::kParse, "not a base64 string");
  // EVP_DecodeBlock counts padding as zero bytes; remove them.
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string Base64UrlEncode(std::span<const std::uint8_t> bytes) {
  std::string out = Base64Encode(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (auto& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

}  // namespace citadel
