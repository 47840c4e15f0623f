// What an app may reach on the network, and the pure decisions the
// Supervisor takes on every connect()/bind() it proxies.
//
// The rules are resolved once per app start (ResolveNetworkRules) from the
// policy's AllowedConnections, AllowedTcpServerPorts and
// AllowedUdpServerPorts. The decisions (CheckConnect, CheckBind) are plain
// functions of the rules and a parsed socket address so that they can be
// tested without a kernel.
//
// SECURITY: nothing is reachable unless listed. Addresses are compared in
// canonical numeric form (inet_ntop), IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) count as the IPv4 address, so an app cannot reach an
// unlisted IPv4 host through an AF_INET6 socket. Names are resolved by the
// runtime, never by the app: the app's /etc/hosts (hosts_file) maps only the
// allowed names, to the same addresses the rules allow.
//
// Threading: pure functions, except ResolveNetworkRules (getaddrinfo, may
// block on DNS: call it before starting the app, not on the Supervisor
// thread).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "app/policy.hpp"
#include "common/error.hpp"

namespace citadel::seccomp {

struct NetworkRules {
  std::vector<std::string> allowed_addresses;  // canonical numeric IPv4/IPv6 literals
  std::vector<std::uint16_t> tcp_server_ports, udp_server_ports;
};

// Tests and the simulator: fixed name -> addresses instead of DNS.
struct HostsOverride {
  std::map<std::string, std::vector<std::string>> names;
};

struct Resolution {
  NetworkRules rules;
  std::string hosts_file;  // the app's /etc/hosts
};

// Resolves policy.allowed_hosts (the override when it names the host, else
// getaddrinfo in the caller's network namespace) and adds
// policy.allowed_ip_addresses. A host that does not resolve is left out with
// a warning (the app sees a lookup failure, as when offline) rather than
// failing the start. Fails on a malformed IP literal or host name.
[[nodiscard]] Expected<Resolution> ResolveNetworkRules(const app::Policy& policy, const HostsOverride& override_hosts);

// An AF_INET/AF_INET6 socket address in canonical form.
struct SocketAddress {
  int family = AF_UNSPEC;  // AF_INET or AF_INET6 (IPv4-mapped IPv6 stays AF_INET6, address is IPv4 text)
  std::string address;     // "127.0.0.1", "::1"
  std::uint16_t port = 0;

  std::string ToString() const;  // "127.0.0.1:80", "[::1]:80"
};

// Parses the bytes an app passed to connect()/bind(). Fails on a family
// other than AF_INET/AF_INET6 or a length too short for it.
[[nodiscard]] Expected<SocketAddress> ParseSocketAddress(std::span<const std::byte> bytes);

struct Decision {
  bool allowed = false;
  std::string detail;  // why, in words fit for a Violation ("connect to ... (not in AllowedConnections)")
};

// connect(): the address must be listed; any port.
Decision CheckConnect(const NetworkRules& rules, const SocketAddress& address);
// bind(): the port must be listed for the socket's type (SOCK_STREAM ->
// TCP server ports, SOCK_DGRAM -> UDP server ports); any local address.
Decision CheckBind(const NetworkRules& rules, const SocketAddress& address, int socket_type);

}  // namespace citadel::seccomp
