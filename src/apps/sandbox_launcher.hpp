// The real AppLauncher: starts one app instance inside its sandbox.
//
//   Cgroups::Create(cid, memory, pids) -> EnsureStorageImage (with a quota)
//   -> Broker::AddApp(policy) -> ResolveNetworkRules -> sandbox::Launch
//   -> Supervisor::Add(cid, pid, notify fd, rules)
//
// and, when the instance's pidfd reports its exit, Reap(): waitid, then
// Supervisor::Remove, Broker::RemoveApp, Cgroups::KillAll (stragglers the
// app forked), the OOM check (the cgroup's oom_kills grew during the run)
// and Cgroups::Remove.
//
// Security contract: any failing step undoes the earlier ones and no app
// process remains (fail closed: an app never runs without its seccomp
// supervisor, broker channel or cgroup). The supervisor and broker must
// outlive the launcher and every instance it returned.
//
// Threading: Launch() may be called from any thread (Cgroups, Broker and
// Supervisor are thread-safe); an instance is used by one thread at a time.
#pragma once

#include <filesystem>
#include <memory>

#include "apps/launcher.hpp"
#include "broker/broker.hpp"
#include "common/error.hpp"
#include "sandbox/cgroups.hpp"
#include "seccomp/network_rules.hpp"
#include "seccomp/supervisor.hpp"

namespace citadel::apps {

struct SandboxLauncherOptions {
  std::filesystem::path sandbox_exe;  // bin/citadel-sandbox
  std::filesystem::path applibs_dir;  // directory holding libapplibs.so
  seccomp::HostsOverride hosts_override;
  // The apps' control groups live at <cgroup root>/<cgroup_root_name>/<component id>.
  std::string cgroup_root_name = "citadel";
  // Turn on the kernel's favordynmods at Create() (sandbox::
  // SetFavourDynamicModifications) so that the cgroup move at each app start
  // does not wait for an RCU grace period; a failure is logged, not fatal
  // (a performance setting). Off (tests; citadeld --keep-cgroup-mode):
  // Create() only says, once, what the starts cost.
  bool favour_dynamic_cgroup_modifications = false;
};

class SandboxLauncher : public AppLauncher {
 public:
  static Expected<std::unique_ptr<SandboxLauncher>> Create(SandboxLauncherOptions options, broker::Broker& broker,
                                                           seccomp::Supervisor& supervisor);
  [[nodiscard]] Expected<std::unique_ptr<RunningApp>> Launch(const LaunchRequest& request) override;

 private:
  SandboxLauncher(SandboxLauncherOptions options, sandbox::Cgroups cgroups, broker::Broker& broker,
                  seccomp::Supervisor& supervisor)
      : options_(std::move(options)), cgroups_(std::move(cgroups)), broker_(broker), supervisor_(supervisor) {}

  SandboxLauncherOptions options_;
  sandbox::Cgroups cgroups_;
  broker::Broker& broker_;
  seccomp::Supervisor& supervisor_;
};

// Reads a hosts override file: {"name": ["127.0.0.1", ...], ...}.
Expected<seccomp::HostsOverride> LoadHostsOverride(const std::filesystem::path& path);

}  // namespace citadel::apps
