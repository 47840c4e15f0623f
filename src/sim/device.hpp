// One virtual device: a coroutine that does what citadeld does, over the
// real protocol, with its own root of trust and its own connections:
//
//   attest ── accepted ─────────────────────────────► check in (mutual TLS)
//     │ accepted-unclaimed: claim itself (--claim-token) and attest again,      │ every interval, N times
//     │ or wait retry_after and attest again                                    ▼
//     ▼                                                   update section moved? → director + image
//   (failed after retries: the device stops)              repository refreshed and verified (TUF),
//                                                         the OS target downloaded and checked,
//                                                         "installed" and reported at the next check-in;
//                                                         queued crash reports uploaded (zstd).
//
// Every request goes through SendWithRetries (backoff.hpp): the operation
// it belongs to counts the retries, and fails only after max_retries.
// Operations: "attest" ends with a certificate (an "accepted-unclaimed"
// verdict on the way is an event, and the claim its own operation);
// "update" is counted when the director assigns something new, from the
// repository refresh to the verified target; "report" once per crash report
// (success = acknowledged).
//
// Threading: Run() is one coroutine on the device's strand; the shared
// DeviceEnvironment is read-only except the statistics (thread-safe).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/failure_report.hpp"
#include "protocol/protocol.hpp"
#include "sim/backoff.hpp"
#include "sim/connection.hpp"
#include "sim/memory_rot.hpp"
#include "sim/options.hpp"
#include "sim/repository.hpp"
#include "sim/stats.hpp"

namespace citadel::sim {

// What every device shares; outlives the devices.
struct DeviceEnvironment {
  const SimOptions* options = nullptr;
  ConnectionSettings connection;
  std::shared_ptr<asio::ssl::context> server_tls;  // pinned CA; identities are per connection
  // Where attested devices' mutual-TLS requests go (--check-in-server; by
  // default the same as connection and server_tls).
  ConnectionSettings device_connection;
  std::shared_ptr<asio::ssl::context> device_tls;
  // Devices done attesting (accepted or given up), for --check-in-together.
  mutable std::atomic<std::size_t> settled{0};
  std::size_t fleet_size = 0;
  FleetStats* stats = nullptr;
  BackoffSettings backoff;
  // Devices stop starting new operations at this time (--duration); max: none.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Set on SIGINT/SIGTERM (with VirtualDevice::Stop): devices end at once,
  // and operations cut short are not counted as failures.
  std::atomic<bool> stopping{false};
};

class VirtualDevice {
 public:
  VirtualDevice(const DeviceEnvironment& environment, MemoryRootOfTrust& rot, asio::any_io_executor executor,
                std::uint64_t seed);
  VirtualDevice(const VirtualDevice&) = delete;
  VirtualDevice& operator=(const VirtualDevice&) = delete;

  // Attests, claims when it must and may, checks in, updates, reports; ends
  // after its check-ins, at the deadline, or when attestation failed.
  asio::awaitable<void> Run();

  const std::string& id() const { return device_id_; }
  // Wakes the device from a wait and cancels its requests in flight, so
  // Run() ends soon after environment.stopping was set. Thread-safe (posts
  // to the device's strand).
  void Stop();

  // The device's strand: Run() must be spawned on it.
  const asio::any_io_executor& executor() const { return executor_; }
  const std::string& os_version() const { return os_version_; }

 private:
  enum class AttestOutcome { kAccepted, kUnclaimed, kFailed };

  asio::awaitable<Expected<HttpReply>> SendWithRetries(Connection& connection, const HttpRequest& request, int& retries,
                                                       SendOptions options = {});
  asio::awaitable<void> Sleep(std::chrono::milliseconds delay);
  bool PastDeadline() const;

  asio::awaitable<AttestOutcome> Attest();
  asio::awaitable<bool> Claim();
  // false when the check-in failed; sets unauthorized_ on 401.
  asio::awaitable<bool> CheckIn();
  asio::awaitable<void> Update(const protocol::CheckInUpdateReply& hints);
  asio::awaitable<void> UploadReports();
  asio::awaitable<Expected<std::string>> Fetch(std::string path, std::uint64_t max_length, int& retries);
  asio::awaitable<Expected<std::string>> DownloadTarget(const std::string& path, const tuf::TargetFile& target,
                                                        int& retries);

  void Record(OperationKind kind, std::chrono::steady_clock::time_point start, bool ok, int retries,
              std::string_view error = {});
  // The device's own clock: the machine's, off by this device's skew.
  TimePoint Now() const { return Clock::now() + skew_; }
  std::string NowRfc3339() const { return FormatRfc3339(Now()); }
  void QueueUpdateReport(const std::string& deployment_id, const std::string& target, std::string_view state,
                         std::string reason = {});
  protocol::FailureReport MakeCrashReport(std::size_t index);
  // Records `count` failed report operations and drops those reports.
  void FailReports(std::size_t count, std::chrono::steady_clock::time_point start, int retries,
                   const std::string& error);

  const DeviceEnvironment& env_;
  MemoryRootOfTrust& rot_;
  asio::any_io_executor executor_;
  asio::steady_timer* sleeping_ = nullptr;  // the timer of the Sleep() in progress
  UniformSource uniform_;
  std::string device_id_;
  std::chrono::seconds skew_{0};
  std::chrono::steady_clock::time_point started_;

  std::unique_ptr<Connection> attestation_;  // no client certificate
  std::unique_ptr<Connection> device_;       // mutual TLS
  bool unauthorized_ = false;
  std::int64_t retry_after_unclaimed_ = 0;
  int carried_attest_retries_ = 0;

  // Update client state (memory only).
  std::string os_version_;
  std::string os_sha256_;  // "" for the factory image
  std::int64_t director_version_ = -1;
  std::string director_path_;
  std::string image_path_;
  RepositoryTrust director_trust_;
  RepositoryTrust image_trust_;
  std::vector<std::string> refused_;                         // sha256 of targets this device cannot take
  std::vector<protocol::UpdateReportEntry> update_reports_;  // oldest first, until acknowledged
  std::optional<protocol::CheckInUpdateReply> pending_hints_;

  std::vector<protocol::FailureReport> crash_reports_;  // queued, until acknowledged
  bool reports_made_ = false;
  std::uint64_t tx_bytes_ = 0;
  std::uint64_t rx_bytes_ = 0;
};

}  // namespace citadel::sim
