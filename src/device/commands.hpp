// The logic behind citadeld's subcommands, separate from argument parsing
// (main.cpp) so it can be tested and reused by the simulator.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "device/device_agent.hpp"
#include "device/measurement.hpp"
#include "device/provisioning.hpp"
#include "device/rot_backend.hpp"
#include "reports/boot_record.hpp"
#include "reports/collector.hpp"
#include "reports/report_queue.hpp"
#include "rot/rot.hpp"
#include "update/installers.hpp"
#include "update/os_slots.hpp"
#include "update/update_client.hpp"

namespace citadel::device {

struct ProvisionSettings {
  RotBackend backend = RotBackend::kSoftware;
  std::filesystem::path state_dir;
  // The development manufacturer CA; nullopt with --no-manufacturer (the
  // device gets an identity but no chain, so the service will find it not
  // genuine: useful to test exactly that).
  std::optional<std::filesystem::path> manufacturer_ca_dir;
  std::string tcti{};  // tpm2: the TPM's TCTI configuration
  // tpm2: PEM file of the TPM vendor's intermediate CA certificates that
  // complete the EK certificate's chain (stored with the device).
  std::optional<std::filesystem::path> tpm_ek_chain{};
};

// `citadeld provision`: creates the state dir and the identity if missing,
// then certifies the identity. Idempotent.
Expected<ProvisionResult> ProvisionDevice(const ProvisionSettings& settings);

// `citadeld id`: the device id of an existing identity.
Expected<std::string> ReadDeviceId(RotBackend backend, const std::filesystem::path& state_dir,
                                   std::string_view tcti = {});

struct RunSettings {
  RotBackend backend = RotBackend::kSoftware;
  std::string tcti;  // tpm2: the TPM's TCTI configuration
  std::filesystem::path state_dir;
  std::string server_url;
  std::filesystem::path server_ca_path;
  std::string os_name = "citadel-os";
  std::string os_version = "1.0.0";
  std::filesystem::path os_image;     // empty: /etc/os-release is measured
  std::filesystem::path config_file;  // empty: the effective config is measured
  Milliseconds check_in_interval = std::chrono::seconds(60);
  Milliseconds unclaimed_retry = std::chrono::seconds(60);
  Milliseconds max_backoff = std::chrono::seconds(60);
  bool once = false;
};

// The configuration measured into register 2 when no --config is given.
EffectiveConfig MakeEffectiveConfig(const RunSettings& settings, std::string_view server_ca_pem);

// Everything `citadeld run` needs, ready to Run(): the RoT (measured) and
// the agent using it. Declared in this order so the agent is destroyed
// before the RoT it references.
struct PreparedRun {
  std::unique_ptr<rot::RootOfTrust> rot;
  std::unique_ptr<DeviceAgent> agent;
  std::string server_ca_pem;
};

// Opens the RoT, measures OS, runtime and configuration into it, and
// creates the agent. Does not contact the service.
Expected<PreparedRun> PrepareRun(const RunSettings& settings);

// Over-the-air updates in `citadeld run` (src/update).
struct UpdateSettings {
  std::string boot_control;          // boot::Open spec; empty: "file:STATE/boot"
  std::filesystem::path os_slots;    // file OS slots (development); empty: no OS updates
  std::filesystem::path image_root;  // factory-provisioned TUF roots; empty: trust on first use
  std::filesystem::path director_root;
  std::function<void()> request_reboot;          // an OS update wants the device restarted
  std::function<void()> on_settled;              // see UpdateClientOptions::on_settled
  reports::FailureSink* failure_sink = nullptr;  // failed updates become reports; null: none
};

struct PreparedBoot {
  std::unique_ptr<boot::BootControl> boot;
  std::unique_ptr<update::OsSlots> slots;  // null without OS slots
  boot::Slot booted = boot::Slot::kA;
};

// Before PrepareRun: opens the boot control and plays the bootloader's part
// (update::BootAtStart: on the file backend every start of citadeld is a
// power-on). With OS slots, run.os_image becomes the booted slot's image and
// run.os_version the version the update client recorded for it, so what is
// measured and reported is the OS that booted.
Expected<PreparedBoot> PrepareBoot(const UpdateSettings& settings, RunSettings& run);

// After PrepareRun: creates the update client (floors in the prepared RoT,
// mutual TLS with its TLS key and the pinned CA), reconciles it with the
// boot (Recover), attaches it to the agent and starts its thread. `apps` may
// be null (no app subsystem). Everything passed must outlive the client.
Expected<std::unique_ptr<update::UpdateClient>> StartUpdateClient(const UpdateSettings& settings,
                                                                  const RunSettings& run, PreparedRun& prepared,
                                                                  PreparedBoot& boot, update::AppInstaller* apps);

// Failure reporting in `citadeld run` (src/reports; docs/ARCHITECTURE.md,
// "Failure reporting").
struct ReportSettings {
  // The kernel's boot id, or a file standing in for it (--boot-id-file, for
  // virtual devices whose "reboot" is a restart of citadeld).
  std::filesystem::path boot_id_file = "/proc/sys/kernel/random/boot_id";
  reports::QueueLimits queue_limits{};
};

// Declared in this order so the collector goes before the queue it writes.
struct PreparedReports {
  std::unique_ptr<reports::ReportQueue> queue;
  std::unique_ptr<reports::ReportCollector> collector;
  std::optional<reports::BootRecord> boot;
};

// Opens STATE/reports (queue, boot record) and the collector, and records
// the boot record's start event (an unplanned reboot or a runtime restart)
// through the collector. Call after PrepareBoot (run.os_version is then the
// booted OS); attach to the agent with AttachReports.
Expected<PreparedReports> PrepareReports(const ReportSettings& settings, const RunSettings& run);

// A clean, requested stop: writes the folded counts (Flush) and marks the
// boot record clean with `reason` ("stop", "update-reboot").
void FinishReports(PreparedReports& reports, std::string_view reason);

}  // namespace citadel::device
