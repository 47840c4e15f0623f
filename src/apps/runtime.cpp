#include "apps/runtime.hpp"

#include "common/encoding.hpp"
#include "common/log.hpp"

namespace citadel::apps {

std::string CgroupRootName(std::string_view device_id) { return "citadel-" + std::string(device_id.substr(0, 16)); }

void AppRuntime::Report(std::string_view component_id, std::string_view what, std::string_view detail,
                        ViolationSource source) {
  if (auto* manager = violations_to_.load()) {
    manager->ReportViolation(component_id, what, detail, source);
  } else {
    log::Warn("app policy violation", {{"component_id", component_id}, {"syscall", what}, {"detail", detail}});
  }
}

protocol::CrashDetails CrashDetailsFromNotice(const broker::CrashNotice& notice) {
  protocol::CrashDetails crash;
  crash.signal = notice.signal;
  crash.signal_code = notice.signal_code;
  crash.fault_address = notice.fault_address;
  crash.registers = notice.registers;
  if (!notice.stack.empty()) crash.dump = protocol::CrashDump{notice.stack_address, notice.stack};
  return crash;
}

void AppRuntime::Crash(const broker::CrashNotice& notice) {
  auto* manager = violations_to_.load();
  if (manager == nullptr) return;  // no app can be running yet (or any more)
  manager->ReportCrash(notice.component_id, CrashDetailsFromNotice(notice), notice.pcs);
}

Expected<std::unique_ptr<AppRuntime>> AppRuntime::Start(AppRuntimeSettings settings, rot::RootOfTrust& rot) {
  std::unique_ptr<AppRuntime> runtime(new AppRuntime());
  AppRuntime* self = runtime.get();
  auto board = app::LoadBoardDefinition(settings.board_file);
  if (!board) return WrapError(board.error(), "board " + settings.board_file.string());
  seccomp::HostsOverride hosts;
  if (settings.hosts_override) {
    CITADEL_TRY(hosts, LoadHostsOverride(*settings.hosts_override));
  }

  const std::string device_id = rot.DeviceId();
  runtime->trust_ = std::make_unique<DeviceTrustSource>(settings.state_dir, device_id, rot.TlsClientKey().Public());
  StoreOptions store_options;
  store_options.state_dir = settings.state_dir;
  store_options.board = *board;
  store_options.trust = runtime->trust_.get();
  CITADEL_TRY(runtime->store_, AppStore::Open(std::move(store_options)));

  runtime->device_auth_ = std::make_unique<StoredDeviceAuth>(settings.state_dir, rot.TlsClientKey(), device_id);
  runtime->supervisor_ = std::make_unique<seccomp::Supervisor>([self](const seccomp::Violation& violation) {
    self->Report(violation.component_id, violation.syscall, violation.detail, ViolationSource::kSeccomp);
  });
  broker::BrokerOptions broker_options;
  broker_options.board = *board;
  broker_options.device_auth = runtime->device_auth_.get();
  broker_options.network_ready = [] { return true; };
  broker_options.reboot_requested = [] {
    log::Warn("an app asked for a reboot; this runtime does not reboot the device");
  };
  broker_options.violations = [self](const broker::ViolationReport& report) {
    self->Report(report.component_id, report.what, report.detail, ViolationSource::kBroker);
  };
  broker_options.crashes = [self](const broker::CrashNotice& notice) { self->Crash(notice); };
  CITADEL_TRY(runtime->broker_, broker::Broker::Create(std::move(broker_options)));
  SandboxLauncherOptions launcher_options;
  launcher_options.sandbox_exe = settings.sandbox_exe;
  launcher_options.applibs_dir = settings.applibs_dir;
  launcher_options.hosts_override = std::move(hosts);
  // One group tree per device: a virtual fleet runs many citadelds on one
  // host, and each kills what is left in its apps' groups when it starts
  // one, so a shared name would let one device end another's app.
  launcher_options.cgroup_root_name = CgroupRootName(device_id);
  launcher_options.favour_dynamic_cgroup_modifications = settings.cgroup_favordynmods;
  CITADEL_TRY(runtime->launcher_,
              SandboxLauncher::Create(std::move(launcher_options), *runtime->broker_, *runtime->supervisor_));
  // Every image is measured before it runs (docs/ARCHITECTURE.md, TPM
  // measurements): once per image and version in this process; the TPM
  // backend also skips an event already in this boot's log.
  settings.manager.measure = [self, &rot](const InstalledApp& app) -> Expected<void> {
    rot::MeasurementEvent event{
        static_cast<std::uint32_t>(rot::Register::kApps), "app", app.component_id, app.version, {}};
    const std::string& hex = app.image_sha256.empty() ? app.digest : app.image_sha256;
    auto digest = HexDecode(hex);
    if (!digest || digest->size() != event.digest.size()) {
      return MakeError(ErrorCode::kInternal, "app " + app.component_id + " has no image digest to measure");
    }
    std::copy(digest->begin(), digest->end(), event.digest.begin());
    std::lock_guard lock(self->measured_mutex_);
    std::string key = app.component_id + "\n" + app.version + "\n" + hex;
    if (self->measured_.contains(key)) return kOk;
    CITADEL_TRY_VOID(rot.Extend(event));
    self->measured_.insert(std::move(key));
    return kOk;
  };
  CITADEL_TRY(runtime->manager_, AppManager::Create(*runtime->store_, *runtime->launcher_, settings.manager));
  runtime->violations_to_.store(runtime->manager_.get());
  // Installed images are measured now, before the device's first
  // attestation reads the log; later installs are measured as they start.
  for (const InstalledApp& app : runtime->store_->List()) {
    if (auto measured = settings.manager.measure(app); !measured) {
      log::Error("cannot measure an installed app",
                 {{"component_id", app.component_id}, {"reason", measured.error().message()}});
    }
  }
  runtime->manager_->StartDesired();

  if (settings.dev_interface) {
    runtime->api_ = std::make_unique<DevApi>(*runtime->manager_, *runtime->trust_);
    DevServerOptions dev_options;
    dev_options.socket_path = settings.state_dir / kDevSocketName;
    CITADEL_TRY(runtime->dev_server_,
                DevServer::Start(dev_options,
                                 [api = runtime->api_.get()](const Json& header, std::span<const std::uint8_t> body) {
                                   return api->Handle(header, body);
                                 }));
  }
  log::Info("app subsystem started",
            {{"board", board->name}, {"apps", std::to_string(runtime->store_->List().size())}});
  return runtime;
}

AppRuntime::~AppRuntime() {
  dev_server_.reset();
  api_.reset();
  if (manager_) manager_->Shutdown();
  violations_to_.store(nullptr);
  manager_.reset();
  launcher_.reset();
  broker_.reset();
  supervisor_.reset();
}

}  // namespace citadel::apps
