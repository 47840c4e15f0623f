// http::ParseRetryAfter and RetryAfterWait: what a client makes of a
// Retry-After header. http::SelectByteRange: which part of a file a Range header asks for, case
// by case (RFC 9110 section 14). Serving the selected bytes
// (http::FileResponse) is tested through the repository's target routes in
// tests/server/repository_test.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "http/http.hpp"

namespace citadel::http {
namespace {

TEST(ByteRangeTest, SelectsOneRangeAndIgnoresWhatItCannotServe) {
  auto check = [](std::string_view header, std::uint64_t size, int status, std::uint64_t offset, std::uint64_t length) {
    auto range = SelectByteRange(header, size);
    EXPECT_EQ(range.status, status) << header;
    EXPECT_EQ(range.offset, offset) << header;
    EXPECT_EQ(range.length, length) << header;
  };
  check("", 100, 200, 0, 100);
  check("bytes=0-", 100, 206, 0, 100);
  check("bytes=10-", 100, 206, 10, 90);
  check("bytes=10-19", 100, 206, 10, 10);
  check("bytes=90-500", 100, 206, 90, 10);  // clamped
  check("bytes=-30", 100, 206, 70, 30);
  check("bytes=-300", 100, 206, 0, 100);
  check("Bytes=5-5", 100, 206, 5, 1);
  check("bytes=100-", 100, 416, 0, 0);
  check("bytes=0-", 0, 416, 0, 0);
  check("bytes=-0", 100, 416, 0, 0);
  check("bytes=20-10", 100, 200, 0, 100);    // invalid: ignored
  check("bytes=1-2,5-6", 100, 200, 0, 100);  // several ranges: whole file
  check("bytes=x-", 100, 200, 0, 100);
  check("items=1-2", 100, 200, 0, 100);
  check("bytes=99999999999999999999-", 100, 200, 0, 100);
}

TEST(RetryAfterTest, ReadsDelaySecondsCappedAtAnHour) {
  using std::chrono::seconds;
  EXPECT_EQ(ParseRetryAfter("5"), seconds(5));
  EXPECT_EQ(ParseRetryAfter(" 7 "), seconds(7));
  EXPECT_EQ(ParseRetryAfter("0"), seconds(0));
  EXPECT_EQ(ParseRetryAfter("3600"), seconds(3600));
  EXPECT_EQ(ParseRetryAfter("86400"), kMaxRetryAfter);
  EXPECT_EQ(ParseRetryAfter("99999999999999999999"), kMaxRetryAfter);
}

TEST(RetryAfterTest, WhatIsNotDelaySecondsIsAbsent) {
  EXPECT_FALSE(ParseRetryAfter(""));
  EXPECT_FALSE(ParseRetryAfter("-1"));
  EXPECT_FALSE(ParseRetryAfter("+1"));
  EXPECT_FALSE(ParseRetryAfter("1.5"));
  EXPECT_FALSE(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"));
}

TEST(RetryAfterTest, TheWaitIsBetweenSAndOneAndAHalfS) {
  using std::chrono::milliseconds;
  EXPECT_EQ(RetryAfterWait(std::chrono::seconds(4), 0.0), milliseconds(4000));
  EXPECT_EQ(RetryAfterWait(std::chrono::seconds(4), 0.5), milliseconds(5000));
  EXPECT_EQ(RetryAfterWait(std::chrono::seconds(4), 0.999), milliseconds(5998));
  EXPECT_EQ(RetryAfterWait(std::chrono::seconds(4), 7.0), milliseconds(6000));  // clamped draw
}

}  // namespace
}  // namespace citadel::http
