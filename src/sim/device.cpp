#include "sim/device.hpp"

#include <utility>

#include <zstd.h>

#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log.hpp"
#include "device/measurement.hpp"
#include "update/selection.hpp"

namespace citadel::sim {
namespace {

using SteadyClock = std::chrono::steady_clock;

HttpRequest JsonPost(std::string target, std::string body) {
  HttpRequest request;
  request.method = "POST";
  request.target = std::move(target);
  request.body = std::move(body);
  request.headers.emplace_back("Content-Type", "application/json");
  return request;
}

HttpRequest Get(std::string target) {
  HttpRequest request;
  request.target = std::move(target);
  return request;
}
constexpr int kReportCompressionLevel = 3;
constexpr std::uint64_t kMaxTargetBytes = 64u << 20;

std::string Describe(const HttpReply& reply) {
  std::string text = "HTTP " + std::to_string(reply.status);
  if (auto problem = protocol::ParseProblem(reply.body); problem) {
    text += " " + problem->type;
    if (!problem->detail.empty()) text += ": " + problem->detail;
  }
  return text;
}

Expected<std::string> Compress(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), kReportCompressionLevel);
  if (ZSTD_isError(size) != 0) return MakeError(ErrorCode::kInternal, std::string("zstd: ") + ZSTD_getErrorName(size));
  out.resize(size);
  return out;
}

}  // namespace

VirtualDevice::VirtualDevice(const DeviceEnvironment& environment, MemoryRootOfTrust& rot,
                             asio::any_io_executor executor, std::uint64_t seed)
    : env_(environment),
      rot_(rot),
      executor_(std::move(executor)),
      uniform_(MakeUniformSource(seed)),
      device_id_(rot.DeviceId()),
      started_(SteadyClock::now()),
      os_version_(environment.options->os_version) {
  const auto skew = environment.options->clock_skew.count();
  if (skew > 0) {
    skew_ = std::chrono::seconds(static_cast<std::int64_t>((uniform_() * 2.0 - 1.0) * static_cast<double>(skew)));
  }
}

bool VirtualDevice::PastDeadline() const { return env_.stopping.load() || SteadyClock::now() >= env_.deadline; }

void VirtualDevice::Stop() {
  asio::post(executor_, [this] {
    if (sleeping_ != nullptr) sleeping_->cancel();
    if (attestation_) attestation_->Cancel();
    if (device_) device_->Cancel();
  });
}

asio::awaitable<void> VirtualDevice::Sleep(std::chrono::milliseconds delay) {
  if (delay <= std::chrono::milliseconds(0) || env_.stopping.load()) co_return;
  asio::steady_timer timer(executor_);
  timer.expires_after(delay);
  sleeping_ = &timer;
  boost::system::error_code ignored;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  sleeping_ = nullptr;
}

void VirtualDevice::Record(OperationKind kind, SteadyClock::time_point start, bool ok, int retries,
                           std::string_view error) {
  // Cut short by an interrupt: neither a success nor the service's failure.
  if (!ok && env_.stopping.load()) return;
  const double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
  env_.stats->Record(kind, ms, ok, retries, error);
  if (!ok)
    log::Warn("operation failed",
              {{"device_id", device_id_}, {"operation", OperationName(kind)}, {"error", std::string(error)}});
}

asio::awaitable<Expected<HttpReply>> VirtualDevice::SendWithRetries(Connection& connection, const HttpRequest& request,
                                                                    int& retries, SendOptions options) {
  const int max_retries = env_.backoff.max_retries;
  for (int attempt = 0;; ++attempt) {
    if (env_.stopping.load()) co_return MakeError(ErrorCode::kUnavailable, "stopped");
    SendOptions this_time = options;
    this_time.drop_mid_request = env_.options->drop_rate > 0 && uniform_() < env_.options->drop_rate;
    if (this_time.drop_mid_request) env_.stats->Count(EventKind::kDroppedRequest);
    const auto connects_before = connection.connects();
    auto reply = co_await connection.Send(request, this_time);
    if (connection.connects() > connects_before + (connects_before == 0 ? 1 : 0)) {
      env_.stats->Count(EventKind::kReconnect, connection.connects() - connects_before);
    }
    if (reply) {
      tx_bytes_ += request.body.size() + request.target.size();
      rx_bytes_ += reply->body.size();
    }
    int status = 0;
    std::optional<std::chrono::seconds> retry_after;
    if (reply) {
      if (!IsRetryableStatus(reply->status)) co_return reply;
      status = reply->status;
      retry_after = http::ParseRetryAfter(reply->Header("retry-after"));
    }
    if (attempt >= max_retries) {
      if (reply)
        co_return MakeError(ErrorCode::kUnavailable,
                            Describe(*reply) + " after " + std::to_string(attempt) + " retries");
      co_return WrapError(reply.error(), "after " + std::to_string(attempt) + " retries");
    }
    ++retries;
    const auto delay = RetryDelay(env_.backoff, attempt, status, retry_after, uniform_);
    log::Debug("retrying", {{"device_id", device_id_},
                            {"request", request.method + " " + request.target},
                            {"why", reply ? Describe(*reply) : reply.error().message()},
                            {"delay_ms", std::to_string(delay.count())}});
    co_await Sleep(delay);
  }
}

