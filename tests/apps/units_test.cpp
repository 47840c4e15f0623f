// Backoff arithmetic, the log ring's bounds, and state.json round trips.
#include <gtest/gtest.h>

#include "apps/app_state.hpp"
#include "apps/backoff.hpp"
#include "apps/log_ring.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(BackoffTest, DoublesFromOneSecondToSixtyAndResetsAfterHealthyUptime) {
  RestartBackoff backoff;  // defaults: 1 s doubling to 60 s, reset after 30 s
  std::vector<long> delays;
  delays.reserve(9);
  for (int i = 0; i < 9; ++i) delays.push_back(std::chrono::duration_cast<seconds>(backoff.OnExit(seconds(0))).count());
  EXPECT_EQ(delays, (std::vector<long>{1, 2, 4, 8, 16, 32, 60, 60, 60}));
  // Crashing after 29 s is still a crash loop; after 30 s it starts over.
  EXPECT_EQ(backoff.OnExit(seconds(29)), seconds(60));
  EXPECT_EQ(backoff.OnExit(seconds(30)), seconds(1));
  EXPECT_EQ(backoff.OnExit(seconds(0)), seconds(2));
  backoff.Reset();
  EXPECT_EQ(backoff.OnExit(seconds(0)), seconds(1));
}

TEST(LogRingTest, SplitsChunksIntoTimeStampedLines) {
  LogRing ring;
  auto t1 = Clock::now();
  ring.Append("hel", t1);
  ring.Append("lo\nwor", t1);
  EXPECT_EQ(ring.line_count(), 1u);
  ring.Append("ld\r\n\n", t1 + seconds(1));
  auto lines = ring.Tail(10);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].text, "hello");
  EXPECT_EQ(lines[0].time, t1);
  EXPECT_EQ(lines[1].text, "world");
  EXPECT_EQ(lines[1].time, t1 + seconds(1));
  EXPECT_EQ(lines[2].text, "");
  ring.Append("partial", t1);
  ring.Flush(t1);
  EXPECT_EQ(ring.Tail(1).at(0).text, "partial");
}

TEST(LogRingTest, KeepsTheLast256Lines) {
  LogRing ring;
  for (int i = 0; i < 1000; ++i) ring.AppendLine("line " + std::to_string(i), Clock::now());
  EXPECT_EQ(ring.line_count(), 256u);
  auto lines = ring.Tail(1000);
  EXPECT_EQ(lines.front().text, "line 744");
  EXPECT_EQ(lines.back().text, "line 999");
  auto last = ring.Tail(2);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].text, "line 998");
}

TEST(LogRingTest, KeepsAtMost64KiBAndCutsLinesWithoutNewlines) {
  LogRing ring;
  std::string flood(1 << 20, 'x');  // 1 MiB without a newline
  ring.Append(flood, Clock::now());
  EXPECT_LE(ring.byte_count(), 64u * 1024);
  for (const auto& line : ring.Tail(1000)) EXPECT_LE(line.text.size(), kMaxLineBytes);
  EXPECT_EQ(ring.byte_count(), 16u * kMaxLineBytes);  // 64 KiB of 4 KiB pieces
}

TEST(AppsStateTest, RoundTripsAndRefusesDamage) {
  citadel::testing::TempDir dir = testing::StateTempDir();
  auto path = dir.path() / "state.json";
  auto empty = LoadAppsState(path);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_TRUE(empty->apps.empty());

  AppsState state;
  InstalledApp app{"7f3c1a52-0b3e-4a8e-9d1c-2e5f4b6a7c8d",
                   "blink",
                   std::string(64, 'b'),
                   3,
                   std::string(64, 'c'),
                   true,
                   DesiredState::kRunning,
                   "2026-11-22T00:00:00Z",
                   "1.2.0",
                   4,
                   std::string(64, 'd')};
  state.apps[app.component_id] = app;
  InstalledApp previous = app;
  previous.version = "1.1.0";
  previous.image_sha256 = std::string(64, 'e');
  state.trials[app.component_id] =
      TrialRecord{app.image_sha256, "2026-11-23T00:00:00Z", 2, TrialPhase::kReverting, false, previous};
  ASSERT_TRUE(SaveAppsState(path, state));
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all, std::filesystem::perms(0600));
  auto loaded = LoadAppsState(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->apps.at(app.component_id), app);
  EXPECT_EQ(loaded->trials.at(app.component_id), state.trials.at(app.component_id));
  EXPECT_EQ(AppUid(3), 61003u);

  testing::WriteText(path, R"({"schema_version":1,"apps":{"x":{"name":"a"}}})");
  auto damaged = LoadAppsState(path);
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.error().message().find("apps[\"x\"]"), std::string::npos) << damaged.error().message();
  testing::WriteText(path, "not json");
  EXPECT_FALSE(LoadAppsState(path));
}

}  // namespace
}  // namespace citadel::apps
