// citadel-server's Prometheus metrics (docs/ARCHITECTURE.md, "Metrics"),
// kept with prometheus-cpp's core library and exposed as Prometheus text
// at GET /metrics.
//
// Labels never carry ids (tenant, device, deployment): a route is its
// pattern ("/v1/tenants/{tenant}/devices"), so the number of series stays
// fixed however big the fleet grows. Per-tenant and per-deployment figures
// are in the API.
//
// Thread-safety: every member may be called from any request thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "http/admission.hpp"

namespace prometheus {
class Registry;
}

namespace citadel::server {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One answered request: route pattern ("" when no route matched), status,
  // time in the handler and time queued before it.
  void Request(std::string_view method, std::string_view route, int status, double handler_seconds,
               double queued_seconds);
  // A request admission shed (503) before any handler ran.
  void Shed(http::ShedReason reason);
  // A request refused by a rate limit (429); scope "device" or "tenant".
  void RateLimited(std::string_view scope);
  // An attestation's outcome: its verdict ("accepted", "accepted-unclaimed",
  // "activation-required") or the refusal's problem name ("not-genuine").
  void Attestation(std::string_view outcome);
  // A report batch stored: reports new to the service, and reports it
  // already had (a retried batch).
  void ReportsIngested(std::uint64_t new_reports, std::uint64_t repeated_reports);
  // A device's update report (its state: "installed", "failed", ...).
  void UpdateReport(std::string_view state);
  // A deployment created, paused, resumed, rolled back...
  void DeploymentAction(std::string_view action);
  // One store call (the time it held a database connection), by backend
  // ("sqlite", "postgresql").
  void StoreCall(std::string_view backend, double seconds);

  // Figures read when scraped: the admission queue and open connections.
  void SetAdmissionSource(std::function<http::AdmissionStats()> source);
  // The exposition, Prometheus text format 0.0.4.
  std::string Render() const;

 private:
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::function<http::AdmissionStats()> admission_source_;
};

}  // namespace citadel::server
