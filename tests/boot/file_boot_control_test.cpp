#include "boot/file/file_boot_control.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "backend_fixture.hpp"
#include "boot/boot_control.hpp"
#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;

constexpr Slot kA = Slot::kA;
constexpr Slot kB = Slot::kB;

class FileBootControlTest : public testing::BackendFixture {
 protected:
  FileBootControlTest() : BackendFixture("boot-file") {}

  std::unique_ptr<BootControl> OpenControl() { return BackendFixture::OpenControl("file:" + dir_.path().string()); }
  fs::path StatePath() const { return dir_.path() / FileBootControl::kStateFileName; }
  std::size_t EntriesInDirectory() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()));
  }
};

TEST_F(FileBootControlTest, OpenCreatesTheFactoryState) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  EXPECT_EQ(control->Backend(), "file");
  EXPECT_EQ(control->MaxTrialTries(), kMaxTrialTries);
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_TRUE(fs::is_regular_file(StatePath()));
}

TEST_F(FileBootControlTest, TrialBootCommit) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 3));
  EXPECT_EQ(State(*control).trial, (Trial{kB, 3}));
  auto booted = control->SimulateBoot();
  ASSERT_TRUE(booted);
  EXPECT_EQ(*booted, kB);
  EXPECT_EQ(State(*control), (BootState{kB, kA, Trial{kB, 2}, std::nullopt}));
  ASSERT_TRUE(control->Commit());
  EXPECT_EQ(State(*control), (BootState{kB, kB, std::nullopt, std::nullopt}));
  // Persisted: a new process sees the same, and B keeps booting.
  auto reopened = OpenControl();
  ASSERT_TRUE(reopened);
  EXPECT_EQ(*reopened->SimulateBoot(), kB);
  EXPECT_EQ(State(*reopened).primary, kB);
}

TEST_F(FileBootControlTest, TriesRunOutFallBackAndTheFailureStaysVisibleUntilAcknowledged) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 2));
  EXPECT_EQ(*control->SimulateBoot(), kB);  // the runtime never gets healthy ...
  EXPECT_EQ(*control->SimulateBoot(), kB);
  EXPECT_EQ(*control->SimulateBoot(), kA);  // ... so the bootloader returns to A
  auto reopened = OpenControl();
  ASSERT_TRUE(reopened);
  BootState state = State(*reopened);
  EXPECT_EQ(state.booted, kA);
  EXPECT_EQ(state.primary, kA);
  EXPECT_FALSE(state.trial);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(state.last_failure->slot, kB);
  EXPECT_NE(state.last_failure->reason.find("did not start healthy in 2 boot attempts"), std::string::npos);
  // The runtime on A is healthy and keeps its counter armed; the failure
  // stays until it was reported.
  ASSERT_TRUE(reopened->Commit());
  EXPECT_TRUE(State(*reopened).last_failure);
  auto refused = reopened->StartTrial(kB, 3);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(reopened->AcknowledgeFailure());
  EXPECT_EQ(State(*reopened), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_EQ(*reopened->SimulateBoot(), kA);
}

TEST_F(FileBootControlTest, FailTrialReturnsToThePrimaryAtTheNextBoot) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 3));
  EXPECT_EQ(*control->SimulateBoot(), kB);
  ASSERT_TRUE(control->FailTrial("attestation failed"));
  EXPECT_EQ(*control->SimulateBoot(), kA);
  BootState state = State(*control);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(*state.last_failure, (TrialFailure{kB, "attestation failed"}));
  ASSERT_TRUE(control->AcknowledgeFailure());
  EXPECT_FALSE(State(*control).last_failure);
}

TEST_F(FileBootControlTest, ACorruptStateFileIsAnErrorAndIsLeftAlone) {
  ASSERT_TRUE(OpenControl());
  for (const std::string& corrupt :
       {std::string("{\"format\": 1"), std::string("{}"),
        std::string(R"({"format":1,"booted":"C","order":[],"tries_left":{"A":1,"B":0},"primary":"A"})")}) {
    ASSERT_TRUE(WriteFileAtomic(StatePath(), corrupt));
    auto control = Open("file:" + dir_.path().string());
    ASSERT_FALSE(control) << corrupt;
    EXPECT_EQ(control.error().code(), ErrorCode::kParse);
    EXPECT_NE(control.error().message().find(StatePath().string()), std::string::npos);
    EXPECT_EQ(*ReadFile(StatePath()), corrupt);
  }
}

