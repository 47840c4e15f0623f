#include "device/trust_store.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/canonical_json.hpp"
#include "common/file.hpp"

namespace citadel::device {
namespace {

namespace fs = std::filesystem;

// Bigger than kMaxPublisherKeys entries can legitimately be.
constexpr std::size_t kMaxPublisherKeysFileBytes =
    protocol::kMaxPublisherKeys * (protocol::kMaxPublisherKeyPemBytes + 256) + 1024;

fs::path TrustPath(const fs::path& state_dir, std::string_view file) { return state_dir / kTrustDir / file; }

// Writes text unless the file already holds it: check-ins repeat every
// minute and usually change nothing, and flash wears.
Expected<void> WriteIfChanged(const fs::path& path, std::string_view text) {
  if (auto existing = ReadFile(path, text.size() + 1); existing && *existing == text) return kOk;
  CITADEL_TRY_VOID(EnsureDirectory(path.parent_path(), 0755));
  return WriteFileAtomic(path, text, 0644);
}

}  // namespace

Expected<void> SavePublisherKeys(const fs::path& state_dir, std::span<const protocol::PublisherKeyEntry> keys) {
  if (keys.size() > protocol::kMaxPublisherKeys) {
    return MakeError(ErrorCode::kTooLarge,
                     "more than " + std::to_string(protocol::kMaxPublisherKeys) + " publisher keys");
  }
  Json list = Json::array();
  for (const auto& entry : keys) {
    auto key = protocol::PublisherKeyFromEntry(entry);
    if (!key) return WrapError(key.error(), "publisher key " + entry.key_id);
    list.push_back({{"key_id", entry.key_id}, {"public_key_pem", entry.public_key_pem}});
  }
  CITADEL_TRY(auto text, CanonicalJson(Json{{"publisher_keys", std::move(list)}}));
  auto written = WriteIfChanged(TrustPath(state_dir, kPublisherKeysFile), text);
  if (!written) return WrapError(written.error(), "saving the publisher keys");
  return kOk;
}

Expected<std::vector<crypto::PublicKey>> LoadPublisherKeys(const fs::path& state_dir) {
  const auto path = TrustPath(state_dir, kPublisherKeysFile);
  auto text = ReadFile(path, kMaxPublisherKeysFileBytes);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return std::vector<crypto::PublicKey>{};
    return WrapError(text.error(), path.string());
  }
  // The same strict reader as the check-in reply that the file came from.
  auto reply = protocol::ParseCheckInReply(*text);
  if (!reply) return WrapError(reply.error(), path.string());
  auto parsed = ParseJsonStrict(*text);
  if (!parsed || !parsed->is_object() || parsed->size() != 1 || !parsed->contains("publisher_keys")) {
    return MakeError(ErrorCode::kParse, path.string() + ": expected {\"publisher_keys\":[...]} only");
  }
  std::vector<crypto::PublicKey> keys;
  for (const auto& entry : reply->publisher_keys) {
    auto key = protocol::PublisherKeyFromEntry(entry);
    if (!key) return WrapError(key.error(), path.string());
    keys.push_back(std::move(*key));
  }
  return keys;
}

Expected<DevelopmentCapability> VerifyDevelopmentCapability(std::string_view envelope_json, std::string_view device_id,
                                                            std::string_view tenant_id,
                                                            const crypto::Certificate& issuing_ca_certificate) {
  CITADEL_TRY(auto envelope, protocol::ParseDevelopmentCapabilityEnvelope(envelope_json));
  // The signer must be exactly the CA that certified this device: compare
  // the DER, not names, so a look-alike CA gains nothing.
  auto certificate = crypto::Certificate::FromPem(envelope.certificate_pem);
  if (!certificate) return WrapError(certificate.error(), "development capability: certificate");
  if (certificate->Der() != issuing_ca_certificate.Der()) {
    return MakeError(ErrorCode::kCrypto,
                     "development capability: not signed by the issuing CA that certified this device");
  }
  if (!issuing_ca_certificate.SubjectPublicKey().Verify(AsBytes(envelope.canonical_capability), envelope.signature)) {
    return MakeError(ErrorCode::kCrypto, "development capability: the signature does not verify");
  }
  if (envelope.claims.device_id != device_id) {
    return MakeError(ErrorCode::kPermissionDenied, "development capability: issued for another device");
  }
  if (envelope.claims.tenant_id != tenant_id) {
    return MakeError(ErrorCode::kPermissionDenied, "development capability: issued for another tenant");
  }
  return DevelopmentCapability{envelope.claims.capability_id, std::move(envelope.claims.developer_keys)};
}

Expected<void> SaveDevelopmentCapability(const fs::path& state_dir, std::string_view envelope_json) {
  if (envelope_json.size() > protocol::kMaxCapabilityBytes) {
    return MakeError(ErrorCode::kTooLarge, "development capability is too large");
  }
  auto written = WriteIfChanged(TrustPath(state_dir, kAppDevelopmentFile), envelope_json);
  if (!written) return WrapError(written.error(), "saving the development capability");
  return kOk;
}

Expected<void> RemoveDevelopmentCapability(const fs::path& state_dir) {
  const auto path = TrustPath(state_dir, kAppDevelopmentFile);
  if (std::remove(path.c_str()) != 0 && errno != ENOENT) {
    return MakeError(ErrorCode::kIo, "removing " + path.string() + ": " + std::strerror(errno));
  }
  return kOk;
}

Expected<DevelopmentCapability> LoadDevelopmentCapability(const fs::path& state_dir, std::string_view device_id,
                                                          std::string_view tenant_id,
                                                          std::span<const crypto::Certificate> chain) {
  if (chain.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "no device certificate chain yet: a development capability cannot be checked before the "
                     "device has attested");
  }
  const auto path = TrustPath(state_dir, kAppDevelopmentFile);
  auto text = ReadFile(path, protocol::kMaxCapabilityBytes);
  if (!text) return WrapError(text.error(), path.string());
  auto verified = VerifyDevelopmentCapability(*text, device_id, tenant_id, chain.front());
  if (!verified) return WrapError(verified.error(), path.string());
  return verified;
}

}  // namespace citadel::device
