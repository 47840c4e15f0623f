// The U-Boot backend against a real environment: two redundant copies made
// by mkenvimage (u-boot-tools), read and written by libubootenv's
// fw_printenv/fw_setenv. The tests fail when the tools are missing.
#include "boot/uboot/uboot_boot_control.hpp"

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

class UbootBootControlTest : public testing::BackendFixture {
 protected:
  UbootBootControlTest() : BackendFixture("boot-uboot") {}

  void SetUp() override {
    fs::path mkenvimage = Tool("mkenvimage", "u-boot-tools");
    printenv_ = Tool("fw_printenv", "libubootenv-tool");
    setenv_ = Tool("fw_setenv", "libubootenv-tool");
    ASSERT_FALSE(HasFailure());
    fs::path initial = dir_.path() / "initial-env.txt";
    ASSERT_TRUE(WriteFileAtomic(initial, "bootdelay=3\nbootcmd=run citadel_boot\n"));
    std::string config;
    for (const char* copy : {"env-1.img", "env-2.img"}) {
      fs::path image = dir_.path() / copy;
      Run(mkenvimage, {"-r", "-s", "0x4000", "-o", image.string(), initial.string()});
      config += image.string() + " 0x0 0x4000\n";
    }
    ASSERT_TRUE(WriteFileAtomic(config_, config));
    SetBooted(kA);
  }

  EnvVariables Printenv() { return ParseEnvListing(Run(printenv_, {"-c", config_.string()})); }
  void Setenv(const std::string& name, const std::string& value) {
    Run(setenv_, {"-c", config_.string(), name, value});
  }
  // What uboot-boot.cmd does at power-on, applied to the real environment
  // with plain `fw_setenv NAME VALUE`.
  Slot BootloaderBoot() {
    auto stored = DecodeUbootState(Printenv());
    EXPECT_TRUE(stored);
    BootDecision decision = DecideBoot(stored->variables, kDefaultTries);
    std::string order;
    for (Slot slot : decision.after.order) order += (order.empty() ? "" : " ") + std::string(SlotName(slot));
    Setenv("BOOT_ORDER", order);
    Setenv("BOOT_A_LEFT", std::to_string(decision.after.tries_left[0]));
    Setenv("BOOT_B_LEFT", std::to_string(decision.after.tries_left[1]));
    SetBooted(decision.slot);
    return decision.slot;
  }
  std::unique_ptr<BootControl> OpenControl() { return BackendFixture::OpenControl("uboot:" + config_.string()); }

  fs::path config_ = dir_.path() / "fw_env.config";
  fs::path printenv_;
  fs::path setenv_;
};

TEST_F(UbootBootControlTest, AFreshEnvironmentRunsA) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  EXPECT_EQ(control->Backend(), "uboot");
  EXPECT_EQ(control->MaxTrialTries(), kMaxTrialTries);
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
  auto simulated = control->SimulateBoot();
  ASSERT_FALSE(simulated);
  EXPECT_EQ(simulated.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(UbootBootControlTest, TrialBootCommitRoundTrip) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 3));
  EnvVariables env = Printenv();
  EXPECT_EQ(env["BOOT_ORDER"], "B A");
  EXPECT_EQ(env["BOOT_A_LEFT"], "3");
  EXPECT_EQ(env["BOOT_B_LEFT"], "3");
  EXPECT_EQ(env["CITADEL_TRIAL"], "B");
  EXPECT_EQ(env["bootdelay"], "3");  // the rest of the environment is kept
  EXPECT_EQ(State(*control).trial, (Trial{kB, 3}));

  EXPECT_EQ(BootloaderBoot(), kB);
  EXPECT_EQ(State(*control), (BootState{kB, kA, Trial{kB, 2}, std::nullopt}));
  ASSERT_TRUE(control->Commit());
  env = Printenv();
  EXPECT_EQ(env["BOOT_ORDER"], "B A");
  EXPECT_EQ(env["BOOT_B_LEFT"], "3");
  EXPECT_EQ(env["BOOT_A_LEFT"], "0");
  EXPECT_EQ(env["CITADEL_PRIMARY"], "B");
  EXPECT_EQ(env.count("CITADEL_TRIAL"), 0U);
  EXPECT_EQ(env["bootcmd"], "run citadel_boot");
  EXPECT_EQ(State(*control), (BootState{kB, kB, std::nullopt, std::nullopt}));

  // The next boot spends a try of the primary; Commit re-arms it.
  EXPECT_EQ(BootloaderBoot(), kB);
  EXPECT_EQ(Printenv()["BOOT_B_LEFT"], "2");
  ASSERT_TRUE(control->Commit());
  EXPECT_EQ(Printenv()["BOOT_B_LEFT"], "3");
}

