// Cryptography for Citadel, over OpenSSL 3. Nothing here implements a
// primitive; it gives OpenSSL's EVP/X509 APIs types that cannot be misused:
// keys own their EVP_PKEY, private keys cannot be copied or printed, and
// every operation returns Expected.
//
// Algorithms: ECDSA over NIST P-256 with SHA-256 for every signature;
// signatures are DER-encoded ECDSA-Sig-Value (as X.509 and TLS carry them).
//
// Threading: const methods may be called from several threads at once.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.hpp"
#include "common/error.hpp"
#include "common/time.hpp"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct x509_st X509;
typedef struct X509_req_st X509_REQ;

namespace citadel::crypto {

using Sha256Digest = std::array<std::uint8_t, 32>;

Sha256Digest Sha256(std::span<const std::uint8_t> data);
Sha256Digest Sha256(std::string_view data);
std::string Sha256Hex(std::string_view data);

// Cryptographically secure random bytes (OpenSSL's DRBG). Aborts the process
// if the DRBG fails: continuing without randomness would fail open.
Bytes RandomBytes(std::size_t count);

// Compares two byte strings in time that depends only on their lengths.
bool ConstantTimeEqual(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);
bool ConstantTimeEqual(std::string_view a, std::string_view b);

// Key material that must not outlive its use: zeroed (OPENSSL_cleanse) on
// destruction, non-copyable, no operator<<, no formatter.
class SecretBytes {
 public:
  SecretBytes() = default;
  // Takes the bytes and wipes whatever the argument's buffer still holds.
  explicit SecretBytes(std::string data);
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  // Deliberately verbose name: every call site that exposes a secret shows it.
  std::string_view reveal() const { return data_; }
  std::size_t size() const { return data_.size(); }

 private:
  std::string data_;
};

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
struct X509Deleter {
  void operator()(X509* cert) const;
};
struct X509ReqDeleter {
  void operator()(X509_REQ* req) const;
};

class PublicKey {
 public:
  static Expected<PublicKey> FromSpkiDer(std::span<const std::uint8_t> der);
  static Expected<PublicKey> FromPem(std::string_view pem);
  // Takes a reference on key (EVP_PKEY_up_ref); the caller keeps its own.
  static PublicKey FromEvp(EVP_PKEY* key);

  // DER SubjectPublicKeyInfo; the device ID is the SHA-256 of these bytes.
  Bytes SpkiDer() const;
  std::string Pem() const;
  // Verifies a DER ECDSA signature over SHA-256(data) / over a digest.
  bool Verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) const;
  bool VerifyDigest(const Sha256Digest& digest, std::span<const std::uint8_t> signature) const;
  bool IsP256() const;
  bool operator==(const PublicKey& other) const;

  EVP_PKEY* evp() const { return key_.get(); }

 private:
  explicit PublicKey(std::shared_ptr<EVP_PKEY> key) : key_(std::move(key)) {}
  std::shared_ptr<EVP_PKEY> key_;
};

// A private key. It may live in memory (software) or behind an OpenSSL
// provider (a TPM via tpm2-openssl): either way it is an EVP_PKEY and the
// same Sign/TLS code uses it.
class PrivateKey {
 public:
  static Expected<PrivateKey> GenerateP256();
  static Expected<PrivateKey> FromPem(const SecretBytes& pem);
  // Adopts an EVP_PKEY the caller created (e.g. loaded from a provider):
  // takes over the caller's reference (no EVP_PKEY_up_ref).
  static PrivateKey Adopt(EVP_PKEY* key);

  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;
  PrivateKey(PrivateKey&&) noexcept = default;
  PrivateKey& operator=(PrivateKey&&) noexcept = default;
  ~PrivateKey() = default;

  // PKCS#8 PEM, unencrypted. Only for writing a 0600 key file or sealing
  // into the store; never log it.
  Expected<SecretBytes> ToPem() const;
  PublicKey Public() const;
  // DER ECDSA signature over SHA-256(data) / over a precomputed digest.
  Expected<Bytes> Sign(std::span<const std::uint8_t> data) const;
  Expected<Bytes> SignDigest(const Sha256Digest& digest) const;

  EVP_PKEY* evp() const { return key_.get(); }

