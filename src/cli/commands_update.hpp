// Internal to src/cli: the argument syntax of the update commands
// (commands_update.cpp), parsed here so that tests can check it without a
// service. Errors are usage Failures whose hint shows the right form.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/failure.hpp"

namespace citadel::cli {

// One step of a staged rollout: `percent` of the scope's devices
// `after_seconds` into the schedule (docs/PROTOCOL.md, deployments).
struct BatchSpec {
  std::int64_t percent = 0;
  std::int64_t after_seconds = 0;
};

// "10@0,50@1h,100@2h": PERCENT@OFFSET, comma-separated, with OFFSET a whole
// number of seconds or of s, m, h or d ("90m", "1d"). Checked as the service
// checks them: 1 to 16 batches, percents 1..100 and offsets (at most 366
// days) both strictly ascending.
Result<std::vector<BatchSpec>> ParseBatchesSpec(std::string_view text);

// A maintenance window "HH:MM/MINUTES": UTC start 00:00..23:59, length
// 1..1440 minutes (e.g. "02:00/120").
struct WindowSpec {
  std::string start;  // "HH:MM"
  std::int64_t duration_minutes = 0;
};
Result<WindowSpec> ParseWindowSpec(std::string_view text);

// A duration: whole seconds, or a number with s, m, h or d ("90m", "1d");
// at most 366 days. nullopt for anything else.
std::optional<std::int64_t> ParseOffsetSeconds(std::string_view text);

// Seconds as people read a schedule: "0s", "45s", "90m" -> "1h30m", "2d".
std::string FormatOffset(std::int64_t seconds);

}  // namespace citadel::cli
