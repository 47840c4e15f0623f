#include "sim/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace citadel::sim {

std::string_view OperationName(OperationKind kind) {
  switch (kind) {
    case OperationKind::kAttest:
      return "attest";
    case OperationKind::kClaim:
      return "claim";
    case OperationKind::kCheckIn:
      return "check-in";
    case OperationKind::kUpdate:
      return "update";
    case OperationKind::kReport:
      return "report";
  }
  return "unknown";
}

std::string_view EventName(EventKind kind) {
  switch (kind) {
    case EventKind::kUnclaimedVerdict:
      return "unclaimed_verdicts";
    case EventKind::kDroppedRequest:
      return "dropped_requests";
    case EventKind::kKilledDownload:
      return "killed_downloads";
    case EventKind::kResumedDownload:
      return "resumed_downloads";
    case EventKind::kReconnect:
      return "reconnects";
  }
  return "unknown";
}

std::uint64_t FleetSummary::TotalErrors() const {
  std::uint64_t total = 0;
  for (const auto& operation : operations) total += operation.errors;
  return total;
}

double Percentile(const std::vector<double>& ascending, double q) {
  if (ascending.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest sample with at least q of the samples at or below it.
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ascending.size())));
  rank = std::clamp<std::size_t>(rank, 1, ascending.size());
  return ascending[rank - 1];
}

void FleetStats::Record(OperationKind kind, double latency_ms, bool ok, int retries, std::string_view error,
                        std::chrono::steady_clock::time_point end) {
  const auto start = end - std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double, std::milli>(std::max(latency_ms, 0.0)));
  std::lock_guard lock(mutex_);
  auto& entry = kinds_[static_cast<std::size_t>(kind)];
  entry.latencies_ms.push_back(latency_ms);
  if (!entry.first_start || start < *entry.first_start) entry.first_start = start;
  entry.last_end = std::max(entry.last_end, end);
  entry.retries += static_cast<std::uint64_t>(std::max(retries, 0));
  if (!ok) {
    ++entry.errors;
    if (first_errors_.size() < kMaxErrorsKept) {
      first_errors_.push_back(std::string(OperationName(kind)) + ": " + std::string(error));
    }
  }
}

void FleetStats::Count(EventKind kind, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  events_[static_cast<std::size_t>(kind)] += n;
}

std::uint64_t FleetStats::Finished(OperationKind kind) const {
  std::lock_guard lock(mutex_);
  return kinds_[static_cast<std::size_t>(kind)].latencies_ms.size();
}

std::uint64_t FleetStats::Errors() const {
  std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (const auto& entry : kinds_) total += entry.errors;
  return total;
}

FleetSummary FleetStats::Summarize(std::uint64_t devices, double seconds) const {
  FleetSummary summary;
  summary.devices = devices;
  summary.seconds = seconds;
  std::lock_guard lock(mutex_);
  for (auto kind : kOperationKinds) {
    const auto& entry = kinds_[static_cast<std::size_t>(kind)];
    std::vector<double> sorted = entry.latencies_ms;
    std::sort(sorted.begin(), sorted.end());
    OperationSummary row;
    row.name = OperationName(kind);
    row.count = sorted.size();
    row.errors = entry.errors;
    row.retries = entry.retries;
    row.p50_ms = Percentile(sorted, 0.50);
    row.p90_ms = Percentile(sorted, 0.90);
    row.p99_ms = Percentile(sorted, 0.99);
    row.max_ms = sorted.empty() ? 0 : sorted.back();
    row.per_second = seconds > 0 ? static_cast<double>(row.count) / seconds : 0;
    if (entry.first_start) {
      row.active_from_seconds = std::chrono::duration<double>(*entry.first_start - epoch_).count();
      row.active_seconds = std::chrono::duration<double>(entry.last_end - *entry.first_start).count();
      row.active_per_second = row.active_seconds > 0 ? static_cast<double>(row.count) / row.active_seconds : 0;
    }
    summary.operations.push_back(row);
  }
  for (auto kind : kEventKinds) summary.events.emplace_back(EventName(kind), events_[static_cast<std::size_t>(kind)]);
  summary.first_errors = first_errors_;
  return summary;
}

std::string FormatTable(const FleetSummary& summary) {
  std::string out;
  char line[256];
  (void)std::snprintf(line, sizeof(line), "%llu devices, %.1f s\n", static_cast<unsigned long long>(summary.devices),
                      summary.seconds);
  out += line;
  (void)std::snprintf(line, sizeof(line), "%-9s %9s %7s %8s %9s %9s %9s %9s %9s %9s\n", "operation", "count", "errors",
                      "retries", "p50 ms", "p90 ms", "p99 ms", "max ms", "per s", "active/s");
  out += line;
  for (const auto& row : summary.operations) {
    (void)std::snprintf(line, sizeof(line), "%-9s %9llu %7llu %8llu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n",
                        std::string(row.name).c_str(), static_cast<unsigned long long>(row.count),
                        static_cast<unsigned long long>(row.errors), static_cast<unsigned long long>(row.retries),
                        row.p50_ms, row.p90_ms, row.p99_ms, row.max_ms, row.per_second, row.active_per_second);
    out += line;
  }
  std::string events;
  for (const auto& [name, count] : summary.events) {
    if (count == 0) continue;
    events += (events.empty() ? "" : ", ") + std::string(name) + " " + std::to_string(count);
  }
  if (!events.empty()) out += "events: " + events + "\n";
  for (const auto& error : summary.first_errors) out += "error: " + error + "\n";
  return out;
}

Json SummaryToJson(const FleetSummary& summary) {
  Json operations = Json::object();
  for (const auto& row : summary.operations) {
    operations[std::string(row.name)] = {{"count", row.count},
                                         {"errors", row.errors},
                                         {"retries", row.retries},
                                         {"p50_ms", row.p50_ms},
                                         {"p90_ms", row.p90_ms},
                                         {"p99_ms", row.p99_ms},
                                         {"max_ms", row.max_ms},
                                         {"per_second", row.per_second},
                                         {"active_seconds", row.active_seconds},
                                         {"active_per_second", row.active_per_second}};
  }
  Json events = Json::object();
  for (const auto& [name, count] : summary.events) events[std::string(name)] = count;
  return {{"devices", summary.devices}, {"seconds", summary.seconds}, {"errors", summary.TotalErrors()},
          {"operations", operations},   {"events", events},           {"first_errors", summary.first_errors}};
}

}  // namespace citadel::sim
