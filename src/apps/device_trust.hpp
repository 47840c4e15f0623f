// citadeld's TrustSource: the tenant's publisher keys and the development
// capability as the device agent keeps them (src/device/trust_store.hpp),
// checked against the device's validated certificate (certs/, whose key must
// be the RoT's TLS key).
//
// Security contract: the capability counts only while the stored device
// certificate validates and the capability verifies against its issuing CA,
// device id and tenant (re-checked on every call); any failure means "no
// development mode", never "development mode".
//
// Threading: safe from any thread (free functions over atomically replaced
// files; tls_key's const methods are thread-safe).
#pragma once

#include <filesystem>
#include <mutex>
#include <string>

#include "apps/trust.hpp"
#include "crypto/crypto.hpp"

namespace citadel::apps {

class DeviceTrustSource : public TrustSource {
 public:
  // tls_key: the RoT's TLS client key (rot::RootOfTrust::TlsClientKey().Public()).
  DeviceTrustSource(std::filesystem::path state_dir, std::string device_id, crypto::PublicKey tls_key)
      : state_dir_(std::move(state_dir)), device_id_(std::move(device_id)), tls_key_(std::move(tls_key)) {}

  Expected<std::vector<crypto::PublicKey>> PublisherKeys() override;
  Expected<std::optional<DevelopmentGrant>> Development() override;
  Expected<DevelopmentGrant> ApplyDevelopmentCapability(std::string_view envelope_json) override;

 private:
  std::filesystem::path state_dir_;
  std::string device_id_;
  crypto::PublicKey tls_key_;
  std::mutex write_mutex_;
};

}  // namespace citadel::apps
