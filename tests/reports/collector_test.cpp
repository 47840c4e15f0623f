#include "reports/collector.hpp"

#include <gtest/gtest.h>

#include <set>

#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::reports {
namespace {

using citadel::testing::Must;
using citadel::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// A clock the test moves by hand.
struct FakeClock {
  TimePoint now = FromUnixSeconds(1'795'000'000);
  std::function<TimePoint()> Function() {
    return [this] { return now; };
  }
};

FailureEvent CrashEvent(TimePoint time, std::string component = "crashy") {
  FailureEvent event;
  event.failure_class = "app-crash";
  event.time = time;
  event.component_id = std::move(component);
  event.component_version = "1.0.0";
  event.error_code = "SIGSEGV";
  event.message = "crashy was killed by SIGSEGV";
  return event;
}

std::vector<protocol::FailureReport> All(ReportQueue& queue) { return queue.Peek(100000, 1u << 30).reports; }

std::int64_t SumOfOccurrences(const std::vector<protocol::FailureReport>& reports) {
  std::int64_t sum = 0;
  for (const auto& report : reports) sum += report.occurrences;
  return sum;
}

class CollectorTest : public ::testing::Test {
 protected:
  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<ReportQueue> queue_ = Must(ReportQueue::Open(dir_.path() / "reports"));
  ReportCollector collector_{*queue_, {.os_version = "2.0.0", .runtime_version = "0.1.0", .now = clock_.Function()}};
};

// Acceptance 4: an app crashing 1,000 times (one crash every 0.1 s).
TEST_F(CollectorTest, CrashLoopOfAThousandYieldsFewReportsWithTheTrueTotal) {
  for (int i = 0; i < 1000; ++i) {
    collector_.Record(CrashEvent(clock_.now));
    clock_.now += milliseconds(100);
  }
  collector_.Flush();
  auto reports = All(*queue_);
  EXPECT_LE(reports.size(), 10u);
  EXPECT_EQ(SumOfOccurrences(reports), 1000);
  EXPECT_EQ(collector_.PendingOccurrences(), 0);
  // The folded report spans the events it covers.
  const auto& last = reports.back();
  EXPECT_GT(last.occurrences, 1);
  EXPECT_LT(last.occurred_at, last.last_occurred_at);
}

TEST_F(CollectorTest, BurstOfFiveThenFoldedUntilATokenRefills) {
  for (int i = 0; i < 8; ++i) collector_.Record(CrashEvent(clock_.now));
  EXPECT_EQ(queue_->Size(), 5u);
  EXPECT_EQ(collector_.PendingOccurrences(), 3);
  clock_.now += minutes(9);
  collector_.FlushDue(clock_.now);
  EXPECT_EQ(queue_->Size(), 5u) << "no token yet";
  clock_.now += minutes(1);
  collector_.FlushDue(clock_.now);
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 6u);
  EXPECT_EQ(reports.back().occurrences, 3);
  EXPECT_EQ(collector_.PendingOccurrences(), 0);
}

TEST_F(CollectorTest, NextReportOfTheKeyCarriesTheFoldedCount) {
  for (int i = 0; i < 7; ++i) collector_.Record(CrashEvent(clock_.now));
  const auto first_folded = clock_.now;
  clock_.now += minutes(10);
  // Recording takes the refilled token: this report carries 1 + 2.
  collector_.Record(CrashEvent(clock_.now));
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 6u);
  EXPECT_EQ(reports.back().occurrences, 3);
  EXPECT_EQ(reports.back().occurred_at, FormatRfc3339(first_folded));
  EXPECT_EQ(reports.back().last_occurred_at, FormatRfc3339(clock_.now));
}

TEST_F(CollectorTest, KeysAreLimitedSeparately) {
  for (int i = 0; i < 10; ++i) collector_.Record(CrashEvent(clock_.now, "a"));
  for (int i = 0; i < 10; ++i) collector_.Record(CrashEvent(clock_.now, "b"));
  auto other_code = CrashEvent(clock_.now, "a");
  other_code.error_code = "SIGABRT";
  collector_.Record(other_code);
  EXPECT_EQ(queue_->Size(), 11u);
}

// A new release's crash is reported at once, and the previous version's
// folded crashes are never counted under it.
TEST_F(CollectorTest, EachVersionHasItsOwnBucketAndCounts) {
  for (int i = 0; i < 7; ++i) collector_.Record(CrashEvent(clock_.now));
  auto updated = CrashEvent(clock_.now);
  updated.component_version = "2.0.0";
  collector_.Record(updated);
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 6u);
  EXPECT_EQ(reports.back().component_version, "2.0.0");
  EXPECT_EQ(reports.back().occurrences, 1);
  collector_.Flush();
  reports = All(*queue_);
  ASSERT_EQ(reports.size(), 7u);
  EXPECT_EQ(reports.back().component_version, "1.0.0");
  EXPECT_EQ(reports.back().occurrences, 2);
}

