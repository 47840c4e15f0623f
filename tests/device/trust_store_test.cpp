// The device's app trust store: publisher keys and the AppDevelopment
// capability check. Each refusal in docs/PROTOCOL.md ("App trust") has a
// test that breaks when the check is removed.
#include "device/trust_store.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

constexpr std::string_view kTenant = "ten_acme";

crypto::Certificate MakeCa(const std::string& cn, const crypto::PrivateKey& key) {
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.is_ca = true;
  spec.lifetime = std::chrono::days(365);
  auto cert = crypto::IssueCertificate(spec, key.Public(), nullptr, key);
  EXPECT_TRUE(cert) << cert.error().message();
  return *cert;
}

class TrustStoreTest : public ::testing::Test {
 protected:
  std::string device_id_ = std::string(64, 'd');
  crypto::PrivateKey ca_key_ = *crypto::PrivateKey::GenerateP256();
  crypto::Certificate ca_ = MakeCa("Tenant Issuing CA", ca_key_);
  crypto::PrivateKey developer_ = *crypto::PrivateKey::GenerateP256();

  protocol::DevelopmentCapabilityClaims Claims() const {
    return {device_id_,
            std::string(kTenant),
            "2026-01-01T00:00:00Z",
            "5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b",
            {developer_.Public()}};
  }
  Json Sign(const protocol::DevelopmentCapabilityClaims& claims, const crypto::PrivateKey& key,
            const crypto::Certificate& cert) const {
    auto envelope = protocol::CreateDevelopmentCapabilityEnvelope(claims, key, cert);
    EXPECT_TRUE(envelope) << envelope.error().message();
    return envelope.value_or(Json());
  }
  Json Envelope() const { return Sign(Claims(), ca_key_, ca_); }

  Expected<DevelopmentCapability> Verify(const Json& envelope) const {
    return VerifyDevelopmentCapability(envelope.dump(), device_id_, kTenant, ca_);
  }

  testing::TempDir dir_;
};

TEST_F(TrustStoreTest, CapabilitySignedByTheDevicesIssuingCaVerifies) {
  auto verified = Verify(Envelope());
  ASSERT_TRUE(verified) << verified.error().message();
  EXPECT_EQ(verified->capability_id, "5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b");
  ASSERT_EQ(verified->developer_keys.size(), 1u);
  EXPECT_TRUE(verified->developer_keys[0] == developer_.Public());
}

TEST_F(TrustStoreTest, CapabilityWithoutDeveloperKeysVerifies) {
  auto claims = Claims();
  claims.developer_keys.clear();
  auto envelope = Sign(claims, ca_key_, ca_);
  EXPECT_FALSE(envelope["capability"].contains("DeveloperKeys"));
  auto verified = Verify(envelope);
  ASSERT_TRUE(verified) << verified.error().message();
  EXPECT_TRUE(verified->developer_keys.empty());
}

TEST_F(TrustStoreTest, TamperedCapabilityIsRefused) {
  // Each edit after signing: a developer key slipped in, the device or the
  // id changed, the signature altered.
  auto attacker = crypto::PrivateKey::GenerateP256();
  auto add_key = Envelope();
  add_key["capability"]["DeveloperKeys"].push_back(Base64Encode(attacker->Public().SpkiDer()));
  auto verified = Verify(add_key);
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kCrypto) << verified.error().message();

  auto other_id = Envelope();
  other_id["capability"]["CapabilityId"] = "00000000-0000-4000-8000-000000000000";
  EXPECT_FALSE(Verify(other_id));

  auto signature = Envelope();
  auto bytes = *Base64Decode(signature["signature"].get<std::string>());
  bytes[bytes.size() / 2] ^= 0x01;
  signature["signature"] = Base64Encode(bytes);
  EXPECT_FALSE(Verify(signature));
}

TEST_F(TrustStoreTest, CapabilityForAnotherDeviceOrTenantIsRefused) {
  auto claims = Claims();
  claims.device_id = std::string(64, 'e');
  auto other_device = Verify(Sign(claims, ca_key_, ca_));
  ASSERT_FALSE(other_device);
  EXPECT_EQ(other_device.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(other_device.error().message().find("another device"), std::string::npos);

  claims = Claims();
  claims.tenant_id = "ten_other";
  auto other_tenant = Verify(Sign(claims, ca_key_, ca_));
  ASSERT_FALSE(other_tenant);
  EXPECT_EQ(other_tenant.error().code(), ErrorCode::kPermissionDenied);
}

TEST_F(TrustStoreTest, CapabilityFromAnotherCaIsRefusedEvenWithTheSameName) {
  // A look-alike CA (same subject) signs a perfectly formed capability.
  auto impostor_key = crypto::PrivateKey::GenerateP256();
  auto impostor = MakeCa("Tenant Issuing CA", *impostor_key);
  auto forged = Verify(Sign(Claims(), *impostor_key, impostor));
  ASSERT_FALSE(forged);
  EXPECT_EQ(forged.error().code(), ErrorCode::kCrypto);

  // Signed by the impostor but claiming the real CA's certificate.
  auto swapped = Sign(Claims(), *impostor_key, impostor);
  swapped["certificate"] = ca_.Pem();
  auto refused = Verify(swapped);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("signature"), std::string::npos) << refused.error().message();
}