asio::awaitable<void> VirtualDevice::Run() {
  const SimOptions& options = *env_.options;
  attestation_ = std::make_unique<Connection>(executor_, env_.server_tls, env_.connection);
  // Counts this device as settled once, however the attestation ends.
  struct Settle {
    std::atomic<std::size_t>& settled;
    bool done = false;
    void Mark() {
      if (!std::exchange(done, true)) ++settled;
    }
    ~Settle() { Mark(); }
  } settle{env_.settled};

  // Attest until accepted (claiming on the way), bounded.
  const int max_unclaimed_rounds = env_.backoff.max_retries + 2;
  bool claimed_here = false;
  for (int round = 0;; ++round) {
    if (PastDeadline()) co_return;
    auto outcome = co_await Attest();
    if (outcome == AttestOutcome::kAccepted) break;
    if (outcome == AttestOutcome::kFailed) co_return;
    if (!options.claim_token.empty() && !claimed_here) {
      if (!co_await Claim()) co_return;
      claimed_here = true;
      continue;
    }
    if (round + 1 >= max_unclaimed_rounds && options.duration.count() == 0) {
      env_.stats->Record(OperationKind::kAttest, 0, false, 0, "device " + device_id_ + " was never claimed");
      co_return;
    }
    co_await Sleep(std::chrono::seconds(std::max<std::int64_t>(retry_after_unclaimed_, 1)));
  }
  attestation_.reset();  // its job is done: keep one connection per device
  settle.Mark();
  while (options.check_in_together && env_.settled.load() < env_.fleet_size && !PastDeadline()) {
    co_await Sleep(std::chrono::milliseconds(20));
  }

  std::int64_t done = 0;
  bool extra_round = false;
  while (!PastDeadline()) {
    const bool ok = co_await CheckIn();
    if (!ok && unauthorized_) {
      unauthorized_ = false;
      attestation_ = std::make_unique<Connection>(executor_, env_.server_tls, env_.connection);
      auto outcome = co_await Attest();
      attestation_.reset();
      if (outcome != AttestOutcome::kAccepted) co_return;
      continue;
    }
    ++done;
    if (ok && pending_hints_) {
      auto hints = *pending_hints_;
      pending_hints_.reset();
      co_await Update(hints);
    }
    if (ok) co_await UploadReports();
    const bool finished = options.check_ins > 0 && done >= options.check_ins;
    if (finished) {
      // An update installed after the last check-in is still reported, once.
      if (update_reports_.empty() || extra_round) break;
      extra_round = true;
      continue;
    }
    auto wait = options.check_in_interval;
    if (env_.deadline != SteadyClock::time_point::max()) {
      wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(env_.deadline - SteadyClock::now()));
    }
    co_await Sleep(wait);
  }
  device_.reset();
}

