// AppManager over a fake launcher: lifecycle, restart backoff, stop
// escalation, logs, violations and the persisted desired state.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "apps/app_manager.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

using std::chrono::milliseconds;
using testing::Manifest;
using testing::WaitUntil;

constexpr const char* kAlphaId = "11111111-1111-4111-8111-111111111111";
constexpr const char* kBetaId = "22222222-2222-4222-8222-222222222222";

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_.publishers = {&publisher_};
    OpenStore();
    options_.restart = RestartPolicy{milliseconds(50), milliseconds(200), milliseconds(10'000)};
    options_.stop_grace = milliseconds(150);
    options_.kill_wait = milliseconds(500);
    options_.start_timeout = milliseconds(2000);
    CreateManager();
    for (const auto& [name, id] : {std::pair{"alpha", kAlphaId}, std::pair{"beta", kBetaId}}) {
      auto installed = store_->Install(testing::PackApp(dir_.path() / "work", publisher_, Manifest(name, id)),
                                       "test.img", InstallSource::kTenant);
      ASSERT_TRUE(installed) << installed.error().message();
    }
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
  }
  void OpenStore() {
    StoreOptions options;
    options.state_dir = dir_.path() / "state";
    options.board = testing::TestBoard();
    options.trust = &trust_;
    auto store = AppStore::Open(options);
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
  }
  void CreateManager() {
    auto manager = AppManager::Create(*store_, launcher_, options_);
    ASSERT_TRUE(manager) << manager.error().message();
    manager_ = std::move(*manager);
  }
  RunState State(const char* app) { return manager_->Status(app)->state; }

  citadel::testing::TempDir dir_ = testing::StateTempDir();
  crypto::PrivateKey publisher_ = testing::NewKey();
  testing::StaticTrust trust_;
  testing::FakeLauncher launcher_;
  ManagerOptions options_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<AppManager> manager_;
};

TEST_F(ManagerTest, StartsWithThePolicyAndSlotAndStops) {
  auto started = manager_->Start("alpha");
  ASSERT_TRUE(started) << started.error().message();
  EXPECT_EQ(started->state, RunState::kRunning);
  EXPECT_GT(started->pid, 0);
  auto requests = launcher_.Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].policy.component_id, kAlphaId);
  EXPECT_EQ(requests[0].uid, 61000u);
  EXPECT_EQ(requests[0].gid, 61000u);
  EXPECT_EQ(requests[0].image_root, store_->RootOf(kAlphaId));
  EXPECT_FALSE(requests[0].storage_image.has_value());

  auto stopped = manager_->Stop("alpha");
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, RunState::kStopped);
  EXPECT_EQ(launcher_.Current(kAlphaId)->signals(), std::vector<int>{SIGTERM});
  EXPECT_NE(stopped->last_exit.find("SIGTERM"), std::string::npos) << stopped->last_exit;
  // A stopped app is not restarted.
  std::this_thread::sleep_for(milliseconds(150));
  EXPECT_EQ(launcher_.Launches(kAlphaId), 1u);
}

TEST_F(ManagerTest, StopEscalatesToSigkillAndKillAll) {
  launcher_.Set(kAlphaId, testing::FakeBehaviour::With(&testing::FakeBehaviour::ignore_sigterm));
  ASSERT_TRUE(manager_->Start("alpha"));
  auto begin = std::chrono::steady_clock::now();
  auto stopped = manager_->Stop("alpha");
  auto took = std::chrono::steady_clock::now() - begin;
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(stopped->state, RunState::kStopped);
  auto app = launcher_.Current(kAlphaId);
  EXPECT_EQ(app->signals(), (std::vector<int>{SIGTERM, SIGKILL}));
  EXPECT_TRUE(app->kill_all());
  EXPECT_GE(took, milliseconds(150));  // waited for the grace period
  EXPECT_LT(took, milliseconds(1500));
}

