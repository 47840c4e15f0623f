// What citadeld measures into the root of trust when it starts, so that the
// evidence it later presents says what is running:
//
//   register 0 (os):      name/version of the OS and SHA-256 of its image
//                         (--os-image) or, without one, of /etc/os-release;
//   register 1 (runtime): SHA-256 of the citadeld binary (/proc/self/exe);
//   register 2 (config):  SHA-256 of the canonical JSON of the device
//                         configuration document (--config) or, without
//                         one, of the effective run configuration.
//
// Registers start at zero each time the RoT is opened, so measuring once at
// start describes this boot of the runtime.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "rot/rot.hpp"

namespace citadel::device {

// The runtime's version (the project version), reported in evidence and
// check-ins.
std::string_view RuntimeVersion();

inline constexpr std::string_view kRuntimeName = "citadeld";
inline constexpr std::string_view kConfigName = "device-config";

// SHA-256 of a file's contents, read in chunks (OS images are large).
Expected<crypto::Sha256Digest> Sha256File(const std::filesystem::path& path);

// The settings that decide how the device behaves and whom it trusts; its
// canonical JSON is measured when no --config document is given. Excludes
// presentation-only settings (log level, --once).
struct EffectiveConfig {
  std::string rot_backend;
  std::string server_url;
  std::string server_ca_sha256;  // hex SHA-256 of the pinned CA PEM file
  std::string os_name;
  std::string os_version;
  std::string os_image;  // path, "" when measuring /etc/os-release
  std::chrono::seconds check_in_interval{0};
  std::chrono::seconds unclaimed_retry{0};
  std::chrono::seconds max_backoff{0};
};
Json EffectiveConfigToJson(const EffectiveConfig& config);

// SHA-256 of the canonical JSON of a configuration document (so white space
// and key order do not change the digest).
Expected<crypto::Sha256Digest> ConfigDigest(const Json& config);
// Same, for a JSON file (parsed strictly: duplicate keys are refused).
Expected<crypto::Sha256Digest> ConfigFileDigest(const std::filesystem::path& path);

struct MeasurementInputs {
  std::string os_name = "citadel-os";
  std::string os_version = "1.0.0";
  std::filesystem::path os_image;  // empty: measure os_release_path
  std::filesystem::path os_release_path = "/etc/os-release";
  std::filesystem::path runtime_binary = "/proc/self/exe";
  crypto::Sha256Digest config_digest{};
};

// The three boot events, in the order they are extended.
Expected<std::vector<rot::MeasurementEvent>> BootMeasurements(const MeasurementInputs& inputs);

// Computes the boot events and extends them into the RoT.
Expected<void> MeasureBoot(rot::RootOfTrust& rot, const MeasurementInputs& inputs);

}  // namespace citadel::device
