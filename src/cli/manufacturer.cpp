#include "cli/manufacturer.hpp"

#include <chrono>
#include <system_error>

#include "common/file.hpp"

namespace citadel::cli {
namespace {

constexpr auto kLifetime = std::chrono::hours(24 * (365 * 20 + 5));  // 20 years incl. leap days

}  // namespace

Expected<ManufacturerCa> CreateManufacturerCa(const ManufacturerCaOptions& options) {
  if (options.directory.empty()) return MakeError(ErrorCode::kInvalidArgument, "no directory given");
  if (options.name.empty()) return MakeError(ErrorCode::kInvalidArgument, "the CA name must not be empty");
  auto certificate_path = options.directory / kManufacturerCaCertificateFile;
  auto key_path = options.directory / kManufacturerCaKeyFile;
  if (!options.force) {
    for (const auto& path : {certificate_path, key_path}) {
      std::error_code ec;
      if (std::filesystem::exists(path, ec) || ec) {
        return MakeError(ErrorCode::kAlreadyExists,
                         path.string() + " already exists; refusing to replace a manufacturer CA");
      }
    }
  }
  CITADEL_TRY_VOID(EnsureDirectory(options.directory, 0700));

  CITADEL_TRY(auto key, crypto::PrivateKey::GenerateP256());
  crypto::CertificateSpec spec;
  spec.common_name = options.name;
  spec.organization = options.name;
  spec.is_ca = true;
  spec.lifetime = std::chrono::duration_cast<std::chrono::seconds>(kLifetime);
  CITADEL_TRY(auto certificate, crypto::IssueCertificate(spec, key.Public(), nullptr, key));

  CITADEL_TRY(auto key_pem, key.ToPem());
  CITADEL_TRY_VOID(WriteFileAtomic(key_path, key_pem.reveal(), 0600));
  CITADEL_TRY_VOID(WriteFileAtomic(certificate_path, certificate.Pem(), 0644));
  return ManufacturerCa{std::move(certificate_path), std::move(key_path), std::move(certificate)};
}

Expected<ManufacturerCa> LoadManufacturerCa(const std::filesystem::path& directory) {
  auto certificate_path = directory / kManufacturerCaCertificateFile;
  auto key_path = directory / kManufacturerCaKeyFile;
  CITADEL_TRY(auto pem, ReadFile(certificate_path, 1u << 20));
  auto certificate = crypto::Certificate::FromPem(pem);
  if (!certificate) return WrapError(certificate.error(), certificate_path.string());
  ManufacturerCa ca{std::move(certificate_path), std::move(key_path), std::move(*certificate)};
  if (!ca.certificate.IsCa()) {
    return MakeError(ErrorCode::kInvalidArgument, ca.certificate_path.string() + " is not a CA certificate");
  }
  auto key_text = ReadFile(ca.key_path, 1u << 20);
  if (!key_text) return std::unexpected(key_text.error());
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*key_text)));
  if (!key) return WrapError(key.error(), ca.key_path.string());
  if (!(key->Public() == ca.certificate.SubjectPublicKey())) {
    return MakeError(ErrorCode::kCrypto, ca.key_path.string() + " does not belong to " + ca.certificate_path.string());
  }
  return ca;
}

}  // namespace citadel::cli
