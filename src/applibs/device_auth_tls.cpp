// DeviceAuth_SslCtxConfigure: makes an app's OpenSSL SSL_CTX present the
// device certificate chain and sign the TLS handshake through the broker,
// so the device key never enters the app.
//
// How: the SSL_CTX gets an EVP_PKEY holding only the device's PUBLIC key in
// an EC_KEY whose EC_KEY_METHOD signs by calling DeviceAuth_SignDigest. Such
// a "foreign" key makes OpenSSL take its legacy EVP path, which calls the
// method's sign functions for the handshake signature.
//
// Why deprecated APIs: OpenSSL 3.0 deprecates EC_KEY/EC_KEY_METHOD in favour
// of writing a provider; a provider for one signing callback would be far
// larger (key management, encoders, signature dispatch tables) for the same
// effect, and EC_KEY_METHOD remains supported throughout 3.x. Hence
// OPENSSL_SUPPRESS_DEPRECATED in this one file.
//
// Digest lengths: the device key is P-256 (CONTRACTS.md). ECDSA uses the
// leftmost 256 bits of any digest as the integer to sign, so a longer digest
// (e.g. SHA-384 chosen by a TLS 1.2 peer) is signed by passing its first 32
// bytes, and a shorter one by left-padding it with zeros (same integer):
// the signature is exactly what a local key would produce.
//
// Threading: the EC_KEY_METHOD is created once; signing goes through the
// (serialised) broker channel and may run on any thread.
#define OPENSSL_SUPPRESS_DEPRECATED

#pragma GCC visibility push(default)
#include "applibs/applibs.h"
#pragma GCC visibility pop

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "crypto/openssl_ptr.hpp"

namespace {

constexpr std::size_t kDigestBytes = 32;
constexpr std::size_t kMaxSignatureBytes = 72;  // DER ECDSA P-256
constexpr int kMaxChainCertificates = 8;

using citadel::crypto::BioPtr;
using citadel::crypto::EvpPkeyPtr;
using citadel::crypto::Free;
using citadel::crypto::X509Ptr;
using EcKeyPtr = std::unique_ptr<EC_KEY, Free<EC_KEY_free>>;

// Signs through the broker; returns the DER signature length or 0.
std::size_t SignThroughBroker(const unsigned char* digest, int digest_length, unsigned char* out,
                              std::size_t capacity) {
  if (digest == nullptr || digest_length <= 0) return 0;
  std::array<std::uint8_t, kDigestBytes> integer{};
  auto length = static_cast<std::size_t>(digest_length);
  if (length >= kDigestBytes) {
    std::memcpy(integer.data(), digest, kDigestBytes);
  } else {
    std::memcpy(integer.data() + (kDigestBytes - length), digest, length);
  }
  std::size_t signature_length = capacity;
  if (DeviceAuth_SignDigest(integer.data(), out, &signature_length) != 0) return 0;
  return signature_length;
}

int SignCallback(int /*type*/, const unsigned char* digest, int digest_length, unsigned char* signature,
                 unsigned int* signature_length, const BIGNUM* /*kinv*/, const BIGNUM* /*r*/, EC_KEY* key) {
  int capacity = ECDSA_size(key);
  if (capacity <= 0 || signature == nullptr || signature_length == nullptr) return 0;
  std::size_t length = SignThroughBroker(digest, digest_length, signature, static_cast<std::size_t>(capacity));
  if (length == 0) return 0;
  *signature_length = static_cast<unsigned int>(length);
  return 1;
}

ECDSA_SIG* SignSigCallback(const unsigned char* digest, int digest_length, const BIGNUM* /*kinv*/, const BIGNUM* /*r*/,
                           EC_KEY* /*key*/) {
  std::array<unsigned char, kMaxSignatureBytes> der{};
  std::size_t length = SignThroughBroker(digest, digest_length, der.data(), der.size());
  if (length == 0) return nullptr;
  const unsigned char* cursor = der.data();
  return d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(length));
}

const EC_KEY_METHOD* BrokerKeyMethod() {
  static EC_KEY_METHOD* method = [] {
    EC_KEY_METHOD* created = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    if (created != nullptr) EC_KEY_METHOD_set_sign(created, SignCallback, nullptr, SignSigCallback);
    return created;
  }();
  return method;
}

int Failed(int error_number) {
  ERR_clear_error();
  errno = error_number;
  return -1;
}

int Configure(SSL_CTX* context) {
  std::size_t length = 0;
  if (DeviceAuth_GetCertificateChainPem(nullptr, &length) != 0) return -1;
  std::string pem(length, '\0');
  if (DeviceAuth_GetCertificateChainPem(pem.data(), &length) != 0) return -1;
  pem.resize(length > 0 ? length - 1 : 0);
  if (pem.size() > INT_MAX) return Failed(EIO);

  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Failed(ENOMEM);
  X509Ptr leaf(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!leaf) return Failed(EIO);

  EVP_PKEY* leaf_key = X509_get0_pubkey(leaf.get());
  const EC_KEY* leaf_ec = leaf_key != nullptr ? EVP_PKEY_get0_EC_KEY(leaf_key) : nullptr;
  if (leaf_ec == nullptr) return Failed(EIO);  // the device key is always EC P-256
  const EC_KEY_METHOD* method = BrokerKeyMethod();
  if (method == nullptr) return Failed(ENOMEM);
  EcKeyPtr key(EC_KEY_new());
  if (!key || EC_KEY_set_method(key.get(), method) != 1 ||
      EC_KEY_set_group(key.get(), EC_KEY_get0_group(leaf_ec)) != 1 ||
      EC_KEY_set_public_key(key.get(), EC_KEY_get0_public_key(leaf_ec)) != 1) {
    return Failed(EIO);
  }
  EvpPkeyPtr private_key(EVP_PKEY_new());
  if (!private_key || EVP_PKEY_set1_EC_KEY(private_key.get(), key.get()) != 1) return Failed(ENOMEM);

  if (SSL_CTX_use_certificate(context, leaf.get()) != 1 || SSL_CTX_use_PrivateKey(context, private_key.get()) != 1 ||
      SSL_CTX_check_private_key(context) != 1 || SSL_CTX_clear_chain_certs(context) != 1) {
    return Failed(EIO);
  }
  for (int i = 0; i < kMaxChainCertificates; ++i) {
    X509Ptr issuer(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!issuer) break;  // end of the bundle
    if (SSL_CTX_add1_chain_cert(context, issuer.get()) != 1) return Failed(EIO);
  }
  ERR_clear_error();  // the end-of-bundle read leaves a PEM "no start line" entry
  return 0;
}

}  // namespace

extern "C" int DeviceAuth_SslCtxConfigure(void* ssl_ctx) {
  if (ssl_ctx == nullptr) {
    errno = EINVAL;
    return -1;
  }
  try {
    return Configure(static_cast<SSL_CTX*>(ssl_ctx));
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
  } catch (...) {
    errno = EIO;
  }
  return -1;
}
