// Local manufacturer CA for development: the CA whose certificates make a
// device "genuine" (docs/PROTOCOL.md, "Identities"). A real manufacturer
// keeps this key in an HSM; this one sits in a 0600 file and is meant for
// development boards and the virtual fleet only.
#pragma once

#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::cli {

inline constexpr const char* kManufacturerCaCertificateFile = "manufacturer-ca.pem";
inline constexpr const char* kManufacturerCaKeyFile = "manufacturer-ca.key";
inline constexpr const char* kDefaultManufacturerName = "Citadel Development Manufacturer";

struct ManufacturerCaOptions {
  std::filesystem::path directory;
  std::string name = kDefaultManufacturerName;
  bool force = false;  // replace an existing CA (its devices stop being genuine)
};

struct ManufacturerCa {
  std::filesystem::path certificate_path;
  std::filesystem::path key_path;
  crypto::Certificate certificate;
};

// Creates DIR/manufacturer-ca.pem (self-signed P-256 CA, CA:TRUE, 20 years)
// and DIR/manufacturer-ca.key (PKCS#8 PEM, mode 0600). kAlreadyExists when
// either file exists and !force. The key is written before the certificate,
// so a crash never leaves a certificate without its key.
Expected<ManufacturerCa> CreateManufacturerCa(const ManufacturerCaOptions& options);

// Loads DIR/manufacturer-ca.pem and checks DIR/manufacturer-ca.key is its key.
Expected<ManufacturerCa> LoadManufacturerCa(const std::filesystem::path& directory);

}  // namespace citadel::cli
