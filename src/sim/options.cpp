#include "sim/options.hpp"

#include <CLI/CLI.hpp>

#include "device/schedule.hpp"

namespace citadel::sim {
namespace {

constexpr std::string_view kDescription =
    "citadel-sim: a fleet of virtual devices in one process, speaking the real device protocol over HTTPS.\n"
    "Each device has its own P-256 root-of-trust key and TLS key, a manufacturer certificate from\n"
    "--manufacturer-dir, attests, (optionally) claims itself, checks in with mutual TLS on its own\n"
    "keep-alive connection, takes updates (TUF-verified director + image repository, then the target),\n"
    "and uploads synthetic crash reports. It prints what it did per operation; the exit status is 1\n"
    "when any operation failed after its retries.";

constexpr std::string_view kExamples = R"(
Examples:
  # 1,000 devices against a local service, claimed into a group, 3 check-ins each, 1 s apart:
  citadel manufacturer create-ca --dir mfr
  citadel-sim --server https://127.0.0.1:8443 --server-ca data/service-ca.pem \
      --manufacturer-dir mfr --devices 1000 --connect-rate 200 \
      --claim-token "$ADMIN_TOKEN" --tenant "$TENANT_ID" --device-group "$GROUP_ID" \
      --check-ins 3 --check-in-interval 1s --json

  # The same fleet again (keys kept in a 0600 file; the devices are already claimed):
  citadel-sim ... --fleet-file fleet.json --devices 1000 --duration 10m --check-in-interval 60s

  # Chaos: 5 % of requests cut mid-request, 20 % of downloads killed halfway and resumed,
  # 64 KiB/s links, device clocks off by up to 2 minutes:
  citadel-sim ... --drop-rate 0.05 --kill-download-rate 0.2 --slow-link 65536 --clock-skew 120

Durations take a unit: 500ms, 60s, 5m, 1h (a bare number is seconds).
Ctrl-C (or SIGTERM) stops the fleet and still prints what it did.
Latencies count from an operation's start to its end, retries and their waits included.
Retries: 503/429 with Retry-After S wait S..1.5 S; other failures back off exponentially
with full jitter; an operation fails after --max-retries retries.)";

// A CLI11 validator/transformer for durations ("500ms", "60s", "5m", "1h", "2").
struct DurationOption {
  std::chrono::milliseconds* target;
  std::string operator()(const std::string& text) const {
    auto parsed = device::ParseDuration(text);
    if (!parsed) return parsed.error().message();
    *target = *parsed;
    return {};
  }
};

}  // namespace

