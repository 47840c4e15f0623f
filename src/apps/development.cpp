#include "apps/development.hpp"

#include "device/trust_store.hpp"
#include "protocol/protocol.hpp"

namespace citadel::apps {

Expected<DevelopmentGrant> VerifyDevelopmentEnvelope(std::string_view envelope_json, const DeviceIdentity& device) {
  // Who signed it must be the CA that certified this device: without a
  // certificate there is nothing to check against.
  if (!device.issuing_ca) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this device has no certificate yet, so it cannot check a development capability; "
                     "let citadeld attest first (`citadeld run`)");
  }
  // One implementation of the check for the whole device (trust_store.hpp).
  CITADEL_TRY(auto verified, device::VerifyDevelopmentCapability(envelope_json, device.device_id, device.tenant_id,
                                                                 *device.issuing_ca));
  CITADEL_TRY(auto envelope, protocol::ParseDevelopmentCapabilityEnvelope(envelope_json));
  DevelopmentGrant grant;
  grant.capability_id = std::move(verified.capability_id);
  grant.device_id = device.device_id;
  grant.tenant_id = device.tenant_id;
  grant.issued_at = std::move(envelope.claims.issued_at);
  grant.developer_keys = std::move(verified.developer_keys);
  return grant;
}

}  // namespace citadel::apps
