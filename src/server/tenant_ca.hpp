// Per-tenant certificate authorities.
//
// Each tenant gets a two-level CA at creation: a root (10 years) and an
// issuing CA (5 years, pathlen 0) that signs 24-hour device certificates.
// Both private keys are sealed with the service master key before they
// reach the store. TenantCaCache unseals an issuing key on first use and
// keeps it in memory for the process lifetime (docs/THREAT_MODEL.md).
//
// Threading: TenantCaCache is safe to use from all request threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/ttl_memo.hpp"
#include "crypto/crypto.hpp"
#include "store/store.hpp"

namespace citadel::server {

// Makes a fresh CA pair for tenant_id, keys sealed under master_key with
// the tenant id as associated data (a sealed key cannot be moved to another
// tenant's row).
Expected<store::TenantCa> CreateTenantCa(std::string_view tenant_id, std::string_view tenant_name,
                                         const crypto::SecretBytes& master_key);

// A tenant's CA, ready to issue and verify.
struct TenantAuthority {
  crypto::Certificate root;
  crypto::Certificate issuing;
  crypto::PrivateKey issuing_key;
  std::string chain_pem;  // issuing then root
};

class TenantCaCache {
 public:
  TenantCaCache(store::Store& store, const crypto::SecretBytes& master_key) : store_(store), master_key_(master_key) {}

  // kNotFound when the tenant does not exist.
  Expected<std::shared_ptr<const TenantAuthority>> Get(std::string_view tenant_id);
  // The tenant's authority when Get() has loaded it, else null; never
  // touches the store (for callers that must not block).
  std::shared_ptr<const TenantAuthority> Peek(std::string_view tenant_id);

  // The chain check of device authentication: `leaf` issued by the
  // authority's issuing CA, purpose clientAuth, valid at `now`. No store
  // access. A success is remembered by the certificate's SHA-256 until the
  // certificate expires or kVerifiedLeafTtl passes, whichever is first, so
  // a device's keep-alive requests cost a hash and a lookup instead of an
  // X.509 path validation each (docs/ARCHITECTURE.md, "Check-in cost").
  // Failures are not remembered. Revocation is not this check's business:
  // callers look the certificate up in the registry on every request.
  Expected<void> VerifyDevice(const crypto::Certificate& leaf, const TenantAuthority& authority, TimePoint now);

  static constexpr std::chrono::minutes kVerifiedLeafTtl{10};
  static constexpr std::size_t kMaxVerifiedLeaves = 262144;  // ~25 MB

 private:
  using ValidityWindow = std::pair<TimePoint, TimePoint>;  // not before, not after

  store::Store& store_;
  const crypto::SecretBytes& master_key_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const TenantAuthority>, std::less<>> cache_;
  // Verified device certificates by SHA-256: their validity window.
  TtlMemo<crypto::Sha256Digest, ValidityWindow> verified_{kVerifiedLeafTtl, kMaxVerifiedLeaves};
};

// Issues the 24-hour device certificate (docs/PROTOCOL.md "Identities").
Expected<crypto::Certificate> IssueDeviceCertificate(const TenantAuthority& authority, std::string_view tenant_id,
                                                     std::string_view device_id, const crypto::PublicKey& tls_key,
                                                     std::chrono::seconds lifetime);

// "citadel://tenant/<t>/device/<d>"
std::string DeviceUri(std::string_view tenant_id, std::string_view device_id);
struct DeviceUriParts {
  std::string tenant_id;
  std::string device_id;
};
Expected<DeviceUriParts> ParseDeviceUri(std::string_view uri);

}  // namespace citadel::server
