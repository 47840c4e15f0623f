#include "seccomp/network_rules.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace citadel::seccomp {
namespace {

std::vector<std::byte> V4(const char* address, std::uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  EXPECT_EQ(::inet_pton(AF_INET, address, &in.sin_addr), 1);
  std::vector<std::byte> bytes(sizeof(in));
  std::memcpy(bytes.data(), &in, sizeof(in));
  return bytes;
}

std::vector<std::byte> V6(const char* address, std::uint16_t port) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  EXPECT_EQ(::inet_pton(AF_INET6, address, &in6.sin6_addr), 1);
  std::vector<std::byte> bytes(sizeof(in6));
  std::memcpy(bytes.data(), &in6, sizeof(in6));
  return bytes;
}

SocketAddress Parse(const std::vector<std::byte>& bytes) {
  auto parsed = ParseSocketAddress(bytes);
  EXPECT_TRUE(parsed.has_value());
  return parsed.value_or(SocketAddress{});
}

NetworkRules Rules() {
  NetworkRules rules;
  rules.allowed_addresses = {"127.0.0.1", "::1"};
  rules.tcp_server_ports = {8080};
  rules.udp_server_ports = {5353};
  return rules;
}

TEST(NetworkRules, ConnectAllowsListedAddressOnAnyPort) {
  EXPECT_TRUE(CheckConnect(Rules(), Parse(V4("127.0.0.1", 1))).allowed);
  EXPECT_TRUE(CheckConnect(Rules(), Parse(V4("127.0.0.1", 65535))).allowed);
  EXPECT_TRUE(CheckConnect(Rules(), Parse(V6("::1", 443))).allowed);
}

TEST(NetworkRules, ConnectRefusesUnlistedAddressAndSaysWhy) {
  Decision decision = CheckConnect(Rules(), Parse(V4("127.0.0.2", 9)));
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.detail, "connect to 127.0.0.2:9 (not in AllowedConnections)");
  decision = CheckConnect(Rules(), Parse(V6("::2", 9)));
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.detail, "connect to [::2]:9 (not in AllowedConnections)");
}

TEST(NetworkRules, Ipv4MappedIpv6CountsAsTheIpv4Address) {
  NetworkRules rules;
  rules.allowed_addresses = {"127.0.0.1"};
  EXPECT_TRUE(CheckConnect(rules, Parse(V6("::ffff:127.0.0.1", 80))).allowed);
  EXPECT_FALSE(CheckConnect(rules, Parse(V6("::ffff:127.0.0.2", 80))).allowed);
  // The other way round: an allowed IPv6 literal does not open an IPv4 host.
  rules.allowed_addresses = {"::1"};
  EXPECT_FALSE(CheckConnect(rules, Parse(V4("127.0.0.1", 80))).allowed);
}

TEST(NetworkRules, BindChecksThePortForTheSocketType) {
  EXPECT_TRUE(CheckBind(Rules(), Parse(V4("0.0.0.0", 8080)), SOCK_STREAM).allowed);
  EXPECT_FALSE(CheckBind(Rules(), Parse(V4("0.0.0.0", 8080)), SOCK_DGRAM).allowed);
  EXPECT_TRUE(CheckBind(Rules(), Parse(V6("::", 5353)), SOCK_DGRAM).allowed);
  Decision decision = CheckBind(Rules(), Parse(V4("127.0.0.1", 8081)), SOCK_STREAM);
  EXPECT_FALSE(decision.allowed);
  EXPECT_EQ(decision.detail, "bind TCP 127.0.0.1:8081 (port not in AllowedTcpServerPorts)");
  EXPECT_FALSE(CheckBind(Rules(), Parse(V4("127.0.0.1", 0)), SOCK_STREAM).allowed);  // no ephemeral ports
  EXPECT_FALSE(CheckBind(Rules(), Parse(V4("127.0.0.1", 8080)), SOCK_RAW).allowed);
}

TEST(NetworkRules, ParseRefusesShortAndForeignAddresses) {
  std::vector<std::byte> v4 = V4("127.0.0.1", 80);
  v4.resize(sizeof(sockaddr_in) - 1);
  EXPECT_FALSE(ParseSocketAddress(v4).has_value());
  EXPECT_FALSE(ParseSocketAddress(std::vector<std::byte>(1)).has_value());
  std::vector<std::byte> unix_address(16);
  sa_family_t family = AF_UNIX;
  std::memcpy(unix_address.data(), &family, sizeof(family));
  EXPECT_FALSE(ParseSocketAddress(unix_address).has_value());
}

TEST(NetworkRules, ResolveUsesOverrideAndLiteralsAndWritesHosts) {
  app::Policy policy;
  policy.allowed_hosts = {"broker.example.test"};
  policy.allowed_ip_addresses = {"127.0.0.5", "0:0:0:0:0:0:0:1"};
  policy.tcp_server_ports = {8080};
  HostsOverride hosts;
  hosts.names["broker.example.test"] = {"127.0.0.3", "::ffff:127.0.0.4"};
  auto resolution = ResolveNetworkRules(policy, hosts);
  ASSERT_TRUE(resolution.has_value()) << resolution.error().message();
  EXPECT_EQ(resolution->rules.allowed_addresses,
            (std::vector<std::string>{"127.0.0.5", "::1", "127.0.0.3", "127.0.0.4"}));
  EXPECT_EQ(resolution->rules.tcp_server_ports, std::vector<std::uint16_t>{8080});
  EXPECT_EQ(resolution->hosts_file,
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
            "127.0.0.3\tbroker.example.test\n127.0.0.4\tbroker.example.test\n");
}

TEST(NetworkRules, ResolveLooksUpRealNamesAndSkipsUnresolvable) {
  app::Policy policy;
  policy.allowed_hosts = {"localhost", "does-not-exist.invalid"};
  auto resolution = ResolveNetworkRules(policy, {});
  ASSERT_TRUE(resolution.has_value()) << resolution.error().message();
  EXPECT_NE(resolution->hosts_file.find("\tlocalhost\n127.0.0.1\tlocalhost"), std::string::npos)
      << resolution->hosts_file;
  EXPECT_EQ(resolution->hosts_file.find("does-not-exist"), std::string::npos);
  EXPECT_FALSE(resolution->rules.allowed_addresses.empty());
}

TEST(NetworkRules, ResolveRefusesMalformedInput) {
  app::Policy policy;
  policy.allowed_ip_addresses = {"127.0.0.300"};
  EXPECT_FALSE(ResolveNetworkRules(policy, {}).has_value());
  policy.allowed_ip_addresses.clear();
  policy.allowed_hosts = {"evil\n127.0.0.1 bank.example"};  // would inject a hosts line
  EXPECT_FALSE(ResolveNetworkRules(policy, {}).has_value());
  policy.allowed_hosts = {"ok.example"};
  HostsOverride hosts;
  hosts.names["ok.example"] = {"not-an-address"};
  EXPECT_FALSE(ResolveNetworkRules(policy, hosts).has_value());
}

}  // namespace
}  // namespace citadel::seccomp
