#include "server/tenant_ca.hpp"

namespace citadel::server {
namespace {

constexpr std::string_view kUriPrefix = "citadel://tenant/";

Expected<std::string> SealKey(const crypto::PrivateKey& key, const crypto::SecretBytes& master_key,
                              std::string_view associated_data) {
  CITADEL_TRY(auto pem, key.ToPem());
  CITADEL_TRY(auto sealed, crypto::SealSecret(master_key, pem.reveal(), associated_data));
  return Base64Encode(sealed);
}

Expected<crypto::PrivateKey> UnsealKey(std::string_view sealed_base64, const crypto::SecretBytes& master_key,
                                       std::string_view associated_data) {
  CITADEL_TRY(auto sealed, Base64Decode(sealed_base64));
  CITADEL_TRY(auto pem, crypto::OpenSecret(master_key, sealed, associated_data));
  return crypto::PrivateKey::FromPem(pem);
}

std::string RootAad(std::string_view tenant_id) { return "tenant-root-ca:" + std::string(tenant_id); }
std::string IssuingAad(std::string_view tenant_id) { return "tenant-issuing-ca:" + std::string(tenant_id); }

// The chain check itself: leaf issued by the authority's issuing CA,
// purpose clientAuth, valid at `now`.
Expected<void> VerifyDeviceChain(const crypto::Certificate& leaf, const TenantAuthority& authority, TimePoint now) {
  std::vector<crypto::Certificate> intermediates{authority.issuing};
  std::vector<crypto::Certificate> roots{authority.root};
  crypto::ChainVerification verification;
  verification.purpose = crypto::ExtendedKeyUsage::kClientAuth;
  verification.at = now;
  if (auto verified = crypto::VerifyCertificateChain(leaf, intermediates, roots, verification); !verified) {
    return MakeError(ErrorCode::kUnauthenticated, "device certificate rejected: " + verified.error().message());
  }
  return kOk;
}

}  // namespace

Expected<store::TenantCa> CreateTenantCa(std::string_view tenant_id, std::string_view tenant_name,
                                         const crypto::SecretBytes& master_key) {
  CITADEL_TRY(auto root_key, crypto::PrivateKey::GenerateP256());
  CITADEL_TRY(auto issuing_key, crypto::PrivateKey::GenerateP256());

  crypto::CertificateSpec root_spec;
  root_spec.common_name = "Citadel Tenant Root CA " + std::string(tenant_id);
  root_spec.organization = std::string(tenant_name);
  root_spec.lifetime = std::chrono::hours(24 * 365 * 10);
  root_spec.is_ca = true;
  root_spec.path_length = 1;
  CITADEL_TRY(auto root, crypto::IssueCertificate(root_spec, root_key.Public(), nullptr, root_key));

  crypto::CertificateSpec issuing_spec;
  issuing_spec.common_name = "Citadel Tenant Issuing CA " + std::string(tenant_id);
  issuing_spec.organization = std::string(tenant_name);
  issuing_spec.lifetime = std::chrono::hours(24 * 365 * 5);
  issuing_spec.is_ca = true;
  issuing_spec.path_length = 0;
  CITADEL_TRY(auto issuing, crypto::IssueCertificate(issuing_spec, issuing_key.Public(), &root, root_key));

  store::TenantCa ca;
  ca.tenant_id = std::string(tenant_id);
  ca.root_certificate_pem = root.Pem();
  ca.issuing_certificate_pem = issuing.Pem();
  CITADEL_TRY(ca.sealed_root_key, SealKey(root_key, master_key, RootAad(tenant_id)));
  CITADEL_TRY(ca.sealed_issuing_key, SealKey(issuing_key, master_key, IssuingAad(tenant_id)));
  return ca;
}

std::shared_ptr<const TenantAuthority> TenantCaCache::Peek(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(tenant_id);
  return it == cache_.end() ? nullptr : it->second;
}

Expected<std::shared_ptr<const TenantAuthority>> TenantCaCache::Get(std::string_view tenant_id) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(tenant_id); it != cache_.end()) return it->second;
  }
  CITADEL_TRY(auto ca, store_.GetTenantCa(tenant_id));
  CITADEL_TRY(auto root, crypto::Certificate::FromPem(ca.root_certificate_pem));
  CITADEL_TRY(auto issuing, crypto::Certificate::FromPem(ca.issuing_certificate_pem));
  auto key = UnsealKey(ca.sealed_issuing_key, master_key_, IssuingAad(tenant_id));
  if (!key) return WrapError(key.error(), "unsealing the issuing CA key of tenant " + std::string(tenant_id));
  auto authority = std::make_shared<const TenantAuthority>(
      TenantAuthority{root, issuing, std::move(*key), issuing.Pem() + root.Pem()});
  std::lock_guard lock(mutex_);
  cache_.emplace(std::string(tenant_id), authority);
  return authority;
}

Expected<void> TenantCaCache::VerifyDevice(const crypto::Certificate& leaf, const TenantAuthority& authority,
                                           TimePoint now) {
  const auto digest = crypto::Sha256(leaf.Der());
  auto window = verified_.Get(digest, [&]() -> Expected<ValidityWindow> {
    CITADEL_TRY_VOID(VerifyDeviceChain(leaf, authority, now));
    return ValidityWindow{leaf.NotBefore(), leaf.NotAfter()};
  });
  if (!window) return std::unexpected(window.error());
  if (window->first <= now && now < window->second) return kOk;
  // Remembered, but `now` is outside the certificate's validity (it ended,
  // or the clock was set back): verified afresh, it is refused with the
  // reason.
  verified_.Forget(digest);
  return VerifyDeviceChain(leaf, authority, now);
}

Expected<crypto::Certificate> IssueDeviceCertificate(const TenantAuthority& authority, std::string_view tenant_id,
                                                     std::string_view device_id, const crypto::PublicKey& tls_key,
                                                     std::chrono::seconds lifetime) {
  crypto::CertificateSpec spec;
  spec.common_name = std::string(device_id);
  spec.organization = std::string(tenant_id);
  // Valid from one minute before issuance (clock skew between service and
  // device) until `lifetime` after issuance.
  constexpr auto kClockSkewAllowance = std::chrono::seconds(60);
  spec.not_before = Clock::now() - kClockSkewAllowance;
  spec.lifetime = lifetime + kClockSkewAllowance;
  spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
  spec.uri_sans = {DeviceUri(tenant_id, device_id)};
  return crypto::IssueCertificate(spec, tls_key, &authority.issuing, authority.issuing_key);
}

std::string DeviceUri(std::string_view tenant_id, std::string_view device_id) {
  return std::string(kUriPrefix) + std::string(tenant_id) + "/device/" + std::string(device_id);
}

Expected<DeviceUriParts> ParseDeviceUri(std::string_view uri) {
  if (!uri.starts_with(kUriPrefix)) return MakeError(ErrorCode::kInvalidArgument, "not a citadel device URI");
  auto rest = uri.substr(kUriPrefix.size());
  auto slash = rest.find("/device/");
  if (slash == std::string_view::npos || slash == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "not a citadel device URI");
  }
  DeviceUriParts parts{std::string(rest.substr(0, slash)), std::string(rest.substr(slash + 8))};
  if (parts.device_id.empty() || parts.device_id.find('/') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "not a citadel device URI");
  }
  return parts;
}

}  // namespace citadel::server
