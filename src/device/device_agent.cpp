#include "device/device_agent.hpp"

#include <zstd.h>

#include <algorithm>
#include <utility>

#include "common/log.hpp"
#include "device/measurement.hpp"
#include "device/system_info.hpp"
#include "device/trust_store.hpp"

namespace citadel::device {
namespace {

using std::chrono::seconds;

const std::vector<std::pair<std::string, std::string>> kJsonHeaders{{"Content-Type", "application/json"}};

constexpr std::string_view kChallengePath = "/v1/attestation/challenge";
constexpr std::string_view kAttestationPath = "/v1/attestation";
constexpr std::string_view kActivationPath = "/v1/attestation/activate";
constexpr std::string_view kCheckInPath = "/v1/device/check-in";
constexpr std::string_view kReportsPath = "/v1/device/reports";
const std::vector<std::pair<std::string, std::string>> kZstdJsonHeaders{{"Content-Type", "application/json"},
                                                                        {"Content-Encoding", "zstd"}};
// Report batches compress well (repeated keys); 3 is zstd's default.
constexpr int kReportCompressionLevel = 3;

constexpr seconds kMinimumCheckInInterval{1};

http::ClientOptions BaseClientOptions(const AgentOptions& options) {
  http::ClientOptions client;
  client.base_url = options.server_url;
  client.ca_certificate_pem = options.server_ca_pem;
  client.user_agent = "citadeld/" + std::string(RuntimeVersion());
  // Replies are small JSON documents; a huge one is a broken or hostile peer.
  client.max_response_bytes = 1u << 20;
  return client;
}

Expected<std::string> Compress(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), kReportCompressionLevel);
  if (ZSTD_isError(size) != 0) {
    return MakeError(ErrorCode::kInternal, std::string("zstd: ") + ZSTD_getErrorName(size));
  }
  out.resize(size);
  return out;
}

}  // namespace

Expected<std::unique_ptr<DeviceAgent>> DeviceAgent::Create(AgentOptions options, rot::RootOfTrust& rot) {
  auto endpoint = http::ParseBaseUrl(options.server_url);
  if (!endpoint) return WrapError(endpoint.error(), "--server");
  if (options.server_ca_pem.empty()) return MakeError(ErrorCode::kInvalidArgument, "--server-ca: empty CA file");
  if (options.check_in_interval < kMinimumCheckInInterval) {
    return MakeError(ErrorCode::kInvalidArgument, "--check-in-interval must be at least 1s");
  }
  if (options.unclaimed_retry < kMinimumCheckInInterval) {
    return MakeError(ErrorCode::kInvalidArgument, "--unclaimed-retry must be at least 1s");
  }
  if (options.max_backoff < kMinimumRetryDelay) {
    return MakeError(ErrorCode::kInvalidArgument, "--max-backoff must be at least 100ms");
  }
  auto client = http::Client::Create(BaseClientOptions(options));
  if (!client) return WrapError(client.error(), "creating the service client");
  return std::unique_ptr<DeviceAgent>(new DeviceAgent(std::move(options), rot, std::move(*client)));
}

DeviceAgent::DeviceAgent(AgentOptions options, rot::RootOfTrust& rot, std::unique_ptr<http::Client> client)
    : options_(std::move(options)),
      rot_(rot),
      device_id_(rot.DeviceId()),
      attestation_client_(std::move(client)),
      backoff_(options_.initial_backoff, options_.max_backoff),
      random_(MakeRandom()) {
  status_.device_id = device_id_;
  // Telemetry counts from here ("since citadeld started").
  network_at_start_ = ReadNetworkCounters(options_.net_dev_file).value_or(NetworkCounters{});
}

void DeviceAgent::Stop() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
}

bool DeviceAgent::Stopping() const {
  std::lock_guard lock(stop_mutex_);
  return stop_requested_;
}

bool DeviceAgent::WaitFor(Milliseconds delay) {
  log::Debug("waiting", {{"seconds", std::to_string(std::chrono::duration<double>(delay).count())}});
  std::unique_lock lock(stop_mutex_);
  auto deadline = std::chrono::steady_clock::now() + delay;
  return !stop_cv_.wait_until(lock, deadline, [this] { return stop_requested_; });
}

