#include "server/attestation.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace citadel::server {
namespace {

const rot::MeasurementEvent* FindEvent(const protocol::Evidence& evidence, std::string_view type) {
  for (const auto& event : evidence.measurements) {
    if (event.type == type) return &event;
  }
  return nullptr;
}

std::string VerdictName(const protocol::Problem& problem) {
  constexpr std::string_view kPrefix = "urn:citadel:problem:";
  std::string_view type = problem.type;
  if (type.starts_with(kPrefix)) type.remove_prefix(kPrefix.size());
  return std::string(type);
}

}  // namespace

protocol::Problem MakeProblem(int status, std::string_view name, std::string_view title, std::string detail) {
  return protocol::Problem{protocol::ProblemType(name), std::string(title), status, std::move(detail)};
}

Expected<protocol::Challenge> Attestor::CreateChallenge(TimePoint now) {
  protocol::Challenge challenge;
  challenge.nonce = crypto::RandomBytes(protocol::kNonceBytes);
  auto expires = now + options_.nonce_lifetime;
  challenge.expires_at = FormatRfc3339(expires);
  CITADEL_TRY_VOID(store_.CreateNonce(crypto::Sha256Hex(AsText(challenge.nonce)), ToUnixSeconds(expires)));
  return challenge;
}

AttestationOutcome Attestor::Attest(std::string_view body, TimePoint now) {
  auto parsed = protocol::ParseSignedEvidence(body);
  if (!parsed) {
    log::Info("attestation refused: malformed evidence", {{"reason", parsed.error().message()}});
    return std::unexpected(MakeProblem(parsed.error().code() == ErrorCode::kTooLarge ? 413 : 400, "malformed-evidence",
                                       "Malformed evidence", parsed.error().message()));
  }
  std::string tenant_id;
  auto outcome = Appraise(*parsed, now, tenant_id);
  const auto* os = FindEvent(parsed->evidence, "os");
  std::string os_version = os ? os->version : "";
  if (outcome) {
    RecordVerdict(parsed->evidence.device_id, tenant_id, outcome->verdict, "", os_version, now);
  } else if (outcome.error().type != protocol::ProblemType("not-genuine") &&
             outcome.error().type != protocol::ProblemType("bad-signature")) {
    // Only evidence proven to come from a genuine device updates its record;
    // anyone could send evidence naming any device id.
    RecordVerdict(parsed->evidence.device_id, tenant_id, VerdictName(outcome.error()), outcome.error().detail,
                  os_version, now);
  } else {
    log::Info("attestation refused", {{"device_id", parsed->evidence.device_id},
                                      {"verdict", VerdictName(outcome.error())},
                                      {"detail", outcome.error().detail}});
  }
  return outcome;
}

