#include "sandbox/spec_json.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <utility>

#include "common/encoding.hpp"

namespace citadel::sandbox {
namespace {

using app::DeniedFeature;
using app::Namespace;
using app::PeripheralKind;

// Stable wire names; never reuse one for another meaning.
constexpr std::array<std::pair<DeniedFeature, std::string_view>, 14> kDeniedFeatureNames{{
    {DeniedFeature::kWriteExecuteMemory, "WriteExecuteMemory"},
    {DeniedFeature::kRawSockets, "RawSockets"},
    {DeniedFeature::kNetworkSockets, "NetworkSockets"},
    {DeniedFeature::kInboundTcp, "InboundTcp"},
    {DeniedFeature::kInboundUdp, "InboundUdp"},
    {DeniedFeature::kPtrace, "Ptrace"},
    {DeniedFeature::kKernelModules, "KernelModules"},
    {DeniedFeature::kMount, "Mount"},
    {DeniedFeature::kNewPrivileges, "NewPrivileges"},
    {DeniedFeature::kNamespaceCreation, "NamespaceCreation"},
    {DeniedFeature::kBpf, "Bpf"},
    {DeniedFeature::kSetSystemTime, "SetSystemTime"},
    {DeniedFeature::kReboot, "Reboot"},
    {DeniedFeature::kAddressedSends, "AddressedSends"},
}};

constexpr std::array<std::pair<Namespace, std::string_view>, 6> kNamespaceNames{{
    {Namespace::kMount, "Mount"},
    {Namespace::kPid, "Pid"},
    {Namespace::kIpc, "Ipc"},
    {Namespace::kUts, "Uts"},
    {Namespace::kCgroup, "Cgroup"},
    {Namespace::kNetwork, "Network"},
}};

constexpr std::array<PeripheralKind, 6> kPeripheralKinds{PeripheralKind::kGpio,      PeripheralKind::kUart,
                                                         PeripheralKind::kI2cMaster, PeripheralKind::kSpiMaster,
                                                         PeripheralKind::kPwm,       PeripheralKind::kAdc};

template <typename Enum, std::size_t N>
std::string_view NameOf(const std::array<std::pair<Enum, std::string_view>, N>& table, Enum value) {
  for (const auto& [entry, name] : table) {
    if (entry == value) return name;
  }
  return "unknown";
}

template <typename Enum, std::size_t N>
Expected<Enum> ValueOf(const std::array<std::pair<Enum, std::string_view>, N>& table, std::string_view name) {
  for (const auto& [entry, entry_name] : table) {
    if (entry_name == name) return entry;
  }
  return MakeError(ErrorCode::kParse, "unknown name \"" + std::string(name) + "\"");
}

Expected<PeripheralKind> PeripheralKindFromName(std::string_view name) {
  for (PeripheralKind kind : kPeripheralKinds) {
    if (app::PeripheralKindName(kind) == name) return kind;
  }
  return MakeError(ErrorCode::kParse, "unknown peripheral kind \"" + std::string(name) + "\"");
}

Expected<app::Policy> PolicyFromJsonThrowing(const Json& json) {
  app::Policy policy;
  policy.component_id = json.at("component_id").get<std::string>();
  policy.name = json.at("name").get<std::string>();
  policy.entry_point = json.at("entry_point").get<std::string>();
  policy.cmd_args = json.at("cmd_args").get<std::vector<std::string>>();
  for (const Json& item : json.at("peripherals")) {
    app::Peripheral peripheral;
    CITADEL_TRY(peripheral.kind, PeripheralKindFromName(item.at("kind").get<std::string>()));
    peripheral.name = item.at("name").get<std::string>();
    peripheral.device = item.at("device").get<std::string>();
    if (item.contains("index")) peripheral.index = item.at("index").get<std::uint32_t>();
    peripheral.description = item.at("description").get<std::string>();
    policy.peripherals.push_back(std::move(peripheral));
  }
  policy.allowed_hosts = json.at("allowed_hosts").get<std::vector<std::string>>();
  policy.allowed_ip_addresses = json.at("allowed_ip_addresses").get<std::vector<std::string>>();
  policy.tcp_server_ports = json.at("tcp_server_ports").get<std::vector<std::uint16_t>>();
  policy.udp_server_ports = json.at("udp_server_ports").get<std::vector<std::uint16_t>>();
  policy.app_connections = json.at("app_connections").get<std::vector<std::string>>();
  policy.storage_quota_bytes = json.at("storage_quota_bytes").get<std::uint64_t>();
  policy.memory_limit_bytes = json.at("memory_limit_bytes").get<std::uint64_t>();
  policy.pids_limit = json.at("pids_limit").get<std::uint32_t>();
  policy.device_authentication = json.at("device_authentication").get<bool>();
  policy.device_authentication_tenant = json.at("device_authentication_tenant").get<std::string>();
  policy.system_time = json.at("system_time").get<bool>();
  policy.power_controls = json.at("power_controls").get<bool>();
  for (const Json& name : json.at("denied_features")) {
    CITADEL_TRY(DeniedFeature feature, ValueOf(kDeniedFeatureNames, name.get<std::string>()));
    policy.denied_features.insert(feature);
  }
  for (const Json& name : json.at("namespaces")) {
    CITADEL_TRY(Namespace ns, ValueOf(kNamespaceNames, name.get<std::string>()));
    policy.namespaces.insert(ns);
  }
  return policy;
}

}  // namespace

Json PolicyToJson(const app::Policy& policy) {
  Json peripherals = Json::array();
  for (const app::Peripheral& peripheral : policy.peripherals) {
    Json item = {{"kind", app::PeripheralKindName(peripheral.kind)},
                 {"name", peripheral.name},
                 {"device", peripheral.device},
                 {"description", peripheral.description}};
    if (peripheral.index) item["index"] = *peripheral.index;
    peripherals.push_back(std::move(item));
  }
  Json denied = Json::array();
  for (DeniedFeature feature : policy.denied_features) denied.push_back(NameOf(kDeniedFeatureNames, feature));
  Json namespaces = Json::array();
  for (Namespace ns : policy.namespaces) namespaces.push_back(NameOf(kNamespaceNames, ns));
  return Json{{"component_id", policy.component_id},
              {"name", policy.name},
              {"entry_point", policy.entry_point},
              {"cmd_args", policy.cmd_args},
              {"peripherals", std::move(peripherals)},
              {"allowed_hosts", policy.allowed_hosts},
              {"allowed_ip_addresses", policy.allowed_ip_addresses},
              {"tcp_server_ports", policy.tcp_server_ports},
              {"udp_server_ports", policy.udp_server_ports},
              {"app_connections", policy.app_connections},
              {"storage_quota_bytes", policy.storage_quota_bytes},
              {"memory_limit_bytes", policy.memory_limit_bytes},
              {"pids_limit", policy.pids_limit},
              {"device_authentication", policy.device_authentication},
              {"device_authentication_tenant", policy.device_authentication_tenant},
              {"system_time", policy.system_time},
              {"power_controls", policy.power_controls},
              {"denied_features", std::move(denied)},
              {"namespaces", std::move(namespaces)}};
}

Expected<app::Policy> PolicyFromJson(const Json& json) {
  try {
    auto policy = PolicyFromJsonThrowing(json);
    if (!policy) return WrapError(policy.error(), "policy");
    return policy;
  } catch (const Json::exception& e) {
    return MakeError(ErrorCode::kParse, std::string("policy: ") + e.what());
  }
}

Expected<std::string> LaunchSpecToJson(const LaunchSpec& spec) {
  Json json = {{"policy", PolicyToJson(spec.policy)},
               {"image_root", spec.image_root.string()},
               {"applibs_dir", spec.applibs_dir.string()},
               {"hosts_file", spec.hosts_file},
               {"uid", spec.uid},
               {"gid", spec.gid},
               {"cgroup", spec.cgroup.string()}};
  if (spec.storage_image) json["storage_image"] = spec.storage_image->string();
  if (!spec.seccomp_program.empty()) {
    json["seccomp_program"] = HexEncode(
        std::span(reinterpret_cast<const std::uint8_t*>(spec.seccomp_program.data()), spec.seccomp_program.size()));
  }
  auto text = CanonicalJson(json);
  if (!text) return WrapError(text.error(), "launch spec");
  return text;
}

Expected<LaunchSpec> LaunchSpecFromJson(std::string_view text) {
  CITADEL_TRY(Json json, ParseJsonStrict(text));
  try {
    LaunchSpec spec;
    CITADEL_TRY(spec.policy, PolicyFromJson(json.at("policy")));
    spec.image_root = json.at("image_root").get<std::string>();
    spec.applibs_dir = json.at("applibs_dir").get<std::string>();
    spec.hosts_file = json.at("hosts_file").get<std::string>();
    spec.uid = json.at("uid").get<uid_t>();
    spec.gid = json.at("gid").get<gid_t>();
    spec.cgroup = json.at("cgroup").get<std::string>();
    if (json.contains("storage_image")) spec.storage_image = json.at("storage_image").get<std::string>();
    if (json.contains("seccomp_program")) {
      auto program = HexDecode(json.at("seccomp_program").get<std::string>());
      if (!program) return WrapError(program.error(), "launch spec: seccomp_program");
      spec.seccomp_program.assign(program->begin(), program->end());
    }
    return spec;
  } catch (const Json::exception& e) {
    return MakeError(ErrorCode::kParse, std::string("launch spec: ") + e.what());
  }
}

std::string SanitisedHostname(std::string_view app_name) {
  std::string host;
  for (char c : app_name) {
    if (host.size() == 63) break;
    if (c >= 'A' && c <= 'Z') {
      host.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      host.push_back(c);
    } else {
      host.push_back('-');
    }
  }
  while (!host.empty() && host.front() == '-') host.erase(host.begin());
  while (!host.empty() && host.back() == '-') host.pop_back();
  return host.empty() ? std::string("app") : host;
}

}  // namespace citadel::sandbox