DeviceStatus DeviceAgent::Status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

template <typename Update>
void DeviceAgent::UpdateStatus(Update update) {
  DeviceStatus snapshot;
  AgentState previous;
  {
    std::lock_guard lock(status_mutex_);
    previous = status_.state;
    update(status_);
    snapshot = status_;
  }
  if (previous != snapshot.state) {
    // Every retry passes through "attesting"; only where it lands matters
    // to an operator.
    auto log_at = snapshot.state == AgentState::kAttesting ? log::Debug : log::Info;
    log_at("state changed",
           {{"device_id", device_id_}, {"from", AgentStateName(previous)}, {"to", AgentStateName(snapshot.state)}});
  }
  auto written = WriteStatus(options_.state_dir, snapshot);
  if (!written && !fatal_error_) fatal_error_ = written.error();
  if (options_.status_observer) options_.status_observer(snapshot);
}

DeviceAgent::StepResult DeviceAgent::Fail(AgentState state, std::string error, std::string problem_type) {
  log::Warn("service exchange failed", {{"device_id", device_id_}, {"error", error}, {"problem_type", problem_type}});
  if (options_.once && !once_error_) {
    auto code = state == AgentState::kRefused ? ErrorCode::kPermissionDenied : ErrorCode::kUnavailable;
    once_error_ = Error(code, problem_type.empty() ? error : problem_type + ": " + error);
  }
  UpdateStatus([&](DeviceStatus& status) {
    status.state = state;
    status.last_error = std::move(error);
    status.last_problem_type = std::move(problem_type);
  });
  return StepResult::kFailed;
}

DeviceAgent::StepResult DeviceAgent::FailWithResponse(std::string_view what, const http::Response& response) {
  // problem+json tells the device what went wrong; log its type and detail
  // (never the request: evidence is not for logs).
  auto problem = protocol::ParseProblem(response.body);
  std::string message = std::string(what) + ": HTTP " + std::to_string(response.status);
  std::string type;
  if (problem) {
    type = problem->type;
    if (!problem->detail.empty()) message += ": " + problem->detail;
  }
  // Backpressure: the service says when to come back (schedule.hpp).
  if (response.status == 429 || response.status == 503) {
    for (const auto& [name, value] : response.headers) {
      if (name == "retry-after") retry_after_ = http::ParseRetryAfter(value);
    }
  }
  // 4xx: the service looked and said no. 5xx: it is failing; treat as down.
  auto state = response.status >= 400 && response.status < 500 ? AgentState::kRefused : AgentState::kBackoff;
  return Fail(state, std::move(message), std::move(type));
}

Milliseconds DeviceAgent::FailureDelay() {
  if (retry_after_) {
    Milliseconds delay = RetryAfterDelay(*retry_after_, random_);
    retry_after_.reset();
    return delay;
  }
  return backoff_.Next(random_);
}

bool DeviceAgent::RestoreCredentials() {
  auto now = Clock::now();
  auto loaded = LoadCredentials(options_.state_dir, rot_.TlsClientKey().Public(), device_id_, now);
  if (!loaded) {
    if (loaded.error().code() != ErrorCode::kNotFound) {
      log::Info("not using the stored device certificate", {{"reason", loaded.error().message()}});
    }
    return false;
  }
  if (!HasMoreThanAThirdLeft(loaded->certificate.NotBefore(), loaded->certificate.NotAfter(), now)) {
    log::Info("stored device certificate is due for renewal; attesting",
              {{"expires_at", FormatRfc3339(loaded->certificate.NotAfter())}});
    return false;
  }
  auto installed = Install(std::move(*loaded));
  if (!installed) {
    log::Warn("cannot use the stored device certificate", {{"error", installed.error().message()}});
    return false;
  }
  log::Info("using the stored device certificate",
            {{"device_id", device_id_}, {"expires_at", status_.certificate_expires_at}});
  return true;
}

