// What the backend tests share: a temporary directory, a kernel command
// line file naming the booted slot, and opening a backend with them.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "boot/boot_control.hpp"
#include "boot/program.hpp"
#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::boot::testing {

class BackendFixture : public ::testing::Test {
 protected:
  explicit BackendFixture(std::string_view label) : dir_(label) {}

  // The kernel command line as the boot scripts leave it.
  void SetBooted(Slot slot) {
    ASSERT_TRUE(WriteFileAtomic(
        cmdline_, "console=ttyS0 root=/dev/mmcblk0p2 rauc.slot=" + std::string(SlotName(slot)) + " quiet\n"));
  }
  OpenOptions Options() const {
    OpenOptions options;
    options.kernel_cmdline = cmdline_;
    return options;
  }
  std::unique_ptr<BootControl> OpenControl(const std::string& spec) {
    auto control = Open(spec, Options());
    EXPECT_TRUE(control) << control.error().message();
    return control ? std::move(*control) : nullptr;
  }
  BootState State(BootControl& control) {
    auto state = control.ReadState();
    EXPECT_TRUE(state) << state.error().message();
    return state ? *state : BootState{};
  }
  // Runs a real tool; its exit code must be 0. Returns stdout.
  std::string Run(const std::filesystem::path& tool, const std::vector<std::string>& args) {
    auto result = RunTool(tool, args, directories_, std::chrono::seconds(20));
    EXPECT_TRUE(result) << result.error().message();
    if (!result) return "";
    EXPECT_EQ(result->exit_code, 0) << DescribeFailure(tool, args, *result);
    return result->out;
  }
  std::filesystem::path Tool(std::string_view name, std::string_view package) {
    auto tool = FindTool(name, package, directories_);
    EXPECT_TRUE(tool) << tool.error().message();
    return tool ? *tool : std::filesystem::path(name);
  }

  std::vector<std::filesystem::path> directories_ = OpenOptions{}.tool_directories;
  citadel::testing::TempDir dir_;
  std::filesystem::path cmdline_ = dir_.path() / "cmdline";
};

}  // namespace citadel::boot::testing
