// The device certificate the service issued after attestation, kept in
// DIR/certs so a restarted runtime can keep using it:
//
//   certs/device.pem             the device certificate (leaf)
//   certs/chain.pem              issuing CA then root CA, as the service sent them
//   certs/device-full-chain.pem  leaf then issuing CA: what apps and TLS
//                                clients present (the root is the peer's
//                                trust anchor, not sent)
//
// The private key is not here: it is the RoT's TLS client key.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/time.hpp"
#include "crypto/crypto.hpp"

namespace citadel::device {

inline constexpr std::string_view kCertsDir = "certs";
inline constexpr std::string_view kDeviceCertificateFile = "device.pem";
inline constexpr std::string_view kChainFile = "chain.pem";
inline constexpr std::string_view kFullChainFile = "device-full-chain.pem";

struct DeviceCredentials {
  crypto::Certificate certificate;
  std::vector<crypto::Certificate> chain;  // issuing CA ... root CA
  std::string tenant_id;                   // from the URI SAN

  // Leaf and every chain certificate except the root, PEM.
  std::string FullChainPem() const;
};

// "citadel://tenant/<tenant>/device/<device>" -> tenant; "" when no URI SAN
// has that form.
std::string TenantFromUriSans(const std::vector<std::string>& uri_sans, std::string_view device_id);

// Checks a device certificate before the device relies on it: its key is
// the RoT's TLS key, its CN is this device, and it chains through `chain`
// to the chain's last certificate for clientAuth at `now`. A certificate
// failing any check is refused: using it would only earn a 401 later, or
// mean the service (or someone in its place) sent a certificate for another
// key.
Expected<DeviceCredentials> ValidateCredentials(const crypto::Certificate& certificate,
                                                std::vector<crypto::Certificate> chain,
                                                const crypto::PublicKey& tls_key, std::string_view device_id,
                                                TimePoint now);

// Writes the three files atomically, device.pem last: a crash part-way
// leaves the previous device.pem, which LoadCredentials re-validates.
Expected<void> SaveCredentials(const std::filesystem::path& state_dir, const DeviceCredentials& credentials);

// Loads and validates the stored certificate; kNotFound when none is stored.
Expected<DeviceCredentials> LoadCredentials(const std::filesystem::path& state_dir, const crypto::PublicKey& tls_key,
                                            std::string_view device_id, TimePoint now);

}  // namespace citadel::device