Expected<void> DeviceAgent::Install(DeviceCredentials credentials) {
  auto client_options = BaseClientOptions(options_);
  client_options.client_identity = http::TlsIdentity{credentials.FullChainPem(), &rot_.TlsClientKey()};
  auto client = http::Client::Create(std::move(client_options));
  if (!client) return WrapError(client.error(), "creating the mutual-TLS client");
  device_client_ = std::move(*client);
  renewal_at_ = RenewalTime(credentials.certificate.NotBefore(), credentials.certificate.NotAfter(), random_);
  {
    std::lock_guard lock(status_mutex_);
    status_.tenant_id = credentials.tenant_id;
    status_.certificate_serial = credentials.certificate.SerialHex();
    status_.certificate_expires_at = FormatRfc3339(credentials.certificate.NotAfter());
  }
  log::Debug("renewal scheduled", {{"renew_at", FormatRfc3339(renewal_at_)}});
  credentials_ = std::move(credentials);
  return kOk;
}

DeviceAgent::StepResult DeviceAgent::Activate(const protocol::TpmActivationChallenge& activation) {
  auto secret = rot_.ActivateCredential(activation.credential_blob, activation.encrypted_secret);
  if (!secret) {
    // The TPM could not open it: the AK and the certified EK are not in
    // one TPM (or the credential was not made for them). Nothing to retry.
    return Fail(AgentState::kRefused, "TPM credential activation failed: " + secret.error().message());
  }
  protocol::ActivationRequest request{activation.id, device_id_, std::move(*secret)};
  auto response = attestation_client_->Send("POST", kActivationPath, protocol::ActivationRequestToJson(request).dump(),
                                            kJsonHeaders);
  if (!response) return Fail(AgentState::kBackoff, "service unreachable: " + response.error().message());
  if (response->status != 204) return FailWithResponse("TPM activation refused", *response);
  log::Info("TPM attestation key activated with the service", {{"device_id", device_id_}});
  return StepResult::kDone;
}

DeviceAgent::StepResult DeviceAgent::Attest(bool after_activation) {
  UpdateStatus([](DeviceStatus& status) { status.state = AgentState::kAttesting; });

  auto challenge_response = attestation_client_->Send("POST", kChallengePath, "{}", kJsonHeaders);
  if (!challenge_response) {
    return Fail(AgentState::kBackoff, "service unreachable: " + challenge_response.error().message());
  }
  if (challenge_response->status != 200) return FailWithResponse("challenge refused", *challenge_response);
  auto challenge = protocol::ParseChallenge(challenge_response->body);
  if (!challenge) return Fail(AgentState::kBackoff, "unusable challenge: " + challenge.error().message());

  // A fresh CSR each time: the service binds the certificate to this
  // attestation, and a CSR is cheap.
  auto csr = crypto::CertificateRequest::Create(rot_.TlsClientKey(), device_id_);
  if (!csr) return Fail(AgentState::kBackoff, "cannot create a CSR: " + csr.error().message());
  auto evidence = protocol::CreateSignedEvidence(rot_, challenge->nonce, csr->Pem());
  if (!evidence) return Fail(AgentState::kBackoff, "cannot create evidence: " + evidence.error().message());

  auto verdict_response = attestation_client_->Send("POST", kAttestationPath, *evidence, kJsonHeaders);
  if (!verdict_response) {
    return Fail(AgentState::kBackoff, "service unreachable: " + verdict_response.error().message());
  }
  if (verdict_response->status != 200) return FailWithResponse("attestation refused", *verdict_response);
  auto result = protocol::ParseAttestationResult(verdict_response->body);
  if (!result) return Fail(AgentState::kBackoff, "unusable attestation result: " + result.error().message());

  if (result->verdict == "accepted-unclaimed") {
    unclaimed_retry_after_ = seconds(std::max<std::int64_t>(result->retry_after_seconds, 0));
    log::Info("genuine but not claimed by a tenant yet",
              {{"device_id", device_id_}, {"retry_after_seconds", std::to_string(result->retry_after_seconds)}});
    UpdateStatus([](DeviceStatus& status) {
      status.state = AgentState::kUnclaimed;
      status.tenant_id.clear();
      status.last_error.clear();
      status.last_problem_type.clear();
    });
    return StepResult::kUnclaimed;
  }
  if (result->verdict == "activation-required" && result->activation) {
    if (after_activation) {
      return Fail(AgentState::kBackoff, "the service asked for a second TPM activation in a row");
    }
    if (auto activated = Activate(*result->activation); activated != StepResult::kDone) return activated;
    return Attest(/*after_activation=*/true);
  }
  if (result->verdict != "accepted") {
    return Fail(AgentState::kBackoff, "unknown attestation verdict '" + result->verdict + "'");
  }

  auto certificate = crypto::Certificate::FromPem(result->certificate);
  if (!certificate) return Fail(AgentState::kRefused, "unusable device certificate: " + certificate.error().message());
  std::vector<crypto::Certificate> chain;
  for (const auto& pem : result->chain) {
    auto ca = crypto::Certificate::FromPem(pem);
    if (!ca) return Fail(AgentState::kRefused, "unusable CA certificate: " + ca.error().message());
    chain.push_back(std::move(*ca));
  }
  auto credentials =
      ValidateCredentials(*certificate, std::move(chain), rot_.TlsClientKey().Public(), device_id_, Clock::now());
  if (!credentials) return Fail(AgentState::kRefused, credentials.error().message());
  auto saved = SaveCredentials(options_.state_dir, *credentials);
  if (!saved) {
    if (!fatal_error_) fatal_error_ = saved.error();
    return StepResult::kFailed;
  }
  auto installed = Install(std::move(*credentials));
  if (!installed) return Fail(AgentState::kBackoff, installed.error().message());

  log::Info("attested", {{"device_id", device_id_},
                         {"tenant_id", credentials_->tenant_id},
                         {"certificate_serial", credentials_->certificate.SerialHex()},
                         {"expires_at", FormatRfc3339(credentials_->certificate.NotAfter())}});
  UpdateStatus([](DeviceStatus& status) {
    status.state = AgentState::kAttested;
    status.attestations += 1;
    status.last_error.clear();
    status.last_problem_type.clear();
  });
  return StepResult::kDone;
}

