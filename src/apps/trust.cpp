#include "apps/trust.hpp"

#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "device/trust_store.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

bool Exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec) || ec;  // an unreadable path is reported by the read
}

}  // namespace

Expected<std::vector<crypto::PublicKey>> FileTrustSource::PublisherKeys() {
  auto keys = device::LoadPublisherKeys(state_dir_);
  if (!keys) return WrapError(keys.error(), (state_dir_ / kTrustDir / kPublisherKeysFile).string());
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
