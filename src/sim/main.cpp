// citadel-sim: a virtual fleet in one process (sim/simulator.hpp). Exit
// status: 0 when every operation succeeded, 1 when any failed after its
// retries, 2 for a usage error, 3 when the fleet could not be set up.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "common/log.hpp"
#include "sim/options.hpp"
#include "sim/simulator.hpp"

int main(int argc, char** argv) {
  using namespace citadel;
  std::vector<std::string> args(argv, argv + argc);
  auto parsed = sim::ParseCommandLine(args);
  if (!parsed.options) {
    (parsed.exit_status == 0 ? std::cout : std::cerr) << parsed.message << "\n";
    return parsed.exit_status;
  }
  const sim::SimOptions& options = *parsed.options;
  auto level = log::ParseLevel(options.log_level);
  if (!level) {
    std::cerr << "--log-level: " << level.error() << "\n";
    return 2;
  }
  log::Init("citadel-sim", *level);

  sim::ProgressCallback progress;
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  if (tty) {
    progress = [&options](const sim::FleetStats& stats, std::size_t running, std::size_t started) {
      (void)std::fprintf(stderr,
                         "\r%zu/%zu started, %zu running | attest %llu claim %llu check-in %llu update %llu "
                         "report %llu | errors %llu   ",
                         started, options.devices, running,
                         static_cast<unsigned long long>(stats.Finished(sim::OperationKind::kAttest)),
                         static_cast<unsigned long long>(stats.Finished(sim::OperationKind::kClaim)),
                         static_cast<unsigned long long>(stats.Finished(sim::OperationKind::kCheckIn)),
                         static_cast<unsigned long long>(stats.Finished(sim::OperationKind::kUpdate)),
                         static_cast<unsigned long long>(stats.Finished(sim::OperationKind::kReport)),
                         static_cast<unsigned long long>(stats.Errors()));
      (void)std::fflush(stderr);
    };
  }
  // Ctrl-C stops the fleet and still prints what it did.
  auto result = sim::RunSimulation(options, progress, /*stop_on_signals=*/true);
  if (tty) (void)std::fprintf(stderr, "\n");
  if (!result) {
    std::cerr << "citadel-sim: " << result.error().message() << "\n";
    return 3;
  }
  if (options.json) {
    auto json = sim::SummaryToJson(result->summary);
    json["reused_devices"] = result->reused_devices;
    std::cout << json.dump() << "\n";
  } else {
    std::cout << sim::FormatTable(result->summary);
  }
  return result->summary.TotalErrors() == 0 ? 0 : 1;
}
