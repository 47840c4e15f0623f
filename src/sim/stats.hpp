// What the virtual fleet did: per operation kind, how many operations ran,
// how many failed after their retries, how many retries they took, and
// their latency (from the operation's start to its end, retries and their
// waits included: the time a device spent getting it done).
//
// Threading: Record() and Count() may be called from every I/O thread at
// once; Summarize() from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"

namespace citadel::sim {

enum class OperationKind : std::uint8_t { kAttest, kClaim, kCheckIn, kUpdate, kReport };
inline constexpr std::array<OperationKind, 5> kOperationKinds = {OperationKind::kAttest, OperationKind::kClaim,
                                                                 OperationKind::kCheckIn, OperationKind::kUpdate,
                                                                 OperationKind::kReport};
// "attest", "claim", "check-in", "update", "report" (table rows, JSON keys).
std::string_view OperationName(OperationKind kind);

// Chaos and other events that are not operations.
// kUnclaimedVerdict: an attestation the service answered "accepted-unclaimed"
// (the attest operation ends only with a certificate; claiming in between
// is its own operation).
enum class EventKind : std::uint8_t {
  kUnclaimedVerdict,
  kDroppedRequest,
  kKilledDownload,
  kResumedDownload,
  kReconnect
};
inline constexpr std::array<EventKind, 5> kEventKinds = {EventKind::kUnclaimedVerdict, EventKind::kDroppedRequest,
                                                         EventKind::kKilledDownload, EventKind::kResumedDownload,
                                                         EventKind::kReconnect};
// "unclaimed_verdicts", "dropped_requests", "killed_downloads",
// "resumed_downloads", "reconnects".
std::string_view EventName(EventKind kind);

struct OperationSummary {
  std::string_view name;
  std::uint64_t count = 0;  // finished operations, failed ones included
  std::uint64_t errors = 0;
  std::uint64_t retries = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  double per_second = 0;  // count / the run's seconds
  // From the first operation's start to the last one's end, and the rate in
  // that span: what a benchmark quotes when the kinds run in phases (all
  // devices attest, then all check in: --check-in-together).
  double active_from_seconds = 0;  // since the statistics began
  double active_seconds = 0;
  double active_per_second = 0;
};

struct FleetSummary {
  std::uint64_t devices = 0;
  double seconds = 0;
  std::vector<OperationSummary> operations;  // in kOperationKinds order
  std::vector<std::pair<std::string_view, std::uint64_t>> events;
  std::vector<std::string> first_errors;  // a few error messages, for the operator

  std::uint64_t TotalErrors() const;
};

// Nearest-rank percentile of ascending samples (q in [0, 1]); 0 when empty.
double Percentile(const std::vector<double>& ascending, double q);

class FleetStats {
 public:
  // `end`: when the operation ended (tests pass one).
  void Record(OperationKind kind, double latency_ms, bool ok, int retries, std::string_view error = {},
              std::chrono::steady_clock::time_point end = std::chrono::steady_clock::now());
  void Count(EventKind kind, std::uint64_t n = 1);
  FleetSummary Summarize(std::uint64_t devices, double seconds) const;
  // Finished operations of one kind so far (for the progress line).
  std::uint64_t Finished(OperationKind kind) const;
  std::uint64_t Errors() const;

 private:
  static constexpr std::size_t kMaxErrorsKept = 5;
  struct PerKind {
    std::vector<double> latencies_ms;
    std::uint64_t errors = 0;
    std::uint64_t retries = 0;
    std::optional<std::chrono::steady_clock::time_point> first_start;
    std::chrono::steady_clock::time_point last_end{};
  };
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  mutable std::mutex mutex_;
  std::array<PerKind, kOperationKinds.size()> kinds_{};
  std::array<std::uint64_t, kEventKinds.size()> events_{};
  std::vector<std::string> first_errors_;
};

// The table citadel-sim prints: one row per operation kind, then the
// events and the first errors.
std::string FormatTable(const FleetSummary& summary);
// {"devices", "seconds", "errors", "operations": {"attest": {"count",
// "errors", "retries", "p50_ms", "p90_ms", "p99_ms", "max_ms",
// "per_second"}, ...}, "events": {...}, "first_errors": [...]}
Json SummaryToJson(const FleetSummary& summary);

}  // namespace citadel::sim
