// `citadeld provision --rot tpm2` against a real swtpm made like a vendor's
// TPM: the identity is the TPM's attestation key, the chain is the EK
// certificate from the TPM plus the vendor's intermediates, and provisioning
// again changes nothing.
#include <gtest/gtest.h>

#include "common/file.hpp"
#include "device/commands.hpp"
#include "device/rot_backend.hpp"
#include "support/swtpm.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

TEST(TpmProvisioningTest, IdentityIsTheAttestationKeyAndTheChainIsTheVendors) {
  testing::TempDir dir;
  testing::SoftwareTpm tpm(dir.path() / "tpm", dir.path() / "ca");
  auto tcti = tpm.ManufactureAndStart();
  ASSERT_TRUE(tcti) << tcti.error().message();

  ProvisionSettings settings;
  settings.backend = RotBackend::kTpm2;
  settings.tcti = *tcti;
  settings.state_dir = dir.path() / "device";
  settings.tpm_ek_chain = tpm.IntermediateCaPath();
  auto provisioned = ProvisionDevice(settings);
  ASSERT_TRUE(provisioned) << provisioned.error().message();

  auto rot = OpenRootOfTrust(RotBackend::kTpm2, settings.state_dir, RotOpenMode::kMustExist, *tcti);
  ASSERT_TRUE(rot) << rot.error().message();
  EXPECT_EQ((*rot)->Backend(), "tpm2");
  EXPECT_EQ((*rot)->DeviceId(), provisioned->device_id);
  ASSERT_TRUE((*rot)->TpmKeys().has_value());
  auto chain = (*rot)->ManufacturerChain();
  ASSERT_TRUE(chain) << chain.error().message();
  ASSERT_EQ(chain->size(), 2u);
  auto intermediate = ReadFile(tpm.IntermediateCaPath());
  ASSERT_TRUE(intermediate);
  auto expected = crypto::Certificate::FromPem(*intermediate);
  ASSERT_TRUE(expected);
  EXPECT_EQ((*chain)[1].Der(), expected->Der());
  // The leaf is the EK certificate the vendor (the test CA) issued.
  EXPECT_EQ((*chain)[0].IssuerOneLine(), expected->SubjectOneLine());
  rot->reset();

  // Again: the same identity, nothing re-created.
  auto again = ProvisionDevice(settings);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->device_id, provisioned->device_id);
  auto id = ReadDeviceId(RotBackend::kTpm2, settings.state_dir, *tcti);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(*id, provisioned->device_id);
}

TEST(TpmProvisioningTest, ABadIntermediatesFileProvisionsNothing) {
  testing::TempDir dir;
  testing::SoftwareTpm tpm(dir.path() / "tpm", dir.path() / "ca");
  auto tcti = tpm.ManufactureAndStart();
  ASSERT_TRUE(tcti) << tcti.error().message();
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "not-pem.txt", "hello"));
  ProvisionSettings settings;
  settings.backend = RotBackend::kTpm2;
  settings.tcti = *tcti;
  settings.state_dir = dir.path() / "device";
  settings.tpm_ek_chain = dir.path() / "not-pem.txt";
  auto provisioned = ProvisionDevice(settings);
  ASSERT_FALSE(provisioned);
  EXPECT_NE(provisioned.error().message().find("--tpm-ek-chain"), std::string::npos) << provisioned.error().message();
  EXPECT_FALSE(std::filesystem::exists(settings.state_dir / "tpm2"));
}

}  // namespace
}  // namespace citadel::device
