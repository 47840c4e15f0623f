#include "device/system_info.hpp"

#include <algorithm>
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

Expected<NetworkCounters> ParseNetworkCounters(std::string_view proc_net_dev) {
  // Two header lines, then "  eth0: <8 receive fields> <8 transmit fields>";
  // bytes are the first of each group.
  constexpr std::size_t kTransmitBytesField = 8;
  NetworkCounters counters;
  std::size_t line_start = 0;
  bool any = false;
  while (line_start < proc_net_dev.size()) {
    std::size_t line_end = proc_net_dev.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = proc_net_dev.size();
    std::string_view line = proc_net_dev.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || line.find('|') != std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    name.remove_prefix(std::min(name.find_first_not_of(' '), name.size()));
    std::string_view rest = line.substr(colon + 1);
    std::int64_t fields[kTransmitBytesField + 1] = {};
    std::size_t count = 0;
    while (count <= kTransmitBytesField) {
      const std::size_t start = rest.find_first_not_of(' ');
      if (start == std::string_view::npos) break;
      rest.remove_prefix(start);
      auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), fields[count]);
      if (ec != std::errc() || fields[count] < 0) return MakeError(ErrorCode::kParse, "/proc/net/dev: not a count");
      rest.remove_prefix(static_cast<std::size_t>(end - rest.data()));
      ++count;
    }
    if (count <= kTransmitBytesField) return MakeError(ErrorCode::kParse, "/proc/net/dev: short interface line");
    any = true;
    if (name == "lo") continue;
    counters.rx_bytes += fields[0];
    counters.tx_bytes += fields[kTransmitBytesField];
  }
  if (!any) return MakeError(ErrorCode::kParse, "/proc/net/dev: no interface lines");
  return counters;
}

Expected<std::int64_t> ReadUptimeSeconds(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxProcFileBytes));
  return ParseUptimeSeconds(text);
}

Expected<std::int64_t> ReadAvailableMemoryKb(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxProcFileBytes));
  return ParseAvailableMemoryKb(text);
}

Expected<NetworkCounters> ReadNetworkCounters(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxProcFileBytes));
  return ParseNetworkCounters(text);
}

}  // namespace citadel::device
