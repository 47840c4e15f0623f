#include "apps/sandbox_launcher.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/storage.hpp"

namespace citadel::apps {
namespace {

constexpr int kReapWaitMs = 3000;

int SendSignal(int pidfd, int signal_number) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal_number, nullptr, 0));
}

// Waits for and collects the exit of a child known by its pidfd.
Expected<ExitStatus> WaitPidfd(int pidfd, int timeout_ms) {
  pollfd entry{pidfd, POLLIN, 0};
  int ready = 0;
  do {
    ready = ::poll(&entry, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return MakeError(ErrorCode::kUnavailable, "the app process did not exit");
  siginfo_t info{};
  int result = 0;
  do {
    result = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
  } while (result < 0 && errno == EINTR);
  if (result != 0) return MakeError(ErrorCode::kIo, std::string("waitid: ") + std::strerror(errno));
  ExitStatus status;
  status.exited = info.si_code == CLD_EXITED;
  if (status.exited) {
    status.code = info.si_status;
  } else {
    status.signal = info.si_status;
  }
  return status;
}

class SandboxedApp : public RunningApp {
 public:
  SandboxedApp(std::string component_id, pid_t pid, UniqueFd pidfd, std::uint64_t oom_kills_before,
               sandbox::Cgroups& cgroups, broker::Broker& broker, seccomp::Supervisor& supervisor)
      : component_id_(std::move(component_id)),
        pid_(pid),
        pidfd_(std::move(pidfd)),
        oom_kills_before_(oom_kills_before),
        cgroups_(cgroups),
        broker_(broker),
        supervisor_(supervisor) {}

  ~SandboxedApp() override {
    if (reaped_) return;
    (void)SendSignal(pidfd_.get(), SIGKILL);
    (void)cgroups_.KillAll(component_id_);
    (void)WaitPidfd(pidfd_.get(), kReapWaitMs);
    Cleanup();
  }

  pid_t pid() const override { return pid_; }
  int exit_fd() const override { return pidfd_.get(); }

  Expected<void> Signal(int signal_number) override {
    if (SendSignal(pidfd_.get(), signal_number) != 0 && errno != ESRCH) {
      return MakeError(ErrorCode::kIo, std::string("pidfd_send_signal: ") + std::strerror(errno));
    }
    return kOk;
  }

  Expected<void> KillAll() override { return cgroups_.KillAll(component_id_); }

  Expected<ExitStatus> Reap() override {
    auto status = WaitPidfd(pidfd_.get(), kReapWaitMs);
    reaped_ = status.has_value();
    if (status) {
      auto stats = cgroups_.Read(component_id_);
      status->oom_killed = stats && stats->oom_kills > oom_kills_before_;
    }
    Cleanup();
    return status;
  }

 private:
  void Cleanup() {
    supervisor_.Remove(component_id_);
    broker_.RemoveApp(component_id_);
    if (auto killed = cgroups_.KillAll(component_id_); !killed) {
      log::Warn("app cgroup: processes remain",
                {{"component_id", component_id_}, {"reason", killed.error().message()}});
    }
    (void)cgroups_.Remove(component_id_);
  }

  std::string component_id_;
  pid_t pid_;
  UniqueFd pidfd_;
  std::uint64_t oom_kills_before_;
  bool reaped_ = false;
  sandbox::Cgroups& cgroups_;
  broker::Broker& broker_;
  seccomp::Supervisor& supervisor_;
};

}  // namespace

Expected<std::unique_ptr<SandboxLauncher>> SandboxLauncher::Create(SandboxLauncherOptions options,
                                                                   broker::Broker& broker,
                                                                   seccomp::Supervisor& supervisor) {
  CITADEL_TRY(auto cgroups, sandbox::Cgroups::Detect(options.cgroup_root_name));
  CITADEL_TRY(bool favoured, sandbox::FavoursDynamicModifications());
  if (!favoured && options.favour_dynamic_cgroup_modifications) {
    if (auto set = sandbox::SetFavourDynamicModifications(true); !set) {
      log::Warn("cgroup: could not turn on favordynmods; each app start waits about one RCU grace period (~8 ms)",
                {{"reason", set.error().message()}, {"fix", "boot with cgroup_favordynmods=true"}});
    } else {
      log::Info(
          "cgroup: favordynmods turned on (cgroup2 remounted); app starts no longer wait for the kernel's "
          "cgroup lock (--keep-cgroup-mode leaves it alone)");
    }
  } else if (!favoured) {
    log::Info(
        "cgroup: each app start waits about one RCU grace period (~8 ms) to join its cgroup; the boot parameter "
        "cgroup_favordynmods=true removes the wait");
  }
  return std::unique_ptr<SandboxLauncher>(
      new SandboxLauncher(std::move(options), std::move(cgroups), broker, supervisor));
}

Expected<std::unique_ptr<RunningApp>> SandboxLauncher::Launch(const LaunchRequest& request) {
  const app::Policy& policy = request.policy;
  const std::string& component_id = policy.component_id;

  CITADEL_TRY(auto cgroup, cgroups_.Create(component_id, policy.memory_limit_bytes, policy.pids_limit));
  // Processes left in the group by a previous citadeld that died without
  // stopping its apps (SIGKILL, a crash) are unsupervised: end them before
  // a new instance starts, so one app never runs twice.
  if (auto killed = cgroups_.KillAll(component_id); !killed) {
    return WrapError(killed.error(), "app " + component_id + ": an earlier instance is still running");
  }
  auto undo_cgroup = [&] {
    (void)cgroups_.KillAll(component_id);
    (void)cgroups_.Remove(component_id);
  };
  if (request.storage_image) {
    if (auto storage = sandbox::EnsureStorageImage(*request.storage_image, policy.storage_quota_bytes, request.uid);
        !storage) {
      undo_cgroup();
      return WrapError(storage.error(), "mutable storage");
    }
  }
  auto broker_fd = broker_.AddApp(policy);
  if (!broker_fd) {
    undo_cgroup();
    return WrapError(broker_fd.error(), "broker");
  }
  auto undo_broker = [&] {
    broker_.RemoveApp(component_id);
    undo_cgroup();
  };
  auto resolution = seccomp::ResolveNetworkRules(policy, options_.hosts_override);
  if (!resolution) {
    undo_broker();
    return WrapError(resolution.error(), "network rules");
  }
  std::uint64_t oom_kills_before = 0;
  if (auto stats = cgroups_.Read(component_id)) oom_kills_before = stats->oom_kills;

  sandbox::LaunchSpec spec;
  spec.policy = policy;
  spec.image_root = request.image_root;
  spec.storage_image = request.storage_image;
  spec.applibs_dir = options_.applibs_dir;
  spec.hosts_file = resolution->hosts_file;
  spec.uid = request.uid;
  spec.gid = request.gid;
  spec.cgroup = cgroup;
  spec.broker_fd = broker_fd->get();
  spec.log_fd = request.log_fd;
  spec.sandbox_exe = options_.sandbox_exe;
  auto launched = sandbox::Launch(spec);
  broker_fd->Reset();  // the app holds it as fd 3 now
  if (!launched) {
    undo_broker();
    return std::unexpected(launched.error());
  }
  auto instance = std::make_unique<SandboxedApp>(component_id, launched->pid, std::move(launched->pidfd),
                                                 oom_kills_before, cgroups_, broker_, supervisor_);
  // Without its supervisor the app's denied syscalls would block forever
  // and its network calls fail: refuse to keep it running (the instance's
  // destructor kills and reaps it and undoes the rest).
  if (auto added =
          supervisor_.Add(component_id, launched->pid, std::move(launched->notify_fd), std::move(resolution->rules));
      !added) {
    return WrapError(added.error(), "seccomp supervisor");
  }
  return std::unique_ptr<RunningApp>(std::move(instance));
}

Expected<seccomp::HostsOverride> LoadHostsOverride(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, 1u << 20));
  auto json = ParseJsonStrict(text);
  if (!json) return WrapError(json.error(), path.string());
  if (!json->is_object()) return MakeError(ErrorCode::kParse, path.string() + ": expected {\"name\": [\"IP\", ...]}");
  seccomp::HostsOverride hosts;
  for (const auto& [name, addresses] : json->items()) {
    if (!addresses.is_array()) return MakeError(ErrorCode::kParse, path.string() + ": " + name + ": not an array");
    auto& list = hosts.names[name];
    for (const auto& address : addresses) {
      if (!address.is_string()) return MakeError(ErrorCode::kParse, path.string() + ": " + name + ": not a string");
      list.push_back(address.get<std::string>());
    }
  }
  return hosts;
}

}  // namespace citadel::apps
