#include "app/policy.hpp"

#include <array>
#include <utility>

#include "common/json_fields.hpp"

namespace citadel::app {
namespace {

using json_fields::Element;
using json_fields::FieldError;
using json_fields::Quote;

std::string Mib(std::uint64_t bytes) {
  if (bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

std::string AvailableNames(const BoardDefinition& board, PeripheralKind kind) {
  std::string names;
  for (const Peripheral& peripheral : board.peripherals) {
    if (peripheral.kind != kind) continue;
    if (!names.empty()) names += ", ";
    names += peripheral.name;
  }
  return names.empty() ? "none" : names;
}

}  // namespace

std::string_view DeniedFeatureName(DeniedFeature feature) {
  switch (feature) {
    case DeniedFeature::kWriteExecuteMemory:
      return "no W+X memory";
    case DeniedFeature::kRawSockets:
      return "no raw sockets";
    case DeniedFeature::kNetworkSockets:
      return "no internet sockets";
    case DeniedFeature::kInboundTcp:
      return "no listening TCP sockets";
    case DeniedFeature::kInboundUdp:
      return "no UDP server ports";
    case DeniedFeature::kPtrace:
      return "no ptrace";
    case DeniedFeature::kKernelModules:
      return "no kernel modules";
    case DeniedFeature::kMount:
      return "no mount";
    case DeniedFeature::kNewPrivileges:
      return "no new privileges";
    case DeniedFeature::kNamespaceCreation:
      return "no new namespaces";
    case DeniedFeature::kBpf:
      return "no bpf";
    case DeniedFeature::kSetSystemTime:
      return "no setting the system time";
    case DeniedFeature::kReboot:
      return "no reboot or power-off";
    case DeniedFeature::kAddressedSends:
      return "no sendmsg/sendmmsg or sendto with an address";
  }
  return "unknown";
}

bool Policy::HasNetworkAccess() const {
  return !allowed_hosts.empty() || !allowed_ip_addresses.empty() || !tcp_server_ports.empty() ||
         !udp_server_ports.empty();
}

bool Policy::MayHoldDeviceDatagramSockets() const {
  return !allowed_hosts.empty() || !allowed_ip_addresses.empty() || !udp_server_ports.empty();
}

Expected<Policy> BuildPolicy(const Manifest& manifest, const BoardDefinition& board, const DevicePolicy& device) {
  const Capabilities& caps = manifest.capabilities;
  Policy policy;
  policy.component_id = manifest.component_id;
  policy.name = manifest.name;
  policy.entry_point = manifest.entry_point;
  policy.cmd_args = manifest.cmd_args;

  const std::array<std::pair<PeripheralKind, const std::vector<std::string>*>, 6> requested = {{
      {PeripheralKind::kGpio, &caps.gpio},
      {PeripheralKind::kUart, &caps.uart},
      {PeripheralKind::kI2cMaster, &caps.i2c_master},
      {PeripheralKind::kSpiMaster, &caps.spi_master},
      {PeripheralKind::kPwm, &caps.pwm},
      {PeripheralKind::kAdc, &caps.adc},
  }};
  for (const auto& [kind, names] : requested) {
    for (std::size_t i = 0; i < names->size(); ++i) {
      const std::string& name = (*names)[i];
      const Peripheral* peripheral = board.Find(kind, name);
      if (peripheral == nullptr) {
        return FieldError(Element("Capabilities." + std::string(PeripheralKindName(kind)), i),
                          Quote(name) + " is not on this board (" + board.name + " has " +
                              std::string(PeripheralKindName(kind)) + ": " + AvailableNames(board, kind) + ")");
      }
      policy.peripherals.push_back(*peripheral);
    }
  }

  for (std::size_t i = 0; i < caps.allowed_connections.size(); ++i) {
    CITADEL_TRY(auto host, ParseHost(caps.allowed_connections[i], Element("Capabilities.AllowedConnections", i)));
    if (host.kind == HostKind::kDnsName) {
      policy.allowed_hosts.push_back(std::move(host.text));
    } else {
      policy.allowed_ip_addresses.push_back(std::move(host.text));
    }
  }
  policy.tcp_server_ports = caps.allowed_tcp_server_ports;
  policy.udp_server_ports = caps.allowed_udp_server_ports;
  policy.app_connections = caps.allowed_application_connections;

  if (caps.mutable_storage_kb) {
    const std::uint64_t bytes = *caps.mutable_storage_kb * 1024;
    if (bytes > device.max_storage_bytes) {
      return FieldError("Capabilities.MutableStorage.SizeKB",
                        std::to_string(*caps.mutable_storage_kb) + " KiB exceeds this device's limit of " +
                            std::to_string(device.max_storage_bytes / 1024) + " KiB");
    }
    policy.storage_quota_bytes = bytes;
  }

  policy.memory_limit_bytes = device.default_memory_bytes;
  if (manifest.resources.memory_mb) {
    const std::uint64_t bytes = *manifest.resources.memory_mb * kMiB;
    if (bytes > device.max_memory_bytes) {
      return FieldError("Resources.MemoryMB", std::to_string(*manifest.resources.memory_mb) +
                                                  " MiB exceeds this device's limit of " +
                                                  Mib(device.max_memory_bytes));
    }
    policy.memory_limit_bytes = bytes;
  }
  policy.pids_limit = device.default_pids;
  if (manifest.resources.max_processes) {
    if (*manifest.resources.max_processes > device.max_pids) {
      return FieldError("Resources.MaxProcesses", std::to_string(*manifest.resources.max_processes) +
                                                      " exceeds this device's limit of " +
                                                      std::to_string(device.max_pids));
    }
    policy.pids_limit = *manifest.resources.max_processes;
  }

  if (caps.device_authentication) {
    policy.device_authentication = true;
    policy.device_authentication_tenant = *caps.device_authentication;
  }
  policy.system_time = caps.system_time;
  policy.power_controls = caps.power_controls;

  policy.denied_features = {
      DeniedFeature::kWriteExecuteMemory, DeniedFeature::kRawSockets, DeniedFeature::kPtrace,
      DeniedFeature::kKernelModules,      DeniedFeature::kMount,      DeniedFeature::kNewPrivileges,
      DeniedFeature::kNamespaceCreation,  DeniedFeature::kBpf};
  if (!policy.HasNetworkAccess()) policy.denied_features.insert(DeniedFeature::kNetworkSockets);
  if (policy.tcp_server_ports.empty()) policy.denied_features.insert(DeniedFeature::kInboundTcp);
  if (policy.udp_server_ports.empty()) policy.denied_features.insert(DeniedFeature::kInboundUdp);
  if (!policy.system_time) policy.denied_features.insert(DeniedFeature::kSetSystemTime);
  if (!policy.power_controls) policy.denied_features.insert(DeniedFeature::kReboot);
  if (policy.MayHoldDeviceDatagramSockets()) policy.denied_features.insert(DeniedFeature::kAddressedSends);

  // Always a private network namespace (loopback only): an app with network
  // capabilities gets its connections made for it by the runtime, in the
  // device's namespace, after the allow-list check (docs/MANIFEST.md).
  policy.namespaces = {Namespace::kMount, Namespace::kPid,    Namespace::kIpc,
                       Namespace::kUts,   Namespace::kCgroup, Namespace::kNetwork};
  return policy;
}

}  // namespace citadel::app
