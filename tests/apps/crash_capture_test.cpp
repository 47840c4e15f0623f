// Crash capture end to end on the device side (docs/ARCHITECTURE.md,
// "Failure reporting"), with the real pieces citadeld wires together: the
// sandbox launcher (citadel-sandbox, namespaces, seccomp, cgroups, storage
// image), the Broker with its crash sink, the seccomp Supervisor and the
// AppManager, running the samples/crashy app with applibs' crash handler.
// Only the FailureSink is the test's own: it collects the events.
//
// Needs root (namespaces, cgroups, loop devices): label "sandbox" (release
// stage only, like SandboxTest.*; see tests/apps/CMakeLists.txt).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/app_manager.hpp"
#include "apps/app_store.hpp"
#include "apps/runtime.hpp"
#include "apps/sandbox_launcher.hpp"
#include "broker/broker.hpp"
#include "broker/protocol.hpp"
#include "common/file.hpp"
#include "image/image.hpp"
#include "reports/collector.hpp"
#include "reports/failure_event.hpp"
#include "reports/report_queue.hpp"
#include "seccomp/supervisor.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::CollectingSink;
using testing::WaitUntil;

constexpr const char* kCrashyId = "c3a5f0d2-6b1e-4c8a-9f27-5d4e3b2a1c09";

// Output of a shell command (binutils, to check the resolver against a
// reader that is not libelf).
std::string CommandOutput(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, got);
  (void)::pclose(pipe);
  return output;
}

std::string ReadelfBuildId(const std::string& file) {
  std::string notes = CommandOutput("readelf -n '" + file + "'");
  auto at = notes.find("Build ID: ");
  if (at == std::string::npos) return {};
  std::string id = notes.substr(at + 10);
  return id.substr(0, id.find_first_of("\r\n "));
}

