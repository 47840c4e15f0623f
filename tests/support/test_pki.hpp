// Certificates for TLS tests, issued with crypto::IssueCertificate.
// Header-only, like temp_dir.hpp. A failure marks the test failed and
// aborts: no test goes on without the PKI it asked for.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "http/http.hpp"

namespace citadel::testing {

namespace pki_detail {
template <typename T>
T OrAbort(Expected<T> value, const char* what) {
  if (!value) {
    ADD_FAILURE() << what << ": " << value.error().message();
    std::abort();
  }
  return std::move(*value);
}
}  // namespace pki_detail

inline crypto::PrivateKey GenerateTestKey() {
  return pki_detail::OrAbort(crypto::PrivateKey::GenerateP256(), "generating a P-256 key");
}

// A CA certificate for key: self-signed when issuer is null, otherwise an
// intermediate signed by issuer_key.
inline crypto::Certificate IssueTestCa(const std::string& name, const crypto::PrivateKey& key,
                                       const crypto::Certificate* issuer = nullptr,
                                       const crypto::PrivateKey* issuer_key = nullptr) {
  crypto::CertificateSpec spec;
  spec.common_name = name;
  spec.is_ca = true;
  return pki_detail::OrAbort(
      crypto::IssueCertificate(spec, key.Public(), issuer, issuer_key != nullptr ? *issuer_key : key), "issuing a CA");
}

// A leaf for key with one extended key usage and the given SANs.
inline crypto::Certificate IssueTestLeaf(const std::string& name, const crypto::PrivateKey& key,
                                         const crypto::Certificate& issuer, const crypto::PrivateKey& issuer_key,
                                         crypto::ExtendedKeyUsage usage, std::vector<std::string> ip_sans,
                                         std::vector<std::string> dns_sans = {}) {
  crypto::CertificateSpec spec;
  spec.common_name = name;
  spec.extended_key_usages = {usage};
  spec.ip_sans = std::move(ip_sans);
  spec.dns_sans = std::move(dns_sans);
  return pki_detail::OrAbort(crypto::IssueCertificate(spec, key.Public(), &issuer, issuer_key), "issuing a leaf");
}

// A server CA and a server certificate naming 127.0.0.1, ::1 and localhost:
// what an HTTPS FileServer (support/file_server.hpp) needs, and the CA its
// clients pin. Not copyable (the identity points at key).
struct LoopbackServerPki {
  crypto::PrivateKey ca_key = GenerateTestKey();
  crypto::Certificate ca = IssueTestCa("test server CA", ca_key);
  crypto::PrivateKey key = GenerateTestKey();
  crypto::Certificate certificate = IssueTestLeaf("test server", key, ca, ca_key, crypto::ExtendedKeyUsage::kServerAuth,
                                                  {"127.0.0.1", "::1"}, {"localhost"});

  http::TlsIdentity Identity() const { return {certificate.Pem(), &key}; }
};

}  // namespace citadel::testing
