// The launcher: starts an app inside its sandbox (docs/helpers/CONTRACTS.md,
// "The app's world"). Launch() forks and immediately execs the helper
// binary citadel-sandbox, which builds the namespaces, mounts, Landlock
// domain and credentials, loads the seccomp filter and execs the app.
//
// SECURITY: every step is mandatory except the Landlock rights the running
// kernel does not know (best effort up to its ABI). When a step fails the
// process exits before any app code runs and Launch() returns the error
// naming the step; the app is never started with a partial sandbox.
//
// Threading: Launch() may be called from any thread of a multi-threaded
// process. Between fork and exec the child only calls dup2/close/execve.
// The app process is a direct child of the caller (the helper clones it
// with CLONE_PARENT and exits), so the caller reaps it, e.g. waitid(P_PIDFD).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "app/policy.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "sandbox/cgroups.hpp"
#include "sandbox/storage.hpp"

namespace citadel::sandbox {

// The first uid/gid an app may run as (61000 + slot).
inline constexpr uid_t kFirstAppId = 61000;

struct LaunchSpec {
  app::Policy policy;
  std::filesystem::path image_root;                    // extracted image dir, mounted read-only at /app
  std::optional<std::filesystem::path> storage_image;  // ext4 image mounted at /mnt/config
  std::filesystem::path applibs_dir;                   // dir with libapplibs.so*, bound at /opt/citadel/lib
  std::string hosts_file;                              // /etc/hosts contents
  uid_t uid = 0;                                       // must be >= kFirstAppId
  gid_t gid = 0;                                       // must be >= kFirstAppId
  std::filesystem::path cgroup;                        // Cgroups::Create's result
  int broker_fd = -1;                                  // becomes fd 3 (the caller keeps its copy)
  int log_fd = -1;                                     // becomes fd 1 and 2 (the caller keeps its copy)
  std::filesystem::path sandbox_exe;                   // bin/citadel-sandbox
  // Set by Launch(), not the caller: the app's seccomp filter as compiled
  // BPF (AppFilterProgram), so the helper compiles nothing.
  std::string seccomp_program;
};

struct LaunchedApp {
  pid_t pid = -1;      // in the caller's pid namespace; the caller must reap it
  UniqueFd pidfd;      // pidfd_open(pid)
  UniqueFd notify_fd;  // seccomp user-notification listener (for the Supervisor)
};

// Starts the app. Errors: kInvalidArgument (spec), kFailedPrecondition or
// kIo ("sandbox: <step>: <reason>"), kUnavailable (timeout). On error no
// process started by this call remains.
[[nodiscard]] Expected<LaunchedApp> Launch(const LaunchSpec& spec);

}  // namespace citadel::sandbox
