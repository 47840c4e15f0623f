#include "device/credentials.hpp"

#include <span>

#include "common/file.hpp"

namespace citadel::device {
namespace {

constexpr std::size_t kMaxPemBytes = 1u << 20;
constexpr std::size_t kMaxChainCertificates = 4;

}  // namespace

std::string DeviceCredentials::FullChainPem() const {
  std::vector<crypto::Certificate> full{certificate};
  for (std::size_t i = 0; i + 1 < chain.size(); ++i) full.push_back(chain[i]);
  return crypto::ToPemChain(full);
}

std::string TenantFromUriSans(const std::vector<std::string>& uri_sans, std::string_view device_id) {
  constexpr std::string_view kPrefix = "citadel://tenant/";
  for (std::string_view uri : uri_sans) {
    if (!uri.starts_with(kPrefix)) continue;
    uri.remove_prefix(kPrefix.size());
    auto slash = uri.find('/');
    if (slash == std::string_view::npos || slash == 0) continue;
    std::string_view tenant = uri.substr(0, slash);
    if (uri.substr(slash) != "/device/" + std::string(device_id)) continue;
    return std::string(tenant);
  }
  return {};
}

Expected<DeviceCredentials> ValidateCredentials(const crypto::Certificate& certificate,
                                                std::vector<crypto::Certificate> chain,
                                                const crypto::PublicKey& tls_key, std::string_view device_id,
                                                TimePoint now) {
  if (!(certificate.SubjectPublicKey() == tls_key)) {
    return MakeError(ErrorCode::kCrypto, "the device certificate is not for this device's TLS key");
  }
  if (certificate.SubjectCommonName() != device_id) {
    return MakeError(ErrorCode::kCrypto,
                     "the device certificate names device '" + certificate.SubjectCommonName() + "', not this device");
  }
  if (chain.empty()) return MakeError(ErrorCode::kInvalidArgument, "the device certificate came without a CA chain");
  std::span<const crypto::Certificate> all(chain);
  auto verified = crypto::VerifyCertificateChain(certificate, all.first(all.size() - 1), all.last(1),
                                                 {.purpose = crypto::ExtendedKeyUsage::kClientAuth, .at = now});
  if (!verified) return WrapError(verified.error(), "the device certificate does not verify");
  DeviceCredentials credentials{certificate, std::move(chain), {}};
  credentials.tenant_id = TenantFromUriSans(certificate.UriSans(), device_id);
  return credentials;
}

Expected<void> SaveCredentials(const std::filesystem::path& state_dir, const DeviceCredentials& credentials) {
  auto dir = state_dir / kCertsDir;
  CITADEL_TRY_VOID(EnsureDirectory(dir, 0755));
  CITADEL_TRY_VOID(WriteFileAtomic(dir / kFullChainFile, credentials.FullChainPem(), 0644));
  CITADEL_TRY_VOID(WriteFileAtomic(dir / kChainFile, crypto::ToPemChain(credentials.chain), 0644));
  CITADEL_TRY_VOID(WriteFileAtomic(dir / kDeviceCertificateFile, credentials.certificate.Pem(), 0644));
  return kOk;
}

Expected<DeviceCredentials> LoadCredentials(const std::filesystem::path& state_dir, const crypto::PublicKey& tls_key,
                                            std::string_view device_id, TimePoint now) {
  auto dir = state_dir / kCertsDir;
  CITADEL_TRY(auto leaf_pem, ReadFile(dir / kDeviceCertificateFile, kMaxPemBytes));
  auto chain_pem = ReadFile(dir / kChainFile, kMaxPemBytes);
  if (!chain_pem) return WrapError(chain_pem.error(), "device certificate without its chain");
  auto leaf = crypto::Certificate::FromPem(leaf_pem);
  if (!leaf) return WrapError(leaf.error(), (dir / kDeviceCertificateFile).string());
  auto chain = crypto::ParsePemChain(*chain_pem, kMaxChainCertificates);
  if (!chain) return WrapError(chain.error(), (dir / kChainFile).string());
  return ValidateCredentials(*leaf, std::move(*chain), tls_key, device_id, now);
}

}  // namespace citadel::device
