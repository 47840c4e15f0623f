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

TEST(SystemInfoTest, ParsesNetworkCountersWithoutLoopback) {
  constexpr std::string_view kNetDev =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
      "carrier compressed\n"
      "    lo: 5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       "
      "0          0\n"
      "  eth0: 1200      10    0    0    0     0          0         0      340       4    0    0    0     0       "
      "0          0\n"
      " wlan0:30 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
  auto counters = ParseNetworkCounters(kNetDev);
  ASSERT_TRUE(counters) << counters.error().message();
  EXPECT_EQ(counters->rx_bytes, 1230);
  EXPECT_EQ(counters->tx_bytes, 347);
  EXPECT_FALSE(ParseNetworkCounters("  eth0: 1 2 3\n"));
  EXPECT_FALSE(ParseNetworkCounters(""));
}

TEST(SystemInfoTest, ReadsThisMachine) {
  auto uptime = ReadUptimeSeconds();
  ASSERT_TRUE(uptime) << uptime.error().message();
  EXPECT_GT(*uptime, 0);
  auto memory = ReadAvailableMemoryKb();
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_GT(*memory, 0);
  auto network = ReadNetworkCounters();
  ASSERT_TRUE(network) << network.error().message();
  EXPECT_GE(network->rx_bytes, 0);
}

}  // namespace
}  // namespace citadel::device
