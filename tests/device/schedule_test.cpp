#include "device/schedule.hpp"

#include <gtest/gtest.h>

#include <set>

namespace citadel::device {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(BackoffTest, CeilingDoublesFromOneSecondAndStopsAtTheCap) {
  Backoff backoff(seconds(1), seconds(60));
  Random random(1);
  std::vector<milliseconds> ceilings;
  for (int i = 0; i < 10; ++i) {
    ceilings.push_back(backoff.Ceiling());
    backoff.Next(random);
  }
  std::vector<milliseconds> expected{seconds(1),  seconds(2),  seconds(4),  seconds(8),  seconds(16),
                                     seconds(32), seconds(60), seconds(60), seconds(60), seconds(60)};
  EXPECT_EQ(ceilings, expected);
}

TEST(BackoffTest, EveryDelayIsWithinFloorAndCeiling) {
  Backoff backoff(seconds(1), seconds(60));
  Random random(42);
  for (int i = 0; i < 2000; ++i) {
    auto ceiling = backoff.Ceiling();
    auto delay = backoff.Next(random);
    ASSERT_GE(delay, kMinimumRetryDelay) << "attempt " << i;
    ASSERT_LE(delay, ceiling) << "attempt " << i;
    ASSERT_LE(delay, seconds(60)) << "attempt " << i;
  }
}

TEST(BackoffTest, FullJitterSpreadsOverTheWholeRange) {
  // At the cap, draws must cover both the low and the high end of
  // [100 ms, 60 s]: a fleet that failed together must not retry together.
  Random random(7);
  int low = 0, high = 0;
  std::set<milliseconds::rep> distinct;
  double sum = 0;
  constexpr int kDraws = 4000;
  for (int i = 0; i < kDraws; ++i) {
    Backoff backoff(seconds(1), seconds(60));
    for (int step = 0; step < 8; ++step) backoff.Next(random);  // reach the cap
    auto delay = backoff.Next(random);
    if (delay < seconds(15)) ++low;
    if (delay > seconds(45)) ++high;
    distinct.insert(delay.count());
    sum += static_cast<double>(delay.count());
  }
  EXPECT_GT(low, kDraws / 8);
  EXPECT_GT(high, kDraws / 8);
  EXPECT_GT(distinct.size(), static_cast<std::size_t>(kDraws / 2));
  double mean = sum / kDraws;
  EXPECT_NEAR(mean, 30'050.0, 2'000.0);  // uniform on [100, 60000] ms
}

TEST(BackoffTest, ResetStartsOverAtTheInitialDelay) {
  Backoff backoff(seconds(1), seconds(60));
  Random random(3);
  for (int i = 0; i < 5; ++i) backoff.Next(random);
  EXPECT_EQ(backoff.Ceiling(), seconds(32));
  backoff.Reset();
  EXPECT_EQ(backoff.Ceiling(), seconds(1));
  EXPECT_LE(backoff.Next(random), seconds(1));
}

TEST(BackoffTest, CapBelowInitialIsHonoured) {
  Backoff backoff(seconds(1), milliseconds(300));
  EXPECT_EQ(backoff.Ceiling(), milliseconds(300));
  Random random(5);
  for (int i = 0; i < 100; ++i) {
    auto delay = backoff.Next(random);
    ASSERT_GE(delay, kMinimumRetryDelay);
    ASSERT_LE(delay, milliseconds(300));
  }
}

TEST(BackoffTest, ManyFailuresDoNotOverflow) {
  Backoff backoff(seconds(1), seconds(60));
  Random random(9);
  for (int i = 0; i < 100'000; ++i) backoff.Next(random);
  EXPECT_EQ(backoff.Ceiling(), seconds(60));
  auto delay = backoff.Next(random);
  EXPECT_GE(delay, kMinimumRetryDelay);
  EXPECT_LE(delay, seconds(60));
}

TEST(RenewalTest, WithoutJitterRenewsAtTwoThirds) {
  TimePoint not_before = FromUnixSeconds(1'700'000'000);
  TimePoint not_after = not_before + hours(24);
  EXPECT_EQ(RenewalTime(not_before, not_after, 1.0), not_before + hours(16));
}

TEST(RenewalTest, JitterStaysWithinTenPercentOfTheTwoThirdsPoint) {
  TimePoint not_before = FromUnixSeconds(1'700'000'000);
  TimePoint not_after = not_before + hours(24);
  // 16 h +- 10% = [14.4 h, 17.6 h].
  auto earliest = not_before + std::chrono::minutes(864);
  auto latest = not_before + std::chrono::minutes(1056);
  EXPECT_EQ(RenewalTime(not_before, not_after, 0.9), earliest);
  EXPECT_EQ(RenewalTime(not_before, not_after, 1.1), latest);
  // Factors outside the range are clamped, never renewing after expiry.
  EXPECT_EQ(RenewalTime(not_before, not_after, 5.0), latest);
  EXPECT_EQ(RenewalTime(not_before, not_after, -1.0), earliest);

  Random random(11);
  bool below_point = false, above_point = false;
  for (int i = 0; i < 1000; ++i) {
    auto renewal = RenewalTime(not_before, not_after, random);
    ASSERT_GE(renewal, earliest);
    ASSERT_LE(renewal, latest);
    below_point |= renewal < not_before + hours(16) - std::chrono::minutes(30);
    above_point |= renewal > not_before + hours(16) + std::chrono::minutes(30);
  }
  EXPECT_TRUE(below_point);
  EXPECT_TRUE(above_point);
}

TEST(RenewalTest, MoreThanAThirdLeft) {
  TimePoint not_before = FromUnixSeconds(1'700'000'000);
  TimePoint not_after = not_before + hours(24);
  EXPECT_TRUE(HasMoreThanAThirdLeft(not_before, not_after, not_before + hours(1)));
  EXPECT_TRUE(HasMoreThanAThirdLeft(not_before, not_after, not_before + hours(16) - seconds(1)));
  EXPECT_FALSE(HasMoreThanAThirdLeft(not_before, not_after, not_before + hours(16)));
  EXPECT_FALSE(HasMoreThanAThirdLeft(not_before, not_after, not_after + hours(1)));
  EXPECT_FALSE(HasMoreThanAThirdLeft(not_before, not_after, not_before - hours(1)));  // not yet valid
  EXPECT_FALSE(HasMoreThanAThirdLeft(not_after, not_before, not_before));             // nonsense
}

TEST(JitteredTest, StaysWithinTheFractionAndAboveTheFloor) {
  Random random(13);
  for (int i = 0; i < 1000; ++i) {
    auto delay = Jittered(seconds(60), 0.1, random);
    ASSERT_GE(delay, seconds(54));
    ASSERT_LE(delay, seconds(66));
  }
  EXPECT_EQ(Jittered(milliseconds(0), 0.1, random), seconds(1));
}

TEST(RetryAfterDelayTest, HonoursTheServiceWithUpToHalfMoreAndNeverSpins) {
  Random random(17);
  bool above = false;
  for (int i = 0; i < 1000; ++i) {
    auto delay = RetryAfterDelay(seconds(10), random);
    ASSERT_GE(delay, seconds(10));
    ASSERT_LE(delay, seconds(15));
    above = above || delay > seconds(12);
  }
  EXPECT_TRUE(above) << "no jitter";
  EXPECT_EQ(RetryAfterDelay(seconds(0), random), kMinimumRetryDelay);
}

TEST(ParseDurationTest, AcceptsUnits) {
  EXPECT_EQ(*ParseDuration("60s"), seconds(60));
  EXPECT_EQ(*ParseDuration("60"), seconds(60));
  EXPECT_EQ(*ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("5m"), std::chrono::minutes(5));
  EXPECT_EQ(*ParseDuration("2h"), hours(2));
}

TEST(ParseDurationTest, RefusesNonsense) {
  for (const char* text : {"", "s", "-1s", "10x", "1.5s", "9999999999999999999h", " 1s"}) {
    EXPECT_FALSE(ParseDuration(text)) << text;
  }
}

}  // namespace
}  // namespace citadel::device
