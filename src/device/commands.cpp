#include "device/commands.hpp"

#include <chrono>

#include "common/file.hpp"
#include "common/log.hpp"
#include "crypto/crypto.hpp"

namespace citadel::device {
namespace {

constexpr std::size_t kMaxCaFileBytes = 1u << 20;

std::chrono::seconds WholeSeconds(Milliseconds value) {
  return std::chrono::duration_cast<std::chrono::seconds>(value);
}

}  // namespace

Expected<ProvisionResult> ProvisionDevice(const ProvisionSettings& settings) {
  // Load the CA before touching the state dir: a typo in --manufacturer-ca
  // must not leave a half-provisioned device behind.
  std::optional<ManufacturerCa> ca;
  if (settings.manufacturer_ca_dir) {
    auto loaded = LoadManufacturerCa(*settings.manufacturer_ca_dir);
    if (!loaded) return std::unexpected(loaded.error());
    ca.emplace(std::move(*loaded));
  }
  CITADEL_TRY_VOID(EnsureDirectory(settings.state_dir, 0700));
  CITADEL_TRY(auto rot, OpenRootOfTrust(settings.backend, settings.state_dir, RotOpenMode::kCreateIfMissing));
  if (!ca) {
    ProvisionResult result;
    result.device_id = rot->DeviceId();
    return result;
  }
  auto result = ProvisionWithManufacturerCa(*rot, *ca);
  if (result) {
    log::Info(result->newly_provisioned ? "device provisioned" : "device was already provisioned",
              {{"device_id", result->device_id}, {"rot", rot->Backend()}});
  }
  return result;
}

Expected<std::string> ReadDeviceId(RotBackend backend, const std::filesystem::path& state_dir) {
  CITADEL_TRY(auto rot, OpenRootOfTrust(backend, state_dir, RotOpenMode::kMustExist));
  return rot->DeviceId();
}

EffectiveConfig MakeEffectiveConfig(const RunSettings& settings, std::string_view server_ca_pem) {
  EffectiveConfig config;
  config.rot_backend = std::string(RotBackendName(settings.backend));
  config.server_url = settings.server_url;
  config.server_ca_sha256 = crypto::Sha256Hex(server_ca_pem);
  config.os_name = settings.os_name;
  config.os_version = settings.os_version;
  config.os_image = settings.os_image.string();
  config.check_in_interval = WholeSeconds(settings.check_in_interval);
  config.unclaimed_retry = WholeSeconds(settings.unclaimed_retry);
  config.max_backoff = WholeSeconds(settings.max_backoff);
  return config;
}

Expected<PreparedRun> PrepareRun(const RunSettings& settings) {
  auto ca_pem = ReadFile(settings.server_ca_path, kMaxCaFileBytes);
  if (!ca_pem) return WrapError(ca_pem.error(), "--server-ca");
  auto ca = crypto::ParsePemChain(*ca_pem);
  if (!ca || ca->empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--server-ca " + settings.server_ca_path.string() + ": no PEM certificate in it");
  }

  PreparedRun prepared;
  CITADEL_TRY(prepared.rot, OpenRootOfTrust(settings.backend, settings.state_dir, RotOpenMode::kMustExist));

  MeasurementInputs inputs;
  inputs.os_name = settings.os_name;
  inputs.os_version = settings.os_version;
  inputs.os_image = settings.os_image;
  if (settings.config_file.empty()) {
    CITADEL_TRY(inputs.config_digest, ConfigDigest(EffectiveConfigToJson(MakeEffectiveConfig(settings, *ca_pem))));
  } else {
    CITADEL_TRY(inputs.config_digest, ConfigFileDigest(settings.config_file));
  }
  CITADEL_TRY_VOID(MeasureBoot(*prepared.rot, inputs));

  AgentOptions options;
  options.state_dir = settings.state_dir;
  options.server_url = settings.server_url;
  options.server_ca_pem = std::move(*ca_pem);
  options.os_version = settings.os_version;
  options.check_in_interval = settings.check_in_interval;
  options.unclaimed_retry = settings.unclaimed_retry;
  options.max_backoff = settings.max_backoff;
  options.once = settings.once;
  CITADEL_TRY(prepared.agent, DeviceAgent::Create(std::move(options), *prepared.rot));
  return prepared;
}

}  // namespace citadel::device