TEST_F(ManagerTest, CrashLoopBacksOffExponentiallyWithoutStarvingOthers) {
  launcher_.Set(kAlphaId, testing::FakeBehaviour::With(&testing::FakeBehaviour::exit_at_once));
  auto first = manager_->Start("alpha");
  ASSERT_TRUE(first);
  ASSERT_TRUE(WaitUntil([&] { return launcher_.Launches(kAlphaId) >= 6; }, milliseconds(3000)));
  // Meanwhile another app starts and answers at once.
  auto begin = std::chrono::steady_clock::now();
  auto beta = manager_->Start("beta");
  ASSERT_TRUE(beta);
  EXPECT_EQ(beta->state, RunState::kRunning);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, milliseconds(200));

  auto times = launcher_.LaunchTimes(kAlphaId);
  std::vector<milliseconds> expected{milliseconds(50), milliseconds(100), milliseconds(200), milliseconds(200),
                                     milliseconds(200)};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    auto gap = std::chrono::duration_cast<milliseconds>(times[i + 1] - times[i]);
    EXPECT_GE(gap, expected[i]) << "restart " << i;
    EXPECT_LT(gap, expected[i] + milliseconds(300)) << "restart " << i;
  }
  auto status = manager_->Status("alpha");
  EXPECT_GE(status->restarts, 5u);
  EXPECT_NE(status->last_exit.find("exited with status 1"), std::string::npos);
  EXPECT_EQ(State("beta"), RunState::kRunning);

  // Stop ends the loop, including from the backoff state.
  ASSERT_TRUE(manager_->Stop("alpha"));
  auto launches = launcher_.Launches(kAlphaId);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(launcher_.Launches(kAlphaId), launches);
  EXPECT_EQ(State("alpha"), RunState::kStopped);
}

TEST_F(ManagerTest, FailedLaunchIsReportedToTheCaller) {
  launcher_.Set(kAlphaId, testing::FakeBehaviour::With(&testing::FakeBehaviour::fail_launch));
  auto started = manager_->Start("alpha");
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message().find("fake launch failure"), std::string::npos) << started.error().message();
  EXPECT_EQ(State("alpha"), RunState::kFailed);
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(launcher_.Launches(kAlphaId), 1u);  // an operator start is not retried
}

// Every launch is measured first (citadeld extends the RoT with the image);
// an app whose image cannot be measured does not run.
TEST_F(ManagerTest, EachLaunchIsMeasuredFirstAndAnUnmeasurableAppDoesNotRun) {
  std::mutex mutex;
  std::vector<std::string> measured;
  options_.measure = [&](const InstalledApp& app) -> Expected<void> {
    std::lock_guard lock(mutex);
    if (app.component_id == kBetaId) return MakeError(ErrorCode::kUnavailable, "the TPM is gone");
    measured.push_back(app.component_id + " " + app.image_sha256);
    return kOk;
  };
  manager_.reset();
  CreateManager();
  auto alpha = store_->Resolve("alpha");
  ASSERT_TRUE(alpha);
  ASSERT_TRUE(manager_->Start("alpha"));
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(measured.size(), 1u);
    EXPECT_EQ(measured[0], std::string(kAlphaId) + " " + alpha->image_sha256);
  }
  EXPECT_EQ(launcher_.Launches(kAlphaId), 1u);

  auto beta = manager_->Start("beta");
  ASSERT_FALSE(beta);
  EXPECT_NE(beta.error().message().find("measuring the app image: the TPM is gone"), std::string::npos)
      << beta.error().message();
  EXPECT_EQ(launcher_.Launches(kBetaId), 0u);
  EXPECT_EQ(State("beta"), RunState::kFailed);
}

