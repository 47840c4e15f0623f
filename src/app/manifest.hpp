// The application manifest (app_manifest.json): what an app is and which
// capabilities it asks for. Modelled on Azure Sphere's manifest; every field
// is described in docs/MANIFEST.md.
//
// SECURITY: the manifest comes from an image package and is untrusted until
// the package signature has been checked, and even then only says what the
// app *asks* for. ParseManifest checks form and bounds only; whether the
// board has the peripherals and the device allows the limits is decided by
// BuildPolicy (policy.hpp). Nothing is granted by default: a capability that
// is absent grants nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel::app {

inline constexpr std::int64_t kManifestSchemaVersion = 1;
inline constexpr std::size_t kMaxManifestBytes = 64 * 1024;
inline constexpr std::size_t kMaxNameBytes = 64;
inline constexpr std::size_t kMaxEntryPointBytes = 256;
inline constexpr std::size_t kMaxCmdArgs = 32;
inline constexpr std::size_t kMaxVersionBytes = 32;
// Anti-rollback: a device never installs an app whose SecurityVersion is
// below the highest it has committed (docs/MANIFEST.md, "Version").
inline constexpr std::int64_t kMaxSecurityVersion = 1'000'000;
inline constexpr std::size_t kMaxCmdArgBytes = 1024;
// Per capability list (Gpio, AllowedConnections, ports, ...).
inline constexpr std::size_t kMaxCapabilityEntries = 64;
inline constexpr std::size_t kMaxPeripheralNameBytes = 32;
inline constexpr std::size_t kMaxHostNameBytes = 253;
inline constexpr std::size_t kMaxTenantIdBytes = 64;
// MutableStorage.SizeKB: 1 KiB .. 1 GiB; the device policy may allow less.
inline constexpr std::int64_t kMaxMutableStorageKb = 1024 * 1024;
// Resources.MemoryMB and Resources.MaxProcesses form bounds; the device
// policy's ceilings (usually lower) are applied by BuildPolicy.
inline constexpr std::int64_t kMaxMemoryMb = 64 * 1024;
inline constexpr std::int64_t kMaxProcessesLimit = 4096;

enum class ApplicationType { kDefault };

// Optional per-app overrides of the device's default cgroup limits.
struct ResourceRequest {
  std::optional<std::uint64_t> memory_mb;
  std::optional<std::uint32_t> max_processes;
};

struct Capabilities {
  // Peripheral names as the board definition spells them, in manifest order.
  std::vector<std::string> gpio;
  std::vector<std::string> uart;
  std::vector<std::string> i2c_master;
  std::vector<std::string> spi_master;
  std::vector<std::string> pwm;
  std::vector<std::string> adc;
  // Host names (lower case, RFC 1123) and IP literals (IPv6 in RFC 5952
  // form), in manifest order.
  std::vector<std::string> allowed_connections;
  std::vector<std::uint16_t> allowed_tcp_server_ports;
  std::vector<std::uint16_t> allowed_udp_server_ports;
  // Component IDs of apps this one may talk to, lower-case GUIDs.
  std::vector<std::string> allowed_application_connections;
  std::optional<std::uint64_t> mutable_storage_kb;
  // The tenant whose device certificate the app may use.
  std::optional<std::string> device_authentication;
  bool system_time = false;
  bool power_controls = false;
};

struct Manifest {
  std::int64_t schema_version = kManifestSchemaVersion;
  std::string name;
  std::string component_id;  // lower-case GUID 8-4-4-4-12
  std::string entry_point;   // absolute path inside the image
  std::string version;       // "" when the manifest has none
  std::int64_t security_version = 0;
  std::vector<std::string> cmd_args;
  ApplicationType application_type = ApplicationType::kDefault;
  Capabilities capabilities;
  ResourceRequest resources;
};

// Parses and checks app_manifest.json. Unknown fields are refused; every
// error names the field path and the reason, e.g.
// "Capabilities.AllowedTcpServerPorts[1]: 70000 is not a port (1..65535)".
[[nodiscard]] Expected<Manifest> ParseManifest(std::string_view json);

// A GUID in canonical 8-4-4-4-12 hex form (either case), lower-cased; or an
// error naming `path`.
[[nodiscard]] Expected<std::string> NormaliseGuid(std::string_view text, std::string_view path);

enum class HostKind { kDnsName, kIpv4, kIpv6 };
struct Host {
  HostKind kind;
  std::string text;  // normalised: lower case; IPv6 compressed (RFC 5952)
};
// A host name valid per RFC 1123 or an IPv4/IPv6 literal; or an error naming
// `path`. Dotted all-digit names must be valid IPv4 addresses.
[[nodiscard]] Expected<Host> ParseHost(std::string_view text, std::string_view path);

}  // namespace citadel::app
