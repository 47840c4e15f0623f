// AppManager as the update client's AppInstaller, over the fake launcher:
// a healthy trial commits, a crash-looping or unstartable version reverts
// to the previous one, which runs again; plain installs are not trials.
#include <gtest/gtest.h>

#include "apps/app_manager.hpp"
#include "trial_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::kLed1;
using testing::kLed2;
using testing::kOtherAppId;
using testing::kTrialAppId;
using testing::VersionedManifest;
using testing::WaitUntil;
using update::TrialHealth;

class TrialManagerTest : public testing::TrialStoreFixture {
 protected:
  void SetUp() override {
    TrialStoreFixture::SetUp();
    options_.restart = RestartPolicy{milliseconds(50), milliseconds(200), milliseconds(10'000)};
    options_.stop_grace = milliseconds(150);
    options_.kill_wait = milliseconds(500);
    options_.start_timeout = milliseconds(2000);
    options_.trial_period = milliseconds(300);
    OpenStore();
    ASSERT_TRUE(store_->Install(v1_, "alpha-1.0.img", InstallSource::kTenant));
    CreateManager();
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
  }
  void OpenStore() {
    store_ = OpenAt(dir_.path() / "state");
    ASSERT_TRUE(store_);
  }
  void CreateManager() {
    auto manager = AppManager::Create(*store_, launcher_, options_);
    ASSERT_TRUE(manager) << manager.error().message();
    manager_ = std::move(*manager);
  }
  RunState State() { return manager_->Status(kTrialAppId)->state; }
  std::string LastLaunchedResource() {
    auto requests = launcher_.Requests();
    if (requests.empty() || requests.back().policy.peripherals.empty()) return "";
    return requests.back().policy.peripherals.front().ResourceKey();
  }

  testing::FakeLauncher launcher_;
  ManagerOptions options_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<AppManager> manager_;
};

TEST_F(TrialManagerTest, AHealthyTrialIsCommittedAfterThePeriod) {
  ASSERT_TRUE(manager_->Start("alpha"));
  auto begin = std::chrono::steady_clock::now();
  auto began = manager_->BeginTrial(v2_file_, kTrialAppId);
  ASSERT_TRUE(began) << began.error().message();
  EXPECT_EQ(launcher_.Launches(kTrialAppId), 2u);
  EXPECT_EQ(LastLaunchedResource(), kLed2);
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_TRUE(manager_->Status(kTrialAppId)->on_trial);
  auto health = manager_->Trial(kTrialAppId);
  if (std::chrono::steady_clock::now() - begin < options_.trial_period) {
    EXPECT_EQ(health, TrialHealth::kRunning);
  }

  ASSERT_TRUE(WaitUntil([&] { return manager_->Trial(kTrialAppId) == TrialHealth::kHealthy; }, milliseconds(3000)));
  EXPECT_GE(std::chrono::steady_clock::now() - begin, options_.trial_period);
  EXPECT_EQ(manager_->TrialFailure(kTrialAppId), "");
  const pid_t pid = manager_->Status(kTrialAppId)->pid;

  ASSERT_TRUE(manager_->CommitTrial(kTrialAppId));
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kNoTrial);
  EXPECT_FALSE(manager_->Status(kTrialAppId)->on_trial);
  EXPECT_EQ(manager_->Status(kTrialAppId)->pid, pid);  // committing does not restart it
  EXPECT_EQ(launcher_.Launches(kTrialAppId), 2u);
  EXPECT_FALSE(fs::exists(AppDir(*store_) / "root.previous"));

  auto installed = manager_->InstalledApps();
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0].component_id, kTrialAppId);
  EXPECT_EQ(installed[0].version, "2.0");
  EXPECT_EQ(installed[0].security_version, 2);
  EXPECT_EQ(installed[0].image_sha256, Sha(v2_));
  EXPECT_EQ(installed[0].image_file, store_->ImageFileOf(kTrialAppId));
  EXPECT_EQ(*ReadFile(installed[0].image_file, 1u << 24), AsText(v2_));
}

TEST_F(TrialManagerTest, ACrashLoopingVersionRevertsToThePreviousOneWhichRunsAgain) {
  ASSERT_TRUE(manager_->Start("alpha"));
  launcher_.Set(kTrialAppId, testing::FakeBehaviour::With(&testing::FakeBehaviour::exit_at_once));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  ASSERT_TRUE(WaitUntil([&] { return manager_->Trial(kTrialAppId) == TrialHealth::kCrashLoop; }, milliseconds(3000)));
  EXPECT_GE(store_->TrialOf(kTrialAppId)->exits, 3u);
  auto reason = manager_->TrialFailure(kTrialAppId);
  EXPECT_NE(reason.find("crash loop"), std::string::npos) << reason;
  EXPECT_NE(reason.find("exited with status 1"), std::string::npos) << reason;

  launcher_.Set(kTrialAppId, {});
  ASSERT_TRUE(manager_->RevertTrial(kTrialAppId));
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kNoTrial);
  EXPECT_EQ(store_->Resolve(kTrialAppId)->version, "1.0");
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(LastLaunchedResource(), kLed1);
  auto launches = launcher_.Launches(kTrialAppId);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(launcher_.Launches(kTrialAppId), launches);
  EXPECT_EQ(manager_->InstalledApps().at(0).image_sha256, Sha(v1_));
  EXPECT_TRUE(manager_->RevertTrial(kTrialAppId));  // nothing left to revert
}

