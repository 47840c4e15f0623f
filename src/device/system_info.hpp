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

Expected<std::int64_t> ReadUptimeSeconds(const std::filesystem::path& path = "/proc/uptime");
Expected<std::int64_t> ReadAvailableMemoryKb(const std::filesystem::path& path = "/proc/meminfo");

}  // namespace citadel::device
