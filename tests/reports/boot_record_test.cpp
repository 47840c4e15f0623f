#include "reports/boot_record.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::reports {
namespace {

using citadel::testing::Must;
using citadel::testing::TempDir;

// A state directory, a boot id file and fake sysfs trees (watchdog, pstore).
class BootRecordTest : public ::testing::Test {
 protected:
  void SetBootId(const std::string& id) { ASSERT_TRUE(WriteFileAtomic(boot_id_file(), id + "\n")); }
  std::filesystem::path boot_id_file() const { return dir_.path() / "boot_id"; }

  BootRecordOptions Options() const {
    return {.reports_dir = dir_.path() / "reports",
            .boot_id_file = boot_id_file(),
            .watchdog_root = dir_.path() / "watchdog",
            .pstore_root = dir_.path() / "pstore"};
  }
  std::optional<FailureEvent> Start() { return Must(BootRecord::Open(Options())).start_event(); }

  void SetWatchdogStatus(const std::string& value) {
    ASSERT_TRUE(EnsureDirectory(dir_.path() / "watchdog" / "watchdog0"));
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "watchdog" / "watchdog0" / "bootstatus", value + "\n"));
  }
  void AddPstoreRecord(const std::string& name, const std::string& header) {
    ASSERT_TRUE(EnsureDirectory(dir_.path() / "pstore"));
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "pstore" / name, header + "\n<0>[  1.0] Kernel panic - not syncing\n"));
  }

  TempDir dir_;
};

TEST_F(BootRecordTest, FirstStartReportsNothing) {
  SetBootId("boot-1");
  EXPECT_FALSE(Start());
  EXPECT_TRUE(std::filesystem::exists(dir_.path() / "reports" / "boot.json"));
}

TEST_F(BootRecordTest, CleanStopThenRestartReportsNothing) {
  SetBootId("boot-1");
  auto record = Must(BootRecord::Open(Options()));
  ASSERT_TRUE(record.MarkClean("sigterm"));
  EXPECT_FALSE(Start()) << "same boot, clean";
  ASSERT_TRUE(Must(BootRecord::Open(Options())).MarkClean("update-reboot"));
  SetBootId("boot-2");
  EXPECT_FALSE(Start()) << "requested reboot";
}

TEST_F(BootRecordTest, SameBootWithoutCleanStopIsARuntimeRestart) {
  SetBootId("boot-1");
  (void)Must(BootRecord::Open(Options()));  // killed without MarkClean
  auto event = Start();
  ASSERT_TRUE(event);
  EXPECT_EQ(event->failure_class, "runtime-error");
  EXPECT_EQ(event->error_code, "runtime-restart");
  EXPECT_EQ(event->component_id, "");
  // Reported once: this start recorded itself, so the next start after a
  // clean stop is quiet again.
  ASSERT_TRUE(Must(BootRecord::Open(Options())).MarkClean("sigterm"));
  EXPECT_FALSE(Start());
}

TEST_F(BootRecordTest, OtherBootWithoutCleanStopIsAPowerLoss) {
  SetBootId("boot-1");
  (void)Must(BootRecord::Open(Options()));
  SetBootId("boot-2");
  auto event = Start();
  ASSERT_TRUE(event);
  EXPECT_EQ(event->failure_class, "unplanned-reboot");
  EXPECT_EQ(event->error_code, "power-loss");
}

TEST_F(BootRecordTest, WatchdogBootstatusNamesTheWatchdog) {
  SetBootId("boot-1");
  (void)Must(BootRecord::Open(Options()));
  SetWatchdogStatus("32");  // WDIOF_CARDRESET
  SetBootId("boot-2");
  auto event = Start();
  ASSERT_TRUE(event);
  EXPECT_EQ(event->error_code, "watchdog");
}

TEST_F(BootRecordTest, WatchdogWithoutTheResetFlagIsNotBlamed) {
  SetWatchdogStatus("0");
  EXPECT_FALSE(WatchdogCausedReset(dir_.path() / "watchdog"));
  SetWatchdogStatus("garbage");
  EXPECT_FALSE(WatchdogCausedReset(dir_.path() / "watchdog"));
  SetWatchdogStatus("33");
  EXPECT_TRUE(WatchdogCausedReset(dir_.path() / "watchdog"));
}

TEST_F(BootRecordTest, NewPstorePanicRecordIsAKernelPanicAnOldOneIsNot) {
  SetBootId("boot-1");
  (void)Must(BootRecord::Open(Options()));
  AddPstoreRecord("dmesg-ramoops-0", "Panic#1 Part1");
  AddPstoreRecord("dmesg-ramoops-1", "Oops#1 Part1");  // not a panic
  SetBootId("boot-2");
  auto event = Start();
  ASSERT_TRUE(event);
  EXPECT_EQ(event->error_code, "kernel-panic");
  // The same record still there after a later power loss explains nothing.
  SetBootId("boot-3");
  event = Start();
  ASSERT_TRUE(event);
  EXPECT_EQ(event->error_code, "power-loss");
}

TEST_F(BootRecordTest, MissingBootIdFileIsAnError) {
  auto record = BootRecord::Open(Options());
  ASSERT_FALSE(record);
}

TEST_F(BootRecordTest, MalformedRecordCountsAsFirstStart) {
  SetBootId("boot-1");
  ASSERT_TRUE(EnsureDirectory(dir_.path() / "reports"));
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "reports" / "boot.json", "{\"boot_id\":"));
  EXPECT_FALSE(Start());
}

}  // namespace
}  // namespace citadel::reports
