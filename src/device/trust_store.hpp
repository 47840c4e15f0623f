// The device's app trust, as learnt from the service at check-in and kept
// under DIR/trust (docs/PROTOCOL.md, "App trust"):
//
//   trust/publisher-keys.json   {"publisher_keys":[{"key_id","public_key_pem"}]}
//                               the tenant's active publisher keys: images
//                               signed by one of them may be installed
//   trust/app-development.json  the signed AppDevelopment capability
//                               envelope, present only while the service
//                               says development is enabled
//
// Security contract: nothing read from these files is trusted because of
// where it is. LoadPublisherKeys re-checks every key (P-256, key_id = SHA-256
// of its SPKI); the capability counts only after VerifyDevelopmentCapability
// has checked that it is signed by the issuing CA that certified this
// device (the first certificate of certs/chain.pem), that the signing
// certificate in the envelope is exactly that CA, and that it names this
// device and tenant. A file that fails any check grants nothing.
//
// Threading: free functions, no shared state. Writers replace files
// atomically (WriteFileAtomic), so a reader sees the old or the new file.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "protocol/protocol.hpp"

namespace citadel::device {

inline constexpr std::string_view kTrustDir = "trust";
inline constexpr std::string_view kPublisherKeysFile = "publisher-keys.json";
inline constexpr std::string_view kAppDevelopmentFile = "app-development.json";

// A capability that passed VerifyDevelopmentCapability.
struct DevelopmentCapability {
  std::string capability_id;
  // Keys the capability adds for sideloaded images (may be empty: then
  // sideloads must still be signed by a tenant publisher key).
  std::vector<crypto::PublicKey> developer_keys;
};

// Writes trust/publisher-keys.json (0644) unless it already holds exactly
// these keys. Every entry must pass protocol::PublisherKeyFromEntry.
[[nodiscard]] Expected<void> SavePublisherKeys(const std::filesystem::path& state_dir,
                                               std::span<const protocol::PublisherKeyEntry> keys);

// The tenant's publisher keys; empty when the file does not exist (the
// device has not checked in yet). Any malformed entry fails the whole load:
// a half-understood trust list is not used.
Expected<std::vector<crypto::PublicKey>> LoadPublisherKeys(const std::filesystem::path& state_dir);

// Checks an AppDevelopment envelope (JSON text) as docs/PROTOCOL.md says:
// structure, the envelope's certificate byte-equal to issuing_ca_certificate,
// the signature with that certificate's key over the canonical capability,
// Type, DeviceId == device_id and TenantId == tenant_id. kPermissionDenied
// for a well-formed capability that is not for this device; kCrypto for a
// bad signature or signer; kInvalidArgument/kParse/kTooLarge for malformed
// input.
[[nodiscard]] Expected<DevelopmentCapability> VerifyDevelopmentCapability(
    std::string_view envelope_json, std::string_view device_id, std::string_view tenant_id,
    const crypto::Certificate& issuing_ca_certificate);

// Writes trust/app-development.json (0644) unless it already holds exactly
// this text. The caller has verified it.
[[nodiscard]] Expected<void> SaveDevelopmentCapability(const std::filesystem::path& state_dir,
                                                       std::string_view envelope_json);
// Removes trust/app-development.json; no error when it is absent.
[[nodiscard]] Expected<void> RemoveDevelopmentCapability(const std::filesystem::path& state_dir);

// Reads and verifies trust/app-development.json against chain.front() (the
// issuing CA of the device's stored certs/chain.pem). kNotFound when there
// is no capability file; kFailedPrecondition when chain is empty.
[[nodiscard]] Expected<DevelopmentCapability> LoadDevelopmentCapability(const std::filesystem::path& state_dir,
                                                                        std::string_view device_id,
                                                                        std::string_view tenant_id,
                                                                        std::span<const crypto::Certificate> chain);

}  // namespace citadel::device