 private:
  explicit PrivateKey(EVP_PKEY* key) : key_(key) {}
  std::unique_ptr<EVP_PKEY, EvpPkeyDeleter> key_;
};

// AES-256-GCM sealing of small secrets (tenant CA keys in the store) under
// a 32-byte master key. Output: 12-byte nonce || ciphertext || 16-byte tag.
Expected<Bytes> SealSecret(const SecretBytes& master_key, std::string_view plaintext, std::string_view associated_data);
Expected<SecretBytes> OpenSecret(const SecretBytes& master_key, std::span<const std::uint8_t> sealed,
                                 std::string_view associated_data);

enum class ExtendedKeyUsage { kServerAuth, kClientAuth };

class Certificate {
 public:
  static Expected<Certificate> FromPem(std::string_view pem);
  static Expected<Certificate> FromDer(std::span<const std::uint8_t> der);
  // Takes a reference (X509_up_ref).
  static Certificate FromX509(X509* cert);

  std::string Pem() const;
  Bytes Der() const;
  std::string SubjectCommonName() const;
  std::string SubjectOneLine() const;  // RFC 2253 form
  std::string IssuerOneLine() const;
  std::string SerialHex() const;  // lower-case hex, no leading zeros
  TimePoint NotBefore() const;
  TimePoint NotAfter() const;
  PublicKey SubjectPublicKey() const;
  std::vector<std::string> UriSans() const;
  std::vector<std::string> DnsSans() const;
  bool IsCa() const;
  // SHA-256 over the DER encoding, lower-case hex.
  std::string FingerprintSha256() const;

  X509* x509() const { return cert_.get(); }

 private:
  explicit Certificate(std::shared_ptr<X509> cert) : cert_(std::move(cert)) {}
  std::shared_ptr<X509> cert_;
};

// Parses every CERTIFICATE block in a PEM bundle, in order. Refuses bundles
// with more than max_certificates blocks (untrusted input bound).
Expected<std::vector<Certificate>> ParsePemChain(std::string_view pem, std::size_t max_certificates = 8);
std::string ToPemChain(std::span<const Certificate> chain);

struct CertificateSpec {
  std::string common_name;
  std::string organization;                                       // optional
  std::optional<std::string> serial_hex;                          // random 128-bit serial when empty
  TimePoint not_before = Clock::now() - std::chrono::minutes(5);  // clock-skew allowance
  std::chrono::seconds lifetime = std::chrono::hours(24);
  bool is_ca = false;
  std::optional<int> path_length;                     // CA only
  std::vector<ExtendedKeyUsage> extended_key_usages;  // leaf only
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
};

// Issues a certificate for subject_key. With issuer == nullptr the
// certificate is self-signed by issuer_key (a root CA). Adds
// basicConstraints (critical), keyUsage (critical: keyCertSign+cRLSign for a
// CA, digitalSignature for a leaf), subject/authority key identifiers, and
// the EKUs and SANs of spec. The caller is responsible for issuer_key
// matching issuer.
Expected<Certificate> IssueCertificate(const CertificateSpec& spec, const PublicKey& subject_key,
                                       const Certificate* issuer, const PrivateKey& issuer_key);

class CertificateRequest {
 public:
  // A PKCS#10 request for key, signed by key (proof of possession).
  static Expected<CertificateRequest> Create(const PrivateKey& key, std::string_view common_name);
  static Expected<CertificateRequest> FromPem(std::string_view pem);

  std::string Pem() const;
  PublicKey SubjectPublicKey() const;
  std::string SubjectCommonName() const;
  // True when the request's self-signature verifies with its own key.
  bool VerifySignature() const;

 private:
  explicit CertificateRequest(std::shared_ptr<X509_REQ> req) : req_(std::move(req)) {}
  std::shared_ptr<X509_REQ> req_;
};

struct ChainVerification {
  std::optional<ExtendedKeyUsage> purpose;  // checked on the leaf when set
  std::optional<TimePoint> at;              // verification time; now when empty
};

// Verifies that leaf chains through intermediates to one of roots, with
// signatures, validity periods, basicConstraints and (when asked) purpose
// checked by OpenSSL's X509_verify_cert. The error message names why.
Expected<void> VerifyCertificateChain(const Certificate& leaf, std::span<const Certificate> intermediates,
                                      std::span<const Certificate> roots, const ChainVerification& options = {});

}  // namespace citadel::crypto
