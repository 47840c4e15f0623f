#include "app/manifest.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/json_fields.hpp"

namespace citadel::app {
namespace {

using json_fields::Child;
using json_fields::Element;
using json_fields::FieldError;
using json_fields::Quote;

// Root object -> Capabilities/Resources -> arrays, plus headroom.
constexpr std::size_t kMaxManifestDepth = 6;
constexpr std::size_t kMaxLabelBytes = 63;

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
char ToLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

Expected<std::string> ReadName(const Json& value, std::string_view path) {
  CITADEL_TRY(auto name, json_fields::ReadString(value, path, kMaxNameBytes));
  for (char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) return FieldError(path, "only printable ASCII characters are allowed");
  }
  if (name.front() == ' ' || name.back() == ' ') return FieldError(path, "must not start or end with a space");
  return name;
}

Expected<std::string> ReadEntryPoint(const Json& value, std::string_view path) {
  CITADEL_TRY(auto entry, json_fields::ReadString(value, path, kMaxEntryPointBytes));
  if (entry.front() != '/') return FieldError(path, Quote(entry) + " is not an absolute path inside the image");
  if (entry.size() == 1 || entry.back() == '/') return FieldError(path, Quote(entry) + " does not name a file");
  for (char c : entry) {
    if (!IsAsciiAlpha(c) && !IsAsciiDigit(c) && c != '/' && c != '.' && c != '_' && c != '-' && c != '+') {
      return FieldError(path, Quote(entry) + " may use only letters, digits and / . _ - +");
    }
  }
  std::size_t start = 1;
  while (start <= entry.size()) {
    std::size_t end = entry.find('/', start);
    if (end == std::string::npos) end = entry.size();
    const std::string_view component = std::string_view(entry).substr(start, end - start);
    if (component.empty()) return FieldError(path, Quote(entry) + " has an empty path component");
    if (component == "." || component == "..") {
      return FieldError(path, Quote(entry) + " must not contain \".\" or \"..\" components");
    }
    start = end + 1;
  }
  return entry;
}

// Letters, digits and . + - _ ("2.0.1", "1.4.0-rc.2+build.7"): a label for
// people and deployments; ordering for anti-rollback is SecurityVersion's.
Expected<std::string> ReadVersion(const Json& value, std::string_view path) {
  CITADEL_TRY(auto version, json_fields::ReadString(value, path, kMaxVersionBytes));
  for (char c : version) {
    bool allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '+' ||
                   c == '-' || c == '_';
    if (!allowed) return FieldError(path, Quote(version) + " may hold only letters, digits and . + - _");
  }
  return version;
}

Expected<std::vector<std::string>> ReadCmdArgs(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(value, path, kMaxCmdArgs));
  std::vector<std::string> args;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element = Element(path, i);
    if (!value[i].is_string()) return FieldError(element, "expected a string");
    const auto& arg = value[i].get_ref<const std::string&>();
    if (arg.size() > kMaxCmdArgBytes) {
      return FieldError(element,
                        "is " + std::to_string(arg.size()) + " bytes; the limit is " + std::to_string(kMaxCmdArgBytes));
    }
    if (arg.find('\0') != std::string::npos) return FieldError(element, "must not contain a NUL character");
    args.push_back(arg);
  }
  return args;
}

Expected<std::vector<std::string>> ReadPeripheralNames(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(value, path, kMaxCapabilityEntries));
  std::vector<std::string> names;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element = Element(path, i);
    CITADEL_TRY(auto name, json_fields::ReadString(value[i], element, kMaxPeripheralNameBytes));
    const bool valid = IsAsciiAlpha(name.front()) && std::all_of(name.begin(), name.end(), [](char c) {
                         return IsAsciiAlpha(c) || IsAsciiDigit(c) || c == '_';
                       });
    if (!valid) {
      return FieldError(element, Quote(name) + " is not a peripheral name (a letter, then letters, digits or _)");
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      return FieldError(element, Quote(name) + " is listed twice");
    }
    names.push_back(std::move(name));
  }
  return names;
}

Expected<std::vector<std::string>> ReadHosts(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(value, path, kMaxCapabilityEntries));
  std::vector<std::string> hosts;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element = Element(path, i);
    CITADEL_TRY(auto text, json_fields::ReadString(value[i], element, kMaxHostNameBytes + 2));
    CITADEL_TRY(auto host, ParseHost(text, element));
    if (std::find(hosts.begin(), hosts.end(), host.text) != hosts.end()) {
      return FieldError(element, Quote(text) + " is listed twice");
    }
    hosts.push_back(std::move(host.text));
  }
  return hosts;
}

