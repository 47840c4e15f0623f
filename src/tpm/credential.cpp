#include "tpm/credential.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>

#include "crypto/openssl_ptr.hpp"

namespace citadel::tpm {
namespace {

// Sizes fixed by the EK template (TCG EK Credential Profile, template L-1).
constexpr std::size_t kDigestSize = 32;      // SHA-256, the EK's nameAlg
constexpr std::size_t kSymmetricBits = 128;  // AES-128-CFB
constexpr std::size_t kNameSize = 2 + kDigestSize;

// Key material on the heap that is wiped when it goes out of scope.
class WipedBytes {
 public:
  explicit WipedBytes(std::size_t size) : bytes_(size) {}
  explicit WipedBytes(Bytes bytes) : bytes_(std::move(bytes)) {}
  WipedBytes(const WipedBytes&) = delete;
  WipedBytes& operator=(const WipedBytes&) = delete;
  ~WipedBytes() {
    if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  }
  std::uint8_t* data() { return bytes_.data(); }
  std::span<const std::uint8_t> view() const { return bytes_; }
  std::size_t size() const { return bytes_.size(); }

 private:
  Bytes bytes_;
};

// KDFa (TPM 2.0 Part 1 §11.4.10.2) with SHA-256: SP 800-108 counter mode
// over HMAC, each block HMAC(key, [i]32 || label || 0x00 || context ||
// [bits]32). OpenSSL's KBKDF computes exactly that with its defaults (32-bit
// counter, the 0x00 separator, the 32-bit length): the label is its "salt",
// the context its "info". Checked byte for byte by activating in swtpm.
Expected<void> KdfaSha256(std::span<const std::uint8_t> key, const char* label, std::span<const std::uint8_t> context,
                          WipedBytes& out) {
  crypto::EvpKdfPtr kdf(EVP_KDF_fetch(nullptr, "KBKDF", nullptr));
  if (!kdf) return MakeError(ErrorCode::kCrypto, "tpm: OpenSSL has no KBKDF");
  crypto::EvpKdfCtxPtr kdf_context(EVP_KDF_CTX_new(kdf.get()));
  if (!kdf_context) return MakeError(ErrorCode::kCrypto, "tpm: out of memory");
  std::string mode = "counter";
  std::string mac = "HMAC";
  std::string digest = "SHA256";
  std::string label_text = label;
  Bytes key_copy(key.begin(), key.end());
  Bytes context_copy(context.begin(), context.end());
  std::array<OSSL_PARAM, 7> params{};
  std::size_t count = 0;
  params[count++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, mode.data(), 0);
  params[count++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, mac.data(), 0);
  params[count++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest.data(), 0);
  params[count++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key_copy.data(), key_copy.size());
  params[count++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, label_text.data(), label_text.size());
  if (!context_copy.empty()) {
    params[count++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, context_copy.data(), context_copy.size());
  }
  params[count] = OSSL_PARAM_construct_end();
  const int derived = EVP_KDF_derive(kdf_context.get(), out.data(), out.size(), params.data());
  OPENSSL_cleanse(key_copy.data(), key_copy.size());
  if (derived != 1) return MakeError(ErrorCode::kCrypto, std::string("tpm: KDFa ") + label + " failed");
  return kOk;
}

// RSA-OAEP with SHA-256 (the EK's nameAlg) and the label "IDENTITY" with its
// terminating NUL, as TPM2_ActivateCredential decrypts the seed.
Expected<Bytes> EncryptSeed(const crypto::PublicKey& ek_key, std::span<const std::uint8_t> seed) {
  crypto::EvpPkeyCtxPtr context(EVP_PKEY_CTX_new_from_pkey(nullptr, ek_key.evp(), nullptr));
  if (!context) return MakeError(ErrorCode::kCrypto, "tpm: out of memory");
  std::string pad_mode = OSSL_PKEY_RSA_PAD_MODE_OAEP;
  std::string digest = "SHA256";
  std::array<char, 9> label = {'I', 'D', 'E', 'N', 'T', 'I', 'T', 'Y', '\0'};
  const std::array<OSSL_PARAM, 5> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, pad_mode.data(), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, label.data(), label.size()),
      OSSL_PARAM_construct_end()};
  std::size_t size = 0;
  if (EVP_PKEY_encrypt_init_ex(context.get(), params.data()) != 1 ||
      EVP_PKEY_encrypt(context.get(), nullptr, &size, seed.data(), seed.size()) != 1) {
    return MakeError(ErrorCode::kCrypto, "tpm: RSA-OAEP encryption to the endorsement key failed");
  }
  Bytes encrypted(size);
  if (EVP_PKEY_encrypt(context.get(), encrypted.data(), &size, seed.data(), seed.size()) != 1) {
    return MakeError(ErrorCode::kCrypto, "tpm: RSA-OAEP encryption to the endorsement key failed");
  }
  encrypted.resize(size);
  return encrypted;
}

