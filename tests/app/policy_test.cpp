#include "app/policy.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/canonical_json.hpp"
#include "test_support.hpp"

namespace citadel::app {
namespace {

Manifest ParseOrFail(const std::string& json) {
  auto manifest = ParseManifest(json);
  if (!manifest) ADD_FAILURE() << manifest.error().message();
  return manifest ? *manifest : Manifest{};
}

Manifest Patched(const char* patch) {
  Json document = Json::parse(testing::kEmptyCapabilitiesManifest);
  document.merge_patch(Json::parse(patch));
  return ParseOrFail(document.dump());
}

std::vector<std::string> Names(const Policy& policy) {
  std::vector<std::string> names;
  for (const Peripheral& peripheral : policy.peripherals) names.push_back(peripheral.name);
  return names;
}

TEST(PolicyTest, FullManifestRoundTripsIntoPolicy) {
  const BoardDefinition board = testing::SimulatedBoard();
  auto policy = BuildPolicy(ParseOrFail(testing::kFullManifest), board, DevicePolicy{});
  ASSERT_TRUE(policy) << policy.error().message();
  EXPECT_EQ(policy->component_id, "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
  EXPECT_EQ(policy->name, "Thermostat");
  EXPECT_EQ(policy->entry_point, "/bin/thermostat");
  EXPECT_EQ(policy->cmd_args, (std::vector<std::string>{"--interval", "5"}));
  EXPECT_EQ(Names(*policy), (std::vector<std::string>{"LED1", "BUTTON_A", "UART0", "I2C0", "SPI0", "PWM0", "ADC0"}));
  EXPECT_EQ(policy->peripherals[0], *board.Find(PeripheralKind::kGpio, "LED1"));
  EXPECT_EQ(policy->peripherals[3].device, "/dev/i2c-0");
  EXPECT_EQ(policy->peripherals[5].ResourceKey(), "pwm:pwmchip0#0");
  EXPECT_EQ(policy->allowed_hosts, std::vector<std::string>{"broker.example.com"});
  EXPECT_EQ(policy->allowed_ip_addresses, (std::vector<std::string>{"127.0.0.2", "2001:db8::1"}));
  EXPECT_EQ(policy->tcp_server_ports, std::vector<std::uint16_t>{8080});
  EXPECT_EQ(policy->udp_server_ports, (std::vector<std::uint16_t>{5683, 8080}));
  EXPECT_EQ(policy->app_connections, std::vector<std::string>{"a1b2c3d4-0000-4000-8000-00000000abcd"});
  EXPECT_EQ(policy->storage_quota_bytes, 256U * 1024U);
  EXPECT_EQ(policy->memory_limit_bytes, 128U * kMiB);
  EXPECT_EQ(policy->pids_limit, 16U);
  EXPECT_TRUE(policy->device_authentication);
  EXPECT_EQ(policy->device_authentication_tenant, "ten_abc123");
  EXPECT_TRUE(policy->system_time);
  EXPECT_TRUE(policy->power_controls);
  EXPECT_TRUE(policy->HasNetworkAccess());
  // Granted capabilities lift exactly their own denials; the rest stay.
  EXPECT_FALSE(policy->denied_features.contains(DeniedFeature::kNetworkSockets));
  EXPECT_FALSE(policy->denied_features.contains(DeniedFeature::kInboundTcp));
  EXPECT_FALSE(policy->denied_features.contains(DeniedFeature::kSetSystemTime));
  EXPECT_FALSE(policy->denied_features.contains(DeniedFeature::kReboot));
  EXPECT_TRUE(policy->denied_features.contains(DeniedFeature::kWriteExecuteMemory));
  EXPECT_TRUE(policy->denied_features.contains(DeniedFeature::kRawSockets));
  // Network capabilities do not put the app in the device's namespace.
  EXPECT_TRUE(policy->namespaces.contains(Namespace::kNetwork));
  EXPECT_TRUE(policy->namespaces.contains(Namespace::kPid));
}

TEST(PolicyTest, NothingIsGrantedByDefault) {
  const DevicePolicy device;
  auto policy = BuildPolicy(ParseOrFail(testing::kEmptyCapabilitiesManifest), testing::SimulatedBoard(), device);
  ASSERT_TRUE(policy) << policy.error().message();
  EXPECT_TRUE(policy->peripherals.empty());
  EXPECT_TRUE(policy->allowed_hosts.empty());
  EXPECT_TRUE(policy->allowed_ip_addresses.empty());
  EXPECT_TRUE(policy->tcp_server_ports.empty());
  EXPECT_TRUE(policy->udp_server_ports.empty());
  EXPECT_TRUE(policy->app_connections.empty());
  EXPECT_EQ(policy->storage_quota_bytes, 0U);
  EXPECT_FALSE(policy->device_authentication);
  EXPECT_TRUE(policy->device_authentication_tenant.empty());
  EXPECT_FALSE(policy->system_time);
  EXPECT_FALSE(policy->power_controls);
  EXPECT_FALSE(policy->HasNetworkAccess());
  // Defaults applied.
  EXPECT_EQ(policy->memory_limit_bytes, 64U * kMiB);
  EXPECT_EQ(policy->pids_limit, 32U);
  EXPECT_EQ(device.default_memory_bytes, 64U * kMiB);
  EXPECT_EQ(device.default_pids, 32U);
  // Every denial is in force, and the app gets its own network namespace.
  for (DeniedFeature feature :
       {DeniedFeature::kWriteExecuteMemory, DeniedFeature::kRawSockets, DeniedFeature::kNetworkSockets,
        DeniedFeature::kInboundTcp, DeniedFeature::kInboundUdp, DeniedFeature::kPtrace, DeniedFeature::kKernelModules,
        DeniedFeature::kMount, DeniedFeature::kNewPrivileges, DeniedFeature::kNamespaceCreation, DeniedFeature::kBpf,
        DeniedFeature::kSetSystemTime, DeniedFeature::kReboot}) {
    EXPECT_TRUE(policy->denied_features.contains(feature)) << DeniedFeatureName(feature);
  }
  EXPECT_TRUE(policy->namespaces.contains(Namespace::kNetwork));
}

TEST(PolicyTest, UnknownPeripheralNamesFieldAndPeripheral) {
  auto policy = BuildPolicy(Patched(R"({"Capabilities": {"Gpio": ["LED1", "LED2", "LED3", "PIN99"]}})"),
                            testing::SimulatedBoard(), DevicePolicy{});
  ASSERT_FALSE(policy);
  EXPECT_EQ(policy.error().message().rfind("Capabilities.Gpio[3]: \"PIN99\" is not on this board", 0), 0U)
      << policy.error().message();
  EXPECT_NE(policy.error().message().find("LED4"), std::string::npos) << "lists what the board has";

  // A name of another kind is not accepted: LED1 is not an ADC channel.
  auto wrong_kind =
      BuildPolicy(Patched(R"({"Capabilities": {"Adc": ["LED1"]}})"), testing::SimulatedBoard(), DevicePolicy{});
  ASSERT_FALSE(wrong_kind);
  EXPECT_EQ(wrong_kind.error().message().rfind("Capabilities.Adc[0]: \"LED1\"", 0), 0U) << wrong_kind.error().message();
}

TEST(PolicyTest, ResourceRequestsWithinCeilingsAreApplied) {
  DevicePolicy device;
  device.max_memory_bytes = 256 * kMiB;
  device.max_pids = 100;
  auto policy = BuildPolicy(Patched(R"({"Resources": {"MemoryMB": 256, "MaxProcesses": 100}})"),
                            testing::SimulatedBoard(), device);
  ASSERT_TRUE(policy) << policy.error().message();
  EXPECT_EQ(policy->memory_limit_bytes, 256U * kMiB);
  EXPECT_EQ(policy->pids_limit, 100U);
  // Lowering below the default is allowed too.
  auto small = BuildPolicy(Patched(R"({"Resources": {"MemoryMB": 8}})"), testing::SimulatedBoard(), device);
  ASSERT_TRUE(small) << small.error().message();
  EXPECT_EQ(small->memory_limit_bytes, 8U * kMiB);
  EXPECT_EQ(small->pids_limit, device.default_pids);
}

TEST(PolicyTest, ResourceRequestsAboveCeilingsAreRefused) {
  DevicePolicy device;
  device.max_memory_bytes = 256 * kMiB;
  device.max_pids = 100;
  device.max_storage_bytes = 1024 * 1024;
  auto memory = BuildPolicy(Patched(R"({"Resources": {"MemoryMB": 257}})"), testing::SimulatedBoard(), device);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().message().rfind("Resources.MemoryMB: 257 MiB exceeds", 0), 0U) << memory.error().message();
  auto pids = BuildPolicy(Patched(R"({"Resources": {"MaxProcesses": 101}})"), testing::SimulatedBoard(), device);
  ASSERT_FALSE(pids);
  EXPECT_EQ(pids.error().message().rfind("Resources.MaxProcesses: 101 exceeds", 0), 0U) << pids.error().message();
  auto storage = BuildPolicy(Patched(R"({"Capabilities": {"MutableStorage": {"SizeKB": 1025}}})"),
                             testing::SimulatedBoard(), device);
  ASSERT_FALSE(storage);
  EXPECT_EQ(storage.error().message().rfind("Capabilities.MutableStorage.SizeKB: 1025 KiB exceeds", 0), 0U)
      << storage.error().message();
  auto storage_ok = BuildPolicy(Patched(R"({"Capabilities": {"MutableStorage": {"SizeKB": 1024}}})"),
                                testing::SimulatedBoard(), device);
  ASSERT_TRUE(storage_ok) << storage_ok.error().message();
  EXPECT_EQ(storage_ok->storage_quota_bytes, 1024U * 1024U);
}

TEST(PolicyTest, OnlyOutboundConnectionsKeepInboundDenied) {
  auto policy = BuildPolicy(Patched(R"({"Capabilities": {"AllowedConnections": ["::1"]}})"), testing::SimulatedBoard(),
                            DevicePolicy{});
  ASSERT_TRUE(policy) << policy.error().message();
  EXPECT_TRUE(policy->allowed_hosts.empty());
  EXPECT_EQ(policy->allowed_ip_addresses, std::vector<std::string>{"::1"});
  EXPECT_FALSE(policy->denied_features.contains(DeniedFeature::kNetworkSockets));
  EXPECT_TRUE(policy->denied_features.contains(DeniedFeature::kInboundTcp));
  EXPECT_TRUE(policy->denied_features.contains(DeniedFeature::kInboundUdp));
  // A UDP socket connected to ::1 could name other destinations per
  // datagram: addressed sends are denied.
  EXPECT_TRUE(policy->MayHoldDeviceDatagramSockets());
  EXPECT_TRUE(policy->denied_features.contains(DeniedFeature::kAddressedSends));
}

TEST(PolicyTest, AddressedSendsAreDeniedExactlyWhenDeviceDatagramSocketsArePossible) {
  struct Case {
    const char* capabilities;
    bool denied;
  };
  for (const Case& c : {Case{R"({})", false}, Case{R"({"AllowedTcpServerPorts": [8080]})", false},
                        Case{R"({"AllowedUdpServerPorts": [5683]})", true},
                        Case{R"({"AllowedConnections": ["broker.example.com"]})", true}}) {
    const std::string patch = std::string(R"({"Capabilities": )") + c.capabilities + "}";
    auto policy = BuildPolicy(Patched(patch.c_str()), testing::SimulatedBoard(), DevicePolicy{});
    ASSERT_TRUE(policy) << c.capabilities << ": " << policy.error().message();
    EXPECT_EQ(policy->MayHoldDeviceDatagramSockets(), c.denied) << c.capabilities;
    EXPECT_EQ(policy->denied_features.contains(DeniedFeature::kAddressedSends), c.denied) << c.capabilities;
  }
}

}  // namespace
}  // namespace citadel::app