AttestationOutcome Attestor::Appraise(const protocol::SignedEvidence& signed_evidence, TimePoint now,
                                      std::string& tenant_id) {
  const auto& evidence = signed_evidence.evidence;

  // 1. Genuine: the identity key is certified by a trusted manufacturer.
  if (evidence.manufacturer_chain.empty()) {
    return std::unexpected(
        MakeProblem(403, "not-genuine", "Device is not genuine", "evidence carries no manufacturer certificate chain"));
  }
  std::vector<crypto::Certificate> chain;
  for (std::size_t i = 0; i < evidence.manufacturer_chain.size(); ++i) {
    auto cert = crypto::Certificate::FromPem(evidence.manufacturer_chain[i]);
    if (!cert) {
      return std::unexpected(MakeProblem(403, "not-genuine", "Device is not genuine",
                                         "manufacturer_chain[" + std::to_string(i) + "]: " + cert.error().message()));
    }
    chain.push_back(*cert);
  }
  if (options_.manufacturer_cas.empty()) {
    return std::unexpected(
        MakeProblem(403, "not-genuine", "Device is not genuine", "this service trusts no manufacturer CA"));
  }
  std::vector<crypto::Certificate> intermediates(chain.begin() + 1, chain.end());
  crypto::ChainVerification verification;
  verification.at = now;
  if (auto verified =
          crypto::VerifyCertificateChain(chain.front(), intermediates, options_.manufacturer_cas, verification);
      !verified) {
    return std::unexpected(MakeProblem(403, "not-genuine", "Device is not genuine",
                                       "manufacturer chain does not verify: " + verified.error().message()));
  }
  auto identity_key = chain.front().SubjectPublicKey();
  if (!crypto::ConstantTimeEqual(crypto::Sha256Hex(AsText(identity_key.SpkiDer())), evidence.device_id)) {
    return std::unexpected(MakeProblem(403, "not-genuine", "Device is not genuine",
                                       "device_id is not the hash of the certified identity key"));
  }

  // 2. The evidence is signed by that identity key.
  if (!protocol::VerifyEvidenceSignature(signed_evidence, identity_key)) {
    return std::unexpected(
        MakeProblem(401, "bad-signature", "Evidence signature invalid", "the evidence signature does not verify"));
  }

  // 3. Fresh: the nonce is ours, unused and unexpired. Consumed atomically.
  auto nonce_state = store_.ConsumeNonce(crypto::Sha256Hex(AsText(evidence.nonce)), ToUnixSeconds(now));
  if (!nonce_state) {
    return std::unexpected(MakeProblem(503, "unavailable", "Service unavailable", "store: nonce check failed"));
  }
  if (*nonce_state == store::NonceResult::kUnknownOrUsed) {
    return std::unexpected(MakeProblem(401, "nonce-invalid", "Nonce invalid",
                                       "the nonce is unknown or was already used; request a new challenge"));
  }
  if (*nonce_state == store::NonceResult::kExpired) {
    return std::unexpected(
        MakeProblem(401, "nonce-expired", "Nonce expired", "the nonce expired; request a new challenge"));
  }

  // 4. The measurement log replays to the signed registers.
  auto replayed = rot::ReplayLog(evidence.measurements);
  if (replayed != evidence.registers) {
    return std::unexpected(MakeProblem(403, "measurements-inconsistent", "Measurements inconsistent",
                                       "replaying the measurement log does not give the reported registers"));
  }
  const auto* os = FindEvent(evidence, "os");
  const auto* runtime = FindEvent(evidence, "runtime");
  if (os == nullptr || runtime == nullptr) {
    return std::unexpected(
        MakeProblem(403, "policy-violation", "Measurements refused", "evidence must measure the OS and the runtime"));
  }

  // 5. The CSR proves possession of the TLS key.
  auto csr = crypto::CertificateRequest::FromPem(evidence.csr);
  if (!csr || !csr->VerifySignature() || !csr->SubjectPublicKey().IsP256()) {
    return std::unexpected(MakeProblem(400, "malformed-evidence", "Malformed evidence",
                                       "csr: not a valid self-signed P-256 certificate request"));
  }

  // 6. Known to the registry and claimed. (A revoked certificate does not
  // stop re-attestation: that is how a device replaces it.)
  if (auto seen = store_.RecordDeviceSeen(evidence.device_id, evidence.rot_backend, ToUnixSeconds(now)); !seen) {
    return std::unexpected(MakeProblem(503, "unavailable", "Service unavailable", "store: " + seen.error().message()));
  }
  auto device = store_.GetDevice(evidence.device_id);
  if (!device) {
    return std::unexpected(
        MakeProblem(503, "unavailable", "Service unavailable", "store: " + device.error().message()));
  }
  tenant_id = device->tenant_id;
  if (device->tenant_id.empty()) {
    protocol::AttestationResult result;
    result.verdict = "accepted-unclaimed";
    result.device_id = evidence.device_id;
    result.retry_after_seconds = options_.unclaimed_retry.count();
    return result;
  }

  // 7. Tenant policy over the measurements.
  auto rules = store_.ListPolicyRules(device->tenant_id);
  if (!rules) {
    return std::unexpected(MakeProblem(503, "unavailable", "Service unavailable", "store: " + rules.error().message()));
  }
  std::string runtime_digest = HexEncode(runtime->digest);
  for (const auto& rule : *rules) {
    if (rule.kind == "revoked-os-version" && rule.value == os->version) {
      return std::unexpected(MakeProblem(403, "policy-violation", "Measurements refused",
                                         "measurement os: version " + os->version + " is revoked"));
    }
    if (rule.kind == "revoked-runtime-digest" && rule.value == runtime_digest) {
      return std::unexpected(MakeProblem(403, "policy-violation", "Measurements refused",
                                         "measurement runtime: digest " + runtime_digest + " is revoked"));
    }
  }

  // 8. Issue the certificate.
  auto authority = authorities_.Get(device->tenant_id);
  if (!authority) {
    log::Error("cannot load tenant CA", {{"tenant", device->tenant_id}, {"error", authority.error().message()}});
    return std::unexpected(MakeProblem(500, "internal", "Internal error", "the tenant CA is not available"));
  }
  auto certificate = IssueDeviceCertificate(**authority, device->tenant_id, evidence.device_id, csr->SubjectPublicKey(),
                                            options_.certificate_lifetime);
  if (!certificate) {
    log::Error("certificate issuance failed",
               {{"device_id", evidence.device_id}, {"error", certificate.error().message()}});
    return std::unexpected(MakeProblem(500, "internal", "Internal error", "certificate issuance failed"));
  }
  store::IssuedCertificate issued;
  issued.serial_hex = certificate->SerialHex();
  issued.device_id = evidence.device_id;
  issued.tenant_id = device->tenant_id;
  issued.not_after = ToUnixSeconds(certificate->NotAfter());
  issued.issued_at = ToUnixSeconds(now);
  if (auto recorded = store_.RecordCertificate(issued); !recorded) {
    return std::unexpected(
        MakeProblem(503, "unavailable", "Service unavailable", "store: " + recorded.error().message()));
  }

  protocol::AttestationResult result;
  result.verdict = "accepted";
  result.device_id = evidence.device_id;
  result.tenant_id = device->tenant_id;
  result.certificate = certificate->Pem();
  result.chain = {(*authority)->issuing.Pem(), (*authority)->root.Pem()};
  result.expires_at = FormatRfc3339(certificate->NotAfter());
  return result;
}

void Attestor::RecordVerdict(std::string_view device_id, std::string_view tenant_id, std::string_view verdict,
                             std::string_view detail, std::string_view os_version, TimePoint now) {
  auto t = ToUnixSeconds(now);
  if (auto recorded = store_.RecordAttestation(device_id, verdict, os_version, t); !recorded) {
    log::Warn("cannot record attestation", {{"device_id", device_id}, {"error", recorded.error().message()}});
  }
  store::AuditEvent event;
  event.time = t;
  event.tenant_id = std::string(tenant_id);
  event.actor = "device:" + std::string(device_id);
  event.action = "attestation.verdict";
  event.target = std::string(device_id);
  event.details_json = Json{{"verdict", verdict}, {"detail", detail}}.dump();
  if (auto appended = store_.AppendAudit(event); !appended) {
    log::Warn("cannot append audit event", {{"error", appended.error().message()}});
  }
  log::Info("attestation verdict", {{"device_id", device_id}, {"tenant", tenant_id}, {"verdict", verdict}});
}

}  // namespace citadel::server
