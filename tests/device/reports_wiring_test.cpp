// citadeld's failure-reporting wiring (device/commands.hpp): the boot
// record's start event reaches the queue through the collector, and a clean
// stop (FinishReports) flushes folded counts and keeps the next start quiet.
#include <gtest/gtest.h>

#include "common/file.hpp"
#include "device/commands.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

using citadel::testing::Must;

class ReportsWiringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_.state_dir = dir_.path() / "state";
    run_.os_version = "3.1.0";
    settings_.boot_id_file = dir_.path() / "boot_id";
    SetBootId("boot-1");
  }
  void SetBootId(const std::string& id) { ASSERT_TRUE(WriteFileAtomic(settings_.boot_id_file, id)); }
  std::vector<protocol::FailureReport> Queued(PreparedReports& reports) {
    return reports.queue->Peek(1000, 1u << 30).reports;
  }

  citadel::testing::TempDir dir_;
  RunSettings run_;
  ReportSettings settings_;
};

TEST_F(ReportsWiringTest, KilledRuntimeIsReportedAtTheNextStartAndACleanStopIsNot) {
  { auto first = Must(PrepareReports(settings_, run_)); }  // no FinishReports: killed
  {
    auto second = Must(PrepareReports(settings_, run_));
    auto queued = Queued(second);
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(queued[0].failure_class, "runtime-error");
    EXPECT_EQ(queued[0].error_code, "runtime-restart");
    EXPECT_EQ(queued[0].os_version, "3.1.0");
    ASSERT_TRUE(second.queue->Acknowledge({queued[0].report_id}));
    FinishReports(second, "stop");
  }
  auto third = Must(PrepareReports(settings_, run_));
  EXPECT_TRUE(Queued(third).empty());
}

TEST_F(ReportsWiringTest, RebootWithoutACleanStopIsAnUnplannedReboot) {
  { auto first = Must(PrepareReports(settings_, run_)); }
  SetBootId("boot-2");
  auto second = Must(PrepareReports(settings_, run_));
  auto queued = Queued(second);
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].failure_class, "unplanned-reboot");
  EXPECT_EQ(queued[0].error_code, "power-loss");
}

TEST_F(ReportsWiringTest, FinishReportsFlushesFoldedCounts) {
  auto reports = Must(PrepareReports(settings_, run_));
  reports::FailureEvent event;
  event.failure_class = "app-exit";
  event.component_id = "app";
  event.error_code = "exit-3";
  for (int i = 0; i < 12; ++i) reports.collector->Record(event);
  EXPECT_EQ(Queued(reports).size(), 5u);
  FinishReports(reports, "stop");
  auto queued = Queued(reports);
  ASSERT_EQ(queued.size(), 6u);
  EXPECT_EQ(queued.back().occurrences, 7);
}

TEST_F(ReportsWiringTest, MissingBootIdFileNamesTheFlag) {
  settings_.boot_id_file = dir_.path() / "missing";
  auto reports = PrepareReports(settings_, run_);
  ASSERT_FALSE(reports);
  EXPECT_NE(reports.error().message().find("--boot-id-file"), std::string::npos) << reports.error().message();
}

}  // namespace
}  // namespace citadel::device
