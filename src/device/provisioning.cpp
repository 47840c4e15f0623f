#include "device/provisioning.hpp"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <vector>

#include "common/file.hpp"

namespace citadel::device {

Expected<ManufacturerCa> LoadManufacturerCa(const std::filesystem::path& ca_dir) {
  auto cert_path = ca_dir / kManufacturerCaCertificateFile;
  auto key_path = ca_dir / kManufacturerCaKeyFile;
  auto cert_pem = ReadFile(cert_path, 1u << 20);
  if (!cert_pem) return WrapError(cert_pem.error(), "reading manufacturer CA certificate");
  auto certificate = crypto::Certificate::FromPem(*cert_pem);
  if (!certificate) return WrapError(certificate.error(), "parsing " + cert_path.string());
  if (!certificate->IsCa()) {
    return MakeError(ErrorCode::kInvalidArgument, cert_path.string() + " is not a CA certificate");
  }
  auto key_pem = ReadFile(key_path, 1u << 20);
  if (!key_pem) return WrapError(key_pem.error(), "reading manufacturer CA key");
  crypto::SecretBytes secret(std::move(*key_pem));
  auto key = crypto::PrivateKey::FromPem(secret);
  if (!key) return WrapError(key.error(), "parsing " + key_path.string());
  if (!(key->Public() == certificate->SubjectPublicKey())) {
    return MakeError(ErrorCode::kInvalidArgument, key_path.string() + " is not the key of " + cert_path.string());
  }
  return ManufacturerCa{std::move(*certificate), std::move(*key)};
}

std::string SubjectOrganization(const crypto::Certificate& certificate) {
  X509_NAME* name = X509_get_subject_name(certificate.x509());
  if (name == nullptr) return {};
  int index = X509_NAME_get_index_by_NID(name, NID_organizationName, -1);
  if (index < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return {};
  std::string organization(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return organization;
}

crypto::CertificateSpec ManufacturerCertificateSpec(std::string_view device_id, const crypto::Certificate& ca,
                                                    TimePoint now) {
  crypto::CertificateSpec spec;
  spec.common_name = std::string(device_id);
  spec.organization = SubjectOrganization(ca);
  if (spec.organization.empty()) spec.organization = std::string(kDefaultManufacturerOrganization);
  spec.not_before = now - std::chrono::minutes(5);
  spec.lifetime = kManufacturerCertificateLifetime;
  spec.is_ca = false;
  return spec;
}

Expected<bool> HasManufacturerChain(const rot::RootOfTrust& rot) {
  auto chain = rot.ManufacturerChain();
  if (!chain) {
    if (chain.error().code() == ErrorCode::kNotFound) return false;
    return WrapError(chain.error(), "reading the manufacturer chain");
  }
  return !chain->empty();
}

Expected<ProvisionResult> ProvisionWithManufacturerCa(rot::RootOfTrust& rot, const ManufacturerCa& ca, TimePoint now) {
  ProvisionResult result;
  result.device_id = rot.DeviceId();
  CITADEL_TRY(bool provisioned, HasManufacturerChain(rot));
  if (provisioned) return result;

  auto spec = ManufacturerCertificateSpec(result.device_id, ca.certificate, now);
  auto leaf = crypto::IssueCertificate(spec, rot.IdentityPublicKey(), &ca.certificate, ca.key);
  if (!leaf) return WrapError(leaf.error(), "issuing the manufacturer certificate");
  std::vector<crypto::Certificate> chain{*leaf, ca.certificate};
  auto stored = rot.StoreManufacturerChain(chain);
  if (!stored) return WrapError(stored.error(), "storing the manufacturer chain");
  result.newly_provisioned = true;
  return result;
}

}  // namespace citadel::device