DeviceAgent::StepResult DeviceAgent::CheckIn() {
  protocol::CheckIn check_in;
  check_in.os_version = options_.os_version;
  check_in.runtime_version = std::string(RuntimeVersion());
  // Inventory is best effort: a missing /proc entry reports 0, not a failure.
  check_in.uptime_seconds = ReadUptimeSeconds().value_or(0);
  check_in.free_memory_kb = ReadAvailableMemoryKb().value_or(0);
  // Folded failure counts whose rate-limit token is back go out with this
  // check-in's upload.
  if (reporting_.collector != nullptr) reporting_.collector->FlushDue(Clock::now());
  check_in.telemetry = Telemetry();
  std::optional<update::CheckInSection> update_section;
  if (update_client_ != nullptr) {
    update_section = update_client_->PrepareCheckIn();
    check_in.update = update_section->update;
  }
  auto body = protocol::CheckInToJson(check_in).dump();

  auto response = device_client_->Send("POST", kCheckInPath, body, kJsonHeaders);
  if (!response) return Fail(AgentState::kBackoff, "service unreachable: " + response.error().message());
  if (response->status == 401) {
    FailWithResponse("device certificate not accepted", *response);
    return StepResult::kUnauthorized;
  }
  if (response->status != 200) return FailWithResponse("check-in refused", *response);
  auto reply = protocol::ParseCheckInReply(response->body);
  if (!reply) return Fail(AgentState::kBackoff, "unusable check-in reply: " + reply.error().message());
  if (auto stored = StoreAppTrust(*reply); !stored) {
    if (!fatal_error_) fatal_error_ = stored.error();
    return StepResult::kFailed;
  }
  if (update_client_ != nullptr) {
    update_client_->OnCheckIn(*update_section, reply->update, credentials_->FullChainPem());
  }
  if (reporting_.collector != nullptr) {
    reporting_.collector->SetCrashDumps(reply->reporting && reply->reporting->crash_dumps);
  }
  next_check_in_ = seconds(reply->next_check_in_seconds);
  consecutive_unauthorized_ = 0;
  UploadReports();
  log::Debug("checked in", {{"device_id", device_id_}});
  UpdateStatus([](DeviceStatus& status) {
    status.state = AgentState::kAttested;
    status.last_check_in = FormatRfc3339(Clock::now());
    status.check_ins += 1;
    status.last_error.clear();
    status.last_problem_type.clear();
  });
  return StepResult::kDone;
}

