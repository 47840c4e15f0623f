// The spec crossing to citadel-sandbox keeps every Policy field.
#include <gtest/gtest.h>

#include "sandbox/spec_json.hpp"

namespace citadel::sandbox {
namespace {

app::Policy FullPolicy() {
  app::Policy policy;
  policy.component_id = "7f3c1a52-0b3e-4a8e-9d1c-2e5f4b6a7c8d";
  policy.name = "Blink";
  policy.entry_point = "/bin/blink";
  policy.cmd_args = {"--fast", "x y"};
  policy.peripherals = {{app::PeripheralKind::kGpio, "LED1", "gpiochip0", 17, "red"},
                        {app::PeripheralKind::kUart, "UART0", "/dev/ttyS0", std::nullopt, ""}};
  policy.allowed_hosts = {"example.test"};
  policy.allowed_ip_addresses = {"127.0.0.2", "::1"};
  policy.tcp_server_ports = {8080};
  policy.udp_server_ports = {5353, 9};
  policy.app_connections = {"00000000-0000-0000-0000-000000000001"};
  policy.storage_quota_bytes = 1 << 20;
  policy.memory_limit_bytes = 32 << 20;
  policy.pids_limit = 9;
  policy.device_authentication = true;
  policy.device_authentication_tenant = "tenant-1";
  policy.system_time = true;
  policy.power_controls = true;
  policy.denied_features = {app::DeniedFeature::kBpf, app::DeniedFeature::kReboot,
                            app::DeniedFeature::kWriteExecuteMemory};
  policy.namespaces = {app::Namespace::kMount, app::Namespace::kNetwork, app::Namespace::kPid};
  return policy;
}

void ExpectSamePolicy(const app::Policy& a, const app::Policy& b) {
  EXPECT_EQ(a.component_id, b.component_id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.entry_point, b.entry_point);
  EXPECT_EQ(a.cmd_args, b.cmd_args);
  EXPECT_EQ(a.peripherals, b.peripherals);
  EXPECT_EQ(a.allowed_hosts, b.allowed_hosts);
  EXPECT_EQ(a.allowed_ip_addresses, b.allowed_ip_addresses);
  EXPECT_EQ(a.tcp_server_ports, b.tcp_server_ports);
  EXPECT_EQ(a.udp_server_ports, b.udp_server_ports);
  EXPECT_EQ(a.app_connections, b.app_connections);
  EXPECT_EQ(a.storage_quota_bytes, b.storage_quota_bytes);
  EXPECT_EQ(a.memory_limit_bytes, b.memory_limit_bytes);
  EXPECT_EQ(a.pids_limit, b.pids_limit);
  EXPECT_EQ(a.device_authentication, b.device_authentication);
  EXPECT_EQ(a.device_authentication_tenant, b.device_authentication_tenant);
  EXPECT_EQ(a.system_time, b.system_time);
  EXPECT_EQ(a.power_controls, b.power_controls);
  EXPECT_EQ(a.denied_features, b.denied_features);
  EXPECT_EQ(a.namespaces, b.namespaces);
}

TEST(SandboxSpecJsonTest, PolicyRoundTripsCompletely) {
  app::Policy policy = FullPolicy();
  auto back = PolicyFromJson(PolicyToJson(policy));
  ASSERT_TRUE(back.has_value()) << back.error().message();
  ExpectSamePolicy(policy, *back);
}

TEST(SandboxSpecJsonTest, LaunchSpecRoundTrips) {
  LaunchSpec spec;
  spec.policy = FullPolicy();
  spec.image_root = "/var/lib/citadel/apps/x/root";
  spec.storage_image = "/var/lib/citadel/apps/x/storage.ext4";
  spec.applibs_dir = "/opt/citadel/lib";
  spec.hosts_file = "127.0.0.2\texample.test\n";
  spec.uid = 61003;
  spec.gid = 61004;
  spec.cgroup = "/sys/fs/cgroup/memory/citadel/x\n/sys/fs/cgroup/pids/citadel/x";
  auto text = LaunchSpecToJson(spec);
  ASSERT_TRUE(text.has_value()) << text.error().message();
  auto back = LaunchSpecFromJson(*text);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  ExpectSamePolicy(spec.policy, back->policy);
  EXPECT_EQ(back->image_root, spec.image_root);
  EXPECT_EQ(back->storage_image, spec.storage_image);
  EXPECT_EQ(back->applibs_dir, spec.applibs_dir);
  EXPECT_EQ(back->hosts_file, spec.hosts_file);
  EXPECT_EQ(back->uid, spec.uid);
  EXPECT_EQ(back->gid, spec.gid);
  EXPECT_EQ(back->cgroup, spec.cgroup);
}

TEST(SandboxSpecJsonTest, RejectsUnknownEnumNamesAndMissingFields) {
  Json json = PolicyToJson(FullPolicy());
  json["denied_features"].push_back("Everything");
  EXPECT_FALSE(PolicyFromJson(json).has_value());
  Json missing = PolicyToJson(FullPolicy());
  missing.erase("pids_limit");
  EXPECT_FALSE(PolicyFromJson(missing).has_value());
  EXPECT_FALSE(LaunchSpecFromJson("{\"policy\":").has_value());
}

TEST(SandboxSpecJsonTest, HostnameIsSanitised) {
  EXPECT_EQ(SanitisedHostname("Probe App_1"), "probe-app-1");
  EXPECT_EQ(SanitisedHostname("--"), "app");
  EXPECT_EQ(SanitisedHostname(""), "app");
  EXPECT_EQ(SanitisedHostname(std::string(100, 'a')).size(), 63u);
}

}  // namespace
}  // namespace citadel::sandbox
