// The AppDevelopment capability: a tenant's signed statement that one device
// may accept sideloaded apps (docs/helpers/CONTRACTS.md, "Development
// capability"). Envelope:
//
//   {"capability": {"Type": "AppDevelopment", "DeviceId": "<64 hex>",
//                   "TenantId": "...", "IssuedAt": "RFC 3339",
//                   "CapabilityId": "<uuid>", "DeveloperKeys": [SPKI b64]?},
//    "signature": "<b64 DER ECDSA over SHA-256(CanonicalJson(capability))>",
//    "certificate": "<PEM of the tenant issuing CA>"}
//
// Security contract: VerifyDevelopmentEnvelope accepts an envelope only when
// device::VerifyDevelopmentCapability (src/device/trust_store.hpp, the one
// implementation of the check) does: its certificate is exactly the issuing
// CA that certified this device (the first certificate of certs/chain.pem),
// the signature verifies with that certificate's key over the canonical
// capability, and DeviceId/TenantId are this device's.
// Developer keys grant nothing by themselves: the app store adds them to the
// trusted signers of sideloads only.
//
// Threading: free functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::apps {

inline constexpr std::size_t kMaxCapabilityBytes = 64 * 1024;

// Who this device is, as far as the capability check needs.
struct DeviceIdentity {
  std::string device_id;  // 64 lower-case hex
  std::string tenant_id;  // of the stored device certificate; "" when none
  // The issuing CA that certified the device; nullopt before attestation.
  std::optional<crypto::Certificate> issuing_ca;
};

struct DevelopmentGrant {
  std::string capability_id;
  std::string device_id;
  std::string tenant_id;
  std::string issued_at;
  std::vector<crypto::PublicKey> developer_keys;
};

[[nodiscard]] Expected<DevelopmentGrant> VerifyDevelopmentEnvelope(std::string_view envelope_json,
                                                                   const DeviceIdentity& device);

}  // namespace citadel::apps
