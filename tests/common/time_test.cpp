#include "common/time.hpp"

#include <gtest/gtest.h>

namespace citadel {
namespace {

TEST(Time, Rfc3339RoundTrips) {
  auto t = FromUnixSeconds(1'795'000'000);
  EXPECT_EQ(FormatRfc3339(t), "2026-11-18T11:06:40Z");
  EXPECT_EQ(*ParseRfc3339("2026-11-18T11:06:40Z"), t);
  EXPECT_EQ(ToUnixSeconds(t), 1'795'000'000);
}

TEST(Time, RefusesOtherForms) {
  EXPECT_FALSE(ParseRfc3339("2026-11-18 11:06:40"));
  EXPECT_FALSE(ParseRfc3339("2026-11-18T11:06:40Zjunk"));
  EXPECT_FALSE(ParseRfc3339(""));
  EXPECT_FALSE(ParseRfc3339("2026-1-18T11:06:40Z"));
  EXPECT_FALSE(ParseRfc3339("2026-11-18T11:06:+4Z"));
}

TEST(Time, RefusesDatesThatDoNotExist) {
  EXPECT_FALSE(ParseRfc3339("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(ParseRfc3339("2026-02-30T00:00:00Z"));
  EXPECT_FALSE(ParseRfc3339("2026-11-18T24:00:00Z"));
  EXPECT_FALSE(ParseRfc3339("2026-11-18T11:60:00Z"));
  EXPECT_TRUE(ParseRfc3339("2028-02-29T23:59:59Z"));
}

// Found by report_batch_fuzz: a year beyond what TimePoint holds overflowed
// (undefined behaviour) instead of being refused.
TEST(Time, RefusesTimesATimePointCannotHold) {
  EXPECT_FALSE(ParseRfc3339("7172-11-22T10:00:00Z"));
  EXPECT_FALSE(ParseRfc3339("9999-12-31T23:59:59Z"));
  EXPECT_FALSE(ParseRfc3339("1000-01-01T00:00:00Z"));
  EXPECT_TRUE(ParseRfc3339("2200-01-01T00:00:00Z"));
  EXPECT_TRUE(ParseRfc3339("1970-01-01T00:00:00Z"));
}

}  // namespace
}  // namespace citadel