TEST_F(ManagerTest, CollectsOutputAndViolations) {
  launcher_.Set(kAlphaId, testing::FakeBehaviour::Writing("hello\nworld\n"));
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(WaitUntil([&] {
    auto lines = manager_->Logs("alpha", 10);
    return lines && lines->size() >= 3;
  }));
  manager_->ReportViolation(kAlphaId, "connect", "connect to 127.0.0.2:9 (not in AllowedConnections)");
  auto lines = *manager_->Logs("alpha", 10);
  std::vector<std::string> texts;
  texts.reserve(lines.size());
  for (const auto& line : lines) texts.push_back(line.text);
  EXPECT_NE(std::find(texts.begin(), texts.end(), "hello"), texts.end());
  EXPECT_NE(std::find(texts.begin(), texts.end(), "world"), texts.end());
  EXPECT_NE(texts.back().find("policy violation: connect"), std::string::npos);
  auto violations = manager_->Violations("alpha");
  ASSERT_EQ(violations->size(), 1u);
  EXPECT_EQ(violations->at(0).syscall, "connect");
  EXPECT_EQ(manager_->Status("alpha")->violations, 1u);
  EXPECT_EQ(manager_->Logs("alpha", 1)->size(), 1u);
}

TEST_F(ManagerTest, DesiredStateSurvivesARestartOfCitadeld) {
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(manager_->Start("beta"));
  ASSERT_TRUE(manager_->Stop("beta"));
  manager_.reset();  // citadeld exits: instances stop, desired states stay
  EXPECT_EQ(launcher_.Current(kAlphaId)->signals().front(), SIGTERM);
  store_.reset();
  OpenStore();
  EXPECT_EQ(store_->Resolve("alpha")->desired, DesiredState::kRunning);
  EXPECT_EQ(store_->Resolve("beta")->desired, DesiredState::kStopped);
  CreateManager();
  manager_->StartDesired();
  EXPECT_EQ(State("alpha"), RunState::kRunning);
  EXPECT_EQ(State("beta"), RunState::kStopped);
  EXPECT_EQ(launcher_.Launches(kAlphaId), 2u);
  EXPECT_EQ(launcher_.Launches(kBetaId), 1u);
}

TEST_F(ManagerTest, CrashOfARunningAppRestartsIt) {
  ASSERT_TRUE(manager_->Start("alpha"));
  launcher_.Current(kAlphaId)->Exit(ExitStatus{false, 0, SIGSEGV, false});
  ASSERT_TRUE(WaitUntil([&] { return launcher_.Launches(kAlphaId) == 2 && State("alpha") == RunState::kRunning; }));
  EXPECT_NE(manager_->Status("alpha")->last_exit.find("SIGSEGV"), std::string::npos);
  launcher_.Current(kAlphaId)->Exit(ExitStatus{false, 0, SIGKILL, true});
  ASSERT_TRUE(WaitUntil([&] { return launcher_.Launches(kAlphaId) == 3; }));
  EXPECT_NE(manager_->Status("alpha")->last_exit.find("out of memory"), std::string::npos);
}

TEST_F(ManagerTest, RemoveStopsAndUninstalls) {
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(manager_->Remove("alpha"));
  EXPECT_FALSE(manager_->Status("alpha"));
  EXPECT_FALSE(std::filesystem::exists(store_->apps_dir() / kAlphaId));
  EXPECT_EQ(launcher_.Current(kAlphaId)->signals().front(), SIGTERM);
  EXPECT_EQ(manager_->List().size(), 1u);
}

TEST_F(ManagerTest, UpdateOfARunningAppRestartsTheNewVersion) {
  ASSERT_TRUE(manager_->Start("alpha"));
  auto image = testing::PackApp(dir_.path() / "work", publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED2"]})"));
  auto updated = manager_->Install(image, "alpha-2.img", InstallSource::kTenant);
  ASSERT_TRUE(updated) << updated.error().message();
  EXPECT_EQ(launcher_.Launches(kAlphaId), 2u);
  EXPECT_EQ(State("alpha"), RunState::kRunning);
  EXPECT_EQ(launcher_.Requests().back().policy.peripherals.size(), 1u);
  // A refused update does not disturb the running version.
  auto stranger = testing::NewKey();
  auto refused = manager_->Install(testing::PackApp(dir_.path() / "work", stranger, Manifest("alpha", kAlphaId)),
                                   "bad.img", InstallSource::kTenant);
  EXPECT_FALSE(refused);
  EXPECT_EQ(launcher_.Launches(kAlphaId), 2u);
  EXPECT_EQ(State("alpha"), RunState::kRunning);
}

}  // namespace
}  // namespace citadel::apps
