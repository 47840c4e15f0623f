// DeviceAgent against a fake service on 127.0.0.1 (real TLS, real HTTP):
// the fake appraises evidence the way the protocol says (signature by the
// manufacturer leaf, nonce, register replay, CSR) and issues certificates
// from a throw-away tenant PKI, so these tests show citadeld's side of the
// protocol works before the real server exists.
#include "device/device_agent.hpp"

#include <gtest/gtest.h>
#include <zstd.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "device/commands.hpp"
#include "device/measurement.hpp"
#include "device/trust_store.hpp"
#include "rot/software/software_rot.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

crypto::Certificate MakeCa(const std::string& cn, const crypto::PrivateKey& key, const crypto::Certificate* issuer,
                           const crypto::PrivateKey& issuer_key) {
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.is_ca = true;
  spec.lifetime = std::chrono::days(365);
  auto cert = crypto::IssueCertificate(spec, key.Public(), issuer, issuer_key);
  EXPECT_TRUE(cert) << cert.error().message();
  return *cert;
}

crypto::Certificate MakeServerCertificate(const crypto::PrivateKey& key, const crypto::Certificate& ca,
                                          const crypto::PrivateKey& ca_key) {
  crypto::CertificateSpec spec;
  spec.common_name = "127.0.0.1";
  spec.ip_sans = {"127.0.0.1"};
  spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
  auto cert = crypto::IssueCertificate(spec, key.Public(), &ca, ca_key);
  EXPECT_TRUE(cert) << cert.error().message();
  return *cert;
}

http::Response Json200(const Json& body) { return {200, "application/json", body.dump(), {}}; }

http::Response ProblemResponse(int status, const std::string& name, const std::string& detail) {
  protocol::Problem problem{protocol::ProblemType(name), name, status, detail};
  return {status, "application/problem+json", protocol::ProblemToJson(problem).dump(), {}};
}

// What the fake service answers to an attestation that passed appraisal.
enum class Verdict { kAccept, kUnclaimed, kNotGenuine };

class FakeService {
 public:
  FakeService() {
    http::ServerOptions options;
    options.identity = {server_cert_.Pem(), &server_key_};
    options.threads = 2;
    auto server = http::Server::Create(options, [this](const http::Request& request) { return Handle(request); });
    EXPECT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    auto started = server_->Start();
    EXPECT_TRUE(started) << started.error().message();
  }
  ~FakeService() {
    server_->Stop();
    server_->Wait();
  }

  std::string url() const { return "https://127.0.0.1:" + std::to_string(server_->port()); }
  std::string ca_pem() const { return service_ca_.Pem(); }

  // Verdicts for the next attestations; kAccept once the queue is empty.
  void QueueVerdicts(std::vector<Verdict> verdicts) {
    std::lock_guard lock(mutex_);
    verdicts_.assign(verdicts.begin(), verdicts.end());
  }
  // Check-in statuses for the next check-ins; 200 once the queue is empty.
  void QueueCheckInStatuses(std::vector<int> statuses) {
    std::lock_guard lock(mutex_);
    check_in_statuses_.assign(statuses.begin(), statuses.end());
  }
  void set_next_check_in_seconds(int value) {
    std::lock_guard lock(mutex_);
    next_check_in_seconds_ = value;
  }
  // Members added to every check-in reply (publisher_keys, app_development).
  void set_check_in_extra(Json extra) {
    std::lock_guard lock(mutex_);
    check_in_extra_ = std::move(extra);
  }
  // An AppDevelopment envelope signed by the fake tenant's issuing CA.
  Json SignCapability(const protocol::DevelopmentCapabilityClaims& claims) const {
    auto envelope = protocol::CreateDevelopmentCapabilityEnvelope(claims, tenant_issuing_key_, tenant_issuing_);
    EXPECT_TRUE(envelope) << envelope.error().message();
    return envelope.value_or(Json());
  }

  int attestations() const {
    std::lock_guard lock(mutex_);
    return attestations_;
  }
  int accepted_check_ins() const {
    std::lock_guard lock(mutex_);
    return accepted_check_ins_;
  }
  std::string last_appraisal_error() const {
    std::lock_guard lock(mutex_);
    return last_appraisal_error_;
  }
  // HTTP statuses for the next report uploads; 200 once the queue is empty.
  void QueueReportStatuses(std::vector<int> statuses) {
    std::lock_guard lock(mutex_);
    report_statuses_.assign(statuses.begin(), statuses.end());
  }
  std::vector<protocol::FailureReport> received_reports() const {
    std::lock_guard lock(mutex_);
    return received_reports_;
  }
  std::int64_t received_dropped() const {
    std::lock_guard lock(mutex_);
    return received_dropped_;
  }
  int report_uploads() const {
    std::lock_guard lock(mutex_);
    return report_uploads_;
  }
  int report_uploads_locked() const { return report_uploads_; }
  std::size_t received_reports_locked() const { return received_reports_.size(); }
  protocol::CheckIn last_check_in() const {
    std::lock_guard lock(mutex_);
    return last_check_in_;
  }
  std::vector<rot::MeasurementEvent> last_measurements() const {
    std::lock_guard lock(mutex_);
    return last_measurements_;
  }

