// PublicKey and PrivateKey: ECDSA P-256 / SHA-256 over EVP_PKEY.
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "common/log.hpp"
#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

using internal::BioContents;
using internal::MakeOpenSslError;
using internal::ReadBio;

void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
void X509Deleter::operator()(X509* cert) const { X509_free(cert); }
void X509ReqDeleter::operator()(X509_REQ* req) const { X509_REQ_free(req); }

namespace {

std::shared_ptr<EVP_PKEY> SharePkey(EVP_PKEY* owned) { return {owned, EvpPkeyDeleter{}}; }

// Never prompt on a terminal for a passphrase: encrypted PEM is refused.
int RefusePassphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) { return -1; }

}  // namespace

// ---------------------------------------------------------------- PublicKey

Expected<PublicKey> PublicKey::FromSpkiDer(std::span<const std::uint8_t> der) {
  if (der.empty() || der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return MakeError(ErrorCode::kParse, "public key: empty or oversized DER");
  }
  const unsigned char* cursor = der.data();
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &cursor, static_cast<long>(der.size()));
  if (key == nullptr) return MakeOpenSslError(ErrorCode::kParse, "public key: not a DER SubjectPublicKeyInfo");
  auto shared = SharePkey(key);
  if (cursor != der.data() + der.size()) {
    return MakeError(ErrorCode::kParse, "public key: trailing bytes after SubjectPublicKeyInfo");
  }
  return PublicKey(std::move(shared));
}

Expected<PublicKey> PublicKey::FromPem(std::string_view pem) {
  BioPtr bio = ReadBio(pem);
  if (!bio) return MakeError(ErrorCode::kTooLarge, "public key: PEM too large");
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, RefusePassphrase, nullptr);
  if (key == nullptr) return MakeOpenSslError(ErrorCode::kParse, "public key: not a PEM PUBLIC KEY");
  return PublicKey(SharePkey(key));
}

PublicKey PublicKey::FromEvp(EVP_PKEY* key) {
  if (key != nullptr) EVP_PKEY_up_ref(key);
  return PublicKey(SharePkey(key));
}

Bytes PublicKey::SpkiDer() const {
  if (!key_) return {};
  return internal::EncodeDer(key_.get(), i2d_PUBKEY);
}

std::string PublicKey::Pem() const {
  if (!key_) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
    ERR_clear_error();
    return {};
  }
  return BioContents(bio.get());
}

bool PublicKey::Verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) const {
  if (!key_ || signature.empty()) return false;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
                  EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(), data.size()) == 1;
  ERR_clear_error();
  return ok;
}

bool PublicKey::VerifyDigest(const Sha256Digest& digest, std::span<const std::uint8_t> signature) const {
  if (!key_ || signature.empty()) return false;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  const bool ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
                  EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
                  EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(), digest.size()) == 1;
  ERR_clear_error();
  return ok;
}

bool PublicKey::IsP256() const {
  if (!key_ || EVP_PKEY_is_a(key_.get(), "EC") != 1) return false;
  char group[64] = {};
  std::size_t length = 0;
  if (EVP_PKEY_get_group_name(key_.get(), group, sizeof group, &length) != 1) {
    ERR_clear_error();
    return false;
  }
  // Providers may spell the curve "prime256v1", "P-256" or "secp256r1".
  int nid = OBJ_txt2nid(group);
  if (nid == NID_undef) nid = EC_curve_nist2nid(group);
  ERR_clear_error();
  return nid == NID_X9_62_prime256v1;
}

bool PublicKey::operator==(const PublicKey& other) const {
  if (!key_ || !other.key_) return !key_ && !other.key_;
  const bool equal = EVP_PKEY_eq(key_.get(), other.key_.get()) == 1;
  ERR_clear_error();
  return equal;
}

// --------------------------------------------------------------- PrivateKey

Expected<PrivateKey> PrivateKey::GenerateP256() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (key == nullptr) return MakeOpenSslError(ErrorCode::kCrypto, "generating a P-256 key");
  return PrivateKey(key);
}

Expected<PrivateKey> PrivateKey::FromPem(const SecretBytes& pem) {
  BioPtr bio = ReadBio(pem.reveal());
  if (!bio) return MakeError(ErrorCode::kTooLarge, "private key: PEM too large");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, RefusePassphrase, nullptr);
  // Never include OpenSSL's detail here: it cannot contain key bytes, but
  // keep the message independent of the secret's content all the same.
  ERR_clear_error();
  if (key == nullptr) {
    return MakeError(ErrorCode::kParse, "private key: not an unencrypted PEM private key");
  }
  return PrivateKey(key);
}

PrivateKey PrivateKey::Adopt(EVP_PKEY* key) { return PrivateKey(key); }

Expected<SecretBytes> PrivateKey::ToPem() const {
  if (!key_) return MakeError(ErrorCode::kFailedPrecondition, "private key: empty (moved-from)");
  // A secure-memory BIO: its buffer is cleansed when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "private key: cannot export as PKCS#8 (a hardware key?)");
  }
  return SecretBytes(BioContents(bio.get()));
}

PublicKey PrivateKey::Public() const {
  if (!key_) return PublicKey::FromEvp(nullptr);
  // Round-trip through SubjectPublicKeyInfo so the PublicKey never holds
  // (and its evp() never exposes) the private half.
  Bytes spki = internal::EncodeDer(key_.get(), i2d_PUBKEY);
  if (!spki.empty()) {
    if (auto key = PublicKey::FromSpkiDer(spki)) return *std::move(key);
  }
  ERR_clear_error();
  log::Warn("could not re-encode a public key; sharing the key object instead");
  return PublicKey::FromEvp(key_.get());
}

Expected<Bytes> PrivateKey::Sign(std::span<const std::uint8_t> data) const {
  if (!key_) return MakeError(ErrorCode::kFailedPrecondition, "private key: empty (moved-from)");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  std::size_t length = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &length, data.data(), data.size()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "signing");
  }
  Bytes signature(length);
  if (EVP_DigestSign(ctx.get(), signature.data(), &length, data.data(), data.size()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "signing");
  }
  signature.resize(length);
  return signature;
}

Expected<Bytes> PrivateKey::SignDigest(const Sha256Digest& digest) const {
  if (!key_) return MakeError(ErrorCode::kFailedPrecondition, "private key: empty (moved-from)");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  std::size_t length = 0;
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_sign(ctx.get(), nullptr, &length, digest.data(), digest.size()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "signing a digest");
  }
  Bytes signature(length);
  if (EVP_PKEY_sign(ctx.get(), signature.data(), &length, digest.data(), digest.size()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "signing a digest");
  }
  signature.resize(length);
  return signature;
}

}  // namespace citadel::crypto