protocol::CheckInTelemetry DeviceAgent::Telemetry() const {
  protocol::CheckInTelemetry telemetry;
  telemetry.app_restarts = reporting_.app_restarts ? std::max<std::int64_t>(reporting_.app_restarts(), 0) : 0;
  // Best effort like the inventory; counters that went backwards (an
  // interface re-created) report 0 rather than a negative count.
  if (auto network = ReadNetworkCounters(options_.net_dev_file)) {
    telemetry.rx_bytes = std::max<std::int64_t>(network->rx_bytes - network_at_start_.rx_bytes, 0);
    telemetry.tx_bytes = std::max<std::int64_t>(network->tx_bytes - network_at_start_.tx_bytes, 0);
  }
  if (reporting_.queue != nullptr) telemetry.reports_queued = static_cast<std::int64_t>(reporting_.queue->Size());
  return telemetry;
}

void DeviceAgent::UploadReports() {
  if (reporting_.queue == nullptr) return;
  for (int round = 0; round < kMaxReportBatchesPerCheckIn && reporting_.queue->Size() > 0 && !Stopping(); ++round) {
    // Stack dumps compress badly: halve the batch until it fits the
    // service's compressed limit (at most log2(32) tries).
    std::size_t max_count = protocol::kMaxReportsPerBatch;
    protocol::ReportBatch batch;
    std::string body;
    for (;;) {
      batch = reporting_.queue->Peek(max_count, kMaxUploadBatchJsonBytes);
      if (batch.reports.empty()) return;
      auto compressed =
          Compress(protocol::ReportBatchToJson(batch).dump(-1, ' ', false, Json::error_handler_t::replace));
      if (!compressed) {
        log::Warn("cannot compress failure reports", {{"error", compressed.error().message()}});
        return;
      }
      body = std::move(*compressed);
      if (body.size() <= protocol::kMaxCompressedReportBatchBytes || batch.reports.size() == 1) break;
      max_count = batch.reports.size() / 2;
    }
    auto response = device_client_->Send("POST", kReportsPath, body, kZstdJsonHeaders);
    if (!response) {
      log::Warn("failure report upload failed; retrying at the next check-in", {{"error", response.error().message()}});
      return;
    }
    if (response->status != 200) {
      auto problem = protocol::ParseProblem(response->body);
      log::Warn("failure report upload refused; retrying at the next check-in",
                {{"status", std::to_string(response->status)},
                 {"problem_type", problem ? problem->type : ""},
                 {"detail", problem ? problem->detail : ""}});
      return;
    }
    auto reply = protocol::ParseReportBatchReply(response->body);
    if (!reply) {
      log::Warn("unusable failure report acknowledgement", {{"error", reply.error().message()}});
      return;
    }
    auto deleted = reporting_.queue->Acknowledge(reply->acknowledged);
    if (!deleted || *deleted == 0) {
      // Nothing of this batch was taken: sending it again now would loop.
      log::Warn("the service acknowledged none of the failure reports sent",
                {{"reports", std::to_string(batch.reports.size())}});
      return;
    }
    // The service recorded the batch, including its dropped count.
    if (auto cleared = reporting_.queue->ClearDropped(batch.dropped); !cleared) {
      log::Warn("cannot update the dropped report count", {{"error", cleared.error().message()}});
    }
    log::Debug("failure reports uploaded",
               {{"acknowledged", std::to_string(*deleted)}, {"queued", std::to_string(reporting_.queue->Size())}});
  }
}

