#include "reports/report_queue.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "common/file.hpp"
#include "reports/testing_report.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::reports {
namespace {

using citadel::testing::Must;
using citadel::testing::TempDir;
using testing::MakeReport;
using testing::NumberOf;

std::vector<std::uint64_t> Numbers(const protocol::ReportBatch& batch) {
  std::vector<std::uint64_t> numbers;
  numbers.reserve(batch.reports.size());
  for (const auto& report : batch.reports) numbers.push_back(NumberOf(report));
  return numbers;
}

std::vector<std::string> Ids(const protocol::ReportBatch& batch) {
  std::vector<std::string> ids;
  ids.reserve(batch.reports.size());
  for (const auto& report : batch.reports) ids.push_back(report.report_id);
  return ids;
}

std::size_t CountFiles(const std::filesystem::path& dir) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) count += entry.is_regular_file() ? 1u : 0u;
  return count;
}

TEST(ReportQueueTest, AppendPeekAcknowledgeOldestFirst) {
  TempDir dir;
  auto queue = Must(ReportQueue::Open(dir.path() / "reports"));
  for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(queue->Append(MakeReport(i)));
  EXPECT_EQ(queue->Size(), 5u);

  auto batch = queue->Peek(3, 1u << 20);
  EXPECT_EQ(Numbers(batch), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(batch.dropped, 0);
  EXPECT_EQ(queue->Size(), 5u) << "Peek removes nothing";

  // Only what was acknowledged goes; an unknown id is ignored.
  auto ids = Ids(batch);
  ids.erase(ids.begin() + 1);
  ids.push_back(std::string(32, 'f'));
  EXPECT_EQ(Must(queue->Acknowledge(ids)), 2u);
  EXPECT_EQ(Numbers(queue->Peek(10, 1u << 20)), (std::vector<std::uint64_t>{2, 4, 5}));
}

TEST(ReportQueueTest, PeekStopsAtTheByteBudgetButReturnsTheFirstThatFits) {
  TempDir dir;
  auto queue = Must(ReportQueue::Open(dir.path()));
  for (std::uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(queue->Append(MakeReport(i, 500)));
  const std::size_t one = queue->Bytes() / 4;
  EXPECT_EQ(queue->Peek(32, 2 * one + 2).reports.size(), 2u);
  EXPECT_EQ(queue->Peek(32, one + 1).reports.size(), 1u);
  EXPECT_TRUE(queue->Peek(32, one - 1).reports.empty());
}

TEST(ReportQueueTest, FullQueueDropsTheOldestAndCountsThemAcrossReopen) {
  TempDir dir;
  {
    auto queue = Must(ReportQueue::Open(dir.path(), {.max_reports = 3, .max_bytes = 1u << 20}));
    for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(queue->Append(MakeReport(i)));
    EXPECT_EQ(queue->Size(), 3u);
    EXPECT_EQ(queue->Dropped(), 2);
    auto batch = queue->Peek(32, 1u << 20);
    EXPECT_EQ(Numbers(batch), (std::vector<std::uint64_t>{3, 4, 5}));
    EXPECT_EQ(batch.dropped, 2);
  }
  auto queue = Must(ReportQueue::Open(dir.path(), {.max_reports = 3, .max_bytes = 1u << 20}));
  EXPECT_EQ(queue->Dropped(), 2);
  // One more drop after the batch was made stays counted after its ack.
  ASSERT_TRUE(queue->Append(MakeReport(6)));
  ASSERT_TRUE(queue->ClearDropped(2));
  EXPECT_EQ(queue->Dropped(), 1);
  auto reopened = Must(ReportQueue::Open(dir.path(), {.max_reports = 3, .max_bytes = 1u << 20}));
  queue.reset();
  EXPECT_EQ(reopened->Dropped(), 1);
}

TEST(ReportQueueTest, ByteBoundDropsOldestAndRefusesAReportLargerThanTheQueue) {
  TempDir dir;
  auto queue = Must(ReportQueue::Open(dir.path(), {.max_reports = 100, .max_bytes = 2000}));
  for (std::uint64_t i = 1; i <= 6; ++i) ASSERT_TRUE(queue->Append(MakeReport(i, 500)));
  EXPECT_LE(queue->Bytes(), 2000u);
  EXPECT_GT(queue->Dropped(), 0);
  EXPECT_EQ(Numbers(queue->Peek(32, 1u << 20)).back(), 6u);
  TempDir small_dir;
  auto small = Must(ReportQueue::Open(small_dir.path(), {.max_reports = 100, .max_bytes = 500}));
  auto too_big = small->Append(MakeReport(7, 400));
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code(), ErrorCode::kTooLarge);
}

TEST(ReportQueueTest, RefusesAReportTheParserWouldRefuse) {
  TempDir dir;
  auto queue = Must(ReportQueue::Open(dir.path()));
  auto report = MakeReport(1);
  report.failure_class = "made-up";
  auto appended = queue->Append(report);
  ASSERT_FALSE(appended);
  EXPECT_EQ(appended.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(queue->Size(), 0u);
}

TEST(ReportQueueTest, ReopenKeepsOrderAndContinuesTheSequence) {
  TempDir dir;
  {
    auto queue = Must(ReportQueue::Open(dir.path()));
    for (std::uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(queue->Append(MakeReport(i)));
  }
  auto queue = Must(ReportQueue::Open(dir.path()));
  ASSERT_TRUE(queue->Append(MakeReport(4)));
  EXPECT_EQ(Numbers(queue->Peek(32, 1u << 20)), (std::vector<std::uint64_t>{1, 2, 3, 4}));
}

TEST(ReportQueueTest, OpenRemovesTemporaryFilesAndMovesCorruptReportsAside) {
  TempDir dir;
  {
    auto queue = Must(ReportQueue::Open(dir.path()));
    for (std::uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(queue->Append(MakeReport(i)));
  }
  // What a crash inside WriteFileAtomic leaves, and what a lying disk does.
  ASSERT_TRUE(WriteFileAtomic(dir.path() / ".0000000000000004.json.tmp.0123456789abcdef", "{\"repo"));
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "0000000000000002.json", "{\"report_id\":"));
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "0000000000000005.json", ""));
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "boot.json", "{}"));  // not the queue's

  auto queue = Must(ReportQueue::Open(dir.path()));
  EXPECT_EQ(Numbers(queue->Peek(32, 1u << 20)), (std::vector<std::uint64_t>{1, 3}));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / ".0000000000000004.json.tmp.0123456789abcdef"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "corrupt" / "0000000000000002.json"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "corrupt" / "0000000000000005.json"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "boot.json"));
  // A new report never reuses the number of a corrupt one.
  ASSERT_TRUE(queue->Append(MakeReport(6)));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "0000000000000006.json"));
}

TEST(ReportQueueTest, CorruptDirectoryIsBounded) {
  TempDir dir;
  for (std::size_t round = 0; round < kMaxCorruptFiles + 4; ++round) {
    char name[32];
    (void)std::snprintf(name, sizeof name, "%016zu.json", round + 1);
    ASSERT_TRUE(WriteFileAtomic(dir.path() / name, "not json"));
    auto queue = Must(ReportQueue::Open(dir.path()));
    EXPECT_EQ(queue->Size(), 0u);
  }
  EXPECT_EQ(CountFiles(dir.path() / "corrupt"), kMaxCorruptFiles);
}

TEST(ReportQueueTest, LoweredLimitsDropAtOpen) {
  TempDir dir;
  {
    auto queue = Must(ReportQueue::Open(dir.path()));
    for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(queue->Append(MakeReport(i)));
  }
  auto queue = Must(ReportQueue::Open(dir.path(), {.max_reports = 2, .max_bytes = 1u << 20}));
  EXPECT_EQ(Numbers(queue->Peek(32, 1u << 20)), (std::vector<std::uint64_t>{4, 5}));
  EXPECT_EQ(queue->Dropped(), 3);
}

}  // namespace
}  // namespace citadel::reports
