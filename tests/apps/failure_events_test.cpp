// AppManager's failure events over a fake launcher (the logic; the real
// crash path with the sandbox and applibs' handler is crash_capture_test),
// and the /proc/<pid>/maps parser of the crash resolver.
#include <gtest/gtest.h>

#include <mutex>

#include "apps/app_manager.hpp"
#include "apps/crash_resolver.hpp"
#include "reports/failure_event.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

using std::chrono::milliseconds;
using testing::CollectingSink;
using testing::WaitUntil;

constexpr const char* kAlphaId = "11111111-1111-4111-8111-111111111111";

class FailureEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_.publishers = {&publisher_};
    StoreOptions store_options;
    store_options.state_dir = dir_.path() / "state";
    store_options.board = testing::TestBoard();
    store_options.trust = &trust_;
    auto store = AppStore::Open(store_options);
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
    auto installed = store_->Install(
        testing::PackApp(dir_.path() / "work", publisher_, testing::VersionedManifest("alpha", kAlphaId, "2.1.0", 1)),
        "alpha.img", InstallSource::kTenant);
    ASSERT_TRUE(installed) << installed.error().message();
    ManagerOptions options;
    options.restart = RestartPolicy{milliseconds(10), milliseconds(40), milliseconds(10'000)};
    options.stop_grace = milliseconds(150);
    options.kill_wait = milliseconds(500);
    options.start_timeout = milliseconds(2000);
    options.failure_sink = &sink_;
    auto manager = AppManager::Create(*store_, launcher_, options);
    ASSERT_TRUE(manager) << manager.error().message();
    manager_ = std::move(*manager);
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
  }

  // Ends the current instance and waits until the next one runs.
  void ExitAndWaitForRestart(ExitStatus status) {
    std::size_t launches = launcher_.Launches(kAlphaId);
    launcher_.Current(kAlphaId)->Exit(status);
    ASSERT_TRUE(WaitUntil([&] {
      return launcher_.Launches(kAlphaId) == launches + 1 && manager_->Status("alpha")->state == RunState::kRunning;
    }));
  }

  citadel::testing::TempDir dir_ = testing::StateTempDir();
  crypto::PrivateKey publisher_ = testing::NewKey();
  testing::StaticTrust trust_;
  testing::FakeLauncher launcher_;
  CollectingSink sink_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<AppManager> manager_;
};

TEST_F(FailureEventsTest, EachUnrequestedExitIsOneEventAndCleanExitsAndStopsAreNone) {
  ASSERT_TRUE(manager_->Start("alpha"));
  ExitAndWaitForRestart(ExitStatus{false, 0, SIGSEGV, false});
  ExitAndWaitForRestart(ExitStatus{true, 0, 0, false});  // clean: no event, restarted all the same
  ExitAndWaitForRestart(ExitStatus{true, 3, 0, false});
  ExitAndWaitForRestart(ExitStatus{false, 0, SIGSYS, false});
  ExitAndWaitForRestart(ExitStatus{false, 0, SIGKILL, true});
  ASSERT_TRUE(manager_->Stop("alpha"));

  auto events = sink_.Events();
  std::vector<std::pair<std::string, std::string>> kinds;
  for (const auto& event : events) {
    kinds.emplace_back(event.failure_class, event.error_code);
    EXPECT_EQ(event.component_id, kAlphaId);
    EXPECT_EQ(event.component_version, "2.1.0");
    EXPECT_FALSE(event.crash.has_value());  // the handler sent nothing
  }
  // Delays 10, 20, 40 (the cap: one restart-loop), 40, 40.
  std::vector<std::pair<std::string, std::string>> expected = {
      {"app-crash", "SIGSEGV"},         {"app-exit", "exit-3"},
      {"restart-loop", "restart-loop"}, {"sandbox-violation", "seccomp-kill"},
      {"app-crash", "SIGKILL"},
  };
  EXPECT_EQ(kinds, expected);
  ASSERT_EQ(events.size(), expected.size());
  EXPECT_EQ(events[0].message, "alpha 2.1.0 was killed by SIGSEGV");
  EXPECT_EQ(events[1].message, "alpha 2.1.0 exited with status 3");
  EXPECT_NE(events[4].message.find("out of memory"), std::string::npos) << events[4].message;
  EXPECT_EQ(manager_->TotalRestarts(), 5u);
}