TEST_F(TrialManagerTest, AVersionThatCannotStartFailsAndIsReverted) {
  ASSERT_TRUE(manager_->Start("alpha"));
  launcher_.Set(kTrialAppId, testing::FakeBehaviour::With(&testing::FakeBehaviour::fail_launch));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));  // installed; the start is the trial's outcome
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kFailed);
  EXPECT_NE(manager_->TrialFailure(kTrialAppId).find("fake launch failure"), std::string::npos)
      << manager_->TrialFailure(kTrialAppId);
  launcher_.Set(kTrialAppId, {});
  ASSERT_TRUE(manager_->RevertTrial(kTrialAppId));
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(LastLaunchedResource(), kLed1);
}

TEST_F(TrialManagerTest, ExitsDuringATrialSurviveARestartOfCitadeld) {
  options_.trial_period = std::chrono::seconds(30);  // never healthy during this test
  manager_.reset();
  CreateManager();
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  for (std::size_t crash = 1; crash <= 2; ++crash) {
    launcher_.Current(kTrialAppId)->Exit(ExitStatus{false, 0, SIGSEGV, false});
    ASSERT_TRUE(
        WaitUntil([&] { return launcher_.Launches(kTrialAppId) == 2 + crash && State() == RunState::kRunning; }));
  }
  manager_.reset();
  store_.reset();
  OpenStore();
  CreateManager();
  manager_->StartDesired();
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(LastLaunchedResource(), kLed2);
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kRunning);
  launcher_.Current(kTrialAppId)->Exit(ExitStatus{false, 0, SIGSEGV, false});
  ASSERT_TRUE(WaitUntil([&] { return manager_->Trial(kTrialAppId) == TrialHealth::kCrashLoop; }, milliseconds(2000)));
  EXPECT_NE(manager_->TrialFailure(kTrialAppId).find("SIGSEGV"), std::string::npos);
}

TEST_F(TrialManagerTest, StopsOfTheOperatorAreNotCrashes) {
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  ASSERT_TRUE(manager_->Stop("alpha"));
  ASSERT_TRUE(manager_->Start("alpha"));
  EXPECT_EQ(store_->TrialOf(kTrialAppId)->exits, 0u);
}

TEST_F(TrialManagerTest, AnAppNotMeantToRunIsHealthyAtOnce) {
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  EXPECT_EQ(launcher_.Launches(kTrialAppId), 0u);
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kHealthy);
  ASSERT_TRUE(manager_->CommitTrial(kTrialAppId));
  EXPECT_EQ(State(), RunState::kStopped);
}

TEST_F(TrialManagerTest, AFirstInstallOnTrialRunsAndARevertRemovesIt) {
  auto beta = WriteImage("beta.img", Pack(VersionedManifest("beta", kOtherAppId, "1.0", 1)));
  ASSERT_TRUE(manager_->BeginTrial(beta, kOtherAppId));
  EXPECT_EQ(launcher_.Launches(kOtherAppId), 1u);
  EXPECT_EQ(manager_->Status(kOtherAppId)->state, RunState::kRunning);
  auto health = manager_->Trial(kOtherAppId);
  EXPECT_TRUE(health == TrialHealth::kRunning || health == TrialHealth::kHealthy);
  ASSERT_TRUE(manager_->RevertTrial(kOtherAppId));
  EXPECT_FALSE(manager_->Status(kOtherAppId));
  EXPECT_EQ(launcher_.Current(kOtherAppId)->signals().front(), SIGTERM);
  EXPECT_EQ(manager_->List().size(), 1u);
  EXPECT_EQ(manager_->InstalledApps().size(), 1u);
}

TEST_F(TrialManagerTest, TheSameImageTwiceDoesNotRestartTheApp) {
  ASSERT_TRUE(manager_->Start("alpha"));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  ASSERT_TRUE(manager_->BeginTrial(v2_file_, kTrialAppId));
  EXPECT_EQ(launcher_.Launches(kTrialAppId), 2u);
  EXPECT_EQ(State(), RunState::kRunning);
}

TEST_F(TrialManagerTest, ARefusedUpdateLeavesTheRunningVersionAlone) {
  ASSERT_TRUE(manager_->Start("alpha"));
  auto wrong = manager_->BeginTrial(v2_file_, kOtherAppId);
  ASSERT_FALSE(wrong);
  auto held = WriteImage("beta.img", Pack(VersionedManifest("beta", kOtherAppId, "1.0", 1, R"({"Gpio":["LED1"]})")));
  EXPECT_FALSE(manager_->BeginTrial(held, kOtherAppId));  // LED1 is alpha's
  EXPECT_EQ(launcher_.Launches(kTrialAppId), 1u);
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kNoTrial);
}

TEST_F(TrialManagerTest, APlainInstallIsImmediateAndWaitsForAnOpenTrial) {
  ASSERT_TRUE(manager_->Start("alpha"));
  auto installed = manager_->Install(v2_, "alpha-2.0.img", InstallSource::kTenant);
  ASSERT_TRUE(installed) << installed.error().message();
  EXPECT_EQ(manager_->Trial(kTrialAppId), TrialHealth::kNoTrial);
  EXPECT_EQ(LastLaunchedResource(), kLed2);
  EXPECT_EQ(manager_->InstalledApps().at(0).version, "2.0");

  ASSERT_TRUE(manager_->BeginTrial(v1_file_, kTrialAppId));
  auto refused = manager_->Install(v2_, "alpha-2.0.img", InstallSource::kTenant);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kConflict);
  EXPECT_EQ(State(), RunState::kRunning);
  EXPECT_EQ(LastLaunchedResource(), kLed1);
}

}  // namespace
}  // namespace citadel::apps
