#include "sim/stats.hpp"

#include <gtest/gtest.h>

namespace citadel::sim {
namespace {

TEST(PercentileTest, NearestRank) {
  std::vector<double> samples;
  for (int i = 1; i <= 100; ++i) samples.push_back(i);
  EXPECT_EQ(Percentile(samples, 0.50), 50);
  EXPECT_EQ(Percentile(samples, 0.90), 90);
  EXPECT_EQ(Percentile(samples, 0.99), 99);
  EXPECT_EQ(Percentile(samples, 1.0), 100);
  EXPECT_EQ(Percentile(samples, 0.0), 1);
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({3.5}, 0.99), 3.5);
}

FleetSummary Sample() {
  FleetStats stats;
  for (int i = 1; i <= 10; ++i) stats.Record(OperationKind::kCheckIn, i * 10.0, true, i == 10 ? 3 : 0);
  stats.Record(OperationKind::kAttest, 5, true, 0);
  stats.Record(OperationKind::kAttest, 7, false, 8, "HTTP 503 after 8 retries");
  stats.Count(EventKind::kDroppedRequest, 4);
  return stats.Summarize(2, 2.0);
}

TEST(FleetStatsTest, SummarizesPerKind) {
  auto summary = Sample();
  ASSERT_EQ(summary.operations.size(), kOperationKinds.size());
  const auto& attest = summary.operations[0];
  EXPECT_EQ(attest.name, "attest");
  EXPECT_EQ(attest.count, 2u);
  EXPECT_EQ(attest.errors, 1u);
  EXPECT_EQ(attest.retries, 8u);
  const auto& check_in = summary.operations[2];
  EXPECT_EQ(check_in.name, "check-in");
  EXPECT_EQ(check_in.count, 10u);
  EXPECT_EQ(check_in.errors, 0u);
  EXPECT_EQ(check_in.retries, 3u);
  EXPECT_EQ(check_in.p50_ms, 50);
  EXPECT_EQ(check_in.p90_ms, 90);
  EXPECT_EQ(check_in.p99_ms, 100);
  EXPECT_EQ(check_in.max_ms, 100);
  EXPECT_DOUBLE_EQ(check_in.per_second, 5.0);
  EXPECT_EQ(summary.operations[3].count, 0u);  // update
  EXPECT_EQ(summary.TotalErrors(), 1u);
  ASSERT_EQ(summary.first_errors.size(), 1u);
  EXPECT_EQ(summary.first_errors[0], "attest: HTTP 503 after 8 retries");
}

TEST(FleetStatsTest, ActiveRateIsOverTheSpanTheKindRan) {
  FleetStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  // Check-ins from t0 + 10 s (the first one's start) to t0 + 14 s: 8 in 4 s.
  for (int i = 0; i < 8; ++i) {
    stats.Record(OperationKind::kCheckIn, 500, true, 0, {}, t0 + std::chrono::milliseconds(10'500 + 500 * i));
  }
  auto summary = stats.Summarize(1, 100);
  const auto& check_in = summary.operations[2];
  EXPECT_NEAR(check_in.active_seconds, 4.0, 1e-6);
  EXPECT_NEAR(check_in.active_per_second, 2.0, 1e-6);
  EXPECT_NEAR(check_in.per_second, 0.08, 1e-9);           // over the whole run
  EXPECT_EQ(summary.operations[0].active_per_second, 0);  // no attestations
  EXPECT_NEAR(SummaryToJson(summary)["operations"]["check-in"]["active_per_second"].get<double>(), 2.0, 1e-6);
}

TEST(FleetStatsTest, TableHasARowPerOperationAndTheEvents) {
  auto table = FormatTable(Sample());
  for (const char* row : {"attest", "claim", "check-in", "update", "report"}) {
    EXPECT_NE(table.find(std::string("\n") + row + " "), std::string::npos) << row << "\n" << table;
  }
  EXPECT_NE(table.find("p99 ms"), std::string::npos);
  EXPECT_NE(table.find("dropped_requests 4"), std::string::npos) << table;
  EXPECT_NE(table.find("error: attest: HTTP 503"), std::string::npos) << table;
}

TEST(FleetStatsTest, JsonCarriesTheSameFigures) {
  auto json = SummaryToJson(Sample());
  EXPECT_EQ(json["devices"], 2);
  EXPECT_EQ(json["errors"], 1);
  EXPECT_EQ(json["operations"]["attest"]["count"], 2);
  EXPECT_EQ(json["operations"]["attest"]["errors"], 1);
  EXPECT_EQ(json["operations"]["check-in"]["retries"], 3);
  EXPECT_EQ(json["operations"]["check-in"]["p90_ms"], 90.0);
  EXPECT_EQ(json["operations"]["check-in"]["per_second"], 5.0);
  EXPECT_EQ(json["operations"]["report"]["count"], 0);
  EXPECT_EQ(json["events"]["dropped_requests"], 4);
  EXPECT_EQ(json["events"]["killed_downloads"], 0);
  EXPECT_EQ(json["first_errors"].size(), 1u);
}

TEST(FleetStatsTest, KeepsOnlyTheFirstFewErrorMessages) {
  FleetStats stats;
  for (int i = 0; i < 50; ++i) stats.Record(OperationKind::kReport, 1, false, 0, "refused " + std::to_string(i));
  auto summary = stats.Summarize(1, 1);
  EXPECT_EQ(summary.TotalErrors(), 50u);
  EXPECT_EQ(summary.first_errors.size(), 5u);
  EXPECT_EQ(stats.Errors(), 50u);
  EXPECT_EQ(stats.Finished(OperationKind::kReport), 50u);
}

}  // namespace
}  // namespace citadel::sim