Expected<std::vector<std::uint16_t>> ReadPorts(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(value, path, kMaxCapabilityEntries));
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element = Element(path, i);
    const Json& entry = value[i];
    if (!entry.is_number_integer()) return FieldError(element, "expected an integer port (1..65535)");
    const bool in_range = entry.is_number_unsigned()
                              ? (entry.get<std::uint64_t>() >= 1 && entry.get<std::uint64_t>() <= 65535)
                              : (entry.get<std::int64_t>() >= 1 && entry.get<std::int64_t>() <= 65535);
    if (!in_range) return FieldError(element, entry.dump() + " is not a port (1..65535)");
    const auto port = static_cast<std::uint16_t>(entry.get<std::uint64_t>());
    if (std::find(ports.begin(), ports.end(), port) != ports.end()) {
      return FieldError(element, "port " + std::to_string(port) + " is listed twice");
    }
    ports.push_back(port);
  }
  return ports;
}

Expected<std::vector<std::string>> ReadGuids(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectArray(value, path, kMaxCapabilityEntries));
  std::vector<std::string> guids;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element = Element(path, i);
    if (!value[i].is_string()) return FieldError(element, "expected a string");
    CITADEL_TRY(auto guid, NormaliseGuid(value[i].get_ref<const std::string&>(), element));
    if (std::find(guids.begin(), guids.end(), guid) != guids.end()) {
      return FieldError(element, guid + " is listed twice");
    }
    guids.push_back(std::move(guid));
  }
  return guids;
}

Expected<std::string> ReadTenant(const Json& value, std::string_view path) {
  CITADEL_TRY(auto tenant, json_fields::ReadString(value, path, kMaxTenantIdBytes));
  const bool valid = std::all_of(tenant.begin(), tenant.end(),
                                 [](char c) { return IsAsciiAlpha(c) || IsAsciiDigit(c) || c == '_' || c == '-'; });
  if (!valid) return FieldError(path, Quote(tenant) + " is not a tenant id (letters, digits, _ and -)");
  return tenant;
}

Expected<Capabilities> ReadCapabilities(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(
      json_fields::ExpectObject(value, path,
                                {"Gpio", "Uart", "I2cMaster", "SpiMaster", "Pwm", "Adc", "AllowedConnections",
                                 "AllowedTcpServerPorts", "AllowedUdpServerPorts", "AllowedApplicationConnections",
                                 "MutableStorage", "DeviceAuthentication", "SystemTime", "PowerControls"}));
  Capabilities caps;
  const std::array<std::pair<std::string_view, std::vector<std::string>*>, 6> peripherals = {{
      {"Gpio", &caps.gpio},
      {"Uart", &caps.uart},
      {"I2cMaster", &caps.i2c_master},
      {"SpiMaster", &caps.spi_master},
      {"Pwm", &caps.pwm},
      {"Adc", &caps.adc},
  }};
  for (const auto& [key, target] : peripherals) {
    if (const Json* field = json_fields::Find(value, key)) {
      CITADEL_TRY(*target, ReadPeripheralNames(*field, Child(path, key)));
    }
  }
  if (const Json* field = json_fields::Find(value, "AllowedConnections")) {
    CITADEL_TRY(caps.allowed_connections, ReadHosts(*field, Child(path, "AllowedConnections")));
  }
  if (const Json* field = json_fields::Find(value, "AllowedTcpServerPorts")) {
    CITADEL_TRY(caps.allowed_tcp_server_ports, ReadPorts(*field, Child(path, "AllowedTcpServerPorts")));
  }
  if (const Json* field = json_fields::Find(value, "AllowedUdpServerPorts")) {
    CITADEL_TRY(caps.allowed_udp_server_ports, ReadPorts(*field, Child(path, "AllowedUdpServerPorts")));
  }
  if (const Json* field = json_fields::Find(value, "AllowedApplicationConnections")) {
    CITADEL_TRY(caps.allowed_application_connections, ReadGuids(*field, Child(path, "AllowedApplicationConnections")));
  }
  if (const Json* field = json_fields::Find(value, "MutableStorage")) {
    const std::string storage_path = Child(path, "MutableStorage");
    CITADEL_TRY_VOID(json_fields::ExpectObject(*field, storage_path, {"SizeKB"}));
    CITADEL_TRY(const Json* size, json_fields::Require(*field, storage_path, "SizeKB"));
    CITADEL_TRY(auto size_kb, json_fields::ReadInteger(*size, Child(storage_path, "SizeKB"), 1, kMaxMutableStorageKb));
    caps.mutable_storage_kb = static_cast<std::uint64_t>(size_kb);
  }
  if (const Json* field = json_fields::Find(value, "DeviceAuthentication")) {
    CITADEL_TRY(caps.device_authentication, ReadTenant(*field, Child(path, "DeviceAuthentication")));
  }
  if (const Json* field = json_fields::Find(value, "SystemTime")) {
    CITADEL_TRY(caps.system_time, json_fields::ReadBool(*field, Child(path, "SystemTime")));
  }
  if (const Json* field = json_fields::Find(value, "PowerControls")) {
    CITADEL_TRY(caps.power_controls, json_fields::ReadBool(*field, Child(path, "PowerControls")));
  }
  return caps;
}

