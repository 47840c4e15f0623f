// The shipped bootloader scripts: GRUB's is syntax-checked by
// grub-script-check, U-Boot's is packed by mkimage as a maker would, and
// both must use the counter values of boot_decision.hpp.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "boot/boot_control.hpp"
#include "boot/boot_decision.hpp"
#include "boot/program.hpp"
#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;

const fs::path kScripts = fs::path(CITADEL_SOURCE_DIR) / "src" / "boot" / "scripts";
constexpr auto kToolTimeout = std::chrono::seconds(20);

TEST(BootScriptsTest, GrubScriptPassesGrubScriptCheck) {
  std::vector<fs::path> directories = OpenOptions{}.tool_directories;
  auto check = FindTool("grub-script-check", "grub-common", directories);
  ASSERT_TRUE(check) << check.error().message();
  std::vector<std::string> args = {(kScripts / "grub.cfg").string()};
  auto result = RunTool(*check, args, directories, kToolTimeout);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->exit_code, 0) << DescribeFailure(*check, args, *result);

  // The checker does catch errors (so the pass above means something).
  citadel::testing::TempDir dir{"boot-scripts"};
  fs::path broken = dir.path() / "broken.cfg";
  ASSERT_TRUE(WriteFileAtomic(broken, "if [ \"$A_OK\" = \"1\" ]; then\n  set x=1\n"));
  auto failed = RunTool(*check, {broken.string()}, directories, kToolTimeout);
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->exit_code, 0);
}

TEST(BootScriptsTest, UbootScriptPacksWithMkimage) {
  std::vector<fs::path> directories = OpenOptions{}.tool_directories;
  auto mkimage = FindTool("mkimage", "u-boot-tools", directories);
  ASSERT_TRUE(mkimage) << mkimage.error().message();
  citadel::testing::TempDir dir{"boot-scripts"};
  std::vector<std::string> args = {"-A",
                                   "arm64",
                                   "-T",
                                   "script",
                                   "-C",
                                   "none",
                                   "-d",
                                   (kScripts / "uboot-boot.cmd").string(),
                                   (dir.path() / "boot.scr").string()};
  auto result = RunTool(*mkimage, args, directories, kToolTimeout);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->exit_code, 0) << DescribeFailure(*mkimage, args, *result);
  EXPECT_TRUE(fs::is_regular_file(dir.path() / "boot.scr"));
}

TEST(BootScriptsTest, ScriptsUseTheDecisionsCounterValues) {
  auto uboot = ReadFile(kScripts / "uboot-boot.cmd");
  ASSERT_TRUE(uboot);
  std::string rearm = std::to_string(kDefaultTries);
  for (const std::string& line : std::vector<std::string>{"setenv BOOT_A_LEFT " + rearm, "setenv BOOT_B_LEFT " + rearm,
                                                          "rauc.slot=A", "rauc.slot=B", "saveenv"}) {
    EXPECT_NE(uboot->find(line), std::string::npos) << line;
  }
  auto grub = ReadFile(kScripts / "grub.cfg");
  ASSERT_TRUE(grub);
  for (std::string_view line :
       {"load_env ORDER A_OK A_TRY B_OK B_TRY", "save_env A_OK A_TRY B_OK B_TRY", "rauc.slot=A", "rauc.slot=B"}) {
    EXPECT_NE(grub->find(line), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace citadel::boot