TEST_F(UbootBootControlTest, AFailedTrialIsVisibleAfterTheFallbackUntilAcknowledged) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 1));
  EXPECT_EQ(BootloaderBoot(), kB);  // crashes before it is healthy
  EXPECT_EQ(BootloaderBoot(), kA);
  BootState state = State(*control);
  EXPECT_EQ(state.booted, kA);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(state.last_failure->slot, kB);
  EXPECT_NE(state.last_failure->reason.find("1 boot attempt"), std::string::npos);
  ASSERT_TRUE(control->AcknowledgeFailure());
  EnvVariables env = Printenv();
  EXPECT_EQ(env["BOOT_ORDER"], "A B");
  EXPECT_EQ(env["BOOT_B_LEFT"], "0");
  EXPECT_EQ(env.count("CITADEL_TRIAL"), 0U);
  EXPECT_EQ(State(*control), (BootState{kA, kA, std::nullopt, std::nullopt}));
}

TEST_F(UbootBootControlTest, FailTrialRecordsTheReasonInTheEnvironment) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  ASSERT_TRUE(control->StartTrial(kB, 3));
  EXPECT_EQ(BootloaderBoot(), kB);
  ASSERT_TRUE(control->FailTrial("check-in refused: version=2 not allowed"));
  EXPECT_EQ(Printenv()["CITADEL_FAILED_REASON"], "check-in refused: version=2 not allowed");
  EXPECT_EQ(BootloaderBoot(), kA);
  BootState state = State(*control);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(*state.last_failure, (TrialFailure{kB, "check-in refused: version=2 not allowed"}));
}

TEST_F(UbootBootControlTest, MissingToolsSayWhatToInstall) {
  citadel::testing::TempDir empty{"boot-no-tools"};
  OpenOptions options = Options();
  options.tool_directories = {empty.path()};
  auto control = Open("uboot:" + config_.string(), options);
  ASSERT_FALSE(control);
  EXPECT_EQ(control.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(control.error().message().find("fw_printenv not found"), std::string::npos);
  EXPECT_NE(control.error().message().find("install libubootenv-tool"), std::string::npos);
}

TEST_F(UbootBootControlTest, AMissingConfigurationOrEnvironmentIsAClearError) {
  auto missing_config = Open("uboot:" + (dir_.path() / "absent.config").string(), Options());
  ASSERT_FALSE(missing_config);
  EXPECT_EQ(missing_config.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing_config.error().message().find("fw_env.config"), std::string::npos);

  ASSERT_TRUE(WriteFileAtomic(config_, (dir_.path() / "absent.img").string() + " 0x0 0x4000\n"));
  auto control = OpenControl();
  ASSERT_TRUE(control);
  auto state = control->ReadState();
  ASSERT_FALSE(state);
  EXPECT_EQ(state.error().code(), ErrorCode::kIo);
  EXPECT_NE(state.error().message().find("reading the U-Boot environment: fw_printenv -c"), std::string::npos)
      << state.error().message();
}

TEST_F(UbootBootControlTest, MalformedVariablesAndAMissingBootedSlotAreErrors) {
  auto control = OpenControl();
  ASSERT_TRUE(control);
  Setenv("BOOT_A_LEFT", "lots");
  auto state = control->ReadState();
  ASSERT_FALSE(state);
  EXPECT_EQ(state.error().code(), ErrorCode::kParse);
  EXPECT_NE(state.error().message().find("BOOT_A_LEFT"), std::string::npos);
  ASSERT_FALSE(control->StartTrial(kB, 3));
  EXPECT_EQ(Printenv()["BOOT_A_LEFT"], "lots");  // nothing was written

  Setenv("BOOT_A_LEFT", "3");
  ASSERT_TRUE(WriteFileAtomic(cmdline_, "console=ttyS0 root=/dev/sda2\n"));
  state = control->ReadState();
  ASSERT_FALSE(state);
  EXPECT_EQ(state.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(state.error().message().find("rauc.slot"), std::string::npos);
}

TEST_F(UbootBootControlTest, AToolThatHangsIsKilledInBoundedTime) {
  citadel::testing::TempDir fake{"boot-hanging-tools"};
  for (const char* name : {"fw_printenv", "fw_setenv"}) {
    fs::path tool = fake.path() / name;
    ASSERT_TRUE(WriteFileAtomic(tool, "#!/bin/sh\nexec /bin/sleep 30\n", 0755));
  }
  OpenOptions options = Options();
  options.tool_directories = {fake.path()};
  options.tool_timeout = std::chrono::milliseconds(300);
  auto control = Open("uboot:" + config_.string(), options);
  ASSERT_TRUE(control) << control.error().message();
  auto started = std::chrono::steady_clock::now();
  auto state = (*control)->ReadState();
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(state);
  EXPECT_EQ(state.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(state.error().message().find("did not finish within 300 ms"), std::string::npos);
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

}  // namespace
}  // namespace citadel::boot
