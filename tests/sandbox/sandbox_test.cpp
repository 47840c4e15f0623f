// Runs the probe (probe.c) inside a real sandbox and checks each property of
// "The app's world" (docs/helpers/CONTRACTS.md) on its own. Needs root, a
// kernel with namespaces, cgroups, loop devices, ext4 and Landlock: without
// them these tests fail.
#include <errno.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "sandbox/landlock.hpp"
#include "sandbox/sandbox.hpp"
#include "test_support.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;
using test_support::MakeProbeImage;
using test_support::ProbeOptions;
using test_support::ProbeRun;
using test_support::RunProbe;
using test_support::SandboxTempDir;

constexpr std::uint64_t kQuota = 256 * 1024;

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeProbeImage(image_.path()); }

  ProbeRun Run(std::vector<std::string> args, const ProbeOptions& options = {}) {
    auto run = RunProbe(image_.path(), std::move(args), options);
    EXPECT_TRUE(run.has_value()) << (run ? "" : run.error().message());
    if (!run) return {};
    EXPECT_FALSE(run->timed_out) << run->output;
    return *run;
  }

  fs::path StorageImage(const std::string& name, uid_t owner) {
    fs::path image = storage_.path() / name;
    auto made = EnsureStorageImage(image, kQuota, owner);
    EXPECT_TRUE(made.has_value()) << (made ? "" : made.error().message());
    return image;
  }

  // A spec for a launch that must fail before any app runs (log and broker
  // on stderr); the caller changes what makes it fail.
  LaunchSpec FailingSpec(const std::string& component_id, const fs::path& cgroup) const {
    LaunchSpec spec;
    spec.policy = test_support::ProbePolicy(component_id, {});
    spec.image_root = image_.path();
    spec.uid = spec.gid = kFirstAppId + 3;
    spec.cgroup = cgroup;
    spec.log_fd = 2;
    spec.broker_fd = 2;
    spec.sandbox_exe = CITADEL_SANDBOX_EXE;
    return spec;
  }

  TempDir image_ = SandboxTempDir();
  TempDir storage_ = SandboxTempDir();
};

TEST_F(SandboxTest, AppIsPidOneOfItsOwnNamespace) {
  ProbeRun run = Run({"identity"});
  EXPECT_EQ(run.Get("pid"), "1") << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
}

TEST_F(SandboxTest, AppRunsAsItsOwnUserWithoutGroups) {
  ProbeOptions options;
  options.uid = kFirstAppId + 42;
  ProbeRun run = Run({"identity"}, options);
  EXPECT_EQ(run.Get("uid"), std::to_string(kFirstAppId + 42)) << run.output;
  EXPECT_EQ(run.Get("euid"), std::to_string(kFirstAppId + 42));
  EXPECT_EQ(run.Get("gid"), std::to_string(kFirstAppId + 42));
  EXPECT_EQ(run.Get("groups"), "0");
}

TEST_F(SandboxTest, AppHasNoCapabilitiesAtAll) {
  ProbeRun run = Run({"identity"});
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(run.Get(set), "0000000000000000") << set << "\n" << run.output;
  }
}

TEST_F(SandboxTest, AppHasNoNewPrivsAndNoCoreDumps) {
  ProbeRun run = Run({"identity"});
  EXPECT_EQ(run.Get("NoNewPrivs"), "1") << run.output;
  EXPECT_EQ(run.Get("core_limit"), "0");
}

TEST_F(SandboxTest, AppRunsUnderTheSeccompFilter) {
  ASSERT_TRUE(SeccompFilterBuiltIn()) << "citadel_seccomp is not built: apps would have no seccomp filter";
  ProbeRun run = Run({"identity"});
  EXPECT_EQ(run.Get("Seccomp"), "2") << run.output;
}

TEST_F(SandboxTest, HostnameIsTheSanitisedAppName) {
  ProbeRun run = Run({"identity"});
  EXPECT_EQ(run.Get("hostname"), "probe-app-1") << run.output;
}

TEST_F(SandboxTest, FileDescriptorsAndEnvironmentFollowTheLayout) {
  ProbeRun run = Run({"identity"});
  EXPECT_EQ(run.Get("fds"), "0,1,2,3,") << run.output;
  EXPECT_EQ(run.Get("fd0"), "/dev/null");
  EXPECT_EQ(run.Get("fd3_socket"), "1");
  EXPECT_EQ(run.Get("env_broker_fd"), "3");
  EXPECT_EQ(run.Get("env_home"), "/tmp");
  EXPECT_TRUE(run.Get("env_component").starts_with("test-probe-")) << run.output;
}