asio::awaitable<VirtualDevice::AttestOutcome> VirtualDevice::Attest() {
  const auto start = SteadyClock::now();
  int retries = carried_attest_retries_;
  carried_attest_retries_ = 0;
  for (int round = 0;; ++round) {
    const HttpRequest challenge_request = JsonPost("/v1/attestation/challenge", "{}");
    auto challenge_reply = co_await SendWithRetries(*attestation_, challenge_request, retries);
    if (!challenge_reply) {
      Record(OperationKind::kAttest, start, false, retries, challenge_reply.error().message());
      co_return AttestOutcome::kFailed;
    }
    if (challenge_reply->status != 200) {
      Record(OperationKind::kAttest, start, false, retries, "challenge: " + Describe(*challenge_reply));
      co_return AttestOutcome::kFailed;
    }
    auto challenge = protocol::ParseChallenge(challenge_reply->body);
    if (!challenge) {
      Record(OperationKind::kAttest, start, false, retries, "challenge: " + challenge.error().message());
      co_return AttestOutcome::kFailed;
    }
    auto csr = crypto::CertificateRequest::Create(rot_.TlsClientKey(), device_id_);
    if (!csr) {
      Record(OperationKind::kAttest, start, false, retries, csr.error().message());
      co_return AttestOutcome::kFailed;
    }
    auto evidence = protocol::CreateSignedEvidence(rot_, challenge->nonce, csr->Pem());
    if (!evidence) {
      Record(OperationKind::kAttest, start, false, retries, evidence.error().message());
      co_return AttestOutcome::kFailed;
    }
    const HttpRequest evidence_request = JsonPost("/v1/attestation", std::move(*evidence));
    auto verdict_reply = co_await SendWithRetries(*attestation_, evidence_request, retries);
    if (!verdict_reply) {
      Record(OperationKind::kAttest, start, false, retries, verdict_reply.error().message());
      co_return AttestOutcome::kFailed;
    }
    // A challenge that expired while the device backed off: a new one, as
    // one more retry of the operation.
    if (verdict_reply->status != 200 && round < env_.backoff.max_retries &&
        verdict_reply->body.find("nonce") != std::string::npos) {
      ++retries;
      continue;
    }
    if (verdict_reply->status != 200) {
      Record(OperationKind::kAttest, start, false, retries, "evidence: " + Describe(*verdict_reply));
      co_return AttestOutcome::kFailed;
    }
    auto result = protocol::ParseAttestationResult(verdict_reply->body);
    if (!result) {
      Record(OperationKind::kAttest, start, false, retries, "verdict: " + result.error().message());
      co_return AttestOutcome::kFailed;
    }
    if (result->verdict == "accepted-unclaimed") {
      retry_after_unclaimed_ = result->retry_after_seconds;
      env_.stats->Count(EventKind::kUnclaimedVerdict);
      carried_attest_retries_ = retries;  // counted with the attestation that ends accepted
      co_return AttestOutcome::kUnclaimed;
    }
    if (result->verdict != "accepted" || result->certificate.empty() || result->chain.empty()) {
      Record(OperationKind::kAttest, start, false, retries, "unexpected verdict '" + result->verdict + "'");
      co_return AttestOutcome::kFailed;
    }
    // Present exactly what citadeld presents: the leaf and the issuing CA.
    ClientIdentity identity;
    identity.key = &rot_.TlsClientKey();
    for (const std::string* pem : {&result->certificate, &result->chain.front()}) {
      auto certificate = crypto::Certificate::FromPem(*pem);
      if (!certificate) {
        Record(OperationKind::kAttest, start, false, retries, "certificate: " + certificate.error().message());
        co_return AttestOutcome::kFailed;
      }
      identity.chain.push_back(std::move(*certificate));
    }
    if (!(identity.chain.front().SubjectPublicKey() == rot_.TlsClientKey().Public())) {
      Record(OperationKind::kAttest, start, false, retries, "the device certificate does not certify the TLS key");
      co_return AttestOutcome::kFailed;
    }
    device_ = std::make_unique<Connection>(executor_, env_.device_tls, env_.device_connection, std::move(identity));
    Record(OperationKind::kAttest, start, true, retries);
    co_return AttestOutcome::kAccepted;
  }
}

asio::awaitable<bool> VirtualDevice::Claim() {
  const SimOptions& options = *env_.options;
  const auto start = SteadyClock::now();
  int retries = 0;
  Json body = Json::object();
  if (!options.device_group.empty()) body["device_group_id"] = options.device_group;
  HttpRequest request = JsonPost("/v1/tenants/" + options.tenant + "/devices/" + device_id_ + "/claim", body.dump());
  request.headers.emplace_back("Authorization", "Bearer " + options.claim_token);
  auto reply = co_await SendWithRetries(*attestation_, request, retries);
  if (!reply) {
    Record(OperationKind::kClaim, start, false, retries, reply.error().message());
    co_return false;
  }
  // Already ours (a claim whose reply was lost, a re-run): claimed all the same.
  const bool ok =
      reply->status == 200 || (reply->status == 409 && reply->body.find("device-already-claimed") != std::string::npos);
  Record(OperationKind::kClaim, start, ok, retries, ok ? "" : Describe(*reply));
  co_return ok;
}

