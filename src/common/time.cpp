#include "common/time.hpp"

#include <cstdio>
#include <ctime>

namespace citadel {

std::int64_t ToUnixSeconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

TimePoint FromUnixSeconds(std::int64_t seconds) { return TimePoint(std::chrono::seconds(seconds)); }

std::string FormatRfc3339(TimePoint t) {
  std::time_t seconds = Clock::to_time_t(t);
  std::tm tm{};
  if (gmtime_r(&seconds, &tm) == nullptr) return "";
  char buffer[32];
  if (std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "";
  return buffer;
}

Expected<TimePoint> ParseRfc3339(std::string_view text) {
  // Exactly "YYYY-MM-DDTHH:MM:SSZ": one spelling per instant, and a date
  // that does not exist (month 13, February 30) is refused rather than
  // normalised into another one.
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:ddZ";
  auto refuse = [&] { return MakeError(ErrorCode::kParse, "not an RFC 3339 UTC time: " + std::string(text)); };
  if (text.size() != kShape.size()) return refuse();
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    const bool digit = text[i] >= '0' && text[i] <= '9';
    if (kShape[i] == 'd' ? !digit : text[i] != kShape[i]) return refuse();
  }
  auto number = [&](std::size_t at, std::size_t digits) {
    int value = 0;
    for (std::size_t i = at; i < at + digits; ++i) value = value * 10 + (text[i] - '0');
    return value;
  };
  std::tm tm{};
  tm.tm_year = number(0, 4) - 1900;
  tm.tm_mon = number(5, 2) - 1;
  tm.tm_mday = number(8, 2);
  tm.tm_hour = number(11, 2);
  tm.tm_min = number(14, 2);
  tm.tm_sec = number(17, 2);
  const std::tm fields = tm;
  const std::time_t seconds = timegm(&tm);
  if (tm.tm_year != fields.tm_year || tm.tm_mon != fields.tm_mon || tm.tm_mday != fields.tm_mday ||
      tm.tm_hour != fields.tm_hour || tm.tm_min != fields.tm_min || tm.tm_sec != fields.tm_sec) {
    return refuse();
  }
  // TimePoint counts nanoseconds in 64 bits (years 1678..2262): a later
  // (or earlier) time is refused rather than overflowing.
  constexpr auto kLimit = std::chrono::duration_cast<std::chrono::seconds>(TimePoint::duration::max()).count();
  if (seconds >= kLimit || seconds <= -kLimit) return refuse();
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds(seconds)));
}

}  // namespace citadel
