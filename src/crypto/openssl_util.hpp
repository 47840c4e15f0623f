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
#include "crypto/openssl_ptr.hpp"

namespace citadel::crypto::internal {

// The RAII owners (BioPtr, X509Ptr, ...) are in crypto/openssl_ptr.hpp.

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
