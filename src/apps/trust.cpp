#include "apps/trust.hpp"

#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "image/image.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

bool Exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec) || ec;  // an unreadable path is reported by the read
}

}  // namespace

Expected<std::vector<crypto::PublicKey>> ParsePublisherKeys(std::string_view text) {
  auto json = ParseJsonStrict(text);
  if (!json) return std::unexpected(json.error());
  auto keys = json->is_object() ? json->find("publisher_keys") : json->end();
  if (!json->is_object() || keys == json->end() || !keys->is_array()) {
    return MakeError(ErrorCode::kParse, "publisher_keys: missing or not an array");
  }
  if (keys->size() > kMaxPublisherKeys) {
    return MakeError(ErrorCode::kTooLarge, "publisher_keys: more than " + std::to_string(kMaxPublisherKeys) + " keys");
  }
  std::vector<crypto::PublicKey> result;
  for (std::size_t i = 0; i < keys->size(); ++i) {
    std::string where = "publisher_keys[" + std::to_string(i) + "]";
    const Json& entry = (*keys)[i];
    auto pem = entry.is_object() ? entry.find("public_key_pem") : entry.end();
    if (!entry.is_object() || pem == entry.end() || !pem->is_string()) {
      return MakeError(ErrorCode::kParse, where + ".public_key_pem: missing or not a string");
    }
    auto key = crypto::PublicKey::FromPem(pem->get<std::string>());
    if (!key) return WrapError(key.error(), where + ".public_key_pem");
    if (!key->IsP256()) return MakeError(ErrorCode::kInvalidArgument, where + ": not an ECDSA P-256 key");
    auto id = entry.find("key_id");
    if (id == entry.end() || !id->is_string() || id->get<std::string>() != image::PublisherKeyId(*key)) {
      return MakeError(ErrorCode::kParse, where + ".key_id: missing or does not match the key");
    }
    result.push_back(std::move(*key));
  }
  return result;
}

Expected<std::vector<crypto::PublicKey>> FileTrustSource::PublisherKeys() {
  auto path = state_dir_ / kTrustDir / kPublisherKeysFile;
  if (!Exists(path)) return std::vector<crypto::PublicKey>{};
  auto text = ReadFile(path, 1u << 20);
  if (!text) return WrapError(text.error(), "reading " + path.string());
  auto keys = ParsePublisherKeys(*text);
  if (!keys) return WrapError(keys.error(), path.string());
  return keys;
}

Expected<std::optional<DevelopmentGrant>> FileTrustSource::Development() {
  auto path = state_dir_ / kTrustDir / kDevelopmentFile;
  if (!Exists(path)) return std::optional<DevelopmentGrant>{};
  auto text = ReadFile(path, kMaxCapabilityBytes);
  if (!text) return WrapError(text.error(), "reading " + path.string());
  CITADEL_TRY(auto identity, identity_());
  auto grant = VerifyDevelopmentEnvelope(*text, identity);
  if (!grant) {
    // Stored but no longer valid (e.g. the device moved to another tenant):
    // development is off, and the operator learns why.
    log::Warn("stored development capability is not valid; sideloading is disabled",
              {{"file", path.string()}, {"reason", grant.error().message()}});
    return std::optional<DevelopmentGrant>{};
  }
  return std::optional<DevelopmentGrant>(std::move(*grant));
}

Expected<DevelopmentGrant> FileTrustSource::ApplyDevelopmentCapability(std::string_view envelope_json) {
  CITADEL_TRY(auto identity, identity_());
  CITADEL_TRY(auto grant, VerifyDevelopmentEnvelope(envelope_json, identity));
  std::lock_guard lock(write_mutex_);
  auto dir = state_dir_ / kTrustDir;
  CITADEL_TRY_VOID(EnsureDirectory(dir, 0700));
  auto written = WriteFileAtomic(dir / kDevelopmentFile, envelope_json, 0600);
  if (!written) return WrapError(written.error(), "storing the development capability");
  log::Warn("development mode enabled: this device accepts sideloaded apps",
            {{"capability_id", grant.capability_id}, {"tenant_id", grant.tenant_id}});
  return grant;
}

}  // namespace citadel::apps
