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
}

}  // namespace
}  // namespace citadel
