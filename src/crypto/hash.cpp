// Digests, randomness, constant-time comparison and SecretBytes.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>

#include "common/log.hpp"
#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

Sha256Digest Sha256(std::span<const std::uint8_t> data) {
  Sha256Digest digest{};
  unsigned int length = 0;
  // SHA-256 from the default provider cannot fail short of memory
  // exhaustion; an all-zero digest would silently match other failures, so
  // treat failure like a DRBG failure.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    log::Error("SHA-256 failed in OpenSSL; aborting");
    std::abort();
  }
  return digest;
}

Sha256Digest Sha256(std::string_view data) { return Sha256(AsBytes(data)); }

std::string Sha256Hex(std::string_view data) { return HexEncode(Sha256(data)); }

Bytes RandomBytes(std::size_t count) {
  Bytes out(count);
  std::size_t done = 0;
  while (done < count) {
    const std::size_t chunk = std::min<std::size_t>(count - done, 1U << 20);
    if (RAND_bytes(out.data() + done, static_cast<int>(chunk)) != 1) {
      log::Error("OpenSSL DRBG failed; aborting rather than continuing without randomness");
      std::abort();
    }
    done += chunk;
  }
  return out;
}

bool ConstantTimeEqual(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) { return ConstantTimeEqual(AsBytes(a), AsBytes(b)); }

using internal::Wipe;

SecretBytes::SecretBytes(std::string data) : data_(std::move(data)) { Wipe(data); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(std::move(other.data_)) { Wipe(other.data_); }

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe(data_);
    data_ = std::move(other.data_);
    Wipe(other.data_);
  }
  return *this;
}

SecretBytes::~SecretBytes() { Wipe(data_); }

}  // namespace citadel::crypto
