#include "device/system_info.hpp"

#include <gtest/gtest.h>

namespace citadel::device {
namespace {

TEST(SystemInfoTest, ParsesUptime) {
  EXPECT_EQ(*ParseUptimeSeconds("12345.67 54321.00\n"), 12345);
  EXPECT_EQ(*ParseUptimeSeconds("0.01 0.00\n"), 0);
  EXPECT_FALSE(ParseUptimeSeconds(""));
  EXPECT_FALSE(ParseUptimeSeconds("abc"));
}

TEST(SystemInfoTest, ParsesMemAvailable) {
  constexpr std::string_view kMeminfo =
      "MemTotal:       16303496 kB\n"
      "MemFree:         1234567 kB\n"
      "MemAvailable:    9876543 kB\n"
      "Buffers:          123456 kB\n";
  EXPECT_EQ(*ParseAvailableMemoryKb(kMeminfo), 9876543);
  EXPECT_FALSE(ParseAvailableMemoryKb("MemTotal: 1 kB\nMemFree: 2 kB\n"));
  EXPECT_FALSE(ParseAvailableMemoryKb("MemAvailable: lots\n"));
}

TEST(SystemInfoTest, ReadsThisMachine) {
  auto uptime = ReadUptimeSeconds();
  ASSERT_TRUE(uptime) << uptime.error().message();
  EXPECT_GT(*uptime, 0);
  auto memory = ReadAvailableMemoryKb();
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_GT(*memory, 0);
}

}  // namespace
}  // namespace citadel::device
