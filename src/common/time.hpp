// Wall-clock helpers. Times on the wire are RFC 3339 UTC strings
// ("2026-11-21T10:00:00Z"); times in the store are Unix seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

std::int64_t ToUnixSeconds(TimePoint t);
TimePoint FromUnixSeconds(std::int64_t seconds);
std::string FormatRfc3339(TimePoint t);
Expected<TimePoint> ParseRfc3339(std::string_view text);

}  // namespace citadel
