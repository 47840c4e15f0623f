// The AppDevelopment capability check: only this device's issuing CA, this
// device and this tenant; nothing altered; nothing unknown.
#include <gtest/gtest.h>

#include "apps/development.hpp"
#include "apps/trust.hpp"
#include "common/file.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

using testing::TestTenant;

TEST(DevelopmentTest, AcceptsTheTenantsCapabilityForThisDevice) {
  TestTenant tenant;
  auto developer = testing::NewKey();
  auto grant = VerifyDevelopmentEnvelope(tenant.Envelope(tenant.Capability({&developer})), tenant.Identity());
  ASSERT_TRUE(grant) << grant.error().message();
  EXPECT_EQ(grant->device_id, tenant.device_id);
  EXPECT_EQ(grant->tenant_id, "tenant-a");
  ASSERT_EQ(grant->developer_keys.size(), 1u);
  EXPECT_TRUE(grant->developer_keys[0] == developer.Public());
}

TEST(DevelopmentTest, RefusesOtherDevicesTenantsAndSigners) {
  TestTenant tenant;
  auto expect_refused = [&](const std::string& envelope, const std::string& needle) {
    auto grant = VerifyDevelopmentEnvelope(envelope, tenant.Identity());
    ASSERT_FALSE(grant) << "accepted: " << envelope;
    EXPECT_NE(grant.error().message().find(needle), std::string::npos) << grant.error().message();
  };
  auto other_device = tenant.Capability();
  other_device["DeviceId"] = std::string(64, 'b');
  expect_refused(tenant.Envelope(other_device), "issued for another device");

  auto other_tenant = tenant.Capability();
  other_tenant["TenantId"] = "tenant-b";
  expect_refused(tenant.Envelope(other_tenant), "tenant");

  // Another CA (even a well-formed one) signing with its own key.
  TestTenant stranger;
  expect_refused(stranger.Envelope(tenant.Capability()), "not signed by the issuing CA that certified this device");
  // The right certificate, but signed by another key.
  expect_refused(tenant.Envelope(tenant.Capability(), &stranger.ca_key), "does not verify");

  // Altered after signing.
  auto envelope = Json::parse(tenant.Envelope(tenant.Capability()));
  envelope["capability"]["IssuedAt"] = "2030-01-01T00:00:00Z";
  expect_refused(envelope.dump(), "does not verify");

  auto wrong_type = tenant.Capability();
  wrong_type["Type"] = "AppInstall";
  expect_refused(tenant.Envelope(wrong_type), "AppDevelopment");

  auto unknown = tenant.Capability();
  unknown["ExpiresAt"] = "2026-12-01T00:00:00Z";
  expect_refused(tenant.Envelope(unknown), "ExpiresAt");

  expect_refused("{", "");
  expect_refused(R"({"capability":{}})", "");
}

TEST(DevelopmentTest, RefusedWithoutADeviceCertificate) {
  TestTenant tenant;
  DeviceIdentity identity{tenant.device_id, "", std::nullopt};
  auto grant = VerifyDevelopmentEnvelope(tenant.Envelope(tenant.Capability()), identity);
  ASSERT_FALSE(grant);
  EXPECT_NE(grant.error().message().find("attest"), std::string::npos);
}

TEST(FileTrustSourceTest, StoresOnlyVerifiedCapabilitiesAndReverifies) {
  citadel::testing::TempDir dir = testing::StateTempDir();
  TestTenant tenant;
  DeviceIdentity identity = tenant.Identity();
  FileTrustSource trust(dir.path(), [&]() -> Expected<DeviceIdentity> { return identity; });
  auto none = trust.Development();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());

  auto bad = tenant.Capability();
  bad["DeviceId"] = std::string(64, 'f');
  EXPECT_FALSE(trust.ApplyDevelopmentCapability(tenant.Envelope(bad)));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "trust" / "app-development.json"));

  ASSERT_TRUE(trust.ApplyDevelopmentCapability(tenant.Envelope(tenant.Capability())));
  EXPECT_EQ(std::filesystem::status(dir.path() / "trust" / "app-development.json").permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms(0600));
  auto grant = trust.Development();
  ASSERT_TRUE(grant);
  EXPECT_TRUE(grant->has_value());

  // The device moved to another tenant: the stored capability stops counting.
  identity.tenant_id = "tenant-b";
  grant = trust.Development();
  ASSERT_TRUE(grant);
  EXPECT_FALSE(grant->has_value());
}

TEST(FileTrustSourceTest, ReadsPublisherKeysStrictly) {
  citadel::testing::TempDir dir = testing::StateTempDir();
  FileTrustSource trust(dir.path(), [] { return Expected<DeviceIdentity>(DeviceIdentity{}); });
  auto none = trust.PublisherKeys();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto key = testing::NewKey();
  testing::TrustPublishers(dir.path(), {&key});
  auto keys = trust.PublisherKeys();
  ASSERT_TRUE(keys) << keys.error().message();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_TRUE(keys->front() == key.Public());

  // A key whose id does not match it makes the whole list unusable.
  auto other = testing::NewKey();
  Json mismatched{{"publisher_keys",
                   {{{"key_id", image::PublisherKeyId(other.Public())}, {"public_key_pem", key.Public().Pem()}}}}};
  ASSERT_TRUE(WriteFileAtomic(dir.path() / kTrustDir / kPublisherKeysFile, mismatched.dump(), 0644));
  EXPECT_FALSE(trust.PublisherKeys());
  ASSERT_TRUE(WriteFileAtomic(dir.path() / kTrustDir / kPublisherKeysFile, R"({"publisher_keys":{}})", 0644));
  EXPECT_FALSE(trust.PublisherKeys());
}

}  // namespace
}  // namespace citadel::apps