// [start, start + size) of a function, from `nm -S`.
std::pair<std::uint64_t, std::uint64_t> FunctionRange(const std::string& file, const std::string& name) {
  std::istringstream lines(CommandOutput("nm -S '" + file + "'"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string address;
    std::string size;
    std::string type;
    std::string symbol;
    if (fields >> address >> size >> type >> symbol && symbol == name) {
      std::uint64_t start = std::stoull(address, nullptr, 16);
      return {start, start + std::stoull(size, nullptr, 16)};
    }
  }
  return {0, 0};
}

class CrashCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_.publishers = {&publisher_};
    auto board = app::LoadBoardDefinition(CITADEL_SOURCE_DIR "/boards/simulated.json");
    ASSERT_TRUE(board) << board.error().message();
    StoreOptions store_options;
    store_options.state_dir = dir_.path() / "state";
    store_options.board = *board;
    store_options.trust = &trust_;
    auto store = AppStore::Open(store_options);
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);

    supervisor_ = std::make_unique<seccomp::Supervisor>([](const seccomp::Violation&) {});
    broker::BrokerOptions broker_options;
    broker_options.board = *board;
    // As AppRuntime wires it: the crash notice reaches the manager while
    // the app waits for the answer.
    broker_options.crashes = [this](const broker::CrashNotice& notice) {
      if (AppManager* manager = manager_for_crashes_.load()) {
        manager->ReportCrash(notice.component_id, CrashDetailsFromNotice(notice), notice.pcs);
      }
    };
    auto broker = broker::Broker::Create(std::move(broker_options));
    ASSERT_TRUE(broker) << broker.error().message();
    broker_ = std::move(*broker);

    SandboxLauncherOptions launcher_options;
    launcher_options.sandbox_exe = CITADEL_SANDBOX_EXE;
    launcher_options.applibs_dir = CITADEL_APPLIBS_DIR;
    // Its own group tree: tests of this binary may run in parallel (ctest
    // -j), and each instance start ends what is left in the app's group.
    launcher_options.cgroup_root_name = cgroup_root_name_;
    auto launcher = SandboxLauncher::Create(std::move(launcher_options), *broker_, *supervisor_);
    ASSERT_TRUE(launcher) << launcher.error().message();
    launcher_ = std::move(*launcher);

    options_.restart = RestartPolicy{milliseconds(100), milliseconds(400), milliseconds(30'000)};
    options_.stop_grace = milliseconds(1000);
    options_.start_timeout = milliseconds(20'000);
    options_.failure_sink = &sink_;
  }

  void TearDown() override {
    manager_for_crashes_.store(nullptr);
    if (manager_) manager_->Shutdown();
    manager_.reset();
    launcher_.reset();
    broker_.reset();
    supervisor_.reset();
    store_.reset();
    // The tree's now empty top group, under each controller (cgroup v1) or
    // the unified mount (v2).
    std::error_code ignored;
    fs::remove(fs::path("/sys/fs/cgroup") / cgroup_root_name_, ignored);
    for (const auto& entry : fs::directory_iterator("/sys/fs/cgroup", ignored)) {
      fs::remove(entry.path() / cgroup_root_name_, ignored);
    }
  }

  void CreateManager() {
    auto manager = AppManager::Create(*store_, *launcher_, options_);
    ASSERT_TRUE(manager) << manager.error().message();
    manager_ = std::move(*manager);
    manager_for_crashes_.store(manager_.get());
  }

  // Packs and installs crashy with the given CmdArgs.
  void InstallCrashy(const std::string& bug, const std::string& crashes, const std::string& version = "1.0.0") {
    auto manifest = ReadFile(CITADEL_SOURCE_DIR "/samples/crashy/app_manifest.json.in");
    ASSERT_TRUE(manifest) << manifest.error().message();
    std::string text = *manifest;
    for (const auto& [name, value] : {std::pair<std::string, std::string>{"@VERSION@", version},
                                      {"@BUG@", bug},
                                      {"@CRASHES@", crashes},
                                      {"@CRASH_AFTER@", "0"}}) {
      for (auto at = text.find(name); at != std::string::npos; at = text.find(name))
        text.replace(at, name.size(), value);
    }
    fs::path image_dir = dir_.path() / ("image-" + bug);
    fs::create_directories(image_dir / "bin");
    testing::WriteText(image_dir / "app_manifest.json", text);
    fs::copy_file(CITADEL_CRASHY_EXE, image_dir / "bin" / "crashy", fs::copy_options::overwrite_existing);
    fs::permissions(image_dir / "bin" / "crashy", fs::perms(0555));
    auto image = image::PackImage(image_dir, publisher_);
    ASSERT_TRUE(image) << image.error().message();
    auto installed = store_->Install(*image, "crashy.img", InstallSource::kTenant);
    ASSERT_TRUE(installed) << installed.error().message();
  }

  bool LogHas(std::string_view text) {
    auto lines = manager_->Logs(kCrashyId, 256);
    if (!lines) return false;
    return std::ranges::any_of(*lines, [&](const LogLine& line) { return line.text.find(text) != std::string::npos; });
  }

  std::string LogText() {
    std::string text;
    if (auto lines = manager_->Logs(kCrashyId, 256)) {
      for (const auto& line : *lines) text += line.text + "\n";
    }
    return text;
  }

  citadel::testing::TempDir dir_ = testing::StateTempDir();
  const std::string cgroup_root_name_ = "citadel-crashtest-" + std::to_string(::getpid());
  crypto::PrivateKey publisher_ = testing::NewKey();
  testing::StaticTrust trust_;
  CollectingSink sink_;
  ManagerOptions options_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<seccomp::Supervisor> supervisor_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<SandboxLauncher> launcher_;
  std::atomic<AppManager*> manager_for_crashes_{nullptr};
  std::unique_ptr<AppManager> manager_;
};

TEST_F(CrashCaptureTest, NullDereferenceIsReportedWithFramesRegistersAndStackThenTheAppRuns) {
  InstallCrashy("null", "2");
  CreateManager();
  ASSERT_TRUE(manager_->Start("crashy"));
  ASSERT_TRUE(WaitUntil([&] { return LogHas("crashy: running"); }, std::chrono::seconds(30))) << LogText();

  auto crashes = sink_.OfClass("app-crash");
  ASSERT_EQ(crashes.size(), 2u) << LogText();
  EXPECT_EQ(sink_.Events().size(), 2u);  // nothing else: no exit, no restart loop
  const std::string expected_build_id = ReadelfBuildId(CITADEL_CRASHY_EXE);
  ASSERT_FALSE(expected_build_id.empty());
  auto [function_start, function_end] = FunctionRange(CITADEL_CRASHY_EXE, "ReadSensorConfig");
  ASSERT_LT(function_start, function_end);
  for (const auto& event : crashes) {
    EXPECT_EQ(event.component_id, kCrashyId);
    EXPECT_EQ(event.component_version, "1.0.0");
    EXPECT_EQ(event.error_code, "SIGSEGV");
    EXPECT_EQ(event.message, "crashy 1.0.0 was killed by SIGSEGV at address 0x0");
    ASSERT_TRUE(event.crash.has_value()) << "the crash handler's details did not arrive";
    const protocol::CrashDetails& crash = *event.crash;
    EXPECT_EQ(crash.signal, SIGSEGV);
    EXPECT_EQ(crash.signal_code, SEGV_MAPERR);
    EXPECT_EQ(crash.fault_address, 0u);
    ASSERT_GE(crash.frames.size(), 2u);
    EXPECT_EQ(crash.frames[0].module, "crashy");
    EXPECT_EQ(crash.frames[0].build_id, expected_build_id);
    EXPECT_GE(crash.frames[0].offset, function_start);
    EXPECT_LT(crash.frames[0].offset, function_end);
    // The caller is main, in the same module.
    EXPECT_EQ(crash.frames[1].module, "crashy");
    bool has_rip = std::ranges::any_of(crash.registers, [](const auto& entry) { return entry.first == "rip"; });
    EXPECT_TRUE(has_rip);
    ASSERT_TRUE(crash.dump.has_value());
    EXPECT_FALSE(crash.dump->stack.empty());
    EXPECT_LE(crash.dump->stack.size(), broker::protocol::kMaxCrashStackBytes);
  }
  // The app stays up after its two crashes.
  std::this_thread::sleep_for(milliseconds(300));
  auto status = manager_->Status("crashy");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->state, RunState::kRunning);
  EXPECT_EQ(status->restarts, 2u);
  EXPECT_EQ(manager_->TotalRestarts(), 2u);
  // A stop the runtime asked for is no failure.
  ASSERT_TRUE(manager_->Stop("crashy"));
  EXPECT_EQ(sink_.Events().size(), 2u);
}