TEST_F(SandboxTest, RootAndAppAndUsrAreReadOnly) {
  ProbeRun run = Run({"fs"});
  EXPECT_EQ(run.Get("root_write"), std::to_string(EROFS)) << run.output;
  EXPECT_EQ(run.Get("app_write"), std::to_string(EROFS));
  EXPECT_EQ(run.Get("usr_write"), std::to_string(EROFS));
  EXPECT_EQ(run.Get("etc_write"), std::to_string(EROFS));
  EXPECT_EQ(run.Get("dev_write"), std::to_string(EROFS));
  EXPECT_EQ(run.Get("dev_null_write"), "1");
}

TEST_F(SandboxTest, TmpIsWritableButNotExecutable) {
  ProbeRun run = Run({"fs"});
  EXPECT_EQ(run.Get("tmp_write"), "0") << run.output;
  EXPECT_EQ(run.Get("tmp_exec"), std::to_string(EACCES));
}

TEST_F(SandboxTest, HostFilesAreNotVisible) {
  ProbeRun run = Run({"fs"});
  for (const char* path : {"/root", "/var", "/home", "/work", "/boot", "/sys", "/run"}) {
    EXPECT_EQ(run.Get(std::string("exists") + path), "0") << path << "\n" << run.output;
  }
  EXPECT_EQ(run.Get("usr_bin_sh"), "1") << "the OS sysroot in /usr (and /bin -> usr/bin) is visible";
}

TEST_F(SandboxTest, LandlockConfinesTheAppToItsPaths) {
  ProbeRun run = Run({"fs"});
  EXPECT_EQ(run.Get("root_list"), std::to_string(EACCES)) << run.output;
  EXPECT_EQ(run.Get("app_list"), "0");
}

TEST_F(SandboxTest, ProcShowsOnlyTheAppsProcesses) {
  ProbeRun run = Run({"proc"});
  EXPECT_EQ(run.Get("proc_pids"), "1,") << run.output;
}

TEST_F(SandboxTest, StorageIsWritableUpToTheQuotaThenEnospc) {
  ProbeOptions options;
  options.storage_image = StorageImage("a.ext4", options.uid);
  options.storage_quota = kQuota;
  ProbeRun run = Run({"storage", "fill"}, options);
  EXPECT_EQ(run.Get("storage_uid"), std::to_string(options.uid)) << run.output;
  EXPECT_EQ(run.Get("fill_errno"), std::to_string(ENOSPC)) << run.output;
  long filled = std::stol(run.Get("filled") == "<missing filled>" ? "0" : run.Get("filled"));
  EXPECT_GE(filled, static_cast<long>(kQuota)) << run.output;
  EXPECT_LT(filled, static_cast<long>(kQuota + (1u << 20) + kQuota / 16)) << run.output;
}

TEST_F(SandboxTest, StoragePersistsAcrossStarts) {
  ProbeOptions options;
  options.storage_image = StorageImage("a.ext4", options.uid);
  options.storage_quota = kQuota;
  ProbeRun first = Run({"storage", "write", "kept-marker"}, options);
  EXPECT_EQ(first.Get("marker_written"), "1") << first.output;
  auto again = EnsureStorageImage(*options.storage_image, kQuota, options.uid);
  ASSERT_TRUE(again.has_value()) << again.error().message();
  ProbeRun second = Run({"storage"}, options);
  EXPECT_NE(second.Get("storage_entries").find("kept-marker"), std::string::npos) << second.output;
}

TEST_F(SandboxTest, AnotherAppsStorageIsNotVisible) {
  ProbeOptions a;
  a.uid = kFirstAppId + 1;
  a.storage_image = StorageImage("a.ext4", a.uid);
  a.storage_quota = kQuota;
  ProbeRun first = Run({"storage", "write", "secret-of-a"}, a);
  ASSERT_EQ(first.Get("marker_written"), "1") << first.output;
  ProbeOptions b;
  b.uid = kFirstAppId + 2;
  b.storage_image = StorageImage("b.ext4", b.uid);
  b.storage_quota = kQuota;
  ProbeRun second = Run({"storage"}, b);
  EXPECT_EQ(second.Get("storage_uid"), std::to_string(b.uid)) << second.output;
  EXPECT_EQ(second.Get("storage_write"), "0") << second.output;
  EXPECT_EQ(second.Get("storage_entries").find("secret-of-a"), std::string::npos) << second.output;
}

TEST_F(SandboxTest, WithoutStorageThereIsNoMntConfig) {
  ProbeRun run = Run({"storage"});
  EXPECT_EQ(run.Get("storage_stat"), std::to_string(ENOENT)) << run.output;
}

