// citadeld: the Citadel device runtime. Argument parsing, signals and exit
// codes only; the logic lives in citadel_device (device/commands.hpp) and,
// for apps, citadel_apps_runtime (apps/runtime.hpp).
//
// Apps: `citadeld run --board FILE` also runs the app subsystem (installed
// apps, their sandboxes, the broker, and the development interface at
// STATE/dev.sock); without --board (or with --no-apps) only the agent runs.
// `citadeld apps serve --state DIR --board FILE` runs the app subsystem
// without a service connection (tests, the simulator, the hostile suite).
//
// Updates (src/update): `citadeld run` (without --once) also runs the update
// client. --boot-control picks the A/B boot backend (default file:STATE/boot,
// where every start of citadeld plays a power-on); --os-slots DIR gives file
// OS slots (development: DIR/slot-A.img, slot-B.img), and then the booted
// slot's image is the OS that is measured; --update-trial-seconds is how
// long an updated app must run before it is committed; --update-once exits
// (0) once an update pass has finished and its reports were acknowledged
// (power-cut tests drive one pass per process with it).
//
// Exit codes: 0 success; 1 failure (message on stderr); 3 `run --once`
// found the device genuine but not claimed; 75 reboot requested: an OS
// update armed its trial slot and the device must restart (the supervisor
// — tests, scripts/run-local, the virtual fleet — starts citadeld again,
// which on the file boot backend is the reboot); CLI11's codes (>= 100) for
// usage errors.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <optional>

#include "common/canonical_json.hpp"
#include "common/log.hpp"
#include "device/commands.hpp"
#include "device/measurement.hpp"
#include "device/schedule.hpp"
#include "reports/failure_event.hpp"
#ifdef CITADEL_HAVE_APPS
#include "apps/runtime.hpp"
#endif

namespace {

using citadel::device::Milliseconds;

constexpr int kExitFailure = 1;
constexpr int kExitUnclaimed = 3;
constexpr int kExitRebootRequested = 75;  // EX_TEMPFAIL: "restart me"
// A signal asks for shutdown within a second; an HTTP request in flight
// (bounded by its own timeouts) is abandoned after this long. Every file
// the runtime writes is replaced atomically, so exiting mid-request is safe.
constexpr auto kShutdownGrace = std::chrono::milliseconds(900);

int Fail(const citadel::Error& error) {
  std::cerr << "citadeld: " << error.message() << "\n";
  return kExitFailure;
}

// Runs the agent on this thread while a second thread waits for SIGINT or
// SIGTERM (blocked everywhere else, so no async-signal-safety concerns).
int RunWithSignals(citadel::device::DeviceAgent& agent) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // wakes the signal thread when the process ends on its own
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::mutex mutex;
  std::condition_variable finished_cv;
  bool finished = false;

  std::thread signal_thread([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    std::unique_lock lock(mutex);
    if (finished) return;  // woken by the main thread after Run() returned
    citadel::log::Info("shutting down", {{"signal", signal_number == SIGINT ? "SIGINT" : "SIGTERM"}});
    agent.Stop();
    if (!finished_cv.wait_for(lock, kShutdownGrace, [&] { return finished; })) {
      citadel::log::Warn("shutdown: abandoning the request in flight");
      std::_Exit(0);
    }
  });

  auto outcome = agent.Run();
  {
    std::lock_guard lock(mutex);
    finished = true;
  }
  finished_cv.notify_all();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);  // wakes sigwait if still waiting
  signal_thread.join();

  if (!outcome) return Fail(outcome.error());
  switch (*outcome) {
    case citadel::device::RunOutcome::kStopped:
      return 0;
    case citadel::device::RunOutcome::kAttested: {
      auto status = agent.Status();
      std::cout << "attested device_id=" << status.device_id << " tenant_id=" << status.tenant_id
                << " certificate_expires_at=" << status.certificate_expires_at << "\n";
      return 0;
    }
    case citadel::device::RunOutcome::kUnclaimed:
      std::cout << "unclaimed device_id=" << agent.Status().device_id
                << " (genuine; claim it with `citadel device claim`, then run again)\n";
      return kExitUnclaimed;
  }
  return kExitFailure;
}

