// The seam between the app manager (what runs, when, restarts) and the
// machinery that starts one sandboxed instance. The real implementation
// (sandbox_launcher.hpp) creates the cgroup, the storage image, the broker
// channel and the network rules, launches through citadel-sandbox and
// registers the seccomp notify fd with the Supervisor; tests use a fake.
//
// Contract for implementations:
//  - Launch() either returns a running instance or an error with nothing
//    left behind (no cgroup with processes, no broker registration).
//  - RunningApp::exit_fd() becomes readable (EPOLLIN) once the instance's
//    main process exited; then Reap() collects the status and undoes
//    everything Launch() set up (Supervisor, Broker, cgroup KillAll). Reap()
//    is called exactly once, and the destructor of an unreaped instance
//    kills and reaps it.
//  - Signal() and KillAll() may be called from the manager's thread at any
//    time before Reap().
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "app/policy.hpp"
#include "common/error.hpp"

namespace citadel::apps {

struct LaunchRequest {
  app::Policy policy;
  std::filesystem::path image_root;                    // apps/<cid>/root
  std::optional<std::filesystem::path> storage_image;  // apps/<cid>/storage.ext4 when the app has a quota
  uid_t uid = 0;                                       // AppUid(slot)
  gid_t gid = 0;
  int log_fd = -1;  // write end of the log pipe; the launcher dups it, the caller closes its copy
};

struct ExitStatus {
  bool exited = false;  // true: exit code; false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool oom_killed = false;  // the cgroup recorded an OOM kill during this run

  // "exited with status 1", "killed by signal 9 (SIGKILL)", "... (out of memory)".
  std::string Describe() const;
};

class RunningApp {
 public:
  virtual ~RunningApp() = default;
  virtual pid_t pid() const = 0;
  virtual int exit_fd() const = 0;
  virtual Expected<void> Signal(int signal_number) = 0;
  virtual Expected<void> KillAll() = 0;
  virtual Expected<ExitStatus> Reap() = 0;
};

class AppLauncher {
 public:
  virtual ~AppLauncher() = default;
  [[nodiscard]] virtual Expected<std::unique_ptr<RunningApp>> Launch(const LaunchRequest& request) = 0;
};

}  // namespace citadel::apps