// AES-128-CFB with a zero IV (Part 1 §24.4: the key is used once).
Expected<Bytes> EncryptIdentity(std::span<const std::uint8_t> key, std::span<const std::uint8_t> plain) {
  crypto::EvpCipherCtxPtr context(EVP_CIPHER_CTX_new());
  const std::array<std::uint8_t, 16> iv{};
  Bytes encrypted(plain.size() + 16);
  int written = 0;
  int final_written = 0;
  if (!context || EVP_EncryptInit_ex2(context.get(), EVP_aes_128_cfb128(), key.data(), iv.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(context.get(), encrypted.data(), &written, plain.data(), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(context.get(), encrypted.data() + written, &final_written) != 1) {
    return MakeError(ErrorCode::kCrypto, "tpm: AES-128-CFB encryption of the credential failed");
  }
  encrypted.resize(static_cast<std::size_t>(written) + static_cast<std::size_t>(final_written));
  return encrypted;
}

Expected<void> CheckEndorsementKey(const PublicArea& ek) {
  const TPMT_PUBLIC& key = ek.area;
  auto refuse = [](const std::string& what) {
    return MakeError(ErrorCode::kInvalidArgument, "tpm: MakeCredential: " + what);
  };
  if (key.type != TPM2_ALG_RSA) return refuse("only RSA endorsement keys are supported");
  if (key.nameAlg != TPM2_ALG_SHA256) return refuse("the endorsement key's name algorithm is not SHA-256");
  if (key.parameters.rsaDetail.keyBits != 2048 || key.unique.rsa.size != 256) {
    return refuse("the endorsement key is not RSA 2048");
  }
  const TPMA_OBJECT attributes = key.objectAttributes;
  if ((attributes & TPMA_OBJECT_RESTRICTED) == 0 || (attributes & TPMA_OBJECT_DECRYPT) == 0 ||
      (attributes & TPMA_OBJECT_SIGN_ENCRYPT) != 0) {
    return refuse("the endorsement key is not a restricted decryption key");
  }
  const TPMT_SYM_DEF_OBJECT& symmetric = key.parameters.rsaDetail.symmetric;
  if (symmetric.algorithm != TPM2_ALG_AES || symmetric.keyBits.aes != kSymmetricBits ||
      symmetric.mode.aes != TPM2_ALG_CFB) {
    return refuse("the endorsement key's symmetric algorithm is not AES-128-CFB (the EK template's)");
  }
  if (key.parameters.rsaDetail.scheme.scheme != TPM2_ALG_NULL) {
    return refuse("the endorsement key has a scheme (a restricted decryption key has none)");
  }
  return kOk;
}

}  // namespace

Expected<Credential> MakeCredential(const PublicArea& ek, std::span<const std::uint8_t> object_name,
                                    std::span<const std::uint8_t> secret) {
  CITADEL_TRY_VOID(CheckEndorsementKey(ek));
  if (object_name.size() != kNameSize || object_name[0] != 0x00 || object_name[1] != TPM2_ALG_SHA256) {
    return MakeError(ErrorCode::kInvalidArgument, "tpm: MakeCredential: the object name is not a SHA-256 name (" +
                                                      std::to_string(object_name.size()) + " bytes)");
  }
  if (secret.empty() || secret.size() > kMaxCredentialSecretSize) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "tpm: MakeCredential: the secret must be 1 to 32 bytes, not " + std::to_string(secret.size()));
  }
  CITADEL_TRY(crypto::PublicKey ek_key, ToPublicKey(ek));

  // The seed is as long as the EK's nameAlg digest: the TPM refuses a
  // longer one (CryptSecretDecrypt) and a shorter one would only weaken it.
  WipedBytes seed(crypto::RandomBytes(kDigestSize));
  CITADEL_TRY(Bytes encrypted_seed, EncryptSeed(ek_key, seed.view()));

  WipedBytes symmetric_key(kSymmetricBits / 8);
  CITADEL_TRY_VOID(KdfaSha256(seed.view(), "STORAGE", object_name, symmetric_key));
  // The plaintext is the secret as a marshalled TPM2B_DIGEST.
  WipedBytes identity(2 + secret.size());
  identity.data()[0] = 0;
  identity.data()[1] = static_cast<std::uint8_t>(secret.size());
  std::copy(secret.begin(), secret.end(), identity.data() + 2);
  CITADEL_TRY(Bytes encrypted_identity, EncryptIdentity(symmetric_key.view(), identity.view()));

  WipedBytes hmac_key(kDigestSize);
  CITADEL_TRY_VOID(KdfaSha256(seed.view(), "INTEGRITY", {}, hmac_key));
  Bytes hmac_input = encrypted_identity;
  hmac_input.insert(hmac_input.end(), object_name.begin(), object_name.end());
  std::array<std::uint8_t, kDigestSize> outer_hmac{};
  std::size_t hmac_size = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, hmac_key.data(), hmac_key.size(), hmac_input.data(),
                hmac_input.size(), outer_hmac.data(), outer_hmac.size(), &hmac_size) == nullptr ||
      hmac_size != outer_hmac.size()) {
    return MakeError(ErrorCode::kCrypto, "tpm: HMAC-SHA256 of the credential failed");
  }

  // TPM2B_ID_OBJECT's buffer: TPM2B_DIGEST(outer HMAC) || encrypted identity.
  TPM2B_ID_OBJECT id_object{};
  const std::size_t id_size = 2 + outer_hmac.size() + encrypted_identity.size();
  if (id_size > sizeof id_object.credential) return MakeError(ErrorCode::kInternal, "tpm: credential too large");
  id_object.size = static_cast<UINT16>(id_size);
  id_object.credential[0] = 0;
  id_object.credential[1] = static_cast<BYTE>(outer_hmac.size());
  std::copy(outer_hmac.begin(), outer_hmac.end(), id_object.credential + 2);
  std::copy(encrypted_identity.begin(), encrypted_identity.end(), id_object.credential + 2 + outer_hmac.size());

  TPM2B_ENCRYPTED_SECRET encrypted_secret{};
  if (encrypted_seed.size() > sizeof encrypted_secret.secret) {
    return MakeError(ErrorCode::kInternal, "tpm: encrypted seed too large");
  }
  encrypted_secret.size = static_cast<UINT16>(encrypted_seed.size());
  std::copy(encrypted_seed.begin(), encrypted_seed.end(), encrypted_secret.secret);

  Credential credential;
  credential.credential_blob.resize(sizeof(TPM2B_ID_OBJECT));
  credential.encrypted_secret.resize(sizeof(TPM2B_ENCRYPTED_SECRET));
  std::size_t blob_offset = 0;
  std::size_t secret_offset = 0;
  if (Tss2_MU_TPM2B_ID_OBJECT_Marshal(&id_object, credential.credential_blob.data(), credential.credential_blob.size(),
                                      &blob_offset) != 0 ||
      Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&encrypted_secret, credential.encrypted_secret.data(),
                                             credential.encrypted_secret.size(), &secret_offset) != 0) {
    return MakeError(ErrorCode::kInternal, "tpm: marshalling the credential failed");
  }
  credential.credential_blob.resize(blob_offset);
  credential.encrypted_secret.resize(secret_offset);
  return credential;
}

}  // namespace citadel::tpm
