#include "sim/fleet.hpp"

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "device/measurement.hpp"
#include "device/provisioning.hpp"

namespace citadel::sim {
namespace {

constexpr int kFleetFileVersion = 1;
constexpr std::size_t kMaxFleetFileBytes = 1024u << 20;

struct StoredDevice {
  crypto::SecretBytes identity_pem;
  crypto::SecretBytes tls_pem;
  std::string chain_pem;
};

Expected<std::vector<StoredDevice>> ReadFleetFile(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::vector<StoredDevice>{};
  CITADEL_TRY(std::string text, ReadFile(path, kMaxFleetFileBytes));
  CITADEL_TRY(Json document, ParseJsonStrict(text));
  crypto::SecretBytes wipe(std::move(text));
  if (!document.is_object() || document.value("version", 0) != kFleetFileVersion || !document.contains("devices") ||
      !document["devices"].is_array()) {
    return MakeError(ErrorCode::kParse, path.string() + ": not a citadel-sim fleet file (version 1)");
  }
  std::vector<StoredDevice> devices;
  for (auto& entry : document["devices"]) {
    if (!entry.is_object() || !entry.contains("identity_key") || !entry["identity_key"].is_string() ||
        !entry.contains("tls_key") || !entry["tls_key"].is_string() || !entry.contains("manufacturer_chain") ||
        !entry["manufacturer_chain"].is_string()) {
      return MakeError(ErrorCode::kParse, path.string() + ": device entry " + std::to_string(devices.size()) +
                                              " needs identity_key, tls_key and manufacturer_chain");
    }
    devices.push_back({crypto::SecretBytes(entry["identity_key"].get<std::string>()),
                       crypto::SecretBytes(entry["tls_key"].get<std::string>()),
                       entry["manufacturer_chain"].get<std::string>()});
  }
  return devices;
}

Expected<void> WriteFleetFile(const std::filesystem::path& path,
                              const std::vector<std::unique_ptr<MemoryRootOfTrust>>& devices) {
  Json list = Json::array();
  for (const auto& device : devices) {
    CITADEL_TRY(auto identity, device->identity_key().ToPem());
    CITADEL_TRY(auto tls, device->TlsClientKey().ToPem());
    CITADEL_TRY(auto chain, device->ManufacturerChain());
    list.push_back({{"identity_key", std::string(identity.reveal())},
                    {"tls_key", std::string(tls.reveal())},
                    {"manufacturer_chain", crypto::ToPemChain(chain)}});
  }
  Json document{{"version", kFleetFileVersion}, {"devices", std::move(list)}};
  crypto::SecretBytes text(document.dump());
  return WriteFileAtomic(path, text.reveal(), 0600);
}

}  // namespace

std::vector<rot::MeasurementEvent> SimulatedBootEvents(const std::string& os_name, const std::string& os_version) {
  const std::string runtime(device::RuntimeVersion());
  Json config{{"simulator", "citadel-sim"}, {"os_name", os_name}};
  return {
      {static_cast<std::uint32_t>(rot::Register::kOs), "os", os_name, os_version,
       crypto::Sha256("citadel-sim os " + os_name + " " + os_version)},
      {static_cast<std::uint32_t>(rot::Register::kRuntime), "runtime", std::string(device::kRuntimeName), runtime,
       crypto::Sha256("citadel-sim runtime " + runtime)},
      {static_cast<std::uint32_t>(rot::Register::kConfig), "config", std::string(device::kConfigName), "",
       device::ConfigDigest(config).value_or(crypto::Sha256Digest{})},
  };
}

Expected<Fleet> PrepareFleet(const FleetSpec& spec) {
  Fleet fleet;
  std::vector<StoredDevice> stored;
  if (!spec.fleet_file.empty()) {
    auto read = ReadFleetFile(spec.fleet_file);
    if (!read) return WrapError(read.error(), "--fleet-file");
    stored = std::move(*read);
  }
  for (std::size_t i = 0; i < stored.size() && i < spec.devices; ++i) {
    CITADEL_TRY(auto rot, MemoryRootOfTrust::FromPem(stored[i].identity_pem, stored[i].tls_pem));
    CITADEL_TRY(auto chain, crypto::ParsePemChain(stored[i].chain_pem));
    CITADEL_TRY_VOID(rot->StoreManufacturerChain(chain));
    fleet.devices.push_back(std::move(rot));
  }
  fleet.reused = fleet.devices.size();
  if (fleet.devices.size() < spec.devices) {
    if (spec.manufacturer_dir.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "--manufacturer-dir is needed to make " +
                                                        std::to_string(spec.devices - fleet.devices.size()) +
                                                        " more devices");
    }
    auto ca = device::LoadManufacturerCa(spec.manufacturer_dir);
    if (!ca) return WrapError(ca.error(), "--manufacturer-dir");
    while (fleet.devices.size() < spec.devices) {
      CITADEL_TRY(auto rot, MemoryRootOfTrust::Generate());
      CITADEL_TRY(auto provisioned, device::ProvisionWithManufacturerCa(*rot, *ca));
      (void)provisioned;
      fleet.devices.push_back(std::move(rot));
    }
  }
  for (auto& device : fleet.devices) {
    for (const auto& event : SimulatedBootEvents(spec.os_name, spec.os_version)) {
      CITADEL_TRY_VOID(device->Extend(event));
    }
  }
  // New devices were made only when the file had fewer than asked for, so
  // the file's devices are all among this run's: write the whole fleet.
  if (!spec.fleet_file.empty() && fleet.reused < fleet.devices.size()) {
    auto written = WriteFleetFile(spec.fleet_file, fleet.devices);
    if (!written) return WrapError(written.error(), "writing --fleet-file");
  }
  return fleet;
}

}  // namespace citadel::sim