Expected<void> DeviceAgent::StoreAppTrust(const protocol::CheckInReply& reply) {
  // ParseCheckInReply has checked every key (P-256, key_id); the service is
  // authoritative for the list, so it replaces what the device had.
  CITADEL_TRY_VOID(SavePublisherKeys(options_.state_dir, reply.publisher_keys));
  if (reply.app_development.is_null()) return RemoveDevelopmentCapability(options_.state_dir);
  // Keep only a capability this device will honour; anything else (another
  // device's, a wrong signer) is treated as "development disabled".
  auto text = reply.app_development.dump();
  auto verified =
      credentials_ && !credentials_->chain.empty()
          ? VerifyDevelopmentCapability(text, device_id_, credentials_->tenant_id, credentials_->chain.front())
          : Expected<DevelopmentCapability>(MakeError(ErrorCode::kFailedPrecondition, "no device certificate chain"));
  if (!verified) {
    log::Warn("ignoring the development capability the service sent",
              {{"device_id", device_id_}, {"error", verified.error().message()}});
    return RemoveDevelopmentCapability(options_.state_dir);
  }
  return SaveDevelopmentCapability(options_.state_dir, text);
}

Expected<RunOutcome> DeviceAgent::Run() {
  enum class Step { kAttest, kCheckIn };
  log::Info("device runtime starting", {{"device_id", device_id_},
                                        {"rot", rot_.Backend()},
                                        {"server", options_.server_url},
                                        {"version", RuntimeVersion()}});
  UpdateStatus([](DeviceStatus& status) { status.state = AgentState::kStarting; });
  if (fatal_error_) return std::unexpected(*fatal_error_);

  Step next = !options_.once && RestoreCredentials() ? Step::kCheckIn : Step::kAttest;
  if (next == Step::kCheckIn) {
    UpdateStatus([](DeviceStatus& status) { status.state = AgentState::kAttested; });
  }

  while (!Stopping()) {
    if (fatal_error_) return std::unexpected(*fatal_error_);
    Milliseconds delay{0};
    if (next == Step::kCheckIn && Clock::now() >= renewal_at_) {
      log::Info("renewing the device certificate", {{"device_id", device_id_}});
      next = Step::kAttest;
    }
    if (next == Step::kAttest) {
      switch (Attest()) {
        case StepResult::kDone:
          backoff_.Reset();
          next = Step::kCheckIn;  // right away: report inventory with the new certificate
          break;
        case StepResult::kUnclaimed: {
          if (options_.once) return RunOutcome::kUnclaimed;
          backoff_.Reset();
          Milliseconds wait = options_.unclaimed_retry;
          if (unclaimed_retry_after_ > seconds(0)) wait = std::min<Milliseconds>(wait, unclaimed_retry_after_);
          delay = Jittered(wait, 0.1, random_);
          break;
        }
        case StepResult::kUnauthorized:
        case StepResult::kFailed:
          if (fatal_error_) return std::unexpected(*fatal_error_);
          if (options_.once) return std::unexpected(*once_error_);
          delay = FailureDelay();
          break;
      }
    } else {
      switch (CheckIn()) {
        case StepResult::kDone: {
          if (options_.once) return RunOutcome::kAttested;
          backoff_.Reset();
          Milliseconds wait = options_.check_in_interval;
          if (next_check_in_ > seconds(0)) {
            wait = std::min<Milliseconds>(wait, std::max(next_check_in_, kMinimumCheckInInterval));
          }
          // Wake for renewal if it falls before the next check-in.
          auto until_renewal = std::chrono::ceil<Milliseconds>(renewal_at_ - Clock::now());
          delay = std::clamp(until_renewal, Milliseconds(0), wait);
          break;
        }
        case StepResult::kUnauthorized:
          if (options_.once) return std::unexpected(*once_error_);
          next = Step::kAttest;
          // Re-attest at once; but if the certificate that was just issued
          // is refused too, back off rather than loop attest/check-in.
          if (consecutive_unauthorized_++ > 0) delay = backoff_.Next(random_);
          break;
        case StepResult::kUnclaimed:
        case StepResult::kFailed:
          if (fatal_error_) return std::unexpected(*fatal_error_);
          if (options_.once) return std::unexpected(*once_error_);
          delay = FailureDelay();
          break;
      }
    }
    if (delay > Milliseconds(0) && !WaitFor(delay)) break;
  }
  log::Info("device runtime stopped", {{"device_id", device_id_}});
  return RunOutcome::kStopped;
}

}  // namespace citadel::device