asio::awaitable<bool> VirtualDevice::CheckIn() {
  const SimOptions& options = *env_.options;
  const auto start = SteadyClock::now();
  int retries = 0;
  protocol::CheckIn check_in;
  check_in.os_version = os_version_;
  check_in.runtime_version = std::string(device::RuntimeVersion());
  check_in.uptime_seconds = std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() - started_).count();
  check_in.free_memory_kb = 512 * 1024;
  protocol::CheckInUpdate update;
  update.installed.push_back({"os", options.os_name, os_version_, os_sha256_});
  const std::size_t sent_reports = std::min(update_reports_.size(), protocol::kMaxUpdateEntries);
  update.reports.assign(update_reports_.begin(), update_reports_.begin() + static_cast<std::ptrdiff_t>(sent_reports));
  check_in.update = std::move(update);
  protocol::CheckInTelemetry telemetry;
  telemetry.rx_bytes = static_cast<std::int64_t>(rx_bytes_);
  telemetry.tx_bytes = static_cast<std::int64_t>(tx_bytes_);
  telemetry.reports_queued = static_cast<std::int64_t>(crash_reports_.size());
  check_in.telemetry = telemetry;

  const HttpRequest request = JsonPost("/v1/device/check-in", protocol::CheckInToJson(check_in).dump());
  auto reply = co_await SendWithRetries(*device_, request, retries);
  if (!reply) {
    Record(OperationKind::kCheckIn, start, false, retries, reply.error().message());
    co_return false;
  }
  if (reply->status == 401) {
    // The certificate is not accepted (revoked, or the service's CA moved):
    // re-attest, as citadeld does. Not counted: the re-attestation is.
    unauthorized_ = true;
    co_return false;
  }
  if (reply->status != 200) {
    Record(OperationKind::kCheckIn, start, false, retries, Describe(*reply));
    co_return false;
  }
  auto parsed = protocol::ParseCheckInReply(reply->body);
  if (!parsed) {
    Record(OperationKind::kCheckIn, start, false, retries, parsed.error().message());
    co_return false;
  }
  if (parsed->update) {
    const auto acknowledged = static_cast<std::size_t>(
        std::clamp<std::int64_t>(parsed->update->acknowledged, 0, static_cast<std::int64_t>(sent_reports)));
    update_reports_.erase(update_reports_.begin(), update_reports_.begin() + static_cast<std::ptrdiff_t>(acknowledged));
    const auto& hints = *parsed->update;
    if (hints.update_now || hints.director_timestamp_version != director_version_ || hints.director != director_path_ ||
        hints.image_repository != image_path_) {
      pending_hints_ = hints;
    }
  }
  Record(OperationKind::kCheckIn, start, true, retries);
  co_return true;
}

asio::awaitable<Expected<std::string>> VirtualDevice::Fetch(std::string path, std::uint64_t max_length, int& retries) {
  const HttpRequest request = Get(std::move(path));
  auto reply = co_await SendWithRetries(*device_, request, retries);
  if (!reply) co_return std::unexpected(reply.error());
  if (reply->status == 404 || reply->status == 403) {
    co_return MakeError(ErrorCode::kNotFound, request.target + ": not found");
  }
  if (reply->status != 200) co_return MakeError(ErrorCode::kUnavailable, request.target + ": " + Describe(*reply));
  if (reply->body.size() > max_length) {
    co_return MakeError(ErrorCode::kTooLarge, request.target + ": more than " + std::to_string(max_length) + " bytes");
  }
  co_return std::move(reply->body);
}

asio::awaitable<Expected<std::string>> VirtualDevice::DownloadTarget(const std::string& path,
                                                                     const tuf::TargetFile& target, int& retries) {
  const auto length = static_cast<std::uint64_t>(std::max<std::int64_t>(target.length, 0));
  if (length > kMaxTargetBytes) co_return MakeError(ErrorCode::kTooLarge, path + ": target too large to simulate");
  std::string data;
  // Chaos: cut the transfer halfway, then continue it with a range request.
  SendOptions first;
  const bool kill = env_.options->kill_download_rate > 0 && uniform_() < env_.options->kill_download_rate && length > 1;
  if (kill) first.cut_response_after = length / 2;
  const HttpRequest request = Get(path);
  auto reply = co_await SendWithRetries(*device_, request, retries, first);
  if (!reply) co_return std::unexpected(reply.error());
  if (reply->status != 200) co_return MakeError(ErrorCode::kUnavailable, path + ": " + Describe(*reply));
  data = std::move(reply->body);
  if (reply->cut) {
    env_.stats->Count(EventKind::kKilledDownload);
    HttpRequest rest = Get(path);
    rest.headers.emplace_back("Range", "bytes=" + std::to_string(data.size()) + "-");
    auto resumed = co_await SendWithRetries(*device_, rest, retries);
    if (!resumed) co_return std::unexpected(resumed.error());
    if (resumed->status == 206) {
      data += resumed->body;
      env_.stats->Count(EventKind::kResumedDownload);
    } else if (resumed->status == 200) {
      data = std::move(resumed->body);  // the server ignored the range: the whole file again
    } else {
      co_return MakeError(ErrorCode::kUnavailable, path + " (resumed): " + Describe(*resumed));
    }
  }
  if (data.size() > length) co_return MakeError(ErrorCode::kTooLarge, path + ": longer than the signed length");
  if (auto verified = target.VerifyLengthAndHashes(data); !verified) co_return std::unexpected(verified.error());
  co_return data;
}

