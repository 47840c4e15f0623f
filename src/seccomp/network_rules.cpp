#include "seccomp/network_rules.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "common/log.hpp"

namespace citadel::seccomp {
namespace {

constexpr std::size_t kSockaddrIn6Rfc2133Size = 24;  // SIN6_LEN_RFC2133 in the kernel

// Canonical text of an IPv4 or IPv6 literal; IPv4-mapped IPv6 becomes IPv4.
Expected<std::string> CanonicalAddress(const std::string& literal) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  in_addr v4{};
  if (::inet_pton(AF_INET, literal.c_str(), &v4) == 1) {
    return std::string(::inet_ntop(AF_INET, &v4, text.data(), text.size()));
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, literal.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
      std::memcpy(&v4, &v6.s6_addr[12], sizeof(v4));
      return std::string(::inet_ntop(AF_INET, &v4, text.data(), text.size()));
    }
    return std::string(::inet_ntop(AF_INET6, &v6, text.data(), text.size()));
  }
  return MakeError(ErrorCode::kInvalidArgument, fmt::format("\"{}\" is not an IPv4 or IPv6 address", literal));
}

// Host names go verbatim into /etc/hosts: only DNS characters may pass.
bool IsValidHostName(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.front() == '-') return false;
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
  });
}

std::vector<std::string> LookUp(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    log::Warn("allowed host does not resolve; the app will not reach it",
              {{"host", name}, {"error", ::gai_strerror(rc)}});
    return {};
  }
  std::vector<std::string> addresses;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    const void* raw = nullptr;
    if (entry->ai_family == AF_INET) {
      raw = &reinterpret_cast<const sockaddr_in*>(entry->ai_addr)->sin_addr;
    } else if (entry->ai_family == AF_INET6) {
      raw = &reinterpret_cast<const sockaddr_in6*>(entry->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (::inet_ntop(entry->ai_family, raw, text.data(), text.size()) != nullptr) addresses.emplace_back(text.data());
  }
  ::freeaddrinfo(found);
  return addresses;
}

void AddUnique(std::vector<std::string>& list, const std::string& value) {
  if (std::ranges::find(list, value) == list.end()) list.push_back(value);
}

}  // namespace

Expected<Resolution> ResolveNetworkRules(const app::Policy& policy, const HostsOverride& override_hosts) {
  Resolution resolution;
  resolution.rules.tcp_server_ports = policy.tcp_server_ports;
  resolution.rules.udp_server_ports = policy.udp_server_ports;
  resolution.hosts_file = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";

  for (const std::string& literal : policy.allowed_ip_addresses) {
    auto canonical = CanonicalAddress(literal);
    if (!canonical) return WrapError(canonical.error(), "AllowedConnections");
    AddUnique(resolution.rules.allowed_addresses, *canonical);
  }
  for (const std::string& host : policy.allowed_hosts) {
    if (!IsValidHostName(host)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("AllowedConnections: \"{}\" is not a valid host name", host));
    }
    auto overridden = override_hosts.names.find(host);
    std::vector<std::string> addresses = overridden != override_hosts.names.end() ? overridden->second : LookUp(host);
    for (const std::string& literal : addresses) {
      auto canonical = CanonicalAddress(literal);
      if (!canonical) return WrapError(canonical.error(), "resolving " + host);
      AddUnique(resolution.rules.allowed_addresses, *canonical);
      resolution.hosts_file += fmt::format("{}\t{}\n", *canonical, host);
    }
  }
  return resolution;
}

std::string SocketAddress::ToString() const {
  // An IPv4 address is shown bare even when it came through AF_INET6.
  if (address.find(':') != std::string::npos) return fmt::format("[{}]:{}", address, port);
  return fmt::format("{}:{}", address, port);
}

Expected<SocketAddress> ParseSocketAddress(std::span<const std::byte> bytes) {
  sa_family_t family = AF_UNSPEC;
  if (bytes.size() < sizeof(family)) {
    return MakeError(ErrorCode::kInvalidArgument, "socket address shorter than its family field");
  }
  std::memcpy(&family, bytes.data(), sizeof(family));
  std::array<char, INET6_ADDRSTRLEN> text{};
  SocketAddress parsed;
  parsed.family = family;
  if (family == AF_INET) {
    sockaddr_in in{};
    if (bytes.size() < sizeof(in)) return MakeError(ErrorCode::kInvalidArgument, "AF_INET address too short");
    std::memcpy(&in, bytes.data(), sizeof(in));
    parsed.address = ::inet_ntop(AF_INET, &in.sin_addr, text.data(), text.size());
    parsed.port = ntohs(in.sin_port);
    return parsed;
  }
  if (family == AF_INET6) {
    sockaddr_in6 in6{};
    // The kernel accepts the RFC 2133 size, without sin6_scope_id.
    if (bytes.size() < kSockaddrIn6Rfc2133Size)
      return MakeError(ErrorCode::kInvalidArgument, "AF_INET6 address too short");
    std::memcpy(&in6, bytes.data(), std::min(bytes.size(), sizeof(in6)));
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      in_addr v4{};
      std::memcpy(&v4, &in6.sin6_addr.s6_addr[12], sizeof(v4));
      parsed.address = ::inet_ntop(AF_INET, &v4, text.data(), text.size());
    } else {
      parsed.address = ::inet_ntop(AF_INET6, &in6.sin6_addr, text.data(), text.size());
    }
    parsed.port = ntohs(in6.sin6_port);
    return parsed;
  }
  return MakeError(ErrorCode::kInvalidArgument, fmt::format("address family {} is not AF_INET or AF_INET6", family));
}

Decision CheckConnect(const NetworkRules& rules, const SocketAddress& address) {
  if (std::ranges::find(rules.allowed_addresses, address.address) != rules.allowed_addresses.end()) {
    return {true, fmt::format("connect to {}", address.ToString())};
  }
  return {false, fmt::format("connect to {} (not in AllowedConnections)", address.ToString())};
}

Decision CheckBind(const NetworkRules& rules, const SocketAddress& address, int socket_type) {
  if (socket_type == SOCK_STREAM) {
    if (std::ranges::find(rules.tcp_server_ports, address.port) != rules.tcp_server_ports.end()) {
      return {true, fmt::format("bind TCP {}", address.ToString())};
    }
    return {false, fmt::format("bind TCP {} (port not in AllowedTcpServerPorts)", address.ToString())};
  }
  if (socket_type == SOCK_DGRAM) {
    if (std::ranges::find(rules.udp_server_ports, address.port) != rules.udp_server_ports.end()) {
      return {true, fmt::format("bind UDP {}", address.ToString())};
    }
    return {false, fmt::format("bind UDP {} (port not in AllowedUdpServerPorts)", address.ToString())};
  }
  return {false,
          fmt::format("bind {} on a socket of type {} (only TCP and UDP may listen)", address.ToString(), socket_type)};
}

}  // namespace citadel::seccomp
