// The device runtime's control loop: attest, keep a valid device
// certificate, check in.
//
// Each check-in reply also carries the tenant's app trust (publisher keys,
// development capability), which is written under DIR/trust.
//
// Updates: with an update client attached (AttachUpdateClient), every
// check-in body carries its `update` section (what runs, unacknowledged
// reports) and every successful reply hands the client the service's update
// hints and this device's certificate chain. The client does its work on
// its own thread; a check-in never waits for it.
//
// Failure reports (AttachReports; docs/ARCHITECTURE.md, "Failure
// reporting"): each check-in first lets the collector write the folded
// counts that are due, carries `telemetry` (app restarts, rx/tx bytes of
// this network namespace since the agent started, reports queued), applies
// the reply's `reporting.crash_dumps`, and then uploads the queue: up to
// kMaxReportBatchesPerCheckIn batches (<= 32 reports, <= ~900 KiB JSON,
// zstd) to POST /v1/device/reports, deleting exactly what each reply
// acknowledges. A failed upload leaves the queue as it is for the next
// check-in and does not fail the check-in.
//
//   start ──► stored certificate with > 1/3 of its life left? ──yes──► check in
//                 │no                                                    │
//                 ▼                                                      ▼
//   attest: challenge ─► signed evidence + fresh CSR ─► verdict     every interval;
//     accepted            → save certs, check in, renew at ~2/3     401 → re-attest
//     accepted-unclaimed  → wait min(retry_after, --unclaimed-retry)
//     problem / unreachable → exponential backoff with full jitter
//
// Every state change rewrites DIR/status.json. Idle time is spent blocked
// in a condition-variable wait that Stop() wakes; there is no polling.
//
// Threading: Run() on one thread; Stop() and Status() from any thread.
// The RoT is used only from the Run() thread and must outlive the agent.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "device/credentials.hpp"
#include "device/schedule.hpp"
#include "device/status.hpp"
#include "device/system_info.hpp"
#include "http/http.hpp"
#include "protocol/protocol.hpp"
#include "reports/collector.hpp"
#include "reports/report_queue.hpp"
#include "rot/rot.hpp"
#include "update/update_client.hpp"

namespace citadel::device {

inline constexpr int kMaxReportBatchesPerCheckIn = 4;
// JSON bytes of one uploaded batch: below the service's 1 MiB with room for
// the envelope.
inline constexpr std::size_t kMaxUploadBatchJsonBytes = 900 * 1024;

// What the agent needs for failure reporting; everything must outlive Run().
struct ReportingHooks {
  reports::ReportQueue* queue = nullptr;          // uploaded after each check-in; null: no uploads
  reports::ReportCollector* collector = nullptr;  // FlushDue at check-in, crash-dump setting
  std::function<std::int64_t()> app_restarts{};   // automatic app restarts since start; empty: 0
};

struct AgentOptions {
  std::filesystem::path state_dir;
  std::string server_url;            // "https://host:port"
  std::string server_ca_pem;         // the pinned service CA
  std::string os_version = "1.0.0";  // reported at check-in
  Milliseconds check_in_interval = std::chrono::seconds(60);
  Milliseconds unclaimed_retry = std::chrono::seconds(60);
  Milliseconds initial_backoff = std::chrono::seconds(1);
  Milliseconds max_backoff = std::chrono::seconds(60);
  // Attest once (always, ignoring a stored certificate), check in once if
  // attested, and return.
  bool once = false;
  // Called on the Run() thread after every status.json update (e.g. for the
  // simulator's table or a test waiting for a state); must not call back
  // into the agent except Stop() and Status().
  std::function<void(const DeviceStatus&)> status_observer;
  // Where the telemetry's rx/tx bytes come from (tests pass a file).
  std::filesystem::path net_dev_file = "/proc/net/dev";
};

enum class RunOutcome {
  kStopped,    // Stop() was called
  kAttested,   // --once: attested and checked in
  kUnclaimed,  // --once: genuine but not claimed; no certificate
};

class DeviceAgent {
 public:
  // Checks the options (server URL, CA) and creates the HTTP client. Does
  // not contact the service.
  static Expected<std::unique_ptr<DeviceAgent>> Create(AgentOptions options, rot::RootOfTrust& rot);

