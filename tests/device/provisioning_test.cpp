#include "device/provisioning.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "device/commands.hpp"
#include "device/rot_backend.hpp"
#include "rot/software/software_rot.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

// Writes a manufacturer CA the way `citadel manufacturer create-ca` does:
// manufacturer-ca.pem and a PKCS#8 manufacturer-ca.key.
crypto::Certificate WriteManufacturerCa(const std::filesystem::path& dir, std::string organization) {
  auto key = crypto::PrivateKey::GenerateP256();
  EXPECT_TRUE(key);
  crypto::CertificateSpec spec;
  spec.common_name = "Test Manufacturer Root CA";
  spec.organization = std::move(organization);
  spec.is_ca = true;
  spec.lifetime = std::chrono::days(30 * 365);
  auto cert = crypto::IssueCertificate(spec, key->Public(), nullptr, *key);
  EXPECT_TRUE(cert) << cert.error().message();
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(WriteFileAtomic(dir / "manufacturer-ca.pem", cert->Pem()));
  auto pem = key->ToPem();
  EXPECT_TRUE(pem);
  EXPECT_TRUE(WriteFileAtomic(dir / "manufacturer-ca.key", pem->reveal(), 0600));
  return *cert;
}

TEST(ProvisioningTest, ChainVerifiesAndLeafKeyHashesToTheDeviceId) {
  testing::TempDir dir;
  auto ca = WriteManufacturerCa(dir.path() / "ca", "Acme Devices");
  auto result = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", dir.path() / "ca"});
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(result->newly_provisioned);

  auto rot = rot::SoftwareRootOfTrust::Open(dir.path() / "device");
  ASSERT_TRUE(rot);
  EXPECT_EQ((*rot)->DeviceId(), result->device_id);
  auto chain = (*rot)->ManufacturerChain();
  ASSERT_TRUE(chain) << chain.error().message();
  ASSERT_EQ(chain->size(), 2u);
  const auto& leaf = (*chain)[0];
  EXPECT_EQ((*chain)[1].FingerprintSha256(), ca.FingerprintSha256());

  std::vector<crypto::Certificate> roots{ca};
  auto verified = crypto::VerifyCertificateChain(leaf, {}, roots);
  EXPECT_TRUE(verified) << verified.error().message();

  EXPECT_EQ(crypto::Sha256Hex(AsText(leaf.SubjectPublicKey().SpkiDer())), result->device_id);
  EXPECT_EQ(result->device_id.size(), 64u);
  EXPECT_EQ(leaf.SubjectCommonName(), result->device_id);
  EXPECT_EQ(SubjectOrganization(leaf), "Acme Devices");
  EXPECT_FALSE(leaf.IsCa());
  auto lifetime = leaf.NotAfter() - leaf.NotBefore();
  EXPECT_GE(lifetime, std::chrono::days(20 * 365));
  EXPECT_LE(lifetime, std::chrono::days(20 * 365 + 6));
}

TEST(ProvisioningTest, CaWithoutOrganizationGivesTheDevelopmentOrganization) {
  testing::TempDir dir;
  auto ca = WriteManufacturerCa(dir.path() / "ca", "");
  EXPECT_EQ(SubjectOrganization(ca), "");
  auto result = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", dir.path() / "ca"});
  ASSERT_TRUE(result) << result.error().message();
  auto rot = rot::SoftwareRootOfTrust::Open(dir.path() / "device");
  ASSERT_TRUE(rot);
  auto chain = (*rot)->ManufacturerChain();
  ASSERT_TRUE(chain);
  EXPECT_EQ(SubjectOrganization(chain->front()), "Citadel Development Manufacturer");
}

TEST(ProvisioningTest, IsIdempotent) {
  testing::TempDir dir;
  WriteManufacturerCa(dir.path() / "ca", "Acme Devices");
  ProvisionSettings settings{RotBackend::kSoftware, dir.path() / "device", dir.path() / "ca"};
  auto first = ProvisionDevice(settings);
  ASSERT_TRUE(first) << first.error().message();
  std::string first_chain = *ReadFile(dir.path() / "device" / "rot" / "manufacturer-chain.pem");

  auto second = ProvisionDevice(settings);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(second->device_id, first->device_id);
  EXPECT_FALSE(second->newly_provisioned);
  EXPECT_EQ(*ReadFile(dir.path() / "device" / "rot" / "manufacturer-chain.pem"), first_chain);

  // A different CA does not re-certify an already provisioned device.
  WriteManufacturerCa(dir.path() / "other-ca", "Other");
  auto third = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", dir.path() / "other-ca"});
  ASSERT_TRUE(third);
  EXPECT_EQ(third->device_id, first->device_id);
  EXPECT_EQ(*ReadFile(dir.path() / "device" / "rot" / "manufacturer-chain.pem"), first_chain);
}