  // Waits until pred() holds (checked whenever the service handled a
  // request); false on timeout.
  bool WaitUntil(const std::function<bool()>& pred, milliseconds timeout = seconds(20)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return pred(); });
  }
  // For use inside WaitUntil predicates (mutex_ already held).
  int accepted_check_ins_locked() const { return accepted_check_ins_; }
  int attestations_locked() const { return attestations_; }
  int challenges_locked() const { return challenges_; }

 private:
  http::Response Handle(const http::Request& request) {
    std::lock_guard lock(mutex_);
    auto response = Route(request);
    changed_.notify_all();
    return response;
  }

  http::Response Route(const http::Request& request) {
    if (request.Header("content-type") != "application/json") return ProblemResponse(415, "unsupported-media-type", "");
    if (request.method == "POST" && request.path == "/v1/attestation/challenge") {
      ++challenges_;
      nonce_ = crypto::RandomBytes(protocol::kNonceBytes);
      return Json200(protocol::ChallengeToJson({nonce_, FormatRfc3339(Clock::now() + seconds(60))}));
    }
    if (request.method == "POST" && request.path == "/v1/attestation") return Attest(request);
    if (request.method == "POST" && request.path == "/v1/device/check-in") return CheckIn(request);
    if (request.method == "POST" && request.path == "/v1/device/reports") return Reports(request);
    return ProblemResponse(404, "not-found", request.path);
  }

  bool PresentsTheIssuedCertificate(const http::Request& request) const {
    return !request.peer_chain.empty() && request.peer_chain.front().FingerprintSha256() == issued_fingerprint_;
  }

  // POST /v1/device/reports as docs/PROTOCOL.md says: zstd body, strict
  // parse, acknowledge every id (a retried batch is acknowledged again).
  http::Response Reports(const http::Request& request) {
    ++report_uploads_;
    if (!PresentsTheIssuedCertificate(request)) {
      return ProblemResponse(401, "device-certificate-invalid", "not the current certificate");
    }
    if (!report_statuses_.empty()) {
      int status = report_statuses_.front();
      report_statuses_.pop_front();
      if (status != 200) return ProblemResponse(status, "unavailable", "queued failure");
    }
    if (request.Header("content-encoding") != "zstd") return ProblemResponse(415, "unsupported-media-type", "zstd");
    if (request.body.size() > protocol::kMaxCompressedReportBatchBytes) {
      return ProblemResponse(413, "payload-too-large", "compressed");
    }
    const auto size = ZSTD_getFrameContentSize(request.body.data(), request.body.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > protocol::kMaxReportBatchBytes) {
      return ProblemResponse(413, "payload-too-large", "decompressed");
    }
    std::string json(size, '\0');
    const auto got = ZSTD_decompress(json.data(), json.size(), request.body.data(), request.body.size());
    if (ZSTD_isError(got) != 0 || got != size) return ProblemResponse(400, "invalid-report", "zstd");
    auto batch = protocol::ParseReportBatch(json);
    if (!batch) return ProblemResponse(400, "invalid-report", batch.error().message());
    protocol::ReportBatchReply reply;
    for (auto& report : batch->reports) {
      reply.acknowledged.push_back(report.report_id);
      const bool seen = std::any_of(received_reports_.begin(), received_reports_.end(),
                                    [&](const auto& known) { return known.report_id == report.report_id; });
      if (!seen) received_reports_.push_back(std::move(report));
    }
    received_dropped_ += batch->dropped;
    return Json200(protocol::ReportBatchReplyToJson(reply));
  }

  http::Response Attest(const http::Request& request) {
    auto appraisal = Appraise(request.body);
    if (!appraisal) {
      last_appraisal_error_ = appraisal.error().message();
      return ProblemResponse(400, "malformed-evidence", appraisal.error().message());
    }
    Verdict verdict = Verdict::kAccept;
    if (!verdicts_.empty()) {
      verdict = verdicts_.front();
      verdicts_.pop_front();
    }
    if (verdict == Verdict::kNotGenuine) return ProblemResponse(403, "not-genuine", "chain does not verify");
    protocol::AttestationResult result;
    result.device_id = appraisal->device_id;
    if (verdict == Verdict::kUnclaimed) {
      result.verdict = "accepted-unclaimed";
      result.retry_after_seconds = 1;
      return Json200(protocol::AttestationResultToJson(result));
    }
    auto csr = crypto::CertificateRequest::FromPem(appraisal->csr);
    crypto::CertificateSpec spec;
    spec.common_name = appraisal->device_id;
    spec.organization = "t_fake";
    spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
    spec.uri_sans = {"citadel://tenant/t_fake/device/" + appraisal->device_id};
    auto cert = crypto::IssueCertificate(spec, csr->SubjectPublicKey(), &tenant_issuing_, tenant_issuing_key_);
    issued_fingerprint_ = cert->FingerprintSha256();
    ++attestations_;
    result.verdict = "accepted";
    result.tenant_id = "t_fake";
    result.certificate = cert->Pem();
    result.chain = {tenant_issuing_.Pem(), tenant_root_.Pem()};
    result.expires_at = FormatRfc3339(cert->NotAfter());
    return Json200(protocol::AttestationResultToJson(result));
  }

  // The protocol's appraisal, minus policy and the trusted-CA check.
  Expected<protocol::Evidence> Appraise(std::string_view body) {
    CITADEL_TRY(auto signed_evidence, protocol::ParseSignedEvidence(body));
    const auto& evidence = signed_evidence.evidence;
    if (evidence.manufacturer_chain.empty()) return MakeError(ErrorCode::kCrypto, "no manufacturer chain");
    CITADEL_TRY(auto leaf, crypto::Certificate::FromPem(evidence.manufacturer_chain.front()));
    if (crypto::Sha256Hex(AsText(leaf.SubjectPublicKey().SpkiDer())) != evidence.device_id) {
      return MakeError(ErrorCode::kCrypto, "device id is not the leaf key's hash");
    }
    if (!protocol::VerifyEvidenceSignature(signed_evidence, leaf.SubjectPublicKey())) {
      return MakeError(ErrorCode::kCrypto, "bad signature");
    }
    if (evidence.nonce != nonce_) return MakeError(ErrorCode::kCrypto, "nonce is not the challenge's");
    nonce_.clear();  // single use
    if (rot::ReplayLog(evidence.measurements) != evidence.registers) {
      return MakeError(ErrorCode::kCrypto, "measurements do not replay to the registers");
    }
    CITADEL_TRY(auto csr, crypto::CertificateRequest::FromPem(evidence.csr));
    if (!csr.VerifySignature()) return MakeError(ErrorCode::kCrypto, "CSR signature");
    if (csr.SubjectCommonName() != evidence.device_id) return MakeError(ErrorCode::kCrypto, "CSR CN");
    last_measurements_ = evidence.measurements;
    return evidence;
  }

  http::Response CheckIn(const http::Request& request) {
    if (request.peer_chain.empty() || request.peer_chain.front().FingerprintSha256() != issued_fingerprint_) {
      return ProblemResponse(401, "device-certificate-invalid", "not the current certificate");
    }
    // The presented chain must verify to the tenant root with clientAuth.
    std::vector<crypto::Certificate> intermediates(request.peer_chain.begin() + 1, request.peer_chain.end());
    std::vector<crypto::Certificate> roots{tenant_root_};
    if (!crypto::VerifyCertificateChain(request.peer_chain.front(), intermediates, roots,
                                        {.purpose = crypto::ExtendedKeyUsage::kClientAuth, .at = std::nullopt})) {
      return ProblemResponse(401, "device-certificate-invalid", "chain");
    }
    if (!check_in_statuses_.empty()) {
      int status = check_in_statuses_.front();
      check_in_statuses_.pop_front();
      if (status != 200) return ProblemResponse(status, "device-certificate-invalid", "queued failure");
    }
    auto check_in = protocol::ParseCheckIn(request.body);
    if (!check_in) return ProblemResponse(400, "invalid-request", check_in.error().message());
    last_check_in_ = *check_in;
    ++accepted_check_ins_;
    Json reply{{"device_id", request.peer_chain.front().SubjectCommonName()}, {"tenant_id", "t_fake"}};
    if (next_check_in_seconds_ > 0) reply["next_check_in_seconds"] = next_check_in_seconds_;
    for (const auto& [key, value] : check_in_extra_.items()) reply[key] = value;
    return Json200(reply);
  }

  crypto::PrivateKey service_ca_key_ = *crypto::PrivateKey::GenerateP256();
  crypto::PrivateKey server_key_ = *crypto::PrivateKey::GenerateP256();
  crypto::PrivateKey tenant_root_key_ = *crypto::PrivateKey::GenerateP256();
  crypto::PrivateKey tenant_issuing_key_ = *crypto::PrivateKey::GenerateP256();
  crypto::Certificate service_ca_ = MakeCa("Fake Service CA", service_ca_key_, nullptr, service_ca_key_);
  crypto::Certificate server_cert_ = MakeServerCertificate(server_key_, service_ca_, service_ca_key_);
  crypto::Certificate tenant_root_ = MakeCa("Tenant Root", tenant_root_key_, nullptr, tenant_root_key_);
  crypto::Certificate tenant_issuing_ = MakeCa("Tenant Issuing", tenant_issuing_key_, &tenant_root_, tenant_root_key_);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Bytes nonce_;
  std::string issued_fingerprint_;
  std::deque<Verdict> verdicts_;
  std::deque<int> check_in_statuses_;
  std::deque<int> report_statuses_;
  std::vector<protocol::FailureReport> received_reports_;
  std::int64_t received_dropped_ = 0;
  int report_uploads_ = 0;
  int next_check_in_seconds_ = 0;
  Json check_in_extra_ = Json::object();
  int challenges_ = 0;
  int attestations_ = 0;
  int accepted_check_ins_ = 0;
  std::string last_appraisal_error_;
  protocol::CheckIn last_check_in_;
  std::vector<rot::MeasurementEvent> last_measurements_;

  std::unique_ptr<http::Server> server_;
};

