#include "apps/development.hpp"

#include <set>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"

namespace citadel::apps {
namespace {

Expected<std::string> Text(const Json& object, std::string_view key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return MakeError(ErrorCode::kParse, std::string(where) + std::string(key) + ": missing or not a string");
  }
  return it->get<std::string>();
}

}  // namespace

Expected<DevelopmentGrant> VerifyDevelopmentEnvelope(std::string_view envelope_json, const DeviceIdentity& device) {
  constexpr std::string_view kContext = "development capability";
  if (envelope_json.size() > kMaxCapabilityBytes) {
    return MakeError(ErrorCode::kTooLarge, std::string(kContext) + ": larger than 64 KiB");
  }
  auto envelope = ParseJsonStrict(envelope_json);
  if (!envelope) return WrapError(envelope.error(), kContext);
  if (!envelope->is_object()) return MakeError(ErrorCode::kParse, std::string(kContext) + ": not a JSON object");
  for (const auto& [key, value] : envelope->items()) {
    if (key != "capability" && key != "signature" && key != "certificate") {
      return MakeError(ErrorCode::kParse, std::string(kContext) + ": unknown field \"" + key + "\"");
    }
  }
  auto capability_it = envelope->find("capability");
  if (capability_it == envelope->end() || !capability_it->is_object()) {
    return MakeError(ErrorCode::kParse, std::string(kContext) + ": capability: missing or not an object");
  }
  const Json& capability = *capability_it;
  static const std::set<std::string, std::less<>> kKnown = {"Type",     "DeviceId",     "TenantId",
                                                            "IssuedAt", "CapabilityId", "DeveloperKeys"};
  for (const auto& [key, value] : capability.items()) {
    if (!kKnown.contains(key)) {
      return MakeError(ErrorCode::kParse, std::string(kContext) + ": capability." + key +
                                              " is not understood by this device; refusing it (update citadeld)");
    }
  }
  CITADEL_TRY(auto signature_text, Text(*envelope, "signature", ""));
  CITADEL_TRY(auto certificate_pem, Text(*envelope, "certificate", ""));
  DevelopmentGrant grant;
  CITADEL_TRY(auto type, Text(capability, "Type", "capability."));
  CITADEL_TRY(grant.device_id, Text(capability, "DeviceId", "capability."));
  CITADEL_TRY(grant.tenant_id, Text(capability, "TenantId", "capability."));
  CITADEL_TRY(grant.issued_at, Text(capability, "IssuedAt", "capability."));
  CITADEL_TRY(grant.capability_id, Text(capability, "CapabilityId", "capability."));
  if (type != "AppDevelopment") {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(kContext) + ": Type is \"" + type + "\", expected \"AppDevelopment\"");
  }

  // Who signed it: exactly the CA that certified this device.
  if (!device.issuing_ca) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this device has no certificate yet, so it cannot check a development capability; "
                     "let citadeld attest first (`citadeld run`)");
  }
  auto certificate = crypto::Certificate::FromPem(certificate_pem);
  if (!certificate) return WrapError(certificate.error(), std::string(kContext) + ": certificate");
  if (certificate->Der() != device.issuing_ca->Der()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     std::string(kContext) + " is signed by " + certificate->SubjectOneLine() +
                         ", not by the CA that certified this device (" + device.issuing_ca->SubjectOneLine() +
                         "); ask this device's tenant for a capability");
  }
  auto signature = Base64Decode(signature_text);
  if (!signature) return WrapError(signature.error(), std::string(kContext) + ": signature");
  auto canonical = CanonicalJson(capability);
  if (!canonical) return WrapError(canonical.error(), std::string(kContext) + ": capability");
  if (!certificate->SubjectPublicKey().Verify(AsBytes(*canonical), *signature)) {
    return MakeError(ErrorCode::kCrypto, std::string(kContext) + ": the signature does not verify (altered or forged)");
  }

  // For whom: this device of this tenant.
  if (grant.device_id != device.device_id) {
    return MakeError(ErrorCode::kPermissionDenied, std::string(kContext) + " is for device " + grant.device_id +
                                                       ", not this device (" + device.device_id + ")");
  }
  if (device.tenant_id.empty() || grant.tenant_id != device.tenant_id) {
    return MakeError(ErrorCode::kPermissionDenied, std::string(kContext) + " is for tenant " + grant.tenant_id +
                                                       ", but this device belongs to tenant \"" + device.tenant_id +
                                                       "\"");
  }

  if (auto keys = capability.find("DeveloperKeys"); keys != capability.end()) {
    if (!keys->is_array() || keys->size() > kMaxDeveloperKeys) {
      return MakeError(ErrorCode::kParse, std::string(kContext) +
                                              ": capability.DeveloperKeys: not an array of at most " +
                                              std::to_string(kMaxDeveloperKeys) + " keys");
    }
    for (std::size_t i = 0; i < keys->size(); ++i) {
      std::string where = std::string(kContext) + ": capability.DeveloperKeys[" + std::to_string(i) + "]";
      const Json& entry = (*keys)[i];
      if (!entry.is_string()) return MakeError(ErrorCode::kParse, where + ": not a string");
      auto der = Base64Decode(entry.get<std::string>());
      if (!der) return WrapError(der.error(), where);
      auto key = crypto::PublicKey::FromSpkiDer(*der);
      if (!key) return WrapError(key.error(), where);
      if (!key->IsP256()) return MakeError(ErrorCode::kInvalidArgument, where + ": not an ECDSA P-256 key");
      grant.developer_keys.push_back(std::move(*key));
    }
  }
  return grant;
}

}  // namespace citadel::apps
