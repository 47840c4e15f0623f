// The policy an app runs under: pure data built from its manifest, the
// board definition and the device's policy. The sandbox (issue 3, later
// session) enforces a Policy; it never reads the manifest itself, so tests
// can assert on exactly what an app is granted without running anything.
//
// SECURITY: nothing is granted by default. A Policy built from a manifest
// with an empty Capabilities object has no peripherals, no network, no
// listening ports, no app connections, no storage and no privileged flags,
// and the default memory and pids limits.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "app/board.hpp"
#include "app/manifest.hpp"
#include "common/error.hpp"

namespace citadel::app {

inline constexpr std::uint64_t kMiB = 1024 * 1024;

// The device's defaults and ceilings (docs/MANIFEST.md, "Device policy").
// An app's Resources may lower or raise its limits up to the ceilings.
struct DevicePolicy {
  std::uint64_t default_memory_bytes = 64 * kMiB;
  std::uint32_t default_pids = 32;
  std::uint64_t max_memory_bytes = 256 * kMiB;
  std::uint32_t max_pids = 256;
  std::uint64_t max_storage_bytes = 64 * kMiB;
};

// Kernel features an app may not use, as the sandbox's intent. Each maps to
// seccomp rules, a namespace, or a prctl in the enforcer.
enum class DeniedFeature {
  kWriteExecuteMemory,  // no mapping that is both writable and executable
  kRawSockets,          // no SOCK_RAW / AF_PACKET
  kNetworkSockets,      // no AF_INET/AF_INET6 at all (no network capability)
  kInboundTcp,          // no listen() on TCP (no AllowedTcpServerPorts)
  kInboundUdp,          // no bind() of UDP server ports (no AllowedUdpServerPorts)
  kPtrace,              // no ptrace / process_vm_* of other processes
  kKernelModules,       // no init_module / finit_module / delete_module
  kMount,               // no mount / umount / pivot_root
  kNewPrivileges,       // no_new_privs: setuid binaries do not elevate
  kNamespaceCreation,   // no unshare / clone with new namespaces / setns
  kBpf,                 // no bpf()
  kSetSystemTime,       // no settimeofday / clock_settime (no SystemTime)
  kReboot,              // no reboot (no PowerControls)
  // No sendmsg/sendmmsg, and no sendto with an address: an app that may
  // hold a UDP socket in the device's network (AllowedConnections or
  // AllowedUdpServerPorts) could otherwise name a destination per datagram
  // that no check sees. It sends with send()/write() on a connected socket.
  kAddressedSends,
};

std::string_view DeniedFeatureName(DeniedFeature feature);

// Namespaces the sandbox puts the app in.
enum class Namespace { kMount, kPid, kIpc, kUts, kCgroup, kNetwork };

struct Policy {
  std::string component_id;
  std::string name;
  std::string entry_point;
  std::vector<std::string> cmd_args;

  // Every peripheral the manifest names, resolved on the board, in manifest
  // order (Gpio, Uart, I2cMaster, SpiMaster, Pwm, Adc).
  std::vector<Peripheral> peripherals;
  // AllowedConnections split: DNS names (lower case) and IP literals.
  std::vector<std::string> allowed_hosts;
  std::vector<std::string> allowed_ip_addresses;
  std::vector<std::uint16_t> tcp_server_ports;
  std::vector<std::uint16_t> udp_server_ports;
  std::vector<std::string> app_connections;  // component IDs

  std::uint64_t storage_quota_bytes = 0;  // 0: no mutable storage
  std::uint64_t memory_limit_bytes = 0;   // cgroup memory.max
  std::uint32_t pids_limit = 0;           // cgroup pids.max

  bool device_authentication = false;
  std::string device_authentication_tenant;
  bool system_time = false;
  bool power_controls = false;

  std::set<DeniedFeature> denied_features;
  std::set<Namespace> namespaces;

  // True when the app may open any outbound or listening internet socket.
  bool HasNetworkAccess() const;
  // Whether the runtime may hand the app a UDP socket in the device's
  // network: a connect() to an allowed address or a UDP server port.
  bool MayHoldDeviceDatagramSockets() const;
};

// Resolves a manifest on a board within a device policy. Fails, naming the
// manifest field, when a peripheral is not on the board
// ("Capabilities.Gpio[3]: \"PIN99\" is not on this board (...)") or a
// request exceeds a device ceiling.
[[nodiscard]] Expected<Policy> BuildPolicy(const Manifest& manifest, const BoardDefinition& board,
                                           const DevicePolicy& device);

}  // namespace citadel::app
