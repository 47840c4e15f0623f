#include "server/tenant_ca.hpp"

#include <gtest/gtest.h>

namespace citadel::server {
namespace {

TEST(DeviceUri, RoundTrips) {
  auto uri = DeviceUri("ten_a", "abcd");
  EXPECT_EQ(uri, "citadel://tenant/ten_a/device/abcd");
  auto parts = ParseDeviceUri(uri);
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->tenant_id, "ten_a");
  EXPECT_EQ(parts->device_id, "abcd");
}

TEST(DeviceUri, RefusesOtherForms) {
  EXPECT_FALSE(ParseDeviceUri("https://tenant/x/device/y"));
  EXPECT_FALSE(ParseDeviceUri("citadel://tenant//device/y"));
  EXPECT_FALSE(ParseDeviceUri("citadel://tenant/x/device/"));
  EXPECT_FALSE(ParseDeviceUri("citadel://tenant/x/device/y/z"));
  EXPECT_FALSE(ParseDeviceUri("citadel://tenant/x"));
}

TEST(TenantCa, SealedKeysAreBoundToTheirTenant) {
  crypto::SecretBytes master(std::string(32, '\x42'));
  auto ca = CreateTenantCa("ten_a", "A", master);
  ASSERT_TRUE(ca) << ca.error().message();
  auto root = crypto::Certificate::FromPem(ca->root_certificate_pem);
  auto issuing = crypto::Certificate::FromPem(ca->issuing_certificate_pem);
  ASSERT_TRUE(root && issuing);
  EXPECT_TRUE(root->IsCa());
  EXPECT_TRUE(issuing->IsCa());
  std::vector<crypto::Certificate> roots{*root};
  EXPECT_TRUE(crypto::VerifyCertificateChain(*issuing, {}, roots));
  // The sealed issuing key opens only with the tenant's associated data.
  auto sealed = Base64Decode(ca->sealed_issuing_key);
  ASSERT_TRUE(sealed);
  EXPECT_TRUE(crypto::OpenSecret(master, *sealed, "tenant-issuing-ca:ten_a"));
  EXPECT_FALSE(crypto::OpenSecret(master, *sealed, "tenant-issuing-ca:ten_b"));
  EXPECT_EQ(ca->sealed_root_key.find("PRIVATE"), std::string::npos);
}

}  // namespace
}  // namespace citadel::server
