#include "app/manifest.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/canonical_json.hpp"
#include "test_support.hpp"

namespace citadel::app {
namespace {

TEST(ManifestTest, ParsesFullManifestAndNormalises) {
  auto manifest = ParseManifest(testing::kFullManifest);
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_EQ(manifest->schema_version, 1);
  EXPECT_EQ(manifest->name, "Thermostat");
  EXPECT_EQ(manifest->component_id, "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
  EXPECT_EQ(manifest->entry_point, "/bin/thermostat");
  EXPECT_EQ(manifest->cmd_args, (std::vector<std::string>{"--interval", "5"}));
  EXPECT_EQ(manifest->application_type, ApplicationType::kDefault);
  const Capabilities& caps = manifest->capabilities;
  EXPECT_EQ(caps.gpio, (std::vector<std::string>{"LED1", "BUTTON_A"}));
  EXPECT_EQ(caps.uart, std::vector<std::string>{"UART0"});
  EXPECT_EQ(caps.i2c_master, std::vector<std::string>{"I2C0"});
  EXPECT_EQ(caps.spi_master, std::vector<std::string>{"SPI0"});
  EXPECT_EQ(caps.pwm, std::vector<std::string>{"PWM0"});
  EXPECT_EQ(caps.adc, std::vector<std::string>{"ADC0"});
  EXPECT_EQ(caps.allowed_connections, (std::vector<std::string>{"broker.example.com", "127.0.0.2", "2001:db8::1"}));
  EXPECT_EQ(caps.allowed_tcp_server_ports, std::vector<std::uint16_t>{8080});
  EXPECT_EQ(caps.allowed_udp_server_ports, (std::vector<std::uint16_t>{5683, 8080}));
  EXPECT_EQ(caps.allowed_application_connections, std::vector<std::string>{"a1b2c3d4-0000-4000-8000-00000000abcd"});
  EXPECT_EQ(caps.mutable_storage_kb, 256U);
  EXPECT_EQ(caps.device_authentication, "ten_abc123");
  EXPECT_TRUE(caps.system_time);
  EXPECT_TRUE(caps.power_controls);
  EXPECT_EQ(manifest->resources.memory_mb, 128U);
  EXPECT_EQ(manifest->resources.max_processes, 16U);
}

TEST(ManifestTest, AzureSphereStyleExampleParses) {
  auto manifest =
      ParseManifest(R"({"SchemaVersion":1,"Name":"Blink","ComponentId":"1689d8b2-c835-2e27-27ad-e894d6d15fa9",)"
                    R"("EntryPoint":"/bin/app","CmdArgs":[],"Capabilities":{"Gpio":["LED1"],)"
                    R"("AllowedConnections":["broker.example.com","127.0.0.2"]},"ApplicationType":"Default"})");
  ASSERT_TRUE(manifest) << manifest.error().message();
  EXPECT_TRUE(manifest->cmd_args.empty());
  EXPECT_FALSE(manifest->resources.memory_mb.has_value());
}

TEST(ManifestTest, VersionAndSecurityVersionAreOptional) {
  auto without = ParseManifest(testing::kEmptyCapabilitiesManifest);
  ASSERT_TRUE(without) << without.error().message();
  EXPECT_EQ(without->version, "");
  EXPECT_EQ(without->security_version, 0);
  Json document = Json::parse(testing::kEmptyCapabilitiesManifest);
  document["Version"] = "2.1.0-rc.1+b7";
  document["SecurityVersion"] = 3;
  auto with = ParseManifest(document.dump());
  ASSERT_TRUE(with) << with.error().message();
  EXPECT_EQ(with->version, "2.1.0-rc.1+b7");
  EXPECT_EQ(with->security_version, 3);
}

TEST(ManifestTest, EmptyCapabilitiesAskForNothing) {
  auto manifest = ParseManifest(testing::kEmptyCapabilitiesManifest);
  ASSERT_TRUE(manifest) << manifest.error().message();
  const Capabilities& caps = manifest->capabilities;
  EXPECT_TRUE(caps.gpio.empty() && caps.uart.empty() && caps.i2c_master.empty() && caps.spi_master.empty() &&
              caps.pwm.empty() && caps.adc.empty());
  EXPECT_TRUE(caps.allowed_connections.empty());
  EXPECT_TRUE(caps.allowed_tcp_server_ports.empty() && caps.allowed_udp_server_ports.empty());
  EXPECT_TRUE(caps.allowed_application_connections.empty());
  EXPECT_FALSE(caps.mutable_storage_kb.has_value());
  EXPECT_FALSE(caps.device_authentication.has_value());
  EXPECT_FALSE(caps.system_time);
  EXPECT_FALSE(caps.power_controls);
}

// One malformed field per case: `patch` is merged (RFC 7386) into the full
// manifest; the error must start with `field` and contain `reason`.
struct MalformedCase {
  const char* label;
  const char* patch;
  const char* field;
  const char* reason;
};

class MalformedManifestTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedManifestTest, ErrorNamesFieldAndReason) {
  const MalformedCase& c = GetParam();
  Json document = Json::parse(testing::kFullManifest);
  document.merge_patch(Json::parse(c.patch));
  auto manifest = ParseManifest(document.dump());
  ASSERT_FALSE(manifest) << c.label << " was accepted";
  const std::string& message = manifest.error().message();
  EXPECT_EQ(message.rfind(c.field, 0), 0U) << c.label << ": " << message;
  EXPECT_NE(message.find(c.reason), std::string::npos) << c.label << ": " << message;
}

const MalformedCase kMalformedCases[] = {
    {"unknown_top_level", R"({"Debug": true})", "Debug", "unknown field"},
    {"unknown_capability", R"({"Capabilities": {"Camera": ["CAM0"]}})", "Capabilities.Camera", "unknown field"},
    {"schema_version_2", R"({"SchemaVersion": 2})", "SchemaVersion", "not supported"},
    {"version_space", R"({"Version": "2.0 beta"})", "Version", "only letters, digits"},
    {"version_empty", R"({"Version": ""})", "Version", "empty"},
    {"version_number", R"({"Version": 2})", "Version", "expected a string"},
    {"security_version_negative", R"({"SecurityVersion": -1})", "SecurityVersion", "out of range"},
    {"security_version_float", R"({"SecurityVersion": 1.5})", "SecurityVersion", "integer"},
    {"schema_version_string", R"({"SchemaVersion": "1"})", "SchemaVersion", "not supported"},
    {"missing_name", R"({"Name": null})", "Name", "missing field"},
    {"name_too_long", R"({"Name": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})", "Name",
     "the limit is 64"},
    {"name_not_string", R"({"Name": 7})", "Name", "expected a string"},
    {"name_control_char", R"({"Name": "a\nb"})", "Name", "printable ASCII"},
    {"guid_short", R"({"ComponentId": "3f2504e0-4f89-41d3-9a0c"})", "ComponentId", "not a GUID"},
    {"guid_braces", R"({"ComponentId": "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}"})", "ComponentId", "not a GUID"},
    {"guid_non_hex", R"({"ComponentId": "3f2504e0-4f89-41d3-9a0c-0305e82c330g"})", "ComponentId", "not a GUID"},
    {"guid_nil", R"({"ComponentId": "00000000-0000-0000-0000-000000000000"})", "ComponentId", "nil GUID"},
    {"entry_relative", R"({"EntryPoint": "bin/app"})", "EntryPoint", "not an absolute path"},
    {"entry_dotdot", R"({"EntryPoint": "/bin/../../etc/passwd"})", "EntryPoint", "\"..\""},
    {"entry_double_slash", R"({"EntryPoint": "/bin//app"})", "EntryPoint", "empty path component"},
    {"entry_directory", R"({"EntryPoint": "/bin/"})", "EntryPoint", "does not name a file"},
    {"cmdargs_not_array", R"({"CmdArgs": "--x"})", "CmdArgs", "expected an array"},
    {"cmdargs_too_many",
     R"({"CmdArgs": ["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a",
                     "a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"]})",
     "CmdArgs", "the limit is 32"},
    {"cmdargs_number", R"({"CmdArgs": ["--x", 5]})", "CmdArgs[1]", "expected a string"},
    {"application_type", R"({"ApplicationType": "RealTimeCapable"})", "ApplicationType", "only \"Default\""},
    {"missing_capabilities", R"({"Capabilities": null})", "Capabilities", "missing field"},
    {"gpio_not_array", R"({"Capabilities": {"Gpio": "LED1"}})", "Capabilities.Gpio", "expected an array"},
    {"gpio_number", R"({"Capabilities": {"Gpio": ["LED1", 8]}})", "Capabilities.Gpio[1]", "expected a string"},
    {"gpio_bad_name", R"({"Capabilities": {"Gpio": ["LED1", "../x"]}})", "Capabilities.Gpio[1]",
     "not a peripheral name"},
    {"gpio_duplicate", R"({"Capabilities": {"Gpio": ["LED1", "BUTTON_A", "LED1"]}})", "Capabilities.Gpio[2]",
     "listed twice"},
    {"uart_empty_name", R"({"Capabilities": {"Uart": [""]}})", "Capabilities.Uart[0]", "must not be empty"},
    {"host_underscore", R"({"Capabilities": {"AllowedConnections": ["bad_host.example.com"]}})",
     "Capabilities.AllowedConnections[0]", "not a valid host name"},
    {"host_hyphen_edge", R"({"Capabilities": {"AllowedConnections": ["a.-b.com"]}})",
     "Capabilities.AllowedConnections[0]", "starts or ends with '-'"},
    {"host_trailing_dot", R"({"Capabilities": {"AllowedConnections": ["example.com."]}})",
     "Capabilities.AllowedConnections[0]", "empty label"},
    {"host_wildcard", R"({"Capabilities": {"AllowedConnections": ["*.example.com"]}})",
     "Capabilities.AllowedConnections[0]", "not a valid host name"},
    {"ipv4_out_of_range", R"({"Capabilities": {"AllowedConnections": ["10.0.0.256"]}})",
     "Capabilities.AllowedConnections[0]", "not a valid IPv4 address"},
    {"ipv4_leading_zero", R"({"Capabilities": {"AllowedConnections": ["10.0.0.01"]}})",
     "Capabilities.AllowedConnections[0]", "not a valid IPv4 address"},
    {"ipv6_bad", R"({"Capabilities": {"AllowedConnections": ["2001:db8:::1"]}})", "Capabilities.AllowedConnections[0]",
     "not a valid IPv6 address"},
    {"host_duplicate_case", R"({"Capabilities": {"AllowedConnections": ["a.example.com", "A.EXAMPLE.com"]}})",
     "Capabilities.AllowedConnections[1]", "listed twice"},
    {"port_too_big", R"({"Capabilities": {"AllowedTcpServerPorts": [8080, 70000]}})",
     "Capabilities.AllowedTcpServerPorts[1]", "70000 is not a port (1..65535)"},
    {"port_zero", R"({"Capabilities": {"AllowedUdpServerPorts": [0]}})", "Capabilities.AllowedUdpServerPorts[0]",
     "is not a port"},
    {"port_negative", R"({"Capabilities": {"AllowedUdpServerPorts": [-5]}})", "Capabilities.AllowedUdpServerPorts[0]",
     "is not a port"},
    {"port_float", R"({"Capabilities": {"AllowedTcpServerPorts": [80.5]}})", "Capabilities.AllowedTcpServerPorts[0]",
     "expected an integer"},
    {"port_duplicate", R"({"Capabilities": {"AllowedTcpServerPorts": [8080, 443, 8080]}})",
     "Capabilities.AllowedTcpServerPorts[2]", "listed twice"},
    {"app_connection_bad_guid", R"({"Capabilities": {"AllowedApplicationConnections": ["not-a-guid"]}})",
     "Capabilities.AllowedApplicationConnections[0]", "not a GUID"},
    {"app_connection_self",
     R"({"Capabilities": {"AllowedApplicationConnections": ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]}})",
     "Capabilities.AllowedApplicationConnections[0]", "itself"},
    {"storage_zero", R"({"Capabilities": {"MutableStorage": {"SizeKB": 0}}})", "Capabilities.MutableStorage.SizeKB",
     "out of range"},
    {"storage_too_big", R"({"Capabilities": {"MutableStorage": {"SizeKB": 1048577}}})",
     "Capabilities.MutableStorage.SizeKB", "out of range (1..1048576)"},
    {"storage_missing_size", R"({"Capabilities": {"MutableStorage": {"SizeKB": null}}})",
     "Capabilities.MutableStorage.SizeKB", "missing field"},
    {"storage_unknown", R"({"Capabilities": {"MutableStorage": {"Path": "/data"}}})",
     "Capabilities.MutableStorage.Path", "unknown field"},
    {"device_auth_bool", R"({"Capabilities": {"DeviceAuthentication": true}})", "Capabilities.DeviceAuthentication",
     "expected a string"},
    {"device_auth_bad_chars", R"({"Capabilities": {"DeviceAuthentication": "ten/../x"}})",
     "Capabilities.DeviceAuthentication", "not a tenant id"},
    {"system_time_string", R"({"Capabilities": {"SystemTime": "yes"}})", "Capabilities.SystemTime",
     "expected true or false"},
    {"power_controls_number", R"({"Capabilities": {"PowerControls": 1}})", "Capabilities.PowerControls",
     "expected true or false"},
    {"memory_zero", R"({"Resources": {"MemoryMB": 0}})", "Resources.MemoryMB", "out of range"},
    {"memory_string", R"({"Resources": {"MemoryMB": "64"}})", "Resources.MemoryMB", "expected an integer"},
    {"processes_too_many", R"({"Resources": {"MaxProcesses": 5000}})", "Resources.MaxProcesses", "out of range"},
    {"resources_unknown", R"({"Resources": {"CpuShares": 5}})", "Resources.CpuShares", "unknown field"},
};