// Blocks the shutdown signals in this thread and every thread started after
// it, so that only sigwait() sees them (call before starting any thread).
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

struct AppOptions {
  std::string board;           // empty: no apps
  int trial_seconds = 30;      // update trials (run only)
  std::string hosts_override;  // JSON {"name": ["127.0.0.1"]}
  std::string sandbox_exe;     // default: citadel-sandbox beside citadeld
  std::string applibs_dir;     // default: ../lib beside citadeld
  bool no_apps = false;
  bool no_dev_interface = false;
  bool keep_cgroup_mode = false;
};

void AddAppOptions(CLI::App* command, AppOptions& options, bool board_required) {
  auto* board = command->add_option("--board", options.board,
                                    "board definition (e.g. boards/simulated.json); enables the app subsystem");
  if (board_required) board->required();
  command->add_option("--hosts-override", options.hosts_override,
                      "JSON file {\"name\": [\"127.0.0.1\"]} resolving apps' AllowedConnections (tests, simulator)");
  command->add_option("--sandbox-exe", options.sandbox_exe, "the citadel-sandbox helper (default: beside citadeld)");
  command->add_option("--applibs-dir", options.applibs_dir,
                      "directory holding libapplibs.so (default: ../lib beside citadeld)");
  command->add_flag("--no-dev-interface", options.no_dev_interface,
                    "do not serve the development interface (STATE/dev.sock)");
  command->add_flag("--keep-cgroup-mode", options.keep_cgroup_mode,
                    "leave the kernel's cgroup mode alone; by default citadeld turns on favordynmods (a remount of "
                    "cgroup2) so that an app start does not wait ~8 ms for the kernel's cgroup lock");
}

#ifdef CITADEL_HAVE_APPS
citadel::Expected<std::unique_ptr<citadel::apps::AppRuntime>> StartApps(
    const AppOptions& options, const std::filesystem::path& state_dir, citadel::rot::RootOfTrust& rot,
    citadel::reports::FailureSink* failure_sink = nullptr) {
  std::error_code ec;
  auto exe_dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  citadel::apps::AppRuntimeSettings settings;
  settings.state_dir = state_dir;
  settings.board_file = options.board;
  if (!options.hosts_override.empty()) settings.hosts_override = options.hosts_override;
  settings.sandbox_exe =
      options.sandbox_exe.empty() ? exe_dir / "citadel-sandbox" : std::filesystem::path(options.sandbox_exe);
  settings.applibs_dir =
      options.applibs_dir.empty() ? exe_dir.parent_path() / "lib" : std::filesystem::path(options.applibs_dir);
  settings.dev_interface = !options.no_dev_interface;
  settings.cgroup_favordynmods = !options.keep_cgroup_mode;
  settings.manager.trial_period = std::chrono::seconds(options.trial_seconds);
  // App crashes, exits, restart loops and violations become failure reports.
  settings.manager.failure_sink = failure_sink;
  auto runtime = citadel::apps::AppRuntime::Start(std::move(settings), rot);
  if (!runtime) return citadel::WrapError(runtime.error(), "starting the app subsystem");
  return runtime;
}
#endif

// CLI11 validator and converter for "500ms", "60s", "5m", "1h".
Milliseconds DurationOption(const std::string& text) { return *citadel::device::ParseDuration(text); }

const CLI::Validator kDuration(
    [](std::string& text) -> std::string {
      auto parsed = citadel::device::ParseDuration(text);
      return parsed ? std::string() : parsed.error().message();
    },
    "DURATION");

}  // namespace