// A provisioned device whose boot has been measured.
class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca_key = crypto::PrivateKey::GenerateP256();
    auto ca = MakeCa("Test Manufacturer", *ca_key, nullptr, *ca_key);
    auto ca_dir = dir_.path() / "manufacturer";
    std::filesystem::create_directories(ca_dir);
    ASSERT_TRUE(WriteFileAtomic(ca_dir / "manufacturer-ca.pem", ca.Pem()));
    ASSERT_TRUE(WriteFileAtomic(ca_dir / "manufacturer-ca.key", ca_key->ToPem()->reveal(), 0600));
    auto provisioned = ProvisionDevice({RotBackend::kSoftware, state_dir(), ca_dir});
    ASSERT_TRUE(provisioned) << provisioned.error().message();
    device_id_ = provisioned->device_id;
    OpenAndMeasure();
  }

  void OpenAndMeasure() {
    agent_.reset();
    auto rot = OpenRootOfTrust(RotBackend::kSoftware, state_dir(), RotOpenMode::kMustExist);
    ASSERT_TRUE(rot);
    rot_ = std::move(*rot);
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "os-release", "ID=citadel\n"));
    MeasurementInputs inputs;
    inputs.os_release_path = dir_.path() / "os-release";
    inputs.config_digest = crypto::Sha256("config");
    ASSERT_TRUE(MeasureBoot(*rot_, inputs));
  }

  AgentOptions Options(bool once) const {
    AgentOptions options;
    options.state_dir = state_dir();
    options.server_url = service_.url();
    options.server_ca_pem = service_.ca_pem();
    options.os_version = "1.2.3";
    options.check_in_interval = seconds(60);
    options.unclaimed_retry = seconds(1);
    options.max_backoff = milliseconds(500);
    options.once = once;
    return options;
  }

  DeviceAgent& MakeAgent(AgentOptions options) {
    auto agent = DeviceAgent::Create(std::move(options), *rot_);
    EXPECT_TRUE(agent) << agent.error().message();
    agent_ = std::move(*agent);
    return *agent_;
  }

  // Runs the agent on a thread; returns its outcome after Stop().
  struct Running {
    std::thread thread;
    std::optional<Expected<RunOutcome>> outcome;
  };
  void Start(DeviceAgent& agent) {
    running_.thread = std::thread([this, &agent] { running_.outcome.emplace(agent.Run()); });
  }
  Expected<RunOutcome> StopAndJoin(DeviceAgent& agent) {
    agent.Stop();
    running_.thread.join();
    return *running_.outcome;
  }

  std::filesystem::path state_dir() const { return dir_.path() / "device"; }
  DeviceStatus ReadStatusFile() const {
    auto status = ReadStatus(state_dir());
    EXPECT_TRUE(status) << (status ? "" : status.error().message());
    return status.value_or(DeviceStatus{});
  }

  testing::TempDir dir_;
  FakeService service_;
  std::string device_id_;
  std::unique_ptr<rot::RootOfTrust> rot_;
  std::unique_ptr<DeviceAgent> agent_;
  Running running_;
};

