// Internal to citadel_crypto: RAII owners for OpenSSL objects and the one
// place OpenSSL's thread-local error queue is turned into an Error.
// Not part of the component's interface; do not include from other components.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <climits>
#include <memory>
#include <string>
#include <string_view>

#include "common/encoding.hpp"
#include "common/error.hpp"

namespace citadel::crypto::internal {

template <auto kFree>
struct Free {
  template <typename T>
  void operator()(T* object) const {
    kFree(object);
  }
};

using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Free<EVP_CIPHER_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, Free<X509_REQ_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Free<X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;

// Builds an Error "context: <first OpenSSL error>" and clears the thread's
// OpenSSL error queue so a stale entry never explains a later failure.
Error OpenSslError(ErrorCode code, std::string_view context);
inline std::unexpected<Error> MakeOpenSslError(ErrorCode code, std::string_view context) {
  return std::unexpected<Error>(OpenSslError(code, context));
}

// Zeroes a string's whole buffer, not just size(): a moved-from short string
// keeps its old characters in the inline buffer, and a shrunk one past size().
void Wipe(std::string& data) noexcept;

// A read-only memory BIO over text; nullptr if the text exceeds INT_MAX.
BioPtr ReadBio(std::string_view text);
// Everything written to a memory BIO, as a string.
std::string BioContents(BIO* bio);

// DER-encodes with an OpenSSL i2d_* function; empty on failure.
template <typename T, typename Encode>
Bytes EncodeDer(const T* object, Encode encode) {
  int length = encode(object, nullptr);
  if (length <= 0) return {};
  Bytes out(static_cast<std::size_t>(length));
  unsigned char* cursor = out.data();
  if (encode(object, &cursor) != length) return {};
  return out;
}

}  // namespace citadel::crypto::internal