INSTANTIATE_TEST_SUITE_P(Cases, MalformedManifestTest, ::testing::ValuesIn(kMalformedCases),
                         [](const ::testing::TestParamInfo<MalformedCase>& param_info) {
                           return param_info.param.label;
                         });

TEST(ManifestTest, RefusesNonObjectsAndBadJson) {
  EXPECT_FALSE(ParseManifest("[]"));
  EXPECT_FALSE(ParseManifest(""));
  EXPECT_FALSE(ParseManifest(R"({"SchemaVersion":1,"SchemaVersion":1})"));  // duplicate key
  EXPECT_EQ(ParseManifest(std::string(kMaxManifestBytes + 1, ' ')).error().code(), ErrorCode::kTooLarge);
}

TEST(ManifestTest, HostClassification) {
  auto v4 = ParseHost("127.0.0.2", "h");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->kind, HostKind::kIpv4);
  auto v6 = ParseHost("::1", "h");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->kind, HostKind::kIpv6);
  auto name = ParseHost("MQTT-1.Example.org", "h");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->kind, HostKind::kDnsName);
  EXPECT_EQ(name->text, "mqtt-1.example.org");
  EXPECT_FALSE(ParseHost("example.123", "h"));
  EXPECT_FALSE(ParseHost(std::string(64, 'a') + ".com", "h"));
  EXPECT_FALSE(ParseHost("fe80::1%eth0", "h"));
}

}  // namespace
}  // namespace citadel::app
