#include "sim/memory_rot.hpp"

#include <gtest/gtest.h>

#include "protocol/protocol.hpp"
#include "sim/fleet.hpp"

namespace citadel::sim {
namespace {

// A leaf for `subject` issued by a throw-away CA.
crypto::Certificate SelfIssued(const crypto::PublicKey& subject, const crypto::PrivateKey& issuer_key) {
  crypto::CertificateSpec ca_spec;
  ca_spec.common_name = "Test Manufacturer";
  ca_spec.is_ca = true;
  auto ca = crypto::IssueCertificate(ca_spec, issuer_key.Public(), nullptr, issuer_key);
  EXPECT_TRUE(ca) << ca.error().message();
  crypto::CertificateSpec spec;
  spec.common_name = "device";
  auto leaf = crypto::IssueCertificate(spec, subject, &*ca, issuer_key);
  EXPECT_TRUE(leaf) << leaf.error().message();
  return *leaf;
}

TEST(MemoryRootOfTrustTest, KeysAreP256AndDistinct) {
  auto rot = MemoryRootOfTrust::Generate();
  ASSERT_TRUE(rot);
  EXPECT_TRUE((*rot)->IdentityPublicKey().IsP256());
  EXPECT_FALSE((*rot)->IdentityPublicKey() == (*rot)->TlsClientKey().Public());
  EXPECT_EQ((*rot)->DeviceId().size(), 64u);
  auto digest = crypto::Sha256("hello");
  auto signature = (*rot)->SignWithIdentity(digest);
  ASSERT_TRUE(signature);
  EXPECT_TRUE((*rot)->IdentityPublicKey().VerifyDigest(digest, *signature));
}

TEST(MemoryRootOfTrustTest, RoundTripsThroughPem) {
  auto rot = *MemoryRootOfTrust::Generate();
  auto identity = *rot->identity_key().ToPem();
  auto tls = *rot->TlsClientKey().ToPem();
  auto again = MemoryRootOfTrust::FromPem(identity, tls);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->DeviceId(), rot->DeviceId());
}

TEST(MemoryRootOfTrustTest, ChainMustCertifyTheIdentityKey) {
  auto rot = *MemoryRootOfTrust::Generate();
  auto issuer = *crypto::PrivateKey::GenerateP256();
  EXPECT_FALSE(rot->ManufacturerChain());
  EXPECT_FALSE(rot->StoreManufacturerChain({SelfIssued(rot->TlsClientKey().Public(), issuer)}));
  EXPECT_TRUE(rot->StoreManufacturerChain({SelfIssued(rot->IdentityPublicKey(), issuer)}));
  EXPECT_EQ(rot->ManufacturerChain()->size(), 1u);
}

TEST(MemoryRootOfTrustTest, MeasurementsReplayAndCountersOnlyGrow) {
  auto rot = *MemoryRootOfTrust::Generate();
  for (const auto& event : SimulatedBootEvents("citadel-os", "1.0.0")) ASSERT_TRUE(rot->Extend(event));
  EXPECT_EQ(rot->MeasurementLog().size(), 3u);
  EXPECT_EQ(rot->ReadRegisters(), rot::ReplayLog(rot->MeasurementLog()));
  EXPECT_FALSE(rot->Extend({rot::kRegisterCount, "x", "y", "", {}}));
  EXPECT_EQ(*rot->ReadCounter("floor.os"), 0u);
  EXPECT_EQ(*rot->IncrementCounter("floor.os"), 1u);
  EXPECT_EQ(*rot->IncrementCounter("floor.os"), 2u);
  EXPECT_FALSE(rot->IncrementCounter("bad name"));
  auto quote = rot->CreateQuote(std::vector<std::uint8_t>{1, 2, 3});
  ASSERT_TRUE(quote);
  EXPECT_TRUE(
      rot->IdentityPublicKey().VerifyDigest(rot::QuoteDigest(quote->registers, quote->nonce), quote->signature));
}

TEST(MemoryRootOfTrustTest, SignsEvidenceTheServiceCanCheck) {
  auto rot = *MemoryRootOfTrust::Generate();
  auto issuer = *crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(rot->StoreManufacturerChain({SelfIssued(rot->IdentityPublicKey(), issuer)}));
  for (const auto& event : SimulatedBootEvents("citadel-os", "1.0.0")) ASSERT_TRUE(rot->Extend(event));
  auto csr = *crypto::CertificateRequest::Create(rot->TlsClientKey(), rot->DeviceId());
  auto body = protocol::CreateSignedEvidence(*rot, crypto::RandomBytes(protocol::kNonceBytes), csr.Pem());
  ASSERT_TRUE(body);
  auto parsed = protocol::ParseSignedEvidence(*body);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->evidence.device_id, rot->DeviceId());
  EXPECT_EQ(parsed->evidence.measurements.size(), 3u);
  EXPECT_TRUE(protocol::VerifyEvidenceSignature(*parsed, rot->IdentityPublicKey()));
}

}  // namespace
}  // namespace citadel::sim