void VirtualDevice::QueueUpdateReport(const std::string& deployment_id, const std::string& target,
                                      std::string_view state, std::string reason) {
  update_reports_.push_back({deployment_id, target, std::string(state), std::move(reason), NowRfc3339()});
}

asio::awaitable<void> VirtualDevice::Update(const protocol::CheckInUpdateReply& hints) {
  const SimOptions& options = *env_.options;
  const auto start = SteadyClock::now();
  int retries = 0;
  const std::int64_t now = ToUnixSeconds(Now());
  FetchFile fetch = [this, &retries](std::string path, std::uint64_t max_length) {
    return Fetch(std::move(path), max_length, retries);
  };
  if (hints.image_repository != image_path_) {
    image_trust_ = {};  // another tenant: other roots
    director_trust_ = {};
  }
  director_path_ = hints.director;
  image_path_ = hints.image_repository;

  auto director = co_await RefreshRepository(fetch, hints.director, director_trust_, now);
  if (!director) {
    Record(OperationKind::kUpdate, start, false, retries, "director: " + director.error().message());
    co_return;
  }
  auto assignment = update::ParseDirectorTargets(*director->targets());
  if (!assignment) {
    Record(OperationKind::kUpdate, start, false, retries, "director targets: " + assignment.error().message());
    co_return;
  }
  const std::int64_t director_version = director->timestamp()->body.version;
  if (assignment->window && !hints.update_now && !update::InMaintenanceWindow(*assignment->window, now)) {
    co_return;  // outside the maintenance window: nothing starts (and nothing is counted)
  }
  const std::map<std::string, std::string> installed{{options.os_name, os_sha256_}};
  auto choices = update::ChooseTargets(assignment->targets, device_id_, installed, protocol::InRollout);
  std::optional<update::Choice> wanted;
  for (const auto& choice : choices) {
    const auto sha256 = choice.target.Sha256();
    if (std::find(refused_.begin(), refused_.end(), sha256) != refused_.end()) continue;
    const auto& identity = choice.target.identity;
    if (identity.kind == update::kKindOs && identity.component_id == options.os_name) {
      if (sha256 != os_sha256_ && identity.version != os_version_) wanted = choice;
      continue;
    }
    // Like citadeld without the app subsystem or with another OS: refused, reported.
    refused_.push_back(sha256);
    QueueUpdateReport(choice.target.deployment_id, choice.target.file.path, "failed",
                      identity.kind == update::kKindApp
                          ? "this device runs no app subsystem"
                          : "this device runs OS " + options.os_name + ", not " + identity.component_id);
  }
  if (!wanted) {
    director_version_ = director_version;
    co_return;  // nothing to take: not an update operation
  }

  const auto& target = wanted->target;
  auto image = co_await RefreshRepository(fetch, hints.image_repository, image_trust_, now);
  if (!image) {
    Record(OperationKind::kUpdate, start, false, retries, "image repository: " + image.error().message());
    co_return;
  }
  const auto& listed = image->targets()->body.targets;
  auto found = listed.find(target.file.path);
  if (found == listed.end()) {
    refused_.push_back(target.Sha256());
    QueueUpdateReport(target.deployment_id, target.file.path, "failed",
                      "the image repository does not sign this target");
    Record(OperationKind::kUpdate, start, false, retries, target.file.path + ": not in the image repository");
    co_return;
  }
  if (auto matched = update::CheckImageTarget(target, found->second); !matched) {
    refused_.push_back(target.Sha256());
    QueueUpdateReport(target.deployment_id, target.file.path, "failed", matched.error().message());
    Record(OperationKind::kUpdate, start, false, retries, matched.error().message());
    co_return;
  }
  QueueUpdateReport(target.deployment_id, target.file.path, "downloading");
  const std::string path = TargetPath(hints.image_repository, found->second, image->root().body.consistent_snapshot);
  auto data = co_await DownloadTarget(path, found->second, retries);
  if (!data) {
    // The work stays open: the next check-in (same director version) asks again.
    Record(OperationKind::kUpdate, start, false, retries, "download: " + data.error().message());
    co_return;
  }
  // "Installed": the new OS is what this device reports from now on.
  QueueUpdateReport(target.deployment_id, target.file.path, "installing");
  QueueUpdateReport(target.deployment_id, target.file.path, "committed");
  os_version_ = target.identity.version;
  os_sha256_ = target.Sha256();
  director_version_ = director_version;
  Record(OperationKind::kUpdate, start, true, retries);
}