TEST_F(FailureEventsTest, ARestartLoopIsReportedAgainOnlyAfterAnOperatorStart) {
  launcher_.Set(kAlphaId, testing::FakeBehaviour::With(&testing::FakeBehaviour::exit_at_once));
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(WaitUntil([&] { return launcher_.Launches(kAlphaId) >= 7; }));
  ASSERT_TRUE(manager_->Stop("alpha"));
  auto loops = [&] {
    std::size_t count = 0;
    for (const auto& event : sink_.Events()) count += event.failure_class == "restart-loop" ? 1U : 0U;
    return count;
  };
  EXPECT_EQ(loops(), 1u);
  ASSERT_TRUE(manager_->Start("alpha"));  // resets the backoff
  ASSERT_TRUE(WaitUntil([&] { return loops() == 2; }));
  ASSERT_TRUE(manager_->Stop("alpha"));
}

TEST_F(FailureEventsTest, ViolationsAndLaunchFailuresAreEvents) {
  manager_->ReportViolation(kAlphaId, "ptrace", "ptrace(PTRACE_ATTACH) refused");
  manager_->ReportViolation(kAlphaId, "GPIO_OpenAsOutput", "Gpio LED2 is not listed", ViolationSource::kBroker);
  launcher_.Set(kAlphaId, testing::FakeBehaviour::With(&testing::FakeBehaviour::fail_launch));
  ASSERT_FALSE(manager_->Start("alpha"));
  auto events = sink_.Events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].failure_class, "sandbox-violation");
  EXPECT_EQ(events[0].error_code, "seccomp:ptrace");
  EXPECT_EQ(events[0].message, "ptrace(PTRACE_ATTACH) refused");
  EXPECT_EQ(events[1].error_code, "broker:GPIO_OpenAsOutput");
  EXPECT_EQ(events[2].failure_class, "runtime-error");
  EXPECT_EQ(events[2].error_code, "app-start");
  EXPECT_NE(events[2].message.find("fake launch failure"), std::string::npos) << events[2].message;
  EXPECT_EQ(events[2].component_version, "2.1.0");
}

TEST_F(FailureEventsTest, ACrashNoticeWithoutARunningInstanceIsIgnored) {
  protocol::CrashDetails crash;
  crash.signal = SIGSEGV;
  std::vector<std::uint64_t> pcs = {0x1000};
  manager_->ReportCrash(kAlphaId, crash, pcs);
  EXPECT_EQ(sink_.Count(), 0u);
}

TEST(ProcMapsTest, ParsesMappingsPathsAndSkipsMalformedLines) {
  const std::string text =
      "55d0c0e00000-55d0c0e01000 r--p 00000000 08:01 1234     /app/bin/crashy\n"
      "55d0c0e01000-55d0c0e02000 r-xp 00001000 08:01 1234     /app/bin/crashy\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
      "7f0000002000-7f0000003000 r-xp 00000000 08:01 99       /tmp/lib with space.so (deleted)\n"
      "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0        [stack]\n"
      "garbage line\n"
      "zz-10 r--p 0 0 0 /x\n"
      "2000-1000 r--p 00000000 08:01 1 /backwards\n";
  auto mappings = ParseProcMaps(text);
  ASSERT_EQ(mappings.size(), 5u);
  EXPECT_EQ(mappings[0].start, 0x55d0c0e00000u);
  EXPECT_EQ(mappings[0].end, 0x55d0c0e01000u);
  EXPECT_EQ(mappings[0].path, "/app/bin/crashy");
  EXPECT_EQ(mappings[1].file_offset, 0x1000u);
  EXPECT_EQ(mappings[2].path, "");
  EXPECT_EQ(mappings[3].path, "/tmp/lib with space.so");
  EXPECT_EQ(mappings[4].path, "[stack]");
}

TEST(ProcMapsTest, OurOwnFramesResolveToThisTestBinaryWithItsBuildId) {
  // This function's own address and a libc function's, in this process.
  std::vector<std::uint64_t> pcs = {reinterpret_cast<std::uintptr_t>(&ParseProcMaps),
                                    reinterpret_cast<std::uintptr_t>(&::getpid), 0x10};
  auto frames = ResolveCrashFrames(::getpid(), pcs);
  ASSERT_TRUE(frames) << frames.error().message();
  ASSERT_EQ(frames->size(), 3u);
  EXPECT_EQ((*frames)[0].module, "citadel_apps_test");
  EXPECT_EQ((*frames)[0].build_id.size() % 2, 0u);
  EXPECT_NE((*frames)[1].module.find("libc"), std::string::npos) << (*frames)[1].module;
  EXPECT_FALSE((*frames)[1].build_id.empty());
  EXPECT_EQ((*frames)[2].module, "[unknown]");
  EXPECT_EQ((*frames)[2].offset, 0x10u);
}

}  // namespace
}  // namespace citadel::apps
