#include "device/system_info.hpp"

#include <charconv>
#include <string>

#include "common/file.hpp"

namespace citadel::device {
namespace {

constexpr std::size_t kMaxProcFileBytes = 1u << 20;

Expected<std::int64_t> ParseLeadingInteger(std::string_view text, std::string_view what) {
  std::size_t start = text.find_first_not_of(" \t");
  if (start == std::string_view::npos) return MakeError(ErrorCode::kParse, std::string(what) + ": no value");
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data() + start, text.data() + text.size(), value);
  if (ec != std::errc() || value < 0) return MakeError(ErrorCode::kParse, std::string(what) + ": not a count");
  return value;
}

}  // namespace

Expected<std::int64_t> ParseUptimeSeconds(std::string_view proc_uptime) {
  // "12345.67 54321.00\n": the fractional part is dropped.
  return ParseLeadingInteger(proc_uptime, "/proc/uptime");
}

Expected<std::int64_t> ParseAvailableMemoryKb(std::string_view proc_meminfo) {
  constexpr std::string_view kKey = "MemAvailable:";
  std::size_t line_start = 0;
  while (line_start < proc_meminfo.size()) {
    std::size_t line_end = proc_meminfo.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = proc_meminfo.size();
    std::string_view line = proc_meminfo.substr(line_start, line_end - line_start);
    if (line.starts_with(kKey)) return ParseLeadingInteger(line.substr(kKey.size()), "MemAvailable");
    line_start = line_end + 1;
  }
  return MakeError(ErrorCode::kNotFound, "/proc/meminfo has no MemAvailable line");
}

Expected<std::int64_t> ReadUptimeSeconds(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxProcFileBytes));
  return ParseUptimeSeconds(text);
}

Expected<std::int64_t> ReadAvailableMemoryKb(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxProcFileBytes));
  return ParseAvailableMemoryKb(text);
}

}  // namespace citadel::device