// A write that fails half-way (here: the file size limit cuts the write of
// the temporary file) leaves the old state whole and no debris.
TEST_F(FileBootControlTest, AFailedWriteKeepsTheOldState) {
  ASSERT_TRUE(OpenControl());
  std::string before = *ReadFile(StatePath());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // setrlimit is per process: only this child is limited.
    (void)::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{16, 16};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(4);
    log::SetLevel(log::Level::kOff);
    auto control = FileBootControl::Open(dir_.path());
    if (!control) ::_exit(5);
    auto started = (*control)->StartTrial(kB, 3);
    ::_exit(started ? 1 : (started.error().code() == ErrorCode::kIo ? 0 : 3));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "1: the write succeeded; 3: wrong error; 4/5: setup";
  EXPECT_EQ(*ReadFile(StatePath()), before);
  EXPECT_EQ(EntriesInDirectory(), 1U);
  auto control = OpenControl();
  ASSERT_TRUE(control);
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
}

// Runs update cycles (trial, boot, commit or fail, acknowledge) until
// killed. Exits 2 on any error.
[[noreturn]] void RunUpdateCycles(const fs::path& directory) {
  log::SetLevel(log::Level::kOff);
  auto opened = FileBootControl::Open(directory);
  if (!opened) ::_exit(2);
  BootControl& control = **opened;
  for (int step = 0; step < 1'000'000; ++step) {
    auto state = control.ReadState();
    if (!state) ::_exit(2);
    bool ok = true;
    bool running_trial = state->trial && state->booted == state->trial->slot;
    bool running_primary = !state->trial && state->booted == state->primary;
    if (state->last_failure) {
      ok = control.AcknowledgeFailure().has_value();
    } else if (running_trial) {
      ok = (step % 4 == 0 ? control.FailTrial("torture") : control.Commit()).has_value();
    } else if (!running_primary) {
      // Into a pending trial, or back to the primary after a failed one.
      ok = control.SimulateBoot().has_value();
    } else {
      ok = control.StartTrial(OtherSlot(state->primary), 2).has_value();
    }
    if (!ok) ::_exit(2);
  }
  ::_exit(0);
}

// kill -9 at arbitrary moments of update cycles: every time, the state
// file parses and describes a coherent device that can go on updating.
TEST_F(FileBootControlTest, KillNineAtAnyMomentLeavesAValidState) {
  ASSERT_TRUE(OpenControl());
  std::mt19937 random(20240611);
  constexpr int kKills = 60;
  int commits_seen = 0;
  Slot last_primary = kA;
  for (int kill = 0; kill < kKills; ++kill) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) RunUpdateCycles(dir_.path());
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + random() % 30000));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the cycle stopped on its own, status " << status;
    auto control = FileBootControl::Open(dir_.path());
    ASSERT_TRUE(control) << "after kill " << kill << ": " << control.error().message();
    auto state = (*control)->ReadState();
    ASSERT_TRUE(state) << state.error().message();
    if (state->trial) {
      EXPECT_NE(state->trial->slot, state->primary);
    }
    if (state->primary != last_primary) ++commits_seen;
    last_primary = state->primary;
  }
  // The cycles made progress between kills (the test exercised writes).
  EXPECT_GT(commits_seen, 0);
}

TEST_F(FileBootControlTest, OpenRefusesMalformedSpecs) {
  for (std::string_view spec : {"", "file", "file:", "nope:/x", "/just/a/path"}) {
    auto control = Open(spec);
    ASSERT_FALSE(control) << spec;
    EXPECT_EQ(control.error().code(), ErrorCode::kInvalidArgument) << spec;
  }
}

}  // namespace
}  // namespace citadel::boot
