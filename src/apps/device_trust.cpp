#include "apps/device_trust.hpp"

#include "common/log.hpp"
#include "common/time.hpp"
#include "device/credentials.hpp"
#include "device/trust_store.hpp"

namespace citadel::apps {

Expected<std::vector<crypto::PublicKey>> DeviceTrustSource::PublisherKeys() {
  return device::LoadPublisherKeys(state_dir_);
}

Expected<std::optional<DevelopmentGrant>> DeviceTrustSource::Development() {
  auto credentials = device::LoadCredentials(state_dir_, tls_key_, device_id_, Clock::now());
  if (!credentials) {
    if (credentials.error().code() != ErrorCode::kNotFound) {
      log::Warn("no valid device certificate; sideloading is disabled", {{"reason", credentials.error().message()}});
    }
    return std::optional<DevelopmentGrant>{};
  }
  auto capability =
      device::LoadDevelopmentCapability(state_dir_, device_id_, credentials->tenant_id, credentials->chain);
  if (!capability) {
    if (capability.error().code() != ErrorCode::kNotFound) {
      log::Warn("stored development capability is not valid; sideloading is disabled",
                {{"reason", capability.error().message()}});
    }
    return std::optional<DevelopmentGrant>{};
  }
  DevelopmentGrant grant;
  grant.capability_id = capability->capability_id;
  grant.device_id = device_id_;
  grant.tenant_id = credentials->tenant_id;
  grant.developer_keys = std::move(capability->developer_keys);
  return std::optional<DevelopmentGrant>(std::move(grant));
}

Expected<DevelopmentGrant> DeviceTrustSource::ApplyDevelopmentCapability(std::string_view envelope_json) {
  auto credentials = device::LoadCredentials(state_dir_, tls_key_, device_id_, Clock::now());
  if (!credentials) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this device has no valid certificate, so it cannot check a development capability (" +
                         credentials.error().message() + "); let citadeld attest first (`citadeld run`)");
  }
  if (credentials->chain.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the stored certificate chain is empty; let citadeld attest again");
  }
  CITADEL_TRY(auto capability, device::VerifyDevelopmentCapability(envelope_json, device_id_, credentials->tenant_id,
                                                                   credentials->chain.front()));
  std::lock_guard lock(write_mutex_);
  auto saved = device::SaveDevelopmentCapability(state_dir_, envelope_json);
  if (!saved) return WrapError(saved.error(), "storing the development capability");
  log::Warn("development mode enabled: this device accepts sideloaded apps",
            {{"capability_id", capability.capability_id}, {"tenant_id", credentials->tenant_id}});
  DevelopmentGrant grant;
  grant.capability_id = capability.capability_id;
  grant.device_id = device_id_;
  grant.tenant_id = credentials->tenant_id;
  grant.developer_keys = std::move(capability.developer_keys);
  return grant;
}

}  // namespace citadel::apps