void VirtualDevice::FailReports(std::size_t count, SteadyClock::time_point start, int retries,
                                const std::string& error) {
  // The batch's retries are counted once, with its first report.
  for (std::size_t i = 0; i < count; ++i) Record(OperationKind::kReport, start, false, i == 0 ? retries : 0, error);
  crash_reports_.erase(crash_reports_.begin(), crash_reports_.begin() + static_cast<std::ptrdiff_t>(count));
}

protocol::FailureReport VirtualDevice::MakeCrashReport(std::size_t index) {
  protocol::FailureReport report;
  report.report_id = HexEncode(crypto::RandomBytes(protocol::kReportIdBytes));
  report.failure_class = "app-crash";
  report.occurred_at = NowRfc3339();
  report.last_occurred_at = report.occurred_at;
  report.component_id = "citadel-sim-app";
  report.component_version = "1.0." + std::to_string(index % 3);
  report.os_version = os_version_;
  report.runtime_version = std::string(device::RuntimeVersion());
  report.error_code = "SIGSEGV";
  report.message = "synthetic crash from citadel-sim";
  protocol::CrashDetails crash;
  crash.signal = 11;
  crash.signal_code = 1;
  crash.fault_address = 0x10;
  crash.registers = {{"pc", 0x401000 + index % 4}, {"sp", 0x7ffe0000}};
  crash.frames = {{"sim-app", "", 0x1234}, {"sim-app", "", 0x2000}, {"libc.so.6", "", 0x29d90}};
  report.crash = std::move(crash);
  return report;
}

asio::awaitable<void> VirtualDevice::UploadReports() {
  const SimOptions& options = *env_.options;
  if (!reports_made_) {
    reports_made_ = true;
    for (std::int64_t i = 0; i < options.reports_per_device; ++i) {
      crash_reports_.push_back(MakeCrashReport(static_cast<std::size_t>(i)));
    }
  }
  // A bounded number of batches per check-in, like citadeld.
  for (int round = 0; round < 4 && !crash_reports_.empty(); ++round) {
    const auto start = SteadyClock::now();
    int retries = 0;
    protocol::ReportBatch batch;
    const std::size_t count = std::min(crash_reports_.size(), protocol::kMaxReportsPerBatch);
    batch.reports.assign(crash_reports_.begin(), crash_reports_.begin() + static_cast<std::ptrdiff_t>(count));
    auto body = Compress(protocol::ReportBatchToJson(batch).dump());
    if (!body) {
      FailReports(count, start, retries, body.error().message());
      co_return;
    }
    HttpRequest request = JsonPost("/v1/device/reports", std::move(*body));
    request.headers.emplace_back("Content-Encoding", "zstd");
    auto reply = co_await SendWithRetries(*device_, request, retries);
    if (!reply || reply->status != 200) {
      FailReports(count, start, retries, reply ? Describe(*reply) : reply.error().message());
      co_return;
    }
    auto acknowledged = protocol::ParseReportBatchReply(reply->body);
    if (!acknowledged) {
      FailReports(count, start, retries, acknowledged.error().message());
      co_return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      const auto& id = crash_reports_[i].report_id;
      const bool ok = std::find(acknowledged->acknowledged.begin(), acknowledged->acknowledged.end(), id) !=
                      acknowledged->acknowledged.end();
      Record(OperationKind::kReport, start, ok, i == 0 ? retries : 0, ok ? "" : "report " + id + " not acknowledged");
    }
    crash_reports_.erase(crash_reports_.begin(), crash_reports_.begin() + static_cast<std::ptrdiff_t>(count));
  }
}

}  // namespace citadel::sim
