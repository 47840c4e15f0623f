#include "device/credentials.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

using std::chrono::hours;

struct TenantPki {
  crypto::PrivateKey root_key = *crypto::PrivateKey::GenerateP256();
  crypto::PrivateKey issuing_key = *crypto::PrivateKey::GenerateP256();
  crypto::Certificate root = Issue("Tenant Root CA", root_key.Public(), nullptr, root_key, 1);
  crypto::Certificate issuing = Issue("Tenant Issuing CA", issuing_key.Public(), &root, root_key, 0);

  static crypto::Certificate Issue(std::string cn, const crypto::PublicKey& subject, const crypto::Certificate* issuer,
                                   const crypto::PrivateKey& issuer_key, int path_length) {
    crypto::CertificateSpec spec;
    spec.common_name = std::move(cn);
    spec.is_ca = true;
    spec.path_length = path_length;
    spec.lifetime = hours(24 * 365);
    return *crypto::IssueCertificate(spec, subject, issuer, issuer_key);
  }

  crypto::Certificate DeviceCertificate(const crypto::PublicKey& key, const std::string& device_id,
                                        TimePoint not_before = Clock::now() - std::chrono::minutes(5)) {
    crypto::CertificateSpec spec;
    spec.common_name = device_id;
    spec.organization = "t_42";
    spec.not_before = not_before;
    spec.lifetime = hours(24);
    spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
    spec.uri_sans = {"citadel://tenant/t_42/device/" + device_id};
    auto cert = crypto::IssueCertificate(spec, key, &issuing, issuing_key);
    EXPECT_TRUE(cert) << cert.error().message();
    return *cert;
  }
  std::vector<crypto::Certificate> Chain() const { return {issuing, root}; }
};

const std::string kDeviceId(64, 'd');

TEST(CredentialsTest, AcceptsACertificateForTheTlsKey) {
  TenantPki pki;
  auto tls = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(tls);
  auto cert = pki.DeviceCertificate(tls->Public(), kDeviceId);
  auto credentials = ValidateCredentials(cert, pki.Chain(), tls->Public(), kDeviceId, Clock::now());
  ASSERT_TRUE(credentials) << credentials.error().message();
  EXPECT_EQ(credentials->tenant_id, "t_42");
  // The full chain is leaf + issuing CA, without the root.
  auto full = crypto::ParsePemChain(credentials->FullChainPem());
  ASSERT_TRUE(full);
  ASSERT_EQ(full->size(), 2u);
  EXPECT_EQ((*full)[0].FingerprintSha256(), cert.FingerprintSha256());
  EXPECT_EQ((*full)[1].FingerprintSha256(), pki.issuing.FingerprintSha256());
}

TEST(CredentialsTest, RefusesACertificateForAnotherKey) {
  TenantPki pki;
  auto tls = crypto::PrivateKey::GenerateP256();
  auto other = crypto::PrivateKey::GenerateP256();
  auto cert = pki.DeviceCertificate(other->Public(), kDeviceId);
  EXPECT_FALSE(ValidateCredentials(cert, pki.Chain(), tls->Public(), kDeviceId, Clock::now()));
}

TEST(CredentialsTest, RefusesACertificateForAnotherDevice) {
  TenantPki pki;
  auto tls = crypto::PrivateKey::GenerateP256();
  auto cert = pki.DeviceCertificate(tls->Public(), std::string(64, 'e'));
  EXPECT_FALSE(ValidateCredentials(cert, pki.Chain(), tls->Public(), kDeviceId, Clock::now()));
}

TEST(CredentialsTest, RefusesAChainThatDoesNotVerify) {
  TenantPki pki;
  TenantPki other;
  auto tls = crypto::PrivateKey::GenerateP256();
  auto cert = pki.DeviceCertificate(tls->Public(), kDeviceId);
  EXPECT_FALSE(ValidateCredentials(cert, other.Chain(), tls->Public(), kDeviceId, Clock::now()));
  EXPECT_FALSE(ValidateCredentials(cert, {}, tls->Public(), kDeviceId, Clock::now()));
}

TEST(CredentialsTest, RefusesAnExpiredCertificate) {
  TenantPki pki;
  auto tls = crypto::PrivateKey::GenerateP256();
  auto cert = pki.DeviceCertificate(tls->Public(), kDeviceId);
  EXPECT_FALSE(ValidateCredentials(cert, pki.Chain(), tls->Public(), kDeviceId, Clock::now() + hours(25)));
}

TEST(CredentialsTest, SaveThenLoad) {
  testing::TempDir dir;
  TenantPki pki;
  auto tls = crypto::PrivateKey::GenerateP256();
  auto cert = pki.DeviceCertificate(tls->Public(), kDeviceId);
  auto credentials = ValidateCredentials(cert, pki.Chain(), tls->Public(), kDeviceId, Clock::now());
  ASSERT_TRUE(credentials);

  auto missing = LoadCredentials(dir.path(), tls->Public(), kDeviceId, Clock::now());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE(SaveCredentials(dir.path(), *credentials));
  EXPECT_EQ(*ReadFile(dir.path() / "certs" / "device.pem"), cert.Pem());
  EXPECT_EQ(*ReadFile(dir.path() / "certs" / "chain.pem"), crypto::ToPemChain(pki.Chain()));
  EXPECT_EQ(*ReadFile(dir.path() / "certs" / "device-full-chain.pem"), credentials->FullChainPem());

  auto loaded = LoadCredentials(dir.path(), tls->Public(), kDeviceId, Clock::now());
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->certificate.FingerprintSha256(), cert.FingerprintSha256());
  EXPECT_EQ(loaded->tenant_id, "t_42");

  // A state dir whose TLS key changed (e.g. re-created RoT) must not reuse it.
  auto other = crypto::PrivateKey::GenerateP256();
  EXPECT_FALSE(LoadCredentials(dir.path(), other->Public(), kDeviceId, Clock::now()));
}

TEST(CredentialsTest, TenantFromUriSans) {
  EXPECT_EQ(TenantFromUriSans({"citadel://tenant/t_1/device/abc"}, "abc"), "t_1");
  EXPECT_EQ(TenantFromUriSans({"https://example.com", "citadel://tenant/t_2/device/abc"}, "abc"), "t_2");
  EXPECT_EQ(TenantFromUriSans({"citadel://tenant/t_1/device/other"}, "abc"), "");
  EXPECT_EQ(TenantFromUriSans({"citadel://tenant//device/abc"}, "abc"), "");
  EXPECT_EQ(TenantFromUriSans({}, "abc"), "");
}

}  // namespace
}  // namespace citadel::device
