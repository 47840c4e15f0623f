#include "apps/device_auth.hpp"

#include <system_error>

#include "common/file.hpp"

namespace citadel::apps {

Expected<std::vector<crypto::Certificate>> StoredDeviceAuth::LoadChain() const {
  auto path = state_dir_ / "certs" / "device-full-chain.pem";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return MakeError(ErrorCode::kUnavailable, "the device has no certificate yet (it has not attested)");
  }
  CITADEL_TRY(auto pem, ReadFile(path, 1u << 20));
  CITADEL_TRY(auto chain, crypto::ParsePemChain(pem));
  if (chain.empty() || !(chain.front().SubjectPublicKey() == tls_key_.Public())) {
    return MakeError(ErrorCode::kUnavailable, "the stored device certificate is not for this device's TLS key");
  }
  return chain;
}

Expected<std::string> StoredDeviceAuth::CertificateChainPem() {
  CITADEL_TRY(auto chain, LoadChain());
  return crypto::ToPemChain(chain);
}

Expected<Bytes> StoredDeviceAuth::SignDigest(const crypto::Sha256Digest& digest) {
  CITADEL_TRY_VOID(LoadChain());  // no certificate, no signatures: the app could not use them
  return tls_key_.SignDigest(digest);
}

std::string StoredDeviceAuth::TenantId() {
  auto chain = LoadChain();
  if (!chain) return {};
  constexpr std::string_view kPrefix = "citadel://tenant/";
  std::string suffix = "/device/" + device_id_;
  for (std::string_view uri : chain->front().UriSans()) {
    if (!uri.starts_with(kPrefix) || !uri.ends_with(suffix)) continue;
    uri.remove_prefix(kPrefix.size());
    uri.remove_suffix(suffix.size());
    if (!uri.empty() && uri.find('/') == std::string_view::npos) return std::string(uri);
  }
  return {};
}

}  // namespace citadel::apps