  DeviceAgent(const DeviceAgent&) = delete;
  DeviceAgent& operator=(const DeviceAgent&) = delete;

  // Runs until Stop(), or with options.once until one attestation (and
  // check-in) finished. Errors: with once, the failure (its message starts
  // with the problem type when the service sent one); always, failures to
  // write the state directory, which the runtime cannot work without.
  Expected<RunOutcome> Run();

  // Wakes Run() from its wait and makes it return kStopped; an HTTP request
  // in flight finishes (bounded by its timeouts) first. Thread-safe,
  // idempotent, callable before Run().
  void Stop();

  DeviceStatus Status() const;

  // Call before Run(); the client must outlive the agent's Run().
  void AttachUpdateClient(update::UpdateClient* client) { update_client_ = client; }
  // Call before Run().
  void AttachReports(ReportingHooks hooks) { reporting_ = std::move(hooks); }

 private:
  enum class StepResult { kDone, kUnclaimed, kUnauthorized, kFailed };

  DeviceAgent(AgentOptions options, rot::RootOfTrust& rot, std::unique_ptr<http::Client> attestation_client);

  bool RestoreCredentials();
  // after_activation: this attempt follows a TPM credential activation; a
  // second activation request then fails the step instead of looping.
  StepResult Attest(bool after_activation = false);
  // Opens the service's credential with the TPM and returns the secret.
  StepResult Activate(const protocol::TpmActivationChallenge& activation);
  StepResult CheckIn();
  Expected<void> Install(DeviceCredentials credentials);
  protocol::CheckInTelemetry Telemetry() const;
  // After a successful check-in: uploads queued reports (see the header).
  void UploadReports();
  // Writes the tenant's publisher keys and the development capability (or
  // removes it) under DIR/trust; see device/trust_store.hpp.
  Expected<void> StoreAppTrust(const protocol::CheckInReply& reply);
  // Records a failed exchange: state, last_error and, when the service
  // answered with problem+json, last_problem_type.
  StepResult Fail(AgentState state, std::string error, std::string problem_type = {});
  StepResult FailWithResponse(std::string_view what, const http::Response& response);

  // Blocks until `delay` passed or Stop(); false when stopping.
  bool WaitFor(Milliseconds delay);
  // The wait after a failed step: what a 429/503's Retry-After asked for
  // (with jitter), else the next backoff delay.
  Milliseconds FailureDelay();
  bool Stopping() const;

  template <typename Update>
  void UpdateStatus(Update update);

  AgentOptions options_;
  rot::RootOfTrust& rot_;
  std::string device_id_;
  std::unique_ptr<http::Client> attestation_client_;
  std::unique_ptr<http::Client> device_client_;  // mutual TLS, once attested
  std::optional<DeviceCredentials> credentials_;
  update::UpdateClient* update_client_ = nullptr;
  ReportingHooks reporting_;
  NetworkCounters network_at_start_;
  TimePoint renewal_at_{};
  std::chrono::seconds next_check_in_{0};  // the service's wish, 0 = none
  std::chrono::seconds unclaimed_retry_after_{0};
  int consecutive_unauthorized_ = 0;
  Backoff backoff_;
  Random random_;
  std::optional<std::chrono::seconds> retry_after_;  // from the last 429/503
  std::optional<Error> once_error_;
  // Set when Run() failed to persist status.json (fatal).
  std::optional<Error> fatal_error_;

  mutable std::mutex status_mutex_;
  DeviceStatus status_;

  mutable std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
};

}  // namespace citadel::device
