#include "server/data_dir.hpp"

#include <algorithm>

#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::server {
namespace fs = std::filesystem;

Expected<DataDirectory> DataDirectory::Open(const fs::path& path) {
  CITADEL_TRY_VOID(EnsureDirectory(path, 0700));
  CITADEL_TRY_VOID(EnsureDirectory(path / "blobs", 0700));
  CITADEL_TRY_VOID(EnsureDirectory(path / "manufacturer-cas", 0755));
  CITADEL_TRY_VOID(EnsureDirectory(path / "tpm-manufacturer-cas", 0755));
  return DataDirectory(path);
}

Expected<crypto::SecretBytes> DataDirectory::LoadOrCreateMasterKey() const {
  auto file = path_ / "master.key";
  auto existing = ReadFile(file, 4096);
  if (existing) {
    auto bytes = Base64Decode(std::string_view(*existing).substr(0, existing->find('\n')));
    if (!bytes || bytes->size() != 32) {
      return MakeError(ErrorCode::kParse, file.string() + " is not a base64 32-byte key; restore it from backup");
    }
    crypto::SecretBytes key(std::string(bytes->begin(), bytes->end()));
    std::fill(bytes->begin(), bytes->end(), std::uint8_t{0});
    return key;
  }
  if (existing.error().code() != ErrorCode::kNotFound) return std::unexpected(existing.error());
  auto bytes = crypto::RandomBytes(32);
  CITADEL_TRY_VOID(WriteFileAtomic(file, Base64Encode(bytes) + "\n", 0600));
  log::Info("created master key", {{"file", file.string()}});
  crypto::SecretBytes key(std::string(bytes.begin(), bytes.end()));
  std::fill(bytes.begin(), bytes.end(), std::uint8_t{0});
  return key;
}

Expected<ServiceIdentity> DataDirectory::LoadOrCreateServiceIdentity(const std::vector<std::string>& host_names) const {
  auto ca_file = path_ / "service-ca.pem";
  auto ca_key_file = path_ / "service-ca.key";
  auto server_file = path_ / "server.pem";
  auto server_key_file = path_ / "server.key";

  std::optional<crypto::Certificate> ca;
  std::optional<crypto::PrivateKey> ca_key;
  if (auto pem = ReadFile(ca_file); pem) {
    CITADEL_TRY(auto cert, crypto::Certificate::FromPem(*pem));
    CITADEL_TRY(auto key_pem, ReadFile(ca_key_file));
    CITADEL_TRY(auto key, crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(key_pem))));
    ca = cert;
    ca_key = std::move(key);
  } else {
    CITADEL_TRY(auto key, crypto::PrivateKey::GenerateP256());
    crypto::CertificateSpec spec;
    spec.common_name = "Citadel Service CA";
    spec.organization = "Citadel";
    spec.lifetime = std::chrono::hours(24 * 365 * 10);
    spec.is_ca = true;
    spec.path_length = 0;
    CITADEL_TRY(auto cert, crypto::IssueCertificate(spec, key.Public(), nullptr, key));
    CITADEL_TRY(auto key_pem, key.ToPem());
    CITADEL_TRY_VOID(WriteFileAtomic(ca_key_file, key_pem.reveal(), 0600));
    CITADEL_TRY_VOID(WriteFileAtomic(ca_file, cert.Pem(), 0644));
    log::Info("created service CA; devices and the CLI pin this file", {{"file", ca_file.string()}});
    ca = cert;
    ca_key = std::move(key);
  }

  // Reuse the server certificate while it has more than 30 days left and
  // names every requested host.
  if (auto chain_pem = ReadFile(server_file); chain_pem) {
    auto chain = crypto::ParsePemChain(*chain_pem);
    auto key_pem = ReadFile(server_key_file);
    if (chain && key_pem && !chain->empty()) {
      const auto& leaf = chain->front();
      auto sans = leaf.DnsSans();
      bool names_all = std::all_of(host_names.begin(), host_names.end(), [&](const std::string& host) {
        return std::find(sans.begin(), sans.end(), host) != sans.end() ||
               host.find_first_not_of("0123456789.:") == std::string::npos;
      });
      if (names_all && leaf.NotAfter() > Clock::now() + std::chrono::hours(24 * 30)) {
        CITADEL_TRY(auto key, crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*key_pem))));
        return ServiceIdentity{*ca, *chain_pem, std::move(key)};
      }
    }
  }

  CITADEL_TRY(auto server_key, crypto::PrivateKey::GenerateP256());
  crypto::CertificateSpec spec;
  spec.common_name = "citadel-server";
  spec.organization = "Citadel";
  spec.lifetime = std::chrono::hours(24 * 365);
  spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
  spec.dns_sans = {"localhost"};
  spec.ip_sans = {"127.0.0.1", "::1"};
  for (const auto& host : host_names) {
    bool is_ip = host.find_first_not_of("0123456789.:abcdefABCDEF") == std::string::npos &&
                 host.find_first_of(".:") != std::string::npos;
    (is_ip ? spec.ip_sans : spec.dns_sans).push_back(host);
  }
  CITADEL_TRY(auto server_cert, crypto::IssueCertificate(spec, server_key.Public(), &*ca, *ca_key));
  CITADEL_TRY(auto server_key_pem, server_key.ToPem());
  std::string chain_pem = server_cert.Pem() + ca->Pem();
  CITADEL_TRY_VOID(WriteFileAtomic(server_key_file, server_key_pem.reveal(), 0600));
  CITADEL_TRY_VOID(WriteFileAtomic(server_file, chain_pem, 0644));
  log::Info("issued TLS server certificate", {{"file", server_file.string()}});
  return ServiceIdentity{*ca, chain_pem, std::move(server_key)};
}