Expected<ResourceRequest> ReadResources(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(json_fields::ExpectObject(value, path, {"MemoryMB", "MaxProcesses"}));
  ResourceRequest request;
  if (const Json* field = json_fields::Find(value, "MemoryMB")) {
    CITADEL_TRY(auto mb, json_fields::ReadInteger(*field, Child(path, "MemoryMB"), 1, kMaxMemoryMb));
    request.memory_mb = static_cast<std::uint64_t>(mb);
  }
  if (const Json* field = json_fields::Find(value, "MaxProcesses")) {
    CITADEL_TRY(auto count, json_fields::ReadInteger(*field, Child(path, "MaxProcesses"), 1, kMaxProcessesLimit));
    request.max_processes = static_cast<std::uint32_t>(count);
  }
  return request;
}

// Strict dotted-quad: four decimal parts 0..255 without leading zeros.
bool IsIpv4Literal(std::string_view text) {
  int parts = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = text.find('.', start);
    const std::string_view part =
        text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part.front() == '0')) return false;
    int number = 0;
    for (char c : part) {
      if (!IsAsciiDigit(c)) return false;
      number = number * 10 + (c - '0');
    }
    if (number > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts == 4;
}

}  // namespace

Expected<std::string> NormaliseGuid(std::string_view text, std::string_view path) {
  constexpr std::array<std::size_t, 4> kDashes = {8, 13, 18, 23};
  const auto refuse = [&] {
    return FieldError(path, Quote(text) +
                                " is not a GUID (8-4-4-4-12 hex digits, e.g. "
                                "\"3f2504e0-4f89-41d3-9a0c-0305e82c3301\")");
  };
  if (text.size() != 36) return refuse();
  std::string guid;
  guid.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (std::find(kDashes.begin(), kDashes.end(), i) != kDashes.end()) {
      if (c != '-') return refuse();
    } else if (HexDigitValue(c) < 0) {
      return refuse();
    }
    guid += ToLowerAscii(c);
  }
  if (guid == "00000000-0000-0000-0000-000000000000") return FieldError(path, "the nil GUID is not a component id");
  return guid;
}