TEST_F(CrashCaptureTest, NonZeroExitIsAnAppExitWithoutCrashDetails) {
  InstallCrashy("exit", "1");
  CreateManager();
  ASSERT_TRUE(manager_->Start("crashy"));
  ASSERT_TRUE(WaitUntil([&] { return LogHas("crashy: running"); }, std::chrono::seconds(30))) << LogText();
  auto events = sink_.Events();
  ASSERT_EQ(events.size(), 1u) << LogText();
  EXPECT_EQ(events[0].failure_class, "app-exit");
  EXPECT_EQ(events[0].error_code, "exit-3");
  EXPECT_EQ(events[0].message, "crashy 1.0.0 exited with status 3");
  EXPECT_FALSE(events[0].crash.has_value());
}

TEST_F(CrashCaptureTest, ACrashLoopReportsOneRestartLoopAtTheBackoffCap) {
  options_.restart = RestartPolicy{milliseconds(20), milliseconds(80), milliseconds(30'000)};
  InstallCrashy("divide", "6");
  CreateManager();
  ASSERT_TRUE(manager_->Start("crashy"));
  ASSERT_TRUE(WaitUntil([&] { return LogHas("crashy: running"); }, std::chrono::seconds(60))) << LogText();
  auto crashes = sink_.OfClass("app-crash");
  ASSERT_EQ(crashes.size(), 6u) << LogText();
  for (const auto& event : crashes) {
    EXPECT_EQ(event.error_code, "SIGFPE");
    ASSERT_TRUE(event.crash.has_value());
    ASSERT_FALSE(event.crash->frames.empty());
    EXPECT_EQ(event.crash->frames[0].module, "crashy");
  }
  // Delays 20, 40, 80 (the cap: reported), 80, 80, 80: one restart loop.
  auto loops = sink_.OfClass("restart-loop");
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].error_code, "restart-loop");
  EXPECT_EQ(loops[0].component_version, "1.0.0");
  EXPECT_EQ(manager_->TotalRestarts(), 6u);
}

// Acceptance 4 (issue 5) with a real app: crashy crashes 1,000 times in
// the sandbox (restarts 1 ms apart), every crash going through the
// collector citadeld uses into a real queue. The queue holds a bounded
// number of reports whose occurrences add up to exactly 1,000.
TEST_F(CrashCaptureTest, AThousandRealCrashesAreAFewReportsWithTheTrueTotal) {
  constexpr int kCrashes = 1000;
  auto queue = reports::ReportQueue::Open(dir_.path() / "reports");
  ASSERT_TRUE(queue) << queue.error().message();
  reports::ReportCollector collector(**queue, {.os_version = "1.0.0", .runtime_version = "0.1.0"});
  options_.failure_sink = &collector;
  options_.restart = RestartPolicy{milliseconds(1), milliseconds(1), milliseconds(30'000)};
  InstallCrashy("null", std::to_string(kCrashes));
  CreateManager();
  ASSERT_TRUE(manager_->Start("crashy"));
  ASSERT_TRUE(WaitUntil([&] { return LogHas("crashy: running"); }, std::chrono::seconds(110))) << LogText();
  EXPECT_EQ(manager_->TotalRestarts(), static_cast<std::uint64_t>(kCrashes));

  const std::size_t written_during_the_loop = (*queue)->Size();
  collector.Flush();  // what a clean stop does with the folded counts
  auto batch = (*queue)->Peek(1000, std::size_t{64} << 20);
  std::int64_t crashes = 0;
  std::size_t crash_reports = 0;
  for (const auto& report : batch.reports) {
    if (report.failure_class != "app-crash") continue;
    ++crash_reports;
    crashes += report.occurrences;
    EXPECT_EQ(report.error_code, "SIGSEGV");
  }
  EXPECT_EQ(crashes, kCrashes);
  // Burst of 5, then folded: the loop wrote a handful, the flush one more.
  EXPECT_LE(written_during_the_loop, 10u);
  EXPECT_LE(crash_reports, 7u);
}

}  // namespace
}  // namespace citadel::apps
