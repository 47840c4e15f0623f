// Which signers the device trusts for app images, and whether it accepts
// sideloads. TrustSource is the seam between the app store and wherever the
// device keeps that knowledge. citadeld uses DeviceTrustSource
// (device_trust.hpp, over src/device/trust_store.hpp); FileTrustSource is a
// self-contained implementation over the same files, for tests and tools
// that have no device credentials:
//
//   trust/publisher-keys.json   {"publisher_keys": [{"key_id", "public_key_pem"}]}
//                               (written by the device agent from the service)
//   trust/app-development.json  the AppDevelopment capability envelope
//
// Security contract: PublisherKeys() fails rather than return a partial
// list when the file is malformed; Development() re-verifies the stored
// envelope on every call (the device certificate may have changed since it
// was stored) and returns nullopt when there is none or it no longer
// verifies, so sideloads are refused. ApplyDevelopmentCapability stores an
// envelope only after it verified.
//
// Threading: FileTrustSource methods may be called from any thread; the
// identity callback must be thread-safe.
#pragma once

#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "apps/development.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::apps {

inline constexpr std::string_view kTrustDir = "trust";
inline constexpr std::string_view kPublisherKeysFile = "publisher-keys.json";
inline constexpr std::string_view kDevelopmentFile = "app-development.json";

class TrustSource {
 public:
  virtual ~TrustSource() = default;
  // The tenant's publisher keys; empty when the device has learnt none.
  virtual Expected<std::vector<crypto::PublicKey>> PublisherKeys() = 0;
  // The stored, currently valid development grant, or nullopt.
  virtual Expected<std::optional<DevelopmentGrant>> Development() = 0;
  // Verifies an envelope and, when valid, stores it.
  virtual Expected<DevelopmentGrant> ApplyDevelopmentCapability(std::string_view envelope_json) = 0;
};

class FileTrustSource : public TrustSource {
 public:
  using IdentityProvider = std::function<Expected<DeviceIdentity>()>;
  FileTrustSource(std::filesystem::path state_dir, IdentityProvider identity)
      : state_dir_(std::move(state_dir)), identity_(std::move(identity)) {}

  Expected<std::vector<crypto::PublicKey>> PublisherKeys() override;
  Expected<std::optional<DevelopmentGrant>> Development() override;
  Expected<DevelopmentGrant> ApplyDevelopmentCapability(std::string_view envelope_json) override;

 private:
  std::filesystem::path state_dir_;
  IdentityProvider identity_;
  std::mutex write_mutex_;
};

}  // namespace citadel::apps
