// Factory provisioning: gives a device's identity key a manufacturer
// certificate, the proof the service checks that the device is genuine.
//
// In production the factory line holds the manufacturer CA key (ideally in
// an HSM) and the device only ever sees its certificate. For development,
// `citadeld provision --manufacturer-ca DIR` plays the factory with the CA
// created by `citadel manufacturer create-ca` (DIR/manufacturer-ca.pem and
// DIR/manufacturer-ca.key, PKCS#8 PEM).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "common/time.hpp"
#include "crypto/crypto.hpp"
#include "rot/rot.hpp"

namespace citadel::device {

// O= of manufacturer certificates when the CA's subject has no O.
inline constexpr std::string_view kDefaultManufacturerOrganization = "Citadel Development Manufacturer";
// Manufacturer certificates cover the device's whole service life.
inline constexpr std::chrono::seconds kManufacturerCertificateLifetime = std::chrono::days(20 * 365 + 5);

inline constexpr std::string_view kManufacturerCaCertificateFile = "manufacturer-ca.pem";
inline constexpr std::string_view kManufacturerCaKeyFile = "manufacturer-ca.key";

struct ManufacturerCa {
  crypto::Certificate certificate;
  crypto::PrivateKey key;
};

// Loads and checks a manufacturer CA directory: the certificate must be a
// CA and the key must be its key.
Expected<ManufacturerCa> LoadManufacturerCa(const std::filesystem::path& ca_dir);

// The subject organisation (O=) of a certificate, "" when it has none.
std::string SubjectOrganization(const crypto::Certificate& certificate);

// The manufacturer certificate's profile for a device: CN = device id,
// O = the CA's O (or kDefaultManufacturerOrganization), 20 years, not a CA.
crypto::CertificateSpec ManufacturerCertificateSpec(std::string_view device_id, const crypto::Certificate& ca,
                                                    TimePoint now);

struct ProvisionResult {
  std::string device_id;
  bool newly_provisioned = false;  // false: the RoT already held a chain
};

// Issues the identity key's manufacturer certificate and stores the chain
// [leaf, manufacturer CA] in the RoT. Idempotent: a RoT that already holds
// a manufacturer chain is left as it is (a factory never re-certifies a
// device) and the result says so.
Expected<ProvisionResult> ProvisionWithManufacturerCa(rot::RootOfTrust& rot, const ManufacturerCa& ca,
                                                      TimePoint now = Clock::now());

// True when the RoT holds a non-empty manufacturer chain.
Expected<bool> HasManufacturerChain(const rot::RootOfTrust& rot);

}  // namespace citadel::device