int main(int argc, char** argv) {
  // TLS writes to a peer that went away must be an error, not a signal.
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return 1;

  CLI::App app{"citadeld: the Citadel device runtime"};
  app.set_version_flag("--version", std::string(citadel::device::RuntimeVersion()));
  app.require_subcommand(1);

  std::string rot_name = "software";
  std::string tcti;
  std::string log_level = "info";
  bool log_json = false;
  auto add_common = [&](CLI::App* command) {
    command->add_option("--rot", rot_name, "root-of-trust backend")
        ->check(CLI::IsMember({"software", "tpm2"}))
        ->capture_default_str();
    command->add_option("--tcti", tcti,
                        "with --rot tpm2: the TPM's TCTI, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 "
                        "(default: the TCTI loader's default)");
    command->add_option("--log-level", log_level, "debug, info, warn, error or off")->capture_default_str();
    command->add_flag("--log-json", log_json, "log JSON lines");
  };

  // provision
  citadel::device::ProvisionSettings provision;
  std::string manufacturer_ca;
  bool no_manufacturer = false;
  bool provision_json = false;
  auto* provision_cmd = app.add_subcommand("provision", "create the device identity and certify it (factory step)");
  provision_cmd->add_option("--state", provision.state_dir, "device state directory")->required();
  auto* ca_option = provision_cmd->add_option("--manufacturer-ca", manufacturer_ca,
                                              "directory with manufacturer-ca.pem and manufacturer-ca.key");
  auto* no_ca_flag = provision_cmd->add_flag("--no-manufacturer", no_manufacturer,
                                             "create only the identity, without a manufacturer certificate");
  ca_option->excludes(no_ca_flag);
  std::string tpm_ek_chain;
  auto* ek_chain_option =
      provision_cmd->add_option("--tpm-ek-chain", tpm_ek_chain,
                                "with --rot tpm2: PEM file of the TPM vendor's intermediate CAs of the EK certificate");
  ek_chain_option->excludes(ca_option);
  provision_cmd->add_flag("--json", provision_json, "print JSON");
  add_common(provision_cmd);

  // id
  std::filesystem::path id_state;
  bool id_json = false;
  auto* id_cmd = app.add_subcommand("id", "print the device id");
  id_cmd->add_option("--state", id_state, "device state directory")->required();
  id_cmd->add_flag("--json", id_json, "print JSON");
  add_common(id_cmd);

  // run
  citadel::device::RunSettings run;
  std::string check_in_interval = "60s", unclaimed_retry = "60s", max_backoff = "60s";
  auto* run_cmd = app.add_subcommand("run", "attest, keep a device certificate and check in");
  run_cmd->add_option("--state", run.state_dir, "device state directory")->required();
  run_cmd->add_option("--server", run.server_url, "service URL, https://host:port")->required();
  run_cmd->add_option("--server-ca", run.server_ca_path, "PEM file of the service CA to pin")->required();
  run_cmd->add_option("--os-name", run.os_name, "OS name to measure")->capture_default_str();
  run_cmd->add_option("--os-version", run.os_version, "OS version to measure and report")->capture_default_str();
  run_cmd->add_option("--os-image", run.os_image, "OS image to measure (default: /etc/os-release)");
  run_cmd->add_option("--config", run.config_file, "device configuration document (JSON) to measure");
  run_cmd->add_option("--check-in-interval", check_in_interval, "time between check-ins")
      ->check(kDuration)
      ->capture_default_str();
  run_cmd->add_option("--unclaimed-retry", unclaimed_retry, "longest wait before asking again while unclaimed")
      ->check(kDuration)
      ->capture_default_str();
  run_cmd->add_option("--max-backoff", max_backoff, "cap of the retry backoff")
      ->check(kDuration)
      ->capture_default_str();
  run_cmd->add_flag("--once", run.once, "attest (and check in once) then exit");
  AppOptions run_apps;
  AddAppOptions(run_cmd, run_apps, false);
  run_cmd->add_flag("--no-apps", run_apps.no_apps, "do not run apps even with --board");
  citadel::device::UpdateSettings updates;
  bool update_once = false;
  run_cmd->add_option("--boot-control", updates.boot_control,
                      "A/B boot control: file:DIR, uboot:FW_ENV_CONFIG or grub:GRUBENV (default file:STATE/boot)");
  run_cmd->add_option("--os-slots", updates.os_slots,
                      "directory of file OS slots slot-A.img/slot-B.img (development); the booted one is measured");
  run_cmd
      ->add_option("--update-trial-seconds", run_apps.trial_seconds,
                   "how long an updated app must run before its update is committed")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  run_cmd->add_option("--image-root", updates.image_root,
                      "trusted root of the image repository, provisioned at the factory (default: first use)");
  run_cmd->add_option("--director-root", updates.director_root,
                      "trusted root of the director, provisioned at the factory (default: first use)");
  run_cmd->add_flag("--update-once", update_once,
                    "exit once an update pass finished and its reports were acknowledged (tests)");
  citadel::device::ReportSettings report_settings;
  run_cmd->add_option("--boot-id-file", report_settings.boot_id_file,
                      "file holding this boot's id (virtual devices; default: the kernel's boot id)");
  add_common(run_cmd);

  // apps serve
  std::filesystem::path apps_state;
  AppOptions serve_apps;
  auto* apps_cmd = app.add_subcommand("apps", "the app subsystem alone");
  apps_cmd->require_subcommand(1);
  auto* serve_cmd = apps_cmd->add_subcommand(
      "serve", "run installed apps and the development interface, without contacting the service");
  serve_cmd->add_option("--state", apps_state, "device state directory (provisioned)")->required();
  AddAppOptions(serve_cmd, serve_apps, true);
  add_common(serve_cmd);
  serve_cmd->footer(
      "Serves STATE/dev.sock (mode 0600) for `citadel device sideload|app ... --device STATE`.\n"
      "Stops every app on SIGINT or SIGTERM; apps marked running start again next time.");

  CLI11_PARSE(app, argc, argv);

  auto level = citadel::log::ParseLevel(log_level);
  if (!level) {
    std::cerr << "citadeld: " << level.error() << "\n";
    return kExitFailure;
  }
  citadel::log::Init("citadeld", *level, log_json);
  auto backend = citadel::device::ParseRotBackend(rot_name);
  if (!backend) return Fail(backend.error());

  if (*provision_cmd) {
    if (*backend == citadel::device::RotBackend::kTpm2) {
      // A TPM's vendor certified its EK: nothing for the factory CA to do.
      if (!manufacturer_ca.empty()) {
        std::cerr << "citadeld: --manufacturer-ca is for the software root of trust; a TPM's EK is certified by its "
                     "vendor (give the vendor's intermediates with --tpm-ek-chain)\n";
        return kExitFailure;
      }
      provision.tcti = tcti;
      if (!tpm_ek_chain.empty()) provision.tpm_ek_chain = tpm_ek_chain;
    } else if (manufacturer_ca.empty() && !no_manufacturer) {
      std::cerr << "citadeld: provision needs --manufacturer-ca DIR (or --no-manufacturer for an identity only)\n";
      return kExitFailure;
    }
    provision.backend = *backend;
    if (!manufacturer_ca.empty()) provision.manufacturer_ca_dir = manufacturer_ca;
    auto result = citadel::device::ProvisionDevice(provision);
    if (!result) return Fail(result.error());
    if (provision_json) {
      std::cout << citadel::Json{{"device_id", result->device_id}, {"rot", rot_name}}.dump() << "\n";
    } else {
      std::cout << result->device_id << "\n";
    }
    return 0;
  }

  if (*id_cmd) {
    auto id = citadel::device::ReadDeviceId(*backend, id_state, tcti);
    if (!id) return Fail(id.error());
    if (id_json) {
      std::cout << citadel::Json{{"device_id", *id}, {"rot", rot_name}}.dump() << "\n";
    } else {
      std::cout << *id << "\n";
    }
    return 0;
  }

  if (*serve_cmd) {
#ifdef CITADEL_HAVE_APPS
    sigset_t signals = BlockShutdownSignals();
    auto rot = citadel::device::OpenRootOfTrust(*backend, apps_state, citadel::device::RotOpenMode::kMustExist, tcti);
    if (!rot) return Fail(rot.error());
    auto runtime = StartApps(serve_apps, apps_state, **rot);
    if (!runtime) return Fail(runtime.error());
    int signal_number = 0;
    do {
      sigwait(&signals, &signal_number);
    } while (signal_number == SIGUSR1);
    citadel::log::Info("shutting down", {{"signal", signal_number == SIGINT ? "SIGINT" : "SIGTERM"}});
    runtime->reset();
    return 0;
#else
    std::cerr << "citadeld: this build has no app subsystem (src/sandbox, src/seccomp or src/broker missing)\n";
    return kExitFailure;
#endif
  }

  run.backend = *backend;
  run.tcti = tcti;
  run.check_in_interval = DurationOption(check_in_interval);
  run.unclaimed_retry = DurationOption(unclaimed_retry);
  run.max_backoff = DurationOption(max_backoff);
  // Threads started below (apps, agent, updates) must not receive the
  // shutdown signals: only RunWithSignals' sigwait does.
  (void)BlockShutdownSignals();
  // The boot first: what is measured is the OS slot that booted.
  auto boot = citadel::device::PrepareBoot(updates, run);
  if (!boot) return Fail(boot.error());
  auto prepared = citadel::device::PrepareRun(run);
  if (!prepared) return Fail(prepared.error());
  // Failure reporting runs with the full runtime only (--once just looks).
  citadel::device::PreparedReports reports;
  if (!run.once) {
    auto opened = citadel::device::PrepareReports(report_settings, run);
    if (!opened) return Fail(opened.error());
    reports = std::move(*opened);
  }
  citadel::device::ReportingHooks reporting{reports.queue.get(), reports.collector.get(), {}};
  const bool with_apps = !run_apps.board.empty() && !run_apps.no_apps && !run.once;
  citadel::update::AppInstaller* installer = nullptr;
#ifdef CITADEL_HAVE_APPS
  std::unique_ptr<citadel::apps::AppRuntime> apps;
  if (with_apps) {
    auto started = StartApps(run_apps, run.state_dir, *prepared->rot, reports.collector.get());
    if (!started) return Fail(started.error());
    apps = std::move(*started);
    installer = &apps->manager();
    citadel::apps::AppManager* manager = &apps->manager();
    reporting.app_restarts = [manager] { return static_cast<std::int64_t>(manager->TotalRestarts()); };
  }
#else
  if (with_apps) {
    std::cerr << "citadeld: this build has no app subsystem; run without --board\n";
    return kExitFailure;
  }
#endif
  std::atomic<bool> reboot_requested{false};
  std::unique_ptr<citadel::update::UpdateClient> update_client;
  if (!run.once) {
    citadel::device::DeviceAgent& agent = *prepared->agent;
    updates.request_reboot = [&reboot_requested, &agent] {
      reboot_requested = true;
      agent.Stop();
    };
    if (update_once) updates.on_settled = [&agent] { agent.Stop(); };
    updates.failure_sink = reports.collector.get();
    auto client = citadel::device::StartUpdateClient(updates, run, *prepared, *boot, installer);
    if (!client) return Fail(client.error());
    update_client = std::move(*client);
  }
  if (!run.once) prepared->agent->AttachReports(std::move(reporting));
  int code = RunWithSignals(*prepared->agent);
  // A stop on request (or for an OS update's reboot) is clean; an agent
  // that failed is reported as a runtime restart at the next start.
  const char* clean_reason = reboot_requested ? "update-reboot" : "stop";
  if (update_client && !update_client->StopAndWait(kShutdownGrace)) {
    // A download is waiting on a slow server; every update step is
    // crash-safe, so leave without it.
    citadel::log::Warn("shutdown: abandoning the update step in flight");
    if (code == 0) citadel::device::FinishReports(reports, clean_reason);
    std::_Exit(reboot_requested ? kExitRebootRequested : code);
  }
  update_client.reset();
#ifdef CITADEL_HAVE_APPS
  apps.reset();  // stops every app before the RoT goes away
#endif
  if (code == 0) citadel::device::FinishReports(reports, clean_reason);
  if (reboot_requested && code == 0) {
    citadel::log::Info("reboot requested by an OS update; exiting with 75");
    return kExitRebootRequested;
  }
  return code;
}
