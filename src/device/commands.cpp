#include "device/commands.hpp"

#include <chrono>

#include "common/encoding.hpp"
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

namespace {

// A TPM is certified by its vendor: the chain is the EK certificate from the
// TPM's NV memory plus the vendor's intermediates, stored with the device.
Expected<ProvisionResult> ProvisionTpm(const ProvisionSettings& settings) {
  std::vector<crypto::Certificate> intermediates;
  if (settings.tpm_ek_chain) {
    auto pem = ReadFile(*settings.tpm_ek_chain, kMaxCaFileBytes);
    if (!pem) return WrapError(pem.error(), "--tpm-ek-chain");
    auto parsed = crypto::ParsePemChain(*pem, 8);
    if (!parsed || parsed->empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--tpm-ek-chain " + settings.tpm_ek_chain->string() + ": no PEM certificate in it");
    }
    intermediates = std::move(*parsed);
  }
  CITADEL_TRY_VOID(EnsureDirectory(settings.state_dir, 0700));
  CITADEL_TRY(auto rot,
              OpenRootOfTrust(settings.backend, settings.state_dir, RotOpenMode::kCreateIfMissing, settings.tcti));
  CITADEL_TRY(auto chain, rot->ManufacturerChain());
  if (chain.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, "the TPM holds no EK certificate: was it manufactured?");
  }
  std::vector<crypto::Certificate> full{chain.front()};
  full.insert(full.end(), intermediates.begin(), intermediates.end());
  if (auto stored = rot->StoreManufacturerChain(full); !stored) return WrapError(stored.error(), "--tpm-ek-chain");
  log::Info("TPM device provisioned",
            {{"device_id", rot->DeviceId()}, {"intermediates", std::to_string(intermediates.size())}});
  return ProvisionResult{rot->DeviceId(), true};
}

}  // namespace

Expected<ProvisionResult> ProvisionDevice(const ProvisionSettings& settings) {
  if (settings.backend == RotBackend::kTpm2) return ProvisionTpm(settings);
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

Expected<std::string> ReadDeviceId(RotBackend backend, const std::filesystem::path& state_dir, std::string_view tcti) {
  CITADEL_TRY(auto rot, OpenRootOfTrust(backend, state_dir, RotOpenMode::kMustExist, tcti));
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
  CITADEL_TRY(prepared.rot,
              OpenRootOfTrust(settings.backend, settings.state_dir, RotOpenMode::kMustExist, settings.tcti));

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
  prepared.server_ca_pem = *ca_pem;  // the update client pins the same CA
  options.server_ca_pem = std::move(*ca_pem);
  options.os_version = settings.os_version;
  options.check_in_interval = settings.check_in_interval;
  options.unclaimed_retry = settings.unclaimed_retry;
  options.max_backoff = settings.max_backoff;
  options.once = settings.once;
  CITADEL_TRY(prepared.agent, DeviceAgent::Create(std::move(options), *prepared.rot));
  return prepared;
}

Expected<PreparedBoot> PrepareBoot(const UpdateSettings& settings, RunSettings& run) {
  PreparedBoot prepared;
  const std::string spec =
      settings.boot_control.empty() ? "file:" + (run.state_dir / "boot").string() : settings.boot_control;
  auto boot = boot::Open(spec);
  if (!boot) return WrapError(boot.error(), "--boot-control " + spec);
  prepared.boot = std::move(*boot);
  // --once only looks: it must not take a boot try from an OS trial.
  if (run.once) {
    CITADEL_TRY(boot::BootState state, prepared.boot->ReadState());
    prepared.booted = state.booted;
  } else {
    CITADEL_TRY(prepared.booted, update::BootAtStart(*prepared.boot));
  }
  if (settings.os_slots.empty()) return prepared;
  auto slots = update::FileOsSlots::Open(settings.os_slots);
  if (!slots) return WrapError(slots.error(), "--os-slots");
  prepared.slots = std::move(*slots);
  run.os_image = prepared.slots->ImagePath(prepared.booted);
  std::error_code ec;
  if (!std::filesystem::exists(run.os_image, ec)) {
    return MakeError(ErrorCode::kNotFound, "--os-slots: the booted slot " +
                                               std::string(boot::SlotName(prepared.booted)) + " has no image at " +
                                               run.os_image.string() + " (put the factory OS image there)");
  }
  CITADEL_TRY(auto record, update::RecordedOsSlot(run.state_dir, prepared.booted));
  if (record) run.os_version = record->version;
  log::Info("OS slot booted", {{"slot", boot::SlotName(prepared.booted)}, {"version", run.os_version}});
  return prepared;
}

Expected<std::unique_ptr<update::UpdateClient>> StartUpdateClient(const UpdateSettings& settings,
                                                                  const RunSettings& run, PreparedRun& prepared,
                                                                  PreparedBoot& boot, update::AppInstaller* apps) {
  update::UpdateClientOptions options;
  options.state_dir = run.state_dir;
  options.device_id = prepared.rot->DeviceId();
  options.service_url = run.server_url;
  options.os_component_id = run.os_name;
  options.os_version = run.os_version;
  options.image_root = settings.image_root;
  options.director_root = settings.director_root;
  options.request_reboot = settings.request_reboot;
  options.on_settled = settings.on_settled;
  options.failure_sink = settings.failure_sink;
  // With OS slots, the digest this boot measured of the booted slot's image
  // (register 0) says what runs.
  for (const auto& event : prepared.rot->MeasurementLog()) {
    if (boot.slots && event.type == "os") options.booted_os_sha256 = HexEncode(event.digest);
  }
  update::UpdateDependencies dependencies;
  dependencies.rot = prepared.rot.get();
  dependencies.apps = apps;
  dependencies.boot = boot.boot.get();
  dependencies.os_slots = boot.slots.get();
  dependencies.fetchers = update::MutualTlsFetcherFactory(prepared.server_ca_pem, prepared.rot->TlsClientKey());
  CITADEL_TRY(auto client, update::UpdateClient::Create(std::move(options), std::move(dependencies)));
  auto recovered = client->Recover();
  if (!recovered) return WrapError(recovered.error(), "update client");
  prepared.agent->AttachUpdateClient(client.get());
  client->Start();
  return client;
}

Expected<PreparedReports> PrepareReports(const ReportSettings& settings, const RunSettings& run) {
  const auto dir = run.state_dir / "reports";
  PreparedReports prepared;
  CITADEL_TRY(prepared.queue, reports::ReportQueue::Open(dir, settings.queue_limits));
  reports::CollectorOptions options;
  options.os_version = run.os_version;
  options.runtime_version = std::string(RuntimeVersion());
  prepared.collector = std::make_unique<reports::ReportCollector>(*prepared.queue, std::move(options));
  reports::BootRecordOptions boot;
  boot.reports_dir = dir;
  boot.boot_id_file = settings.boot_id_file;
  auto record = reports::BootRecord::Open(std::move(boot));
  if (!record) return WrapError(record.error(), "--boot-id-file " + settings.boot_id_file.string());
  if (record->start_event()) prepared.collector->Record(*record->start_event());
  prepared.boot = std::move(*record);
  return prepared;
}

void FinishReports(PreparedReports& reports, std::string_view reason) {
  if (reports.collector) reports.collector->Flush();
  if (reports.boot) {
    auto marked = reports.boot->MarkClean(reason);
    if (!marked) log::Warn("cannot record the clean stop", {{"error", marked.error().message()}});
  }
}

}  // namespace citadel::device
