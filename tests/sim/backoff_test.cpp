#include "sim/backoff.hpp"

#include <gtest/gtest.h>

#include <deque>

namespace citadel::sim {
namespace {

using std::chrono::seconds;

// Returns the given numbers in order (then the last one forever).
UniformSource Fixed(std::deque<double> values) {
  return [values]() mutable {
    double value = values.front();
    if (values.size() > 1) values.pop_front();
    return value;
  };
}

TEST(RetryableStatusTest, OnlyTemporaryStatusesAreRetried) {
  for (int status : {408, 429, 500, 502, 503, 504}) EXPECT_TRUE(IsRetryableStatus(status)) << status;
  for (int status : {200, 204, 400, 401, 403, 404, 409, 413}) EXPECT_FALSE(IsRetryableStatus(status)) << status;
}

TEST(RetryDelayTest, RetryAfterIsHonouredWithUpToHalfMoreJitter) {
  BackoffSettings settings;
  EXPECT_EQ(RetryDelay(settings, 0, 503, seconds(4), Fixed({0.0})), Milliseconds(4000));
  EXPECT_EQ(RetryDelay(settings, 0, 503, seconds(4), Fixed({0.5})), Milliseconds(5000));
  EXPECT_EQ(RetryDelay(settings, 3, 429, seconds(4), Fixed({0.999})), Milliseconds(5998));
  // Never sooner than asked, never later than 1.5 times.
  auto random = MakeUniformSource(42);
  for (int i = 0; i < 1000; ++i) {
    auto delay = RetryDelay(settings, i % 8, 503, seconds(10), random);
    EXPECT_GE(delay, Milliseconds(10'000));
    EXPECT_LE(delay, Milliseconds(15'000));
  }
}

TEST(RetryDelayTest, RetryAfterOnOtherStatusesIsIgnored) {
  BackoffSettings settings;
  settings.initial = Milliseconds(100);
  // A 500 with Retry-After backs off exponentially instead.
  EXPECT_EQ(RetryDelay(settings, 0, 500, seconds(60), Fixed({0.5})), Milliseconds(50));
}

TEST(RetryDelayTest, ExponentialBackoffWithFullJitterIsCapped) {
  BackoffSettings settings;
  settings.initial = Milliseconds(100);
  settings.max = Milliseconds(1000);
  const auto almost_one = Fixed({0.99999});
  EXPECT_EQ(RetryDelay(settings, 0, 0, std::nullopt, almost_one), Milliseconds(99));
  EXPECT_EQ(RetryDelay(settings, 1, 0, std::nullopt, almost_one), Milliseconds(199));
  EXPECT_EQ(RetryDelay(settings, 2, 0, std::nullopt, almost_one), Milliseconds(399));
  EXPECT_EQ(RetryDelay(settings, 3, 0, std::nullopt, almost_one), Milliseconds(799));
  EXPECT_EQ(RetryDelay(settings, 4, 0, std::nullopt, almost_one), Milliseconds(999));
  EXPECT_EQ(RetryDelay(settings, 60, 0, std::nullopt, almost_one), Milliseconds(999));  // no overflow
  // Full jitter: anywhere from 0.
  EXPECT_EQ(RetryDelay(settings, 3, 503, std::nullopt, Fixed({0.0})), Milliseconds(0));
}

TEST(RetryDelayTest, SeededSourcesRepeat) {
  auto a = MakeUniformSource(7);
  auto b = MakeUniformSource(7);
  for (int i = 0; i < 10; ++i) {
    double x = a();
    EXPECT_EQ(x, b());
    EXPECT_GE(x, 0.0);
    EXPECT_LT(x, 1.0);
  }
}

}  // namespace
}  // namespace citadel::sim