TEST_F(AgentTest, OnceAttestsChecksInAndWritesCertificatesAndStatus) {
  auto& agent = MakeAgent(Options(/*once=*/true));
  auto outcome = agent.Run();
  ASSERT_TRUE(outcome) << outcome.error().message() << " / fake: " << service_.last_appraisal_error();
  EXPECT_EQ(*outcome, RunOutcome::kAttested);
  EXPECT_EQ(service_.attestations(), 1);
  EXPECT_EQ(service_.accepted_check_ins(), 1);

  // The evidence carried the boot measurements.
  auto measurements = service_.last_measurements();
  ASSERT_EQ(measurements.size(), 3u);
  EXPECT_EQ(measurements[1].name, "citadeld");
  EXPECT_EQ(measurements[1].version, RuntimeVersion());

  // The check-in carried inventory.
  auto check_in = service_.last_check_in();
  EXPECT_EQ(check_in.os_version, "1.2.3");
  EXPECT_EQ(check_in.runtime_version, RuntimeVersion());
  EXPECT_GT(check_in.uptime_seconds, 0);
  EXPECT_GT(check_in.free_memory_kb, 0);

  auto leaf = crypto::Certificate::FromPem(*ReadFile(state_dir() / "certs" / "device.pem"));
  ASSERT_TRUE(leaf);
  EXPECT_EQ(leaf->SubjectCommonName(), device_id_);
  EXPECT_TRUE(leaf->SubjectPublicKey() == rot_->TlsClientKey().Public());
  auto chain = crypto::ParsePemChain(*ReadFile(state_dir() / "certs" / "chain.pem"));
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->size(), 2u);
  auto full = crypto::ParsePemChain(*ReadFile(state_dir() / "certs" / "device-full-chain.pem"));
  ASSERT_TRUE(full);
  ASSERT_EQ(full->size(), 2u);
  EXPECT_EQ((*full)[0].FingerprintSha256(), leaf->FingerprintSha256());

  auto status = ReadStatusFile();
  EXPECT_EQ(status.device_id, device_id_);
  EXPECT_EQ(status.state, AgentState::kAttested);
  EXPECT_EQ(status.tenant_id, "t_fake");
  EXPECT_EQ(status.certificate_serial, leaf->SerialHex());
  EXPECT_EQ(status.certificate_expires_at, FormatRfc3339(leaf->NotAfter()));
  EXPECT_FALSE(status.last_check_in.empty());
  EXPECT_EQ(status.attestations, 1);
  EXPECT_EQ(status.check_ins, 1);
  EXPECT_EQ(status.last_error, "");
}