// An app cycling through error codes still meets the per-app cap.
TEST_F(CollectorTest, OneAppCannotFloodThroughManyErrorCodes) {
  for (int code = 1; code <= 100; ++code) {
    FailureEvent exit_event = CrashEvent(clock_.now);
    exit_event.failure_class = "app-exit";
    exit_event.error_code = "exit-" + std::to_string(code);
    collector_.Record(exit_event);
  }
  EXPECT_EQ(queue_->Size(), 20u);
  EXPECT_EQ(collector_.PendingOccurrences(), 80);
  // Another app is not held back by it.
  collector_.Record(CrashEvent(clock_.now, "other"));
  EXPECT_EQ(queue_->Size(), 21u);
  collector_.Flush();
  EXPECT_EQ(SumOfOccurrences(All(*queue_)), 101);
}

TEST_F(CollectorTest, StackDumpIsDroppedUnlessEnabled) {
  auto event = CrashEvent(clock_.now);
  event.crash = protocol::CrashDetails{};
  event.crash->signal = 11;
  event.crash->frames.push_back({"crashy", "0123456789abcdef0123456789abcdef01234567", 0x1139});
  event.crash->dump = protocol::CrashDump{0x7ffc0000, Bytes(64, 0xab)};
  collector_.Record(event);
  collector_.SetCrashDumps(true);
  collector_.Record(event);
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 2u);
  ASSERT_TRUE(reports[0].crash);
  EXPECT_EQ(reports[0].crash->frames.size(), 1u);
  EXPECT_FALSE(reports[0].crash->dump);
  ASSERT_TRUE(reports[1].crash && reports[1].crash->dump);
  EXPECT_EQ(reports[1].crash->dump->stack.size(), 64u);
}

TEST_F(CollectorTest, MessageIsCutToTheLimitOnACharacterBoundary) {
  auto event = CrashEvent(clock_.now);
  // 2-byte characters: 1024 is reached in the middle of none of them only
  // if the cut respects boundaries; plus an invalid byte.
  event.message = "\xff" + std::string(600, 'a') + [] {
    std::string text;
    for (int i = 0; i < 400; ++i) text += "\xc3\xa9";  // é
    return text;
  }();
  collector_.Record(event);
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_LE(reports[0].message.size(), protocol::kMaxReportMessageBytes);
  EXPECT_GE(reports[0].message.size(), protocol::kMaxReportMessageBytes - 1);
  EXPECT_EQ(reports[0].message[0], '?');
  EXPECT_EQ(reports[0].os_version, "2.0.0");
  EXPECT_EQ(reports[0].runtime_version, "0.1.0");
}

TEST_F(CollectorTest, ReportIdsAreUniqueLowerHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    auto event = CrashEvent(clock_.now, "app-" + std::to_string(i));
    collector_.Record(event);
  }
  for (const auto& report : All(*queue_)) {
    EXPECT_EQ(report.report_id.size(), 32u);
    EXPECT_EQ(report.report_id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(report.report_id);
  }
  EXPECT_EQ(ids.size(), 200u);
}

TEST_F(CollectorTest, CrashDetailsOnAnotherClassAreNotSent) {
  auto event = CrashEvent(clock_.now);
  event.failure_class = "app-exit";
  event.error_code = "exit-3";
  event.crash = protocol::CrashDetails{};
  event.crash->signal = 11;
  collector_.Record(event);
  auto reports = All(*queue_);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_FALSE(reports[0].crash);
}

TEST(RateLimiterTest, RefillsOneTokenPerInterval) {
  RateLimiter limiter({.burst = 2, .refill_interval = seconds(60)});
  const TimePoint t0 = FromUnixSeconds(1'000'000);
  EXPECT_TRUE(limiter.TryTake("k", t0));
  EXPECT_TRUE(limiter.TryTake("k", t0));
  EXPECT_FALSE(limiter.TryTake("k", t0));
  EXPECT_FALSE(limiter.TryTake("k", t0 + seconds(59)));
  EXPECT_TRUE(limiter.TryTake("k", t0 + seconds(60)));
  EXPECT_FALSE(limiter.HasToken("k", t0 + seconds(61)));
  // Never more than the burst, however long the pause.
  EXPECT_TRUE(limiter.TryTake("k", t0 + std::chrono::hours(10)));
  EXPECT_TRUE(limiter.TryTake("k", t0 + std::chrono::hours(10)));
  EXPECT_FALSE(limiter.TryTake("k", t0 + std::chrono::hours(10)));
}

}  // namespace
}  // namespace citadel::reports
