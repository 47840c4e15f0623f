// AES-256-GCM sealing of small secrets: nonce(12) || ciphertext || tag(16).
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

using internal::MakeOpenSslError;

namespace {

constexpr std::size_t kMasterKeySize = 32;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
// Sealing is for keys and tokens, not bulk data; the bound also keeps every
// length within OpenSSL's int parameters.
constexpr std::size_t kMaxSealedPlaintext = 1U << 24;

const unsigned char* KeyBytes(const SecretBytes& key) {
  return reinterpret_cast<const unsigned char*>(key.reveal().data());
}

}  // namespace

Expected<Bytes> SealSecret(const SecretBytes& master_key, std::string_view plaintext,
                           std::string_view associated_data) {
  if (master_key.size() != kMasterKeySize) {
    return MakeError(ErrorCode::kInvalidArgument, "sealing: the master key must be 32 bytes");
  }
  if (plaintext.size() > kMaxSealedPlaintext || associated_data.size() > kMaxSealedPlaintext) {
    return MakeError(ErrorCode::kTooLarge, "sealing: secret or associated data too large");
  }
  Bytes out = RandomBytes(kNonceSize);
  out.resize(kNonceSize + plaintext.size() + kTagSize);
  unsigned char* ciphertext = out.data() + kNonceSize;

  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int length = 0;
  int final_length = 0;
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), KeyBytes(master_key), out.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &length, AsBytes(associated_data).data(),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ciphertext, &length, AsBytes(plaintext).data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ciphertext + length, &final_length) != 1 ||
      static_cast<std::size_t>(length) + static_cast<std::size_t>(final_length) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize),
                          ciphertext + plaintext.size()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "sealing a secret");
  }
  return out;
}

Expected<SecretBytes> OpenSecret(const SecretBytes& master_key, std::span<const std::uint8_t> sealed,
                                 std::string_view associated_data) {
  if (master_key.size() != kMasterKeySize) {
    return MakeError(ErrorCode::kInvalidArgument, "opening: the master key must be 32 bytes");
  }
  if (sealed.size() < kNonceSize + kTagSize) {
    return MakeError(ErrorCode::kCrypto, "opening: sealed secret is truncated");
  }
  if (sealed.size() > kMaxSealedPlaintext + kNonceSize + kTagSize || associated_data.size() > kMaxSealedPlaintext) {
    return MakeError(ErrorCode::kTooLarge, "opening: sealed secret or associated data too large");
  }
  const std::size_t ciphertext_size = sealed.size() - kNonceSize - kTagSize;
  const std::uint8_t* ciphertext = sealed.data() + kNonceSize;
  // The tag parameter is not const in OpenSSL's signature; copy it.
  std::array<unsigned char, kTagSize> tag{};
  std::copy_n(ciphertext + ciphertext_size, kTagSize, tag.begin());

  // Decrypt straight into the SecretBytes' storage so no other copy of the
  // plaintext exists; on failure it is wiped by ~SecretBytes.
  std::string plaintext(ciphertext_size, '\0');
  auto* plain = reinterpret_cast<unsigned char*>(plaintext.data());
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int length = 0;
  int final_length = 0;
  bool ok = ctx &&
            EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), KeyBytes(master_key), sealed.data(), nullptr) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &length, AsBytes(associated_data).data(),
                              static_cast<int>(associated_data.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), plain, &length, ciphertext, static_cast<int>(ciphertext_size)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize), tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), plain + length, &final_length) == 1;
  SecretBytes result(std::move(plaintext));
  internal::Wipe(plaintext);
  if (!ok) {
    return MakeOpenSslError(ErrorCode::kCrypto,
                            "opening: authentication failed (wrong key, wrong context, or tampered)");
  }
  return result;
}

}  // namespace citadel::crypto