TEST_F(AgentTest, OnceReportsTheProblemTypeOfARefusal) {
  service_.QueueVerdicts({Verdict::kNotGenuine});
  auto& agent = MakeAgent(Options(/*once=*/true));
  auto outcome = agent.Run();
  ASSERT_FALSE(outcome);
  EXPECT_NE(outcome.error().message().find("urn:citadel:problem:not-genuine"), std::string::npos)
      << outcome.error().message();
  auto status = ReadStatusFile();
  EXPECT_EQ(status.state, AgentState::kRefused);
  EXPECT_EQ(status.last_problem_type, "urn:citadel:problem:not-genuine");
  EXPECT_NE(status.last_error.find("chain does not verify"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "certs" / "device.pem"));
}

TEST_F(AgentTest, OnceUnclaimedReturnsUnclaimedWithoutCertificate) {
  service_.QueueVerdicts({Verdict::kUnclaimed});
  auto& agent = MakeAgent(Options(/*once=*/true));
  auto outcome = agent.Run();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, RunOutcome::kUnclaimed);
  EXPECT_EQ(ReadStatusFile().state, AgentState::kUnclaimed);
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "certs" / "device.pem"));
}

TEST_F(AgentTest, DeviceWithoutManufacturerChainStillAsksAndIsRefused) {
  // An identity-only device sends an empty chain; the service decides.
  testing::TempDir other;
  auto provisioned = ProvisionDevice({RotBackend::kSoftware, other.path(), std::nullopt});
  ASSERT_TRUE(provisioned);
  auto rot = OpenRootOfTrust(RotBackend::kSoftware, other.path(), RotOpenMode::kMustExist);
  ASSERT_TRUE(rot);
  auto options = Options(/*once=*/true);
  options.state_dir = other.path();
  auto agent = DeviceAgent::Create(options, **rot);
  ASSERT_TRUE(agent);
  auto outcome = (*agent)->Run();
  ASSERT_FALSE(outcome);
  EXPECT_NE(outcome.error().message().find("urn:citadel:problem:malformed-evidence"), std::string::npos)
      << outcome.error().message();
  EXPECT_EQ(service_.last_appraisal_error(), "no manufacturer chain");
}

TEST_F(AgentTest, UnclaimedDeviceAsksAgainAndGetsItsCertificateOnceClaimed) {
  service_.QueueVerdicts({Verdict::kUnclaimed});
  auto& agent = MakeAgent(Options(/*once=*/false));
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 1; }));
  auto outcome = StopAndJoin(agent);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, RunOutcome::kStopped);
  EXPECT_EQ(service_.attestations(), 1);
  auto status = agent.Status();
  EXPECT_EQ(status.state, AgentState::kAttested);
  EXPECT_EQ(status.tenant_id, "t_fake");
}