TEST(ProvisioningTest, WithoutManufacturerCreatesOnlyTheIdentity) {
  testing::TempDir dir;
  auto result = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", std::nullopt});
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->device_id.size(), 64u);
  auto rot = OpenRootOfTrust(RotBackend::kSoftware, dir.path() / "device", RotOpenMode::kMustExist);
  ASSERT_TRUE(rot);
  EXPECT_EQ((*rot)->DeviceId(), result->device_id);
  auto has_chain = HasManufacturerChain(**rot);
  ASSERT_TRUE(has_chain);
  EXPECT_FALSE(*has_chain);
  // The same identity later provisioned with a CA keeps its id.
  WriteManufacturerCa(dir.path() / "ca", "Acme Devices");
  auto provisioned = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", dir.path() / "ca"});
  ASSERT_TRUE(provisioned);
  EXPECT_EQ(provisioned->device_id, result->device_id);
  EXPECT_TRUE(provisioned->newly_provisioned);
}

TEST(ProvisioningTest, BadCaDirectoryLeavesNoStateBehind) {
  testing::TempDir dir;
  auto result = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", dir.path() / "no-such-ca"});
  ASSERT_FALSE(result);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "device"));
}

TEST(ProvisioningTest, RefusesAKeyThatIsNotTheCertificatesKey) {
  testing::TempDir dir;
  WriteManufacturerCa(dir.path() / "ca", "Acme");
  WriteManufacturerCa(dir.path() / "other", "Other");
  std::filesystem::copy_file(dir.path() / "other" / "manufacturer-ca.key", dir.path() / "ca" / "manufacturer-ca.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto ca = LoadManufacturerCa(dir.path() / "ca");
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().message().find("is not the key of"), std::string::npos) << ca.error().message();
}

TEST(ProvisioningTest, RefusesALeafCertificateAsTheCa) {
  testing::TempDir dir;
  auto key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(key);
  crypto::CertificateSpec spec;
  spec.common_name = "not a CA";
  auto cert = crypto::IssueCertificate(spec, key->Public(), nullptr, *key);
  ASSERT_TRUE(cert);
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "manufacturer-ca.pem", cert->Pem()));
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "manufacturer-ca.key", key->ToPem()->reveal(), 0600));
  auto ca = LoadManufacturerCa(dir.path());
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().message().find("not a CA"), std::string::npos);
}

TEST(RotBackendTest, IdNeedsAnExistingIdentity) {
  testing::TempDir dir;
  auto id = ReadDeviceId(RotBackend::kSoftware, dir.path() / "device");
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(id.error().message().find("citadeld provision"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "device" / "rot" / "identity.key"));

  auto provisioned = ProvisionDevice({RotBackend::kSoftware, dir.path() / "device", std::nullopt});
  ASSERT_TRUE(provisioned);
  auto again = ReadDeviceId(RotBackend::kSoftware, dir.path() / "device");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, provisioned->device_id);
}

TEST(RotBackendTest, Tpm2NamesWhatIsMissing) {
  auto backend = ParseRotBackend("tpm2");
  ASSERT_TRUE(backend);
  testing::TempDir dir;
  auto unprovisioned = OpenRootOfTrust(*backend, dir.path(), RotOpenMode::kMustExist, "swtpm:host=127.0.0.1,port=1");
  ASSERT_FALSE(unprovisioned);
  EXPECT_EQ(unprovisioned.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(unprovisioned.error().message().find("citadeld provision --rot tpm2"), std::string::npos)
      << unprovisioned.error().message();
  // Nothing listens on port 1 of the loopback: the TCTI is named.
  auto unreachable =
      OpenRootOfTrust(*backend, dir.path(), RotOpenMode::kCreateIfMissing, "swtpm:host=127.0.0.1,port=1");
  ASSERT_FALSE(unreachable);
  EXPECT_NE(unreachable.error().message().find("swtpm:host=127.0.0.1,port=1"), std::string::npos)
      << unreachable.error().message();
  EXPECT_FALSE(ParseRotBackend("hsm"));
}

}  // namespace
}  // namespace citadel::device