TEST_F(SandboxTest, MemoryBeyondTheLimitGetsTheAppOomKilled) {
  ProbeOptions options;
  options.memory_bytes = 32ull << 20;
  ProbeRun run = Run({"memory", "256"}, options);
  EXPECT_EQ(run.Get("allocated"), "<missing allocated>") << run.output;
  EXPECT_EQ(run.exit_signal, SIGKILL) << run.output;
  EXPECT_GE(run.stats.oom_kills, 1u);
}

TEST_F(SandboxTest, ForkBeyondThePidsLimitFailsWithEagain) {
  ProbeOptions options;
  options.pids = 8;
  ProbeRun run = Run({"pids"}, options);
  EXPECT_EQ(run.Get("fork_errno"), std::to_string(EAGAIN)) << run.output;
  int forked = std::atoi(run.Get("forked").c_str());
  EXPECT_LT(forked, 8) << run.output;
  EXPECT_GE(forked, 5) << run.output;
}

TEST_F(SandboxTest, LandlockIsAvailable) {
  // The machine's kernel must offer Landlock (the sandbox would continue
  // without it, with a warning, but this device configuration requires it).
  EXPECT_GE(LandlockAbi(), 1);
}

TEST_F(SandboxTest, MissingEntryPointFailsNamingTheStepAndLeavesNoProcess) {
  ProbeOptions options;
  options.entry_point = "/bin/no-such-program";
  auto run = RunProbe(image_.path(), {"identity"}, options);
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().code(), ErrorCode::kFailedPrecondition) << run.error().message();
  EXPECT_NE(run.error().message().find("entry point"), std::string::npos) << run.error().message();
  EXPECT_NE(run.error().message().find("/app/bin/no-such-program"), std::string::npos) << run.error().message();
  // Every process Launch started is gone and reaped: no child remains.
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(SandboxTest, BadImageRootFailsAndLeavesNoProcess) {
  auto run = RunProbe(image_.path() / "missing", {"identity"});
  ASSERT_FALSE(run.has_value());
  EXPECT_NE(run.error().message().find("image"), std::string::npos) << run.error().message();
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
}

TEST_F(SandboxTest, AMissingHelperBinaryFailsAndLeavesNoProcess) {
  auto cgroups = Cgroups::Detect();
  ASSERT_TRUE(cgroups.has_value()) << cgroups.error().message();
  const std::string id = test_support::UniqueComponentId("missing-helper");
  auto cgroup = cgroups->Create(id, 16ull << 20, 4);
  ASSERT_TRUE(cgroup.has_value()) << cgroup.error().message();
  LaunchSpec spec = FailingSpec(id, *cgroup);
  spec.sandbox_exe = image_.path() / "no-such-citadel-sandbox";
  auto launched = Launch(spec);
  ASSERT_FALSE(launched.has_value());
  EXPECT_NE(launched.error().message().find("No such file or directory: is citadel-sandbox installed?"),
            std::string::npos)
      << launched.error().message();
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
  EXPECT_TRUE(cgroups->Remove(id).has_value());
}

// Launch() moves citadel-sandbox into the app's groups before it sends the
// spec; a group it cannot join ends the launch before the app exists.
TEST_F(SandboxTest, AGroupThatCannotBeJoinedFailsTheLaunchAndLeavesNoProcess) {
  LaunchSpec spec = FailingSpec("test-no-cgroup", "/nonexistent");
  auto launched = Launch(spec);
  ASSERT_FALSE(launched.has_value());
  EXPECT_NE(launched.error().message().find("moving citadel-sandbox into the app's cgroup: opening "
                                            "/nonexistent/cgroup.procs"),
            std::string::npos)
      << launched.error().message();
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
}

TEST_F(SandboxTest, RootUidIsRefused) {
  LaunchSpec spec = FailingSpec("test-root", "/nonexistent");
  spec.uid = spec.gid = 0;
  auto launched = Launch(spec);
  ASSERT_FALSE(launched.has_value());
  EXPECT_EQ(launched.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(SandboxTest, LaunchesFromManyThreadsAtOnce) {
  constexpr int kThreads = 6;
  std::vector<std::thread> threads;
  std::vector<std::string> pids(kThreads);
  std::vector<std::string> errors(kThreads);
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ProbeOptions options;
      options.uid = kFirstAppId + 100 + static_cast<uid_t>(i);
      auto run = RunProbe(image_.path(), {"identity"}, options);
      if (!run) {
        errors[static_cast<std::size_t>(i)] = run.error().message();
        return;
      }
      pids[static_cast<std::size_t>(i)] = run->Get("pid") + "/" + run->Get("uid");
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kThreads; ++i) {
    auto index = static_cast<std::size_t>(i);
    EXPECT_EQ(errors[index], "");
    EXPECT_EQ(pids[index], "1/" + std::to_string(kFirstAppId + 100 + static_cast<uid_t>(i)));
  }
}

}  // namespace
}  // namespace citadel::sandbox
