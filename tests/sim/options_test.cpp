#include "sim/options.hpp"

#include <gtest/gtest.h>

namespace citadel::sim {
namespace {

using std::chrono::milliseconds;

std::vector<std::string> Args(std::initializer_list<std::string> extra) {
  std::vector<std::string> args{"citadel-sim",        "--server", "https://127.0.0.1:8443", "--server-ca", "ca.pem",
                                "--manufacturer-dir", "mfr"};
  args.insert(args.end(), extra);
  return args;
}

TEST(OptionsTest, Defaults) {
  auto parsed = ParseCommandLine(Args({}));
  ASSERT_TRUE(parsed.options) << parsed.message;
  const auto& options = *parsed.options;
  EXPECT_EQ(options.server_url, "https://127.0.0.1:8443");
  EXPECT_EQ(options.server_ca, "ca.pem");
  EXPECT_EQ(options.devices, 10u);
  EXPECT_EQ(options.threads, 1);
  EXPECT_EQ(options.check_in_interval, milliseconds(60'000));
  EXPECT_EQ(options.check_ins, 1);  // neither --check-ins nor --duration: one check-in
  EXPECT_EQ(options.reports_per_device, 1);
  EXPECT_EQ(options.max_retries, 8);
  EXPECT_EQ(options.os_version, "1.0.0");
  EXPECT_FALSE(options.json);
}

TEST(OptionsTest, EverythingSet) {
  auto parsed = ParseCommandLine(Args({"--devices",
                                       "1000",
                                       "--connect-rate",
                                       "250",
                                       "--threads",
                                       "2",
                                       "--check-in-interval",
                                       "500ms",
                                       "--check-ins",
                                       "3",
                                       "--duration",
                                       "2m",
                                       "--claim-token",
                                       "tok",
                                       "--tenant",
                                       "ten_1",
                                       "--device-group",
                                       "grp_1",
                                       "--reports-per-device",
                                       "4",
                                       "--drop-rate",
                                       "0.1",
                                       "--slow-link",
                                       "65536",
                                       "--kill-download-rate",
                                       "0.5",
                                       "--clock-skew",
                                       "120",
                                       "--max-retries",
                                       "3",
                                       "--os-version",
                                       "2.0.0",
                                       "--fleet-file",
                                       "fleet.json",
                                       "--seed",
                                       "9",
                                       "--json"}));
  ASSERT_TRUE(parsed.options) << parsed.message;
  const auto& options = *parsed.options;
  EXPECT_EQ(options.devices, 1000u);
  EXPECT_EQ(options.connect_rate, 250);
  EXPECT_EQ(options.threads, 2);
  EXPECT_EQ(options.check_in_interval, milliseconds(500));
  EXPECT_EQ(options.check_ins, 3);
  EXPECT_EQ(options.duration, milliseconds(120'000));
  EXPECT_EQ(options.claim_token, "tok");
  EXPECT_EQ(options.tenant, "ten_1");
  EXPECT_EQ(options.device_group, "grp_1");
  EXPECT_EQ(options.reports_per_device, 4);
  EXPECT_EQ(options.drop_rate, 0.1);
  EXPECT_EQ(options.slow_link, 65536u);
  EXPECT_EQ(options.kill_download_rate, 0.5);
  EXPECT_EQ(options.clock_skew, std::chrono::seconds(120));
  EXPECT_EQ(options.max_retries, 3);
  EXPECT_EQ(options.os_version, "2.0.0");
  EXPECT_EQ(options.fleet_file, "fleet.json");
  EXPECT_EQ(options.seed, 9u);
  EXPECT_TRUE(options.json);
}

TEST(OptionsTest, DurationAloneRunsUntilTheDeadline) {
  auto parsed = ParseCommandLine(Args({"--duration", "30s"}));
  ASSERT_TRUE(parsed.options) << parsed.message;
  EXPECT_EQ(parsed.options->check_ins, 0);
  EXPECT_EQ(parsed.options->duration, milliseconds(30'000));
}

TEST(OptionsTest, HelpTeachesWithExamples) {
  auto parsed = ParseCommandLine({"citadel-sim", "--help"});
  EXPECT_FALSE(parsed.options);
  EXPECT_EQ(parsed.exit_status, 0);
  EXPECT_NE(parsed.message.find("Examples:"), std::string::npos);
  EXPECT_NE(parsed.message.find("--claim-token"), std::string::npos);
  EXPECT_NE(parsed.message.find("--kill-download-rate"), std::string::npos);
}

TEST(OptionsTest, UsageErrorsExitWithTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{"citadel-sim", "--server-ca", "ca.pem"}, "--server"},
      {Args({"--claim-token", "tok"}), "--claim-token and --tenant"},
      {Args({"--device-group", "grp"}), "--device-group needs"},
      {Args({"--drop-rate", "1.5"}), "drop-rate"},
      {Args({"--check-in-interval", "soon"}), "--check-in-interval"},
      {Args({"--check-in-interval", "10ms"}), "at least 100ms"},
      {Args({"--devices", "0"}), "devices"},
      {{"citadel-sim", "--server", "http://127.0.0.1:1", "--server-ca", "ca.pem", "--manufacturer-dir", "m"},
       "https://"},
      {{"citadel-sim", "--server", "https://127.0.0.1:1", "--server-ca", "ca.pem"}, "--manufacturer-dir"},
      {Args({"--no-such-option"}), "no-such-option"},
  };
  for (const auto& c : cases) {
    auto parsed = ParseCommandLine(c.args);
    EXPECT_FALSE(parsed.options) << c.expected;
    EXPECT_EQ(parsed.exit_status, 2) << c.expected;
    EXPECT_NE(parsed.message.find(c.expected), std::string::npos) << parsed.message;
  }
}

}  // namespace
}  // namespace citadel::sim
