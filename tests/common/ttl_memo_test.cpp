#include "common/ttl_memo.hpp"

#include <gtest/gtest.h>

#include <string>

namespace citadel {
namespace {

using namespace std::chrono_literals;
using Memo = TtlMemo<std::string, int>;

TEST(TtlMemo, AnswersFromMemoryWithinTheAgeAndLoadsAgainAfter) {
  Memo memo(2s, 16);
  int loads = 0;
  auto load = [&]() -> Expected<int> { return ++loads; };
  const auto t0 = Memo::SteadyClock::now();
  auto never = [](const Error&) { return false; };
  EXPECT_EQ(*memo.Get("a", load, never, t0), 1);
  EXPECT_EQ(*memo.Get("a", load, never, t0 + 1900ms), 1);
  EXPECT_EQ(*memo.Get("b", load, never, t0 + 1900ms), 2);  // keys are apart
  EXPECT_EQ(*memo.Get("a", load, never, t0 + 2s), 3);      // aged out
  EXPECT_EQ(loads, 3);
}

TEST(TtlMemo, KeepsOnlyTheErrorsItIsToldTo) {
  Memo memo(1min, 16);
  int loads = 0;
  auto failing = [&]() -> Expected<int> {
    ++loads;
    return MakeError(loads == 1 ? ErrorCode::kFailedPrecondition : ErrorCode::kUnavailable, "no");
  };
  auto keep_precondition = [](const Error& e) { return e.code() == ErrorCode::kFailedPrecondition; };
  EXPECT_EQ(memo.Get("a", failing, keep_precondition).error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(memo.Get("a", failing, keep_precondition).error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(loads, 1);
  memo.Forget("a");
  EXPECT_EQ(memo.Get("a", failing, keep_precondition).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(memo.Get("a", failing, keep_precondition).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(loads, 3);  // an unavailable store is asked again each time
}

TEST(TtlMemo, PutAndForgetShowAtOnceAndTheSizeIsBounded) {
  Memo memo(1min, 3);
  auto load = []() -> Expected<int> { return 7; };
  EXPECT_EQ(*memo.Get("a", load), 7);
  memo.Put("a", 8);
  EXPECT_EQ(*memo.Get("a", load), 8);
  memo.ForgetIf([](const std::string& key) { return key == "a"; });
  EXPECT_EQ(*memo.Get("a", load), 7);
  memo.Put("b", 1);
  memo.Put("c", 1);
  EXPECT_EQ(memo.size(), 3u);
  memo.Put("d", 1);  // full: starts over
  EXPECT_EQ(memo.size(), 1u);
}

}  // namespace
}  // namespace citadel
