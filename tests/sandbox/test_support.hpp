// Shared pieces of the sandbox tests: temporary directories, a probe image,
// and RunProbe(), which launches tests/sandbox/probe.c in a real sandbox
// and collects its "key=value" report. Every wait is bounded.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/app_filter.hpp"
#include "sandbox/sandbox.hpp"
#include "support/temp_dir.hpp"

namespace citadel::sandbox::test_support {

namespace fs = std::filesystem;

// A directory for an image root or a storage image. The app runs under
// another uid and must reach the image root: 0755, not mkdtemp's 0700.
inline citadel::testing::TempDir SandboxTempDir() {
  return citadel::testing::TempDir("citadel-sandbox", {.permissions = fs::perms(0755)});
}

// A component id no other test (or earlier run) uses.
inline std::string UniqueComponentId(std::string_view label) {
  static std::atomic<int> counter{0};
  return "test-" + std::string(label) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Builds an image root: <dir>/bin/probe.
inline void MakeProbeImage(const fs::path& dir) {
  fs::create_directories(dir / "bin");
  fs::copy_file(CITADEL_SANDBOX_PROBE, dir / "bin" / "probe", fs::copy_options::overwrite_existing);
  fs::permissions(dir / "bin" / "probe", fs::perms(0755));
  fs::permissions(dir / "bin", fs::perms(0755));
}

inline app::Policy ProbePolicy(std::string component_id, std::vector<std::string> args) {
  app::Policy policy;
  policy.component_id = std::move(component_id);
  policy.name = "Probe App_1";
  policy.entry_point = "/bin/probe";
  policy.cmd_args = std::move(args);
  policy.memory_limit_bytes = 64ull << 20;
  policy.pids_limit = 32;
  policy.denied_features = {app::DeniedFeature::kNetworkSockets, app::DeniedFeature::kPtrace,
                            app::DeniedFeature::kMount, app::DeniedFeature::kNamespaceCreation};
  return policy;
}

struct ProbeRun {
  std::map<std::string, std::string> values;
  std::string output;
  int exit_code = -1;    // when it exited
  int exit_signal = 0;   // when a signal killed it
  Cgroups::Stats stats;  // the cgroup, read after the app ended
  bool timed_out = false;

  std::string Get(const std::string& key) const {
    auto found = values.find(key);
    return found == values.end() ? "<missing " + key + ">" : found->second;
  }
};

struct ProbeOptions {
  uid_t uid = kFirstAppId + 7;
  std::optional<fs::path> storage_image;
  std::uint64_t storage_quota = 0;
  std::uint64_t memory_bytes = 64ull << 20;
  std::uint32_t pids = 32;
  std::string entry_point = "/bin/probe";
};

// Makes sure the fallback for a tree without src/seccomp can run the
// tests; a build with the filter ignores the variable.
inline void AllowTestsWithoutSeccomp() {
  if (!SeccompFilterBuiltIn()) ::setenv(kWithoutSeccompVariable, "1", 1);
}

// Launches the probe with args and waits (bounded) for it to end.
inline Expected<ProbeRun> RunProbe(const fs::path& image_root, std::vector<std::string> args,
                                   const ProbeOptions& options = {}) {
  AllowTestsWithoutSeccomp();
  CITADEL_TRY(Cgroups cgroups, Cgroups::Detect());
  std::string id = UniqueComponentId("probe");
  CITADEL_TRY(std::string cgroup, cgroups.Create(id, options.memory_bytes, options.pids));
  LaunchSpec spec;
  spec.policy = ProbePolicy(id, std::move(args));
  spec.policy.entry_point = options.entry_point;
  spec.policy.memory_limit_bytes = options.memory_bytes;
  spec.policy.pids_limit = options.pids;
  spec.policy.storage_quota_bytes = options.storage_quota;
  spec.image_root = image_root;
  spec.storage_image = options.storage_image;
  spec.applibs_dir = image_root / "bin";
  spec.hosts_file = "127.0.0.1\tlocalhost\n";
  spec.uid = options.uid;
  spec.gid = options.uid;
  spec.cgroup = cgroup;
  spec.sandbox_exe = CITADEL_SANDBOX_EXE;
  int log_pipe[2];
  int broker[2];
  if (::pipe2(log_pipe, O_CLOEXEC) != 0 || ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, broker) != 0) {
    return MakeError(ErrorCode::kIo, "test: pipe");
  }
  UniqueFd log_read(log_pipe[0]);
  UniqueFd log_write(log_pipe[1]);
  UniqueFd broker_ours(broker[0]);
  UniqueFd broker_theirs(broker[1]);
  spec.log_fd = log_write.get();
  spec.broker_fd = broker_theirs.get();
  auto launched = Launch(spec);
  log_write.Reset();
  broker_theirs.Reset();
  if (!launched) {
    (void)cgroups.KillAll(id);
    (void)cgroups.Remove(id);
    return std::unexpected(launched.error());
  }
  ProbeRun run;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      run.timed_out = true;
      break;
    }
    pollfd wait{log_read.get(), POLLIN, 0};
    if (::poll(&wait, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[4096];
    ssize_t got = ::read(log_read.get(), buffer, sizeof buffer);
    if (got <= 0) break;
    run.output.append(buffer, static_cast<std::size_t>(got));
  }
  if (run.timed_out) (void)::syscall(SYS_pidfd_send_signal, launched->pidfd.get(), SIGKILL, nullptr, 0);
  pollfd exited{launched->pidfd.get(), POLLIN, 0};
  if (::poll(&exited, 1, 10'000) <= 0) {
    run.timed_out = true;
    (void)::syscall(SYS_pidfd_send_signal, launched->pidfd.get(), SIGKILL, nullptr, 0);
  }
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(launched->pid), &info, WEXITED) == 0) {
    if (info.si_code == CLD_EXITED) {
      run.exit_code = info.si_status;
    } else {
      run.exit_signal = info.si_status;
    }
  }
  auto stats = cgroups.Read(id);
  if (stats) run.stats = *stats;
  (void)cgroups.KillAll(id);
  auto removed = cgroups.Remove(id);
  if (!removed) return std::unexpected(removed.error());
  std::size_t start = 0;
  while (start < run.output.size()) {
    std::size_t end = run.output.find('\n', start);
    if (end == std::string::npos) end = run.output.size();
    std::string line = run.output.substr(start, end - start);
    std::size_t equals = line.find('=');
    if (equals != std::string::npos) run.values[line.substr(0, equals)] = line.substr(equals + 1);
    start = end + 1;
  }
  return run;
}

}  // namespace citadel::sandbox::test_support