Expected<ServiceIdentity> DataDirectory::LoadConfiguredIdentity(const fs::path& chain_file, const fs::path& key_file) {
  CITADEL_TRY(auto chain_pem, ReadFile(chain_file, 1 << 20));
  auto chain = crypto::ParsePemChain(chain_pem);
  if (!chain) return WrapError(chain.error(), "--tls-certificate " + chain_file.string());
  CITADEL_TRY(auto key_pem, ReadFile(key_file, 64 * 1024));
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(key_pem)));
  if (!key) return WrapError(key.error(), "--tls-key " + key_file.string());
  if (!(chain->front().SubjectPublicKey() == key->Public())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--tls-key does not match the first certificate in --tls-certificate");
  }
  log::Info("using the configured TLS certificate",
            {{"file", chain_file.string()}, {"subject", chain->front().SubjectOneLine()}});
  return ServiceIdentity{chain->back(), chain_pem, std::move(*key)};
}

Expected<std::vector<crypto::Certificate>> DataDirectory::LoadManufacturerCas(
    std::string_view subdirectory, const std::vector<fs::path>& extra_files) const {
  std::vector<fs::path> files = extra_files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_ / subdirectory, ec)) {
    if (entry.path().extension() == ".pem") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<crypto::Certificate> cas;
  for (const auto& file : files) {
    CITADEL_TRY(auto pem, ReadFile(file, 1 << 20));
    auto chain = crypto::ParsePemChain(pem, 64);
    if (!chain) return WrapError(chain.error(), "manufacturer CA " + file.string());
    for (auto& cert : *chain) {
      if (!cert.IsCa()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "manufacturer CA " + file.string() + " holds a certificate that is not a CA");
      }
      log::Info("trusting manufacturer CA",
                {{"kind", subdirectory}, {"subject", cert.SubjectOneLine()}, {"file", file.string()}});
      cas.push_back(cert);
    }
  }
  return cas;
}

Expected<void> DataDirectory::EnsureOperatorToken(store::Store& store) const {
  CITADEL_TRY(auto tokens, store.ListApiTokens(""));
  bool has_operator = std::any_of(tokens.begin(), tokens.end(), [](const store::ApiToken& token) {
    return token.role == store::Role::kOperator && !token.revoked;
  });
  if (has_operator) return kOk;
  auto token = GenerateApiToken();
  store::ApiToken record;
  record.id = GenerateId("tok");
  record.name = "operator";
  record.role = store::Role::kOperator;
  record.token_hash = token.hash_hex;
  record.created_at = ToUnixSeconds(Clock::now());
  CITADEL_TRY_VOID(store.CreateApiToken(record));
  auto file = path_ / "operator-token";
  CITADEL_TRY_VOID(WriteFileAtomic(file, token.text + "\n", 0600));
  log::Info("created the operator token (shown nowhere else; keep it safe)", {{"file", file.string()}});
  return kOk;
}

NewToken GenerateApiToken() {
  auto bytes = crypto::RandomBytes(32);
  std::string text = "cit_" + Base64UrlEncode(bytes);
  return {text, HashApiToken(text)};
}

std::string HashApiToken(std::string_view text) { return crypto::Sha256Hex(text); }

std::string GenerateId(std::string_view prefix) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // 32 symbols
  auto bytes = crypto::RandomBytes(16);
  std::string id(prefix);
  id += '_';
  for (auto b : bytes) id += kAlphabet[b & 31];
  return id;
}

}  // namespace citadel::server
