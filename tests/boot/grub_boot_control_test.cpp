// The GRUB backend against a real environment block made and read by
// grub-editenv (grub-common). The tests fail when the tool is missing.
#include "boot/grub/grub_boot_control.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "backend_fixture.hpp"
#include "boot/boot_control.hpp"
#include "boot/env_encoding.hpp"
#include "common/file.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;

constexpr Slot kA = Slot::kA;
constexpr Slot kB = Slot::kB;

class GrubBootControlTest : public testing::BackendFixture {
 protected:
  GrubBootControlTest() : BackendFixture("boot-grub") {}

  void SetUp() override {
    editenv_ = Tool("grub-editenv", "grub-common");
    ASSERT_FALSE(HasFailure());
    Edit({"create"});
    Edit({"set", "saved_entry=citadel-A"});
    SetBooted(kA);
  }

  std::string Edit(std::vector<std::string> args) {
    args.insert(args.begin(), grubenv_.string());
    return Run(editenv_, args);
  }
  EnvVariables List() { return ParseEnvListing(Edit({"list"})); }
  // What grub.cfg does at power-on: the first OK and untried slot of the
  // order gets TRY=1 and boots.
  Slot BootloaderBoot() {
    auto stored = DecodeGrubState(List());
    EXPECT_TRUE(stored);
    BootDecision decision = DecideBoot(stored->variables, 1);
    EXPECT_FALSE(decision.counters_reset);
    Edit({"set", std::string(SlotName(decision.slot)) + "_TRY=1"});
    SetBooted(decision.slot);
    return decision.slot;
  }
  std::unique_ptr<BootControl> OpenControl() { return BackendFixture::OpenControl("grub:" + grubenv_.string()); }

  fs::path grubenv_ = dir_.path() / "grubenv";
  fs::path editenv_;
};

TEST_F(GrubBootControlTest, AFreshBlockRunsAAndTrialsGetOneTry) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  EXPECT_EQ(control->Backend(), "grub");
  EXPECT_EQ(control->MaxTrialTries(), 1U);
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
  ASSERT_TRUE(control->StartTrial(kB, 3));
  EXPECT_EQ(State(*control).trial, (Trial{kB, 1}));
  EnvVariables env = List();
  EXPECT_EQ(env["ORDER"], "B A");
  EXPECT_EQ(env["B_OK"], "1");
  EXPECT_EQ(env["B_TRY"], "0");
  EXPECT_EQ(env["A_OK"], "1");
  EXPECT_EQ(env["A_TRY"], "0");
  EXPECT_EQ(env["CITADEL_TRIAL"], "B");
  EXPECT_EQ(env["CITADEL_TRIAL_TRIES"], "1");
  EXPECT_EQ(env["saved_entry"], "citadel-A");  // the rest of the block is kept
}

TEST_F(GrubBootControlTest, TrialBootCommitRoundTrip) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 1));
  EXPECT_EQ(BootloaderBoot(), kB);
  EXPECT_EQ(State(*control), (BootState{kB, kA, Trial{kB, 0}, std::nullopt}));
  ASSERT_TRUE(control->Commit());
  EnvVariables env = List();
  EXPECT_EQ(env["ORDER"], "B A");
  EXPECT_EQ(env["B_OK"], "1");
  EXPECT_EQ(env["B_TRY"], "0");
  EXPECT_EQ(env["A_OK"], "0");
  EXPECT_EQ(env["CITADEL_PRIMARY"], "B");
  EXPECT_EQ(State(*control), (BootState{kB, kB, std::nullopt, std::nullopt}));
  EXPECT_EQ(BootloaderBoot(), kB);
  ASSERT_TRUE(control->Commit());
  EXPECT_EQ(List()["B_TRY"], "0");
}

TEST_F(GrubBootControlTest, AFailedTrialIsVisibleAfterTheFallbackUntilAcknowledged) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 1));
  EXPECT_EQ(BootloaderBoot(), kB);
  EXPECT_EQ(BootloaderBoot(), kA);
  BootState state = State(*control);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(state.last_failure->slot, kB);
  // The healthy primary re-arms its try; the failure stays until reported.
  ASSERT_TRUE(control->Commit());
  EXPECT_EQ(List()["A_TRY"], "0");
  EXPECT_TRUE(State(*control).last_failure);
  ASSERT_TRUE(control->AcknowledgeFailure());
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_EQ(List()["ORDER"], "A B");
}

TEST_F(GrubBootControlTest, WritesReplaceTheBlockAtomically) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  struct stat before {};
  ASSERT_EQ(::stat(grubenv_.c_str(), &before), 0);
  ASSERT_TRUE(control->StartTrial(kB, 1));
  struct stat after {};
  ASSERT_EQ(::stat(grubenv_.c_str(), &after), 0);
  // A new file renamed over the block, never the block truncated in place.
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(after.st_size, 1024);
  EXPECT_EQ(after.st_mode & 0777, before.st_mode & 0777);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 2);  // grubenv, cmdline
}

TEST_F(GrubBootControlTest, AMissingOrBrokenBlockIsAClearError) {
  fs::path absent = dir_.path() / "absent-grubenv";
  auto missing = Open("grub:" + absent.string(), Options());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("grub-editenv " + absent.string() + " create"), std::string::npos);
  EXPECT_FALSE(fs::exists(absent));  // not created behind the caller's back

  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(WriteFileAtomic(grubenv_, std::string(1024, 'x')));
  auto state = control->ReadState();
  ASSERT_FALSE(state);
  EXPECT_NE(state.error().message().find("invalid environment block"), std::string::npos) << state.error().message();
  ASSERT_FALSE(control->StartTrial(kB, 1));
  EXPECT_EQ(*ReadFile(grubenv_), std::string(1024, 'x'));
}

TEST_F(GrubBootControlTest, AMissingToolSaysWhatToInstall) {
  citadel::testing::TempDir empty{"boot-no-tools"};
  OpenOptions options = Options();
  options.tool_directories = {empty.path()};
  auto control = Open("grub:" + grubenv_.string(), options);
  ASSERT_FALSE(control);
  EXPECT_EQ(control.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(control.error().message().find("install grub-common"), std::string::npos);
}

}  // namespace
}  // namespace citadel::boot
