#include "common/error.hpp"

#include <gtest/gtest.h>

namespace citadel {
namespace {

Expected<int> Half(int value) {
  if (value % 2 != 0) return MakeError(ErrorCode::kInvalidArgument, "odd value " + std::to_string(value));
  return value / 2;
}

Expected<int> Quarter(int value) {
  CITADEL_TRY(int half, Half(value));
  CITADEL_TRY(int quarter, Half(half));
  return quarter;
}

TEST(Error, WrapBuildsAContextPath) {
  Error error(ErrorCode::kParse, "pin 99 is not on this board");
  auto wrapped = error.Wrap("Gpio[3]").Wrap("loading manifest app.json");
  EXPECT_EQ(wrapped.message(), "loading manifest app.json: Gpio[3]: pin 99 is not on this board");
  EXPECT_EQ(wrapped.code(), ErrorCode::kParse);
  EXPECT_EQ(ErrorCodeName(wrapped.code()), "parse");
}

TEST(Error, TryPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto failed = Quarter(6);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message(), "odd value 3");
}

}  // namespace
}  // namespace citadel
