// Inventory the device reports at check-in, read from /proc.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "common/error.hpp"

namespace citadel::device {

// Whole seconds since boot: the first field of /proc/uptime.
Expected<std::int64_t> ParseUptimeSeconds(std::string_view proc_uptime);
// MemAvailable from /proc/meminfo, in kB.
Expected<std::int64_t> ParseAvailableMemoryKb(std::string_view proc_meminfo);

// Bytes received and sent, summed over every interface but loopback, from
// /proc/net/dev (the counters of the reader's network namespace, since each
// interface came up).
struct NetworkCounters {
  std::int64_t rx_bytes = 0;
  std::int64_t tx_bytes = 0;
};
Expected<NetworkCounters> ParseNetworkCounters(std::string_view proc_net_dev);

Expected<std::int64_t> ReadUptimeSeconds(const std::filesystem::path& path = "/proc/uptime");
Expected<std::int64_t> ReadAvailableMemoryKb(const std::filesystem::path& path = "/proc/meminfo");
Expected<NetworkCounters> ReadNetworkCounters(const std::filesystem::path& path = "/proc/net/dev");

}  // namespace citadel::device