ParseOutcome ParseCommandLine(const std::vector<std::string>& args) {
  SimOptions options;
  CLI::App app{std::string(kDescription), args.empty() ? "citadel-sim" : args.front()};
  app.footer(std::string(kExamples));
  app.get_formatter()->column_width(34);

  std::string check_in_interval = "60s";
  std::string duration = "0";
  std::string request_timeout = "30s";
  std::int64_t clock_skew = 0;
  app.add_option("--server", options.server_url, "service base URL, https://host:port")->required();
  app.add_option("--server-ca", options.server_ca, "the service CA to pin (PEM)")->required();
  app.add_flag("--check-in-together", options.check_in_together,
               "devices start checking in only once the whole fleet has attested (benchmarks: the check-in row's "
               "active/s is then the rate with nothing else running)");
  app.add_option("--check-in-server", options.check_in_server,
                 "send attested devices' mutual-TLS requests (check-ins, downloads, reports) to this https://host:port "
                 "instead of --server (e.g. a static responder to compare with)");
  app.add_option("--check-in-server-ca", options.check_in_server_ca,
                 "the CA to pin for --check-in-server (default: --server-ca)");
  app.add_option("--manufacturer-dir", options.manufacturer_dir,
                 "manufacturer CA directory (manufacturer-ca.pem + manufacturer-ca.key), as made by "
                 "`citadel manufacturer create-ca --dir DIR`; needed to make new devices");
  app.add_option("--fleet-file", options.fleet_file,
                 "keep the fleet's keys and certificates in FILE (0600) so a later run reuses the same devices");
  app.add_option("--devices", options.devices, "virtual devices")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--connect-rate", options.connect_rate, "devices started per second")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1e6));
  app.add_option("--threads", options.threads, "I/O threads")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--check-in-interval", check_in_interval, "time between a device's check-ins")->capture_default_str();
  app.add_option("--check-ins", options.check_ins, "check-ins per device, then the device stops")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000}));
  app.add_option("--duration", duration, "run this long (every device stops then)");
  app.add_option("--os-name", options.os_name, "OS component the devices run")->capture_default_str();
  app.add_option("--os-version", options.os_version, "OS version the devices start with")->capture_default_str();
  app.add_option("--claim-token", options.claim_token,
                 "a tenant token (contributor or admin): devices that attest unclaimed claim themselves");
  app.add_option("--tenant", options.tenant, "tenant id to claim into (with --claim-token)");
  app.add_option("--device-group", options.device_group,
                 "device group to claim into (default: the tenant's only "
                 "product's Development group)");
  app.add_option("--reports-per-device", options.reports_per_device, "synthetic crash reports each device uploads")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10'000}));
  app.add_option("--drop-rate", options.drop_rate, "fraction of requests whose connection is dropped mid-request")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--slow-link", options.slow_link,
                 "bytes per second each way per connection, after a first burst of up to 2 s worth (0: unlimited)");
  app.add_option("--kill-download-rate", options.kill_download_rate,
                 "fraction of target downloads cut halfway and resumed with a Range request")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--clock-skew", clock_skew, "seconds: each device's clock is off by a random amount up to +/- this")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10 * 365 * 86400}));
  app.add_option("--max-retries", options.max_retries, "retries before an operation counts as failed")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--request-timeout", request_timeout, "bound on one request (connect + exchange)")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "random seed for chaos and jitter (0: random)");
  app.add_flag("--json", options.json, "print the figures as one JSON object");
  app.add_option("--log-level", options.log_level, "debug, info, warn or error (logs go to stderr)")
      ->capture_default_str();

  std::vector<std::string> rest(args.size() > 1 ? args.begin() + 1 : args.end(), args.end());
  std::reverse(rest.begin(), rest.end());  // CLI11 parses a reversed vector
  try {
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    ParseOutcome outcome;
    if (e.get_exit_code() == 0) {
      outcome.message = app.help();
      outcome.exit_status = 0;
    } else {
      outcome.message = std::string(e.what()) + "\nRun with --help for the options and examples.";
      outcome.exit_status = 2;
    }
    return outcome;
  }

  auto fail = [](std::string message) {
    ParseOutcome outcome;
    outcome.message = std::move(message);
    outcome.exit_status = 2;
    return outcome;
  };
  auto interval = device::ParseDuration(check_in_interval);
  if (!interval) return fail("--check-in-interval: " + interval.error().message());
  options.check_in_interval = *interval;
  auto run_for = device::ParseDuration(duration);
  if (!run_for) return fail("--duration: " + run_for.error().message());
  options.duration = *run_for;
  auto timeout = device::ParseDuration(request_timeout);
  if (!timeout) return fail("--request-timeout: " + timeout.error().message());
  options.request_timeout = *timeout;
  options.clock_skew = std::chrono::seconds(clock_skew);
  if (options.check_ins == 0 && options.duration.count() == 0) options.check_ins = 1;
  if (auto valid = ValidateOptions(options); !valid) return fail(valid.error().message());
  ParseOutcome outcome;
  outcome.options = std::move(options);
  return outcome;
}

Expected<void> ValidateOptions(const SimOptions& options) {
  if (options.server_url.rfind("https://", 0) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "--server must be an https:// URL");
  }
  if (options.claim_token.empty() != options.tenant.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--claim-token and --tenant go together");
  }
  if (!options.device_group.empty() && options.claim_token.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--device-group needs --claim-token and --tenant");
  }
  if (options.check_in_interval < std::chrono::milliseconds(100)) {
    return MakeError(ErrorCode::kInvalidArgument, "--check-in-interval must be at least 100ms");
  }
  if (options.request_timeout < std::chrono::milliseconds(100)) {
    return MakeError(ErrorCode::kInvalidArgument, "--request-timeout must be at least 100ms");
  }
  if (options.manufacturer_dir.empty() && options.fleet_file.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--manufacturer-dir is needed to make devices (or --fleet-file of an earlier run)");
  }
  return kOk;
}

}  // namespace citadel::sim