TEST_F(AgentTest, CheckInRefusedWith401ReattestsImmediately) {
  service_.QueueCheckInStatuses({401});
  auto& agent = MakeAgent(Options(/*once=*/false));
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 1; }));
  StopAndJoin(agent);
  EXPECT_EQ(service_.attestations(), 2);
  auto status = ReadStatusFile();
  EXPECT_EQ(status.attestations, 2);
  EXPECT_EQ(status.check_ins, 1);
  EXPECT_EQ(status.state, AgentState::kAttested);
}

TEST_F(AgentTest, HonoursAShorterNextCheckInButNotBelowOneSecond) {
  service_.set_next_check_in_seconds(1);
  auto& agent = MakeAgent(Options(/*once=*/false));  // interval 60 s
  auto start = std::chrono::steady_clock::now();
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 3; }, seconds(10)));
  auto elapsed = std::chrono::steady_clock::now() - start;
  StopAndJoin(agent);
  EXPECT_GE(elapsed, milliseconds(1900));  // two waits of >= 1 s
  EXPECT_EQ(service_.attestations(), 1);
}

TEST_F(AgentTest, RestartKeepsAFreshCertificateAndChecksInWithoutAttesting) {
  {
    auto& agent = MakeAgent(Options(/*once=*/true));
    ASSERT_TRUE(agent.Run());
  }
  ASSERT_EQ(service_.attestations(), 1);
  OpenAndMeasure();  // a "reboot": the RoT is opened again
  auto& agent = MakeAgent(Options(/*once=*/false));
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 2; }));
  StopAndJoin(agent);
  EXPECT_EQ(service_.attestations(), 1);
  auto status = ReadStatusFile();
  EXPECT_EQ(status.state, AgentState::kAttested);
  EXPECT_EQ(status.attestations, 0);
  EXPECT_EQ(status.check_ins, 1);
}

TEST_F(AgentTest, StopWakesTheWaitPromptly) {
  auto& agent = MakeAgent(Options(/*once=*/false));  // next check-in in 60 s
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 1; }));
  auto start = std::chrono::steady_clock::now();
  auto outcome = StopAndJoin(agent);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
  ASSERT_TRUE(outcome);
  EXPECT_EQ(*outcome, RunOutcome::kStopped);
}

TEST(AgentUnreachableTest, BacksOffAndStillStopsPromptly) {
  // A port nothing listens on: bind one, note it, close it.
  testing::TempDir dir;
  auto provisioned = ProvisionDevice({RotBackend::kSoftware, dir.path(), std::nullopt});
  ASSERT_TRUE(provisioned);
  auto rot = OpenRootOfTrust(RotBackend::kSoftware, dir.path(), RotOpenMode::kMustExist);
  ASSERT_TRUE(rot);
  std::uint16_t port = 0;
  {
    auto key = crypto::PrivateKey::GenerateP256();
    auto ca = MakeCa("x", *key, nullptr, *key);
    http::ServerOptions options;
    options.identity = {ca.Pem(), &*key};
    auto server = http::Server::Create(options, [](const http::Request&) { return http::Response{}; });
    ASSERT_TRUE(server);
    ASSERT_TRUE((*server)->Start());
    port = (*server)->port();
    (*server)->Stop();
    (*server)->Wait();
  }
  auto key = crypto::PrivateKey::GenerateP256();
  AgentOptions options;
  options.state_dir = dir.path();
  options.server_url = "https://127.0.0.1:" + std::to_string(port);
  options.server_ca_pem = MakeCa("ca", *key, nullptr, *key).Pem();
  options.max_backoff = milliseconds(200);
  std::mutex mutex;
  std::condition_variable changed;
  int failures = 0;
  options.status_observer = [&](const DeviceStatus& status) {
    std::lock_guard lock(mutex);
    if (status.state == AgentState::kBackoff) ++failures;
    changed.notify_all();
  };
  auto agent = DeviceAgent::Create(options, **rot);
  ASSERT_TRUE(agent);
  std::optional<Expected<RunOutcome>> outcome;
  std::thread thread([&] { outcome.emplace((*agent)->Run()); });
  {
    // Several failed attempts: it keeps retrying (capped at 200 ms here).
    std::unique_lock lock(mutex);
    EXPECT_TRUE(changed.wait_for(lock, seconds(20), [&] { return failures >= 3; }));
  }
  auto start = std::chrono::steady_clock::now();
  (*agent)->Stop();
  thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
  ASSERT_TRUE(outcome && *outcome);
  auto status = ReadStatus(dir.path());
  ASSERT_TRUE(status);
  EXPECT_EQ(status->state, AgentState::kBackoff);
  EXPECT_NE(status->last_error.find("unreachable"), std::string::npos) << status->last_error;
}