Expected<Host> ParseHost(std::string_view text, std::string_view path) {
  if (text.empty()) return FieldError(path, "must not be empty");
  if (text.find(':') != std::string_view::npos) {
    std::array<unsigned char, 16> address{};
    const std::string copy(text);
    if (copy.size() > INET6_ADDRSTRLEN || inet_pton(AF_INET6, copy.c_str(), address.data()) != 1) {
      return FieldError(path, Quote(text) + " is not a valid IPv6 address");
    }
    std::array<char, INET6_ADDRSTRLEN> buffer{};
    if (inet_ntop(AF_INET6, address.data(), buffer.data(), static_cast<socklen_t>(buffer.size())) == nullptr) {
      return FieldError(path, Quote(text) + " is not a valid IPv6 address");
    }
    return Host{HostKind::kIpv6, std::string(buffer.data())};
  }
  if (std::all_of(text.begin(), text.end(), [](char c) { return IsAsciiDigit(c) || c == '.'; })) {
    if (!IsIpv4Literal(text)) return FieldError(path, Quote(text) + " is not a valid IPv4 address");
    return Host{HostKind::kIpv4, std::string(text)};
  }
  const auto refuse = [&](std::string_view why) {
    return FieldError(path, Quote(text) + " is not a valid host name (RFC 1123): " + std::string(why));
  };
  if (text.size() > kMaxHostNameBytes) return refuse("longer than 253 characters");
  std::string name;
  name.reserve(text.size());
  std::size_t start = 0;
  std::string_view last_label;
  while (true) {
    const std::size_t dot = text.find('.', start);
    const std::string_view label =
        text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return refuse("empty label");
    if (label.size() > kMaxLabelBytes) return refuse("a label is longer than 63 characters");
    if (label.front() == '-' || label.back() == '-') return refuse("a label starts or ends with '-'");
    for (char c : label) {
      if (!IsAsciiAlpha(c) && !IsAsciiDigit(c) && c != '-') return refuse("only letters, digits, '-' and '.'");
    }
    last_label = label;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (std::all_of(last_label.begin(), last_label.end(), IsAsciiDigit)) return refuse("the last label is all digits");
  for (char c : text) name += ToLowerAscii(c);
  return Host{HostKind::kDnsName, std::move(name)};
}

Expected<Manifest> ParseManifest(std::string_view json) {
  if (json.size() > kMaxManifestBytes) {
    return MakeError(ErrorCode::kTooLarge, "manifest is " + std::to_string(json.size()) + " bytes; the limit is " +
                                               std::to_string(kMaxManifestBytes));
  }
  auto parsed = ParseJsonStrict(json, kMaxManifestDepth);
  if (!parsed) return WrapError(parsed.error(), "manifest");
  const Json& root = *parsed;
  CITADEL_TRY_VOID(
      json_fields::ExpectObject(root, "",
                                {"SchemaVersion", "Name", "ComponentId", "EntryPoint", "Version", "SecurityVersion",
                                 "CmdArgs", "ApplicationType", "Capabilities", "Resources"}));
  Manifest manifest;
  CITADEL_TRY(const Json* version, json_fields::Require(root, "", "SchemaVersion"));
  if (!version->is_number_integer() || *version != kManifestSchemaVersion) {
    return FieldError("SchemaVersion", version->dump().substr(0, 32) + " is not supported (expected " +
                                           std::to_string(kManifestSchemaVersion) + ")");
  }
  CITADEL_TRY(const Json* name, json_fields::Require(root, "", "Name"));
  CITADEL_TRY(manifest.name, ReadName(*name, "Name"));
  CITADEL_TRY(const Json* component_id, json_fields::Require(root, "", "ComponentId"));
  if (!component_id->is_string()) return FieldError("ComponentId", "expected a string");
  CITADEL_TRY(manifest.component_id, NormaliseGuid(component_id->get_ref<const std::string&>(), "ComponentId"));
  CITADEL_TRY(const Json* entry_point, json_fields::Require(root, "", "EntryPoint"));
  CITADEL_TRY(manifest.entry_point, ReadEntryPoint(*entry_point, "EntryPoint"));
  if (const Json* version_text = json_fields::Find(root, "Version")) {
    CITADEL_TRY(manifest.version, ReadVersion(*version_text, "Version"));
  }
  if (const Json* security_version = json_fields::Find(root, "SecurityVersion")) {
    CITADEL_TRY(manifest.security_version,
                json_fields::ReadInteger(*security_version, "SecurityVersion", 0, kMaxSecurityVersion));
  }
  if (const Json* args = json_fields::Find(root, "CmdArgs")) {
    CITADEL_TRY(manifest.cmd_args, ReadCmdArgs(*args, "CmdArgs"));
  }
  CITADEL_TRY(const Json* type, json_fields::Require(root, "", "ApplicationType"));
  if (!type->is_string()) return FieldError("ApplicationType", "expected a string");
  if (type->get_ref<const std::string&>() != "Default") {
    return FieldError("ApplicationType",
                      Quote(type->get_ref<const std::string&>()) + " is not supported (only \"Default\")");
  }
  manifest.application_type = ApplicationType::kDefault;
  CITADEL_TRY(const Json* capabilities, json_fields::Require(root, "", "Capabilities"));
  CITADEL_TRY(manifest.capabilities, ReadCapabilities(*capabilities, "Capabilities"));
  for (std::size_t i = 0; i < manifest.capabilities.allowed_application_connections.size(); ++i) {
    if (manifest.capabilities.allowed_application_connections[i] == manifest.component_id) {
      return FieldError(Element("Capabilities.AllowedApplicationConnections", i), "an app cannot connect to itself");
    }
  }
  if (const Json* resources = json_fields::Find(root, "Resources")) {
    CITADEL_TRY(manifest.resources, ReadResources(*resources, "Resources"));
  }
  return manifest;
}

}  // namespace citadel::app
