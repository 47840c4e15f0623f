#include "app/resources.hpp"

#include <string>

#include <gtest/gtest.h>

#include "common/canonical_json.hpp"
#include "test_support.hpp"

namespace citadel::app {
namespace {

Policy MakePolicy(const std::string& name, const std::string& component_id, const char* capabilities) {
  Json document = Json::parse(testing::kEmptyCapabilitiesManifest);
  document["Name"] = name;
  document["ComponentId"] = component_id;
  document["Capabilities"] = Json::parse(capabilities);
  auto manifest = ParseManifest(document.dump());
  if (!manifest) ADD_FAILURE() << manifest.error().message();
  auto policy = BuildPolicy(manifest ? *manifest : Manifest{}, testing::SimulatedBoard(), DevicePolicy{});
  if (!policy) ADD_FAILURE() << policy.error().message();
  return policy ? *policy : Policy{};
}

constexpr const char* kBlinkId = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr const char* kOtherId = "bbbbbbbb-0000-4000-8000-000000000002";

TEST(ResourceRegistryTest, SecondAppClaimingHeldPinFailsNamingBothApps) {
  ResourceRegistry registry;
  ASSERT_TRUE(registry.Claim(MakePolicy("Blink", kBlinkId, R"({"Gpio": ["LED1"]})")));
  auto second = registry.Claim(MakePolicy("Other", kOtherId, R"({"Gpio": ["LED2", "LED1"]})"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kConflict);
  const std::string& message = second.error().message();
  EXPECT_NE(message.find("\"Other\""), std::string::npos) << message;
  EXPECT_NE(message.find(kOtherId), std::string::npos) << message;
  EXPECT_NE(message.find("\"Blink\""), std::string::npos) << message;
  EXPECT_NE(message.find(kBlinkId), std::string::npos) << message;
  EXPECT_NE(message.find("LED1"), std::string::npos) << message;
}

TEST(ResourceRegistryTest, ClaimIsAllOrNothing) {
  ResourceRegistry registry;
  ASSERT_TRUE(registry.Claim(MakePolicy("Blink", kBlinkId, R"({"Gpio": ["LED1"]})")));
  ASSERT_FALSE(registry.Claim(MakePolicy("Other", kOtherId, R"({"Gpio": ["LED2", "LED1"], "Uart": ["UART0"]})")));
  // LED2 and UART0 were free but must not have been taken by the failed claim.
  const BoardDefinition board = testing::SimulatedBoard();
  EXPECT_FALSE(registry.HolderOf(board.Find(PeripheralKind::kGpio, "LED2")->ResourceKey()));
  EXPECT_FALSE(registry.HolderOf(board.Find(PeripheralKind::kUart, "UART0")->ResourceKey()));
  EXPECT_EQ(registry.size(), 1U);
}

TEST(ResourceRegistryTest, ReleaseFreesEverything) {
  ResourceRegistry registry;
  ASSERT_TRUE(registry.Claim(MakePolicy("Blink", kBlinkId, R"({"Gpio": ["LED1"], "AllowedTcpServerPorts": [80]})")));
  auto holder = registry.HolderOf("gpio:gpiochip0#0");
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->app_name, "Blink");
  registry.Release(kBlinkId);
  EXPECT_EQ(registry.size(), 0U);
  auto claimed = registry.Claim(MakePolicy("Other", kOtherId, R"({"Gpio": ["LED1"], "AllowedTcpServerPorts": [80]})"));
  ASSERT_TRUE(claimed) << claimed.error().message();
  EXPECT_EQ(registry.HolderOf("gpio:gpiochip0#0")->component_id, kOtherId);
}

TEST(ResourceRegistryTest, ListeningPortsAreExclusivePerProtocol) {
  ResourceRegistry registry;
  ASSERT_TRUE(registry.Claim(MakePolicy("Web", kBlinkId, R"({"AllowedTcpServerPorts": [8080]})")));
  auto tcp = registry.Claim(MakePolicy("Other", kOtherId, R"({"AllowedTcpServerPorts": [8080]})"));
  ASSERT_FALSE(tcp);
  EXPECT_NE(tcp.error().message().find("TCP server port 8080"), std::string::npos) << tcp.error().message();
  EXPECT_TRUE(registry.Claim(MakePolicy("Other", kOtherId, R"({"AllowedUdpServerPorts": [8080]})")));
}

TEST(ResourceRegistryTest, UpdateOfSameAppReplacesItsClaims) {
  ResourceRegistry registry;
  ASSERT_TRUE(registry.Claim(MakePolicy("Blink", kBlinkId, R"({"Gpio": ["LED1", "LED2"]})")));
  ASSERT_TRUE(registry.Claim(MakePolicy("Blink", kBlinkId, R"({"Gpio": ["LED1"]})")));
  EXPECT_EQ(registry.size(), 1U);
  EXPECT_FALSE(registry.HolderOf("gpio:gpiochip0#1"));
  EXPECT_TRUE(registry.Claim(MakePolicy("Other", kOtherId, R"({"Gpio": ["LED2"]})")));
}

}  // namespace
}  // namespace citadel::app