TEST_F(AgentTest, CheckInStoresPublisherKeysAndTheDevelopmentCapability) {
  auto publisher = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(publisher);
  auto developer = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(developer);
  protocol::DevelopmentCapabilityClaims claims{
      device_id_, "t_fake", "2026-01-01T00:00:00Z", "5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b", {developer->Public()}};
  service_.set_check_in_extra({{"publisher_keys", Json::array({{{"key_id", protocol::KeyId(publisher->Public())},
                                                                {"public_key_pem", publisher->Public().Pem()}}})},
                               {"app_development", service_.SignCapability(claims)}});
  auto outcome = MakeAgent(Options(/*once=*/true)).Run();
  ASSERT_TRUE(outcome) << outcome.error().message();

  auto keys = LoadPublisherKeys(state_dir());
  ASSERT_TRUE(keys) << keys.error().message();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_TRUE((*keys)[0] == publisher->Public());

  auto chain = crypto::ParsePemChain(*ReadFile(state_dir() / "certs" / "chain.pem"));
  ASSERT_TRUE(chain);
  auto capability = LoadDevelopmentCapability(state_dir(), device_id_, "t_fake", *chain);
  ASSERT_TRUE(capability) << capability.error().message();
  EXPECT_EQ(capability->capability_id, claims.capability_id);
  ASSERT_EQ(capability->developer_keys.size(), 1u);
  EXPECT_TRUE(capability->developer_keys[0] == developer->Public());

  // The service withdraws both: the device forgets them.
  service_.set_check_in_extra({{"publisher_keys", Json::array()}, {"app_development", nullptr}});
  outcome = MakeAgent(Options(/*once=*/true)).Run();
  ASSERT_TRUE(outcome) << outcome.error().message();
  keys = LoadPublisherKeys(state_dir());
  ASSERT_TRUE(keys);
  EXPECT_TRUE(keys->empty());
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "trust" / "app-development.json"));
}

TEST_F(AgentTest, CapabilityForAnotherDeviceIsNotStored) {
  protocol::DevelopmentCapabilityClaims claims{
      std::string(64, 'a'), "t_fake", "2026-01-01T00:00:00Z", "5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b", {}};
  service_.set_check_in_extra({{"app_development", service_.SignCapability(claims)}});
  auto outcome = MakeAgent(Options(/*once=*/true)).Run();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "trust" / "app-development.json"));
}

TEST_F(AgentTest, CheckInReplyWithAMismatchedKeyIdIsRefusedAndNothingIsWritten) {
  auto publisher = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(publisher);
  service_.set_check_in_extra({{"publisher_keys", Json::array({{{"key_id", std::string(64, '0')},
                                                                {"public_key_pem", publisher->Public().Pem()}}})}});
  auto outcome = MakeAgent(Options(/*once=*/true)).Run();
  ASSERT_FALSE(outcome);
  EXPECT_NE(outcome.error().message().find("key_id"), std::string::npos) << outcome.error().message();
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "trust" / "publisher-keys.json"));
}

}  // namespace
}  // namespace citadel::device

namespace citadel::device {
namespace {

// A report the queue accepts, numbered through its message.
protocol::FailureReport QueuedReport(int number, std::size_t message_bytes = 16) {
  protocol::FailureReport report;
  report.report_id = HexEncode(crypto::RandomBytes(protocol::kReportIdBytes));
  report.failure_class = "app-crash";
  report.occurred_at = "2026-11-22T10:00:00Z";
  report.last_occurred_at = report.occurred_at;
  report.component_id = "crashy";
  report.component_version = "1.0.0";
  report.error_code = "SIGSEGV";
  report.message = std::to_string(number) + std::string(message_bytes, '.');
  return report;
}

class AgentReportsTest : public AgentTest {
 protected:
  void SetUp() override {
    AgentTest::SetUp();
    // Small limits so that the queue has dropped some when the test starts.
    queue_ =
        testing::Must(reports::ReportQueue::Open(state_dir() / "reports", {.max_reports = 40, .max_bytes = 1u << 20}));
    collector_ = std::make_unique<reports::ReportCollector>(
        *queue_, reports::CollectorOptions{.os_version = "1.2.3", .runtime_version = "0.1.0"});
    ASSERT_TRUE(WriteFileAtomic(net_dev(), NetDev(1000, 500)));
  }

