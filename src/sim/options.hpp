// citadel-sim's command line (see `citadel-sim --help` for the examples).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace citadel::sim {

struct SimOptions {
  std::string server_url;                  // https://host:port (loopback in tests)
  std::filesystem::path server_ca;         // the pinned service CA (PEM)
  std::filesystem::path manufacturer_dir;  // manufacturer-ca.pem + manufacturer-ca.key
  std::filesystem::path fleet_file;        // empty: a fresh fleet each run
  // Where attested devices send their mutual-TLS requests (check-ins,
  // downloads, reports) when not the service itself: a balancer in front of
  // it, or the static responder the check-in benchmark compares with
  // (bench/checkin_bench.sh). Empty: --server and --server-ca.
  std::string check_in_server;
  std::filesystem::path check_in_server_ca;
  std::size_t devices = 10;
  double connect_rate = 100;  // devices started per second
  int threads = 1;            // I/O threads
  std::chrono::milliseconds check_in_interval{60'000};
  std::int64_t check_ins = 0;             // per device; 0: run for `duration`
  std::chrono::milliseconds duration{0};  // 0: until every device did its check-ins
  std::string os_name = "citadel-os";
  std::string os_version = "1.0.0";
  // Claiming: all three (group optional) or none.
  std::string claim_token;
  std::string tenant;
  std::string device_group;
  std::int64_t reports_per_device = 1;
  // Every device waits until the whole fleet has attested (or failed to)
  // before its first check-in, so check-ins run as one phase (benchmarks).
  bool check_in_together = false;
  // Chaos.
  double drop_rate = 0;                // fraction of requests cut mid-request
  std::uint64_t slow_link = 0;         // bytes per second each way per connection; 0: unlimited
  double kill_download_rate = 0;       // fraction of target downloads cut halfway, then resumed
  std::chrono::seconds clock_skew{0};  // each device's clock is off by up to +/- this
  // Retries.
  int max_retries = 8;
  std::chrono::milliseconds request_timeout{30'000};
  std::uint64_t seed = 0;  // 0: random
  bool json = false;
  std::string log_level = "warn";
};

// What parsing decided: options to run with, or text to print and an exit
// status (--help: the help on stdout, status 0; a usage error: the message
// on stderr, status 2).
struct ParseOutcome {
  std::optional<SimOptions> options;
  std::string message;
  int exit_status = 0;
};

// args[0] is the program name.
ParseOutcome ParseCommandLine(const std::vector<std::string>& args);

// The checks that do not fit CLI11's validators (claiming needs token and
// tenant together; --check-ins or --duration; rates in range).
[[nodiscard]] Expected<void> ValidateOptions(const SimOptions& options);

}  // namespace citadel::sim
