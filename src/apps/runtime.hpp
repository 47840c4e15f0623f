// The app subsystem as citadeld runs it: board, trust, store, the seccomp
// Supervisor, the Broker (with the RoT-backed DeviceAuthProvider), the
// sandbox launcher, the AppManager and the development interface, built and
// torn down in the one order that is safe:
//
//   start:    store -> supervisor -> broker -> launcher -> manager
//             -> apps marked running -> dev.sock
//   shutdown: dev.sock -> manager (stops every app) -> launcher -> broker
//             -> supervisor
//
// Security contract: violations from the Supervisor and the Broker reach
// the AppManager (per-app list + citadeld's log, and failure events when
// settings.manager.failure_sink is set) for as long as any app can run, and
// so do the crash notices apps' crash handlers send through the Broker
// (AppManager::ReportCrash resolves them while the app waits). Apps run only through the sandbox launcher: there is no
// unsandboxed fallback.
//
// Threading: Start() and the destructor on one thread; manager() and
// installer() are thread-safe. The RoT must outlive the runtime; only its TLS key's const
// methods are used (from the broker's thread).
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "app/board.hpp"
#include "apps/app_manager.hpp"
#include "apps/app_store.hpp"
#include "apps/dev_server.hpp"
#include "apps/device_auth.hpp"
#include "apps/device_trust.hpp"
#include "apps/sandbox_launcher.hpp"
#include "broker/broker.hpp"
#include "rot/rot.hpp"
#include "seccomp/supervisor.hpp"

namespace citadel::apps {

struct AppRuntimeSettings {
  std::filesystem::path state_dir;
  std::filesystem::path board_file;
  std::optional<std::filesystem::path> hosts_override;  // tests/sim: fixed name -> IPs
  std::filesystem::path sandbox_exe;                    // bin/citadel-sandbox
  std::filesystem::path applibs_dir;                    // holds libapplibs.so
  bool dev_interface = true;                            // serve STATE/dev.sock
  bool cgroup_favordynmods = false;                     // see SandboxLauncherOptions
  // Restart backoff, stop grace, and the update trial: citadeld's
  // --update-trial-seconds sets manager.trial_period.
  ManagerOptions manager;
};

// What AppManager::ReportCrash takes from a broker crash notice: everything
// but the program counters (resolved by the manager), the stack copy always
// as the dump (the report collector drops it unless dumps are enabled).
protocol::CrashDetails CrashDetailsFromNotice(const broker::CrashNotice& notice);

// The device's control-group tree under the cgroup mount:
// "citadel-<first 16 hex digits of the device id>".
std::string CgroupRootName(std::string_view device_id);

class AppRuntime {
 public:
  static Expected<std::unique_ptr<AppRuntime>> Start(AppRuntimeSettings settings, rot::RootOfTrust& rot);
  ~AppRuntime();
  AppRuntime(const AppRuntime&) = delete;
  AppRuntime& operator=(const AppRuntime&) = delete;

  AppManager& manager() { return *manager_; }
  // What the update client installs app updates through (the AppManager);
  // valid for the runtime's lifetime.
  update::AppInstaller& installer() { return *manager_; }
  broker::Broker& broker() { return *broker_; }

 private:
  AppRuntime() = default;
  void Report(std::string_view component_id, std::string_view what, std::string_view detail, ViolationSource source);
  void Crash(const broker::CrashNotice& notice);

  std::unique_ptr<DeviceTrustSource> trust_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<StoredDeviceAuth> device_auth_;
  std::atomic<AppManager*> violations_to_{nullptr};
  // App images measured by this process ("component\nversion\nsha256").
  std::mutex measured_mutex_;
  std::set<std::string> measured_;
  std::unique_ptr<seccomp::Supervisor> supervisor_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<SandboxLauncher> launcher_;
  std::unique_ptr<AppManager> manager_;
  std::unique_ptr<DevApi> api_;
  std::unique_ptr<DevServer> dev_server_;
};

}  // namespace citadel::apps