  std::filesystem::path net_dev() const { return dir_.path() / "net-dev"; }
  static std::string NetDev(std::int64_t rx, std::int64_t tx) {
    return "Inter-|   Receive                                                |  Transmit\n"
           " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
           "carrier compressed\n"
           "    lo: 99999 1 0 0 0 0 0 0 99999 1 0 0 0 0 0 0\n"
           "  eth0: " +
           std::to_string(rx) + " 1 0 0 0 0 0 0 " + std::to_string(tx) + " 1 0 0 0 0 0 0\n";
  }

  DeviceAgent& MakeReportingAgent() {
    auto options = Options(/*once=*/false);
    options.net_dev_file = net_dev();
    auto& agent = MakeAgent(std::move(options));
    agent.AttachReports({queue_.get(), collector_.get(), [] { return std::int64_t{7}; }});
    return agent;
  }

  std::unique_ptr<reports::ReportQueue> queue_;
  std::unique_ptr<reports::ReportCollector> collector_;
};

TEST_F(AgentReportsTest, QueuedReportsAreUploadedAndDeletedOnlyAfterTheAck) {
  for (int i = 0; i < 42; ++i) ASSERT_TRUE(queue_->Append(QueuedReport(i)));
  ASSERT_EQ(queue_->Size(), 40u);
  ASSERT_EQ(queue_->Dropped(), 2);
  service_.set_next_check_in_seconds(1);
  service_.QueueReportStatuses({503});  // the first upload fails
  auto& agent = MakeReportingAgent();
  Start(agent);

  // First check-in: the upload fails, nothing is deleted.
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.report_uploads_locked() >= 1; }));
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 1; }));
  EXPECT_EQ(service_.received_reports().size(), 0u);
  // Telemetry of that check-in (the net counters have not moved yet).
  auto first = service_.last_check_in();
  ASSERT_TRUE(first.telemetry);
  EXPECT_EQ(first.telemetry->reports_queued, 40);
  EXPECT_EQ(first.telemetry->app_restarts, 7);
  EXPECT_EQ(first.telemetry->rx_bytes, 0);
  ASSERT_TRUE(WriteFileAtomic(net_dev(), NetDev(1300, 520)));

  // A later check-in: two batches (32 + 8), then the queue is empty.
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.received_reports_locked() >= 40; }));
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 3; }));
  ASSERT_TRUE(StopAndJoin(agent));
  EXPECT_EQ(queue_->Size(), 0u);
  EXPECT_EQ(queue_->Dropped(), 0);
  EXPECT_EQ(service_.received_dropped(), 2);
  std::set<std::string> numbers;
  for (const auto& report : service_.received_reports()) numbers.insert(report.message);
  EXPECT_EQ(numbers.size(), 40u);
  EXPECT_TRUE(numbers.contains("2" + std::string(16, '.'))) << "the oldest two were dropped";
  auto later = service_.last_check_in();
  ASSERT_TRUE(later.telemetry);
  EXPECT_EQ(later.telemetry->rx_bytes, 300);
  EXPECT_EQ(later.telemetry->tx_bytes, 20);
  EXPECT_EQ(later.telemetry->reports_queued, 0);
}

TEST_F(AgentReportsTest, BigStackDumpsAreSplitIntoBatchesTheServiceTakes) {
  // 20 crash reports with 64 KiB of random stack each: ~1.7 MiB of JSON,
  // incompressible; no batch may exceed 256 KiB compressed.
  for (int i = 0; i < 20; ++i) {
    auto report = QueuedReport(i);
    report.crash = protocol::CrashDetails{};
    report.crash->signal = 11;
    report.crash->dump = protocol::CrashDump{0x7ffc0000, crypto::RandomBytes(protocol::kMaxCrashDumpBytes)};
    ASSERT_TRUE(queue_->Append(report));
  }
  // The fixture's queue (1 MiB) keeps about half of them.
  const std::size_t queued = queue_->Size();
  ASSERT_GT(queued, 5u);
  service_.set_next_check_in_seconds(1);
  auto& agent = MakeReportingAgent();
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.received_reports_locked() >= queued; }, seconds(30)));
  ASSERT_TRUE(StopAndJoin(agent));
  EXPECT_EQ(queue_->Size(), 0u);
}

TEST_F(AgentReportsTest, CheckInAppliesTheServicesCrashDumpSetting) {
  service_.set_check_in_extra({{"reporting", {{"crash_dumps", true}}}});
  auto& agent = MakeReportingAgent();
  Start(agent);
  ASSERT_TRUE(service_.WaitUntil([&] { return service_.accepted_check_ins_locked() >= 1; }));
  ASSERT_TRUE(StopAndJoin(agent));
  EXPECT_TRUE(collector_->CrashDumps());
}

}  // namespace
}  // namespace citadel::device
