// Runs a virtual fleet (citadel-sim): prepares the identities, raises the
// open-file limit to what the fleet needs, starts the devices at the
// connect rate on `threads` I/O threads (one io_context; each device on its
// own strand), and waits until every device finished (its check-ins, the
// --duration deadline, or an interrupt).
#pragma once

#include <functional>

#include "common/error.hpp"
#include "sim/options.hpp"
#include "sim/stats.hpp"

namespace citadel::sim {

struct SimulationResult {
  FleetSummary summary;
  std::size_t reused_devices = 0;  // identities read from the fleet file
  // The devices' ids and the OS version each ended with (for tests).
  std::vector<std::pair<std::string, std::string>> devices;
};

// Called about once a second while the fleet runs (progress display).
using ProgressCallback = std::function<void(const FleetStats& stats, std::size_t running, std::size_t started)>;

// Errors: setup only (options, files, the fleet file); what devices did,
// failures included, is in the result.
// stop_on_signals: SIGINT/SIGTERM stop the fleet (devices end their current
// step; what finished is reported) instead of killing the process.
Expected<SimulationResult> RunSimulation(const SimOptions& options, const ProgressCallback& progress = {},
                                         bool stop_on_signals = false);

// Raises RLIMIT_NOFILE (soft, and the hard limit when allowed) to at least
// `wanted`; returns the soft limit in force afterwards.
std::uint64_t RaiseOpenFileLimit(std::uint64_t wanted);

}  // namespace citadel::sim
