// Internal to src/cli: failure reporting (docs/PROTOCOL.md, "Failure
// reports") — the argument syntax and rendering of the issue, device report
// and symbol commands (commands_issues.cpp), here so that tests check them
// without a service, and the symbol upload that `image upload` shares.
// Syntax errors are usage Failures whose hint shows the right form.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/failure.hpp"
#include "common/time.hpp"

namespace citadel::cli {

class CommandContext;

// --since: a duration back from `now` ("90s", "30m", "2h", "7d"; at most 366
// days) or an RFC 3339 time ("2026-11-20T00:00:00Z"); the RFC 3339 text the
// service is sent.
Result<std::string> ParseSinceSpec(std::string_view text, TimePoint now);

// --state: open | resolved | muted (comma-free: the service filters by one).
Result<std::string> ParseIssueStateSpec(std::string_view text);

// --class: one of the report classes (app-crash, app-exit, restart-loop,
// sandbox-violation, runtime-error, unplanned-reboot, update-failure).
Result<std::string> ParseFailureClassSpec(std::string_view text);

// --crash-dumps: on | off.
Result<bool> ParseOnOff(std::string_view text, std::string_view option);

// A crash frame of the service's answer ({"module","build_id","offset",
// "function","file","line"}) as people read it: "read_sensor (sensor.c:42)",
// "read_sensor (crashy+0x1139)" without a line, "crashy+0x1139" without
// symbols. Sanitized for the terminal.
std::string FormatFrame(const nlohmann::json& frame);

// The issue list as a table (ID, STATE, CLASS, COUNT, DEVICES, LAST SEEN,
// TITLE); a regression shows as "open (regression)".
std::string IssueTable(const nlohmann::json& issues, TimePoint now);

// Checks a symbol file locally (symbols::ParseSymbolFile: a bad file fails
// before it is sent) and posts it to POST /v1/tenants/{t}/symbols. Returns
// the service's answer ({"modules":[...]}). A file without modules (an
// image without ELF debug information) is a usage error, or with
// `allow_empty` answered {"modules":[]} without a request.
Result<nlohmann::json> UploadSymbolFile(CommandContext& context, const std::filesystem::path& file,
                                        bool allow_empty = false);

// "  3 modules: crashy (1a2b3c4d5e6f, 12 functions, 80 lines), ..." lines for
// the answer of UploadSymbolFile.
std::string DescribeUploadedSymbols(const nlohmann::json& answer);

}  // namespace citadel::cli