TEST_F(TrustStoreTest, MalformedCapabilitiesAreRefused) {
  auto wrong_type = Envelope();
  wrong_type["capability"]["Type"] = "AppDeployment";
  EXPECT_FALSE(Verify(wrong_type));
  auto extra = Envelope();
  extra["capability"]["Admin"] = true;
  EXPECT_FALSE(Verify(extra));
  auto too_many = Envelope();
  for (int i = 0; i < 20; ++i)
    too_many["capability"]["DeveloperKeys"].push_back(too_many["capability"]["DeveloperKeys"][0]);
  EXPECT_FALSE(Verify(too_many));
  EXPECT_FALSE(VerifyDevelopmentCapability("{", device_id_, kTenant, ca_));
  EXPECT_FALSE(
      VerifyDevelopmentCapability(std::string(protocol::kMaxCapabilityBytes + 1, ' '), device_id_, kTenant, ca_));
}

TEST_F(TrustStoreTest, CapabilityIsSavedLoadedAndRemoved) {
  const auto& state = dir_.path();
  std::vector<crypto::Certificate> chain{ca_};
  auto missing = LoadDevelopmentCapability(state, device_id_, kTenant, chain);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  ASSERT_TRUE(SaveDevelopmentCapability(state, Envelope().dump()));
  auto loaded = LoadDevelopmentCapability(state, device_id_, kTenant, chain);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_FALSE(LoadDevelopmentCapability(state, device_id_, kTenant, {}));
  EXPECT_FALSE(LoadDevelopmentCapability(state, device_id_, "ten_other", chain));

  ASSERT_TRUE(RemoveDevelopmentCapability(state));
  EXPECT_FALSE(std::filesystem::exists(state / "trust" / "app-development.json"));
  EXPECT_TRUE(RemoveDevelopmentCapability(state));  // absent: fine
}

TEST_F(TrustStoreTest, PublisherKeysRoundTripAndAbsentMeansNone) {
  const auto& state = dir_.path();
  auto none = LoadPublisherKeys(state);
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_TRUE(none->empty());

  auto a = crypto::PrivateKey::GenerateP256()->Public();
  auto b = crypto::PrivateKey::GenerateP256()->Public();
  std::vector<protocol::PublisherKeyEntry> entries{{protocol::KeyId(a), a.Pem()}, {protocol::KeyId(b), b.Pem()}};
  ASSERT_TRUE(SavePublisherKeys(state, entries));
  auto keys = LoadPublisherKeys(state);
  ASSERT_TRUE(keys) << keys.error().message();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_TRUE((*keys)[0] == a);
  EXPECT_TRUE((*keys)[1] == b);
}

TEST_F(TrustStoreTest, PublisherKeyWithAWrongIdIsNeitherSavedNorLoaded) {
  const auto& state = dir_.path();
  auto a = crypto::PrivateKey::GenerateP256()->Public();
  std::vector<protocol::PublisherKeyEntry> bad{{std::string(64, '0'), a.Pem()}};
  EXPECT_FALSE(SavePublisherKeys(state, bad));
  EXPECT_FALSE(std::filesystem::exists(state / "trust" / "publisher-keys.json"));

  // A file edited on disk to carry a key under another key's id.
  ASSERT_TRUE(EnsureDirectory(state / "trust"));
  Json file{{"publisher_keys", Json::array({{{"key_id", std::string(64, '0')}, {"public_key_pem", a.Pem()}}})}};
  ASSERT_TRUE(WriteFileAtomic(state / "trust" / "publisher-keys.json", file.dump()));
  EXPECT_FALSE(LoadPublisherKeys(state));
  ASSERT_TRUE(WriteFileAtomic(state / "trust" / "publisher-keys.json", "{\"publisher_keys\":[],\"x\":1}"));
  EXPECT_FALSE(LoadPublisherKeys(state));
}

}  // namespace
}  // namespace citadel::device
