#include "server/attestation.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "tpm/credential.hpp"
#include "tpm/public_area.hpp"
#include "tpm/quote.hpp"

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

struct Attestor::Genuine {
  // TPM devices only: the endorsement and attestation keys, and the EK
  // certificate's fingerprint (SHA-256 hex of its DER).
  std::optional<tpm::PublicArea> ek;
  std::optional<tpm::PublicArea> ak;
  std::string ek_fingerprint;
};

namespace {

protocol::Problem NotGenuine(std::string detail) {
  return MakeProblem(403, "not-genuine", "Device is not genuine", std::move(detail));
}

// The chain verifies to one of `cas` at `now`.
std::expected<void, protocol::Problem> VerifyChain(const std::vector<crypto::Certificate>& chain,
                                                   const std::vector<crypto::Certificate>& cas, std::string_view kind,
                                                   TimePoint now) {
  if (cas.empty()) return std::unexpected(NotGenuine("this service trusts no " + std::string(kind) + " CA"));
  std::vector<crypto::Certificate> intermediates(chain.begin() + 1, chain.end());
  crypto::ChainVerification verification;
  verification.at = now;
  if (auto verified = crypto::VerifyCertificateChain(chain.front(), intermediates, cas, verification); !verified) {
    return std::unexpected(NotGenuine("manufacturer chain does not verify to a trusted " + std::string(kind) +
                                      " CA: " + verified.error().message()));
  }
  return {};
}

}  // namespace

std::expected<Attestor::Genuine, protocol::Problem> Attestor::VerifySoftwareDevice(
    const protocol::SignedEvidence& signed_evidence, const std::vector<crypto::Certificate>& chain, TimePoint now) {
  const auto& evidence = signed_evidence.evidence;
  if (auto verified = VerifyChain(chain, options_.manufacturer_cas, "manufacturer", now); !verified) {
    return std::unexpected(verified.error());
  }
  auto identity_key = chain.front().SubjectPublicKey();
  if (!crypto::ConstantTimeEqual(crypto::Sha256Hex(AsText(identity_key.SpkiDer())), evidence.device_id)) {
    return std::unexpected(NotGenuine("device_id is not the hash of the certified identity key"));
  }
  if (!protocol::VerifyEvidenceSignature(signed_evidence, identity_key)) {
    return std::unexpected(
        MakeProblem(401, "bad-signature", "Evidence signature invalid", "the evidence signature does not verify"));
  }
  return Genuine{};
}

std::expected<Attestor::Genuine, protocol::Problem> Attestor::VerifyTpmDevice(
    const protocol::SignedEvidence& signed_evidence, const std::vector<crypto::Certificate>& chain, TimePoint now) {
  const auto& evidence = signed_evidence.evidence;
  if (auto verified = VerifyChain(chain, options_.tpm_manufacturer_cas, "TPM manufacturer", now); !verified) {
    return std::unexpected(verified.error());
  }
  auto ek = tpm::ParsePublic(evidence.tpm->ek_public);
  if (!ek) return std::unexpected(NotGenuine("tpm.ek_public: " + ek.error().message()));
  auto ek_key = tpm::ToPublicKey(*ek);
  if (!ek_key || !(*ek_key == chain.front().SubjectPublicKey())) {
    return std::unexpected(NotGenuine("the EK certificate does not certify tpm.ek_public"));
  }
  auto ak = tpm::ParsePublic(evidence.tpm->ak_public);
  if (!ak) return std::unexpected(NotGenuine("tpm.ak_public: " + ak.error().message()));
  if (auto checked = tpm::CheckAttestationKey(*ak); !checked) {
    return std::unexpected(NotGenuine("tpm.ak_public: " + checked.error().message()));
  }
  auto identity_key = tpm::ToPublicKey(*ak);
  if (!identity_key) return std::unexpected(NotGenuine("tpm.ak_public: " + identity_key.error().message()));
  if (!crypto::ConstantTimeEqual(crypto::Sha256Hex(AsText(identity_key->SpkiDer())), evidence.device_id)) {
    return std::unexpected(NotGenuine("device_id is not the hash of the attestation key"));
  }
  // The quote over PCRs 8..15 is the signature: its qualifying data binds
  // this exact evidence (nonce, CSR, log), its PCR digest the registers.
  tpm::QuoteExpectation expectation;
  expectation.extra_data = crypto::Sha256(signed_evidence.canonical_evidence);
  for (std::uint32_t i = 0; i < rot::kRegisterCount; ++i) expectation.pcrs.push_back(rot::kTpmFirstRegisterPcr + i);
  expectation.pcr_values = evidence.registers;
  if (auto quote = tpm::VerifyQuote(signed_evidence.signature, *identity_key, expectation); !quote) {
    return std::unexpected(MakeProblem(401, "bad-signature", "Evidence signature invalid", quote.error().message()));
  }
  Bytes ek_der = chain.front().Der();
  return Genuine{std::move(*ek), std::move(*ak), crypto::Sha256Hex(AsText(ek_der))};
}

std::expected<std::optional<protocol::AttestationResult>, protocol::Problem> Attestor::RequireActivation(
    const protocol::Evidence& evidence, const Genuine& genuine, TimePoint now) {
  auto binding = store_.GetTpmBinding(evidence.device_id);
  if (!binding) {
    return std::unexpected(
        MakeProblem(503, "unavailable", "Service unavailable", "store: " + binding.error().message()));
  }
  if (*binding && crypto::ConstantTimeEqual((*binding)->ek_fingerprint, genuine.ek_fingerprint)) return std::nullopt;

  Bytes secret = crypto::RandomBytes(32);
  auto credential = tpm::MakeCredential(*genuine.ek, tpm::ObjectName(*genuine.ak), secret);
  if (!credential) return std::unexpected(NotGenuine("tpm.ek_public: " + credential.error().message()));
  store::TpmActivation activation;
  activation.id = HexEncode(crypto::RandomBytes(16));
  activation.device_id = evidence.device_id;
  activation.ek_fingerprint = genuine.ek_fingerprint;
  activation.secret_hash = crypto::Sha256Hex(AsText(secret));
  activation.expires_at = ToUnixSeconds(now + options_.activation_lifetime);
  if (auto created = store_.CreateTpmActivation(activation, ToUnixSeconds(now)); !created) {
    return std::unexpected(
        MakeProblem(503, "unavailable", "Service unavailable", "store: " + created.error().message()));
  }
  protocol::AttestationResult result;
  result.verdict = "activation-required";
  result.device_id = evidence.device_id;
  result.activation = protocol::TpmActivationChallenge{activation.id, std::move(credential->credential_blob),
                                                       std::move(credential->encrypted_secret)};
  return std::optional<protocol::AttestationResult>(std::move(result));
}

std::expected<void, protocol::Problem> Attestor::Activate(std::string_view body, TimePoint now) {
  auto request = protocol::ParseActivationRequest(body);
  if (!request) {
    return std::unexpected(MakeProblem(400, "invalid-request", "Invalid request", request.error().message()));
  }
  auto failed = [&](std::string detail) {
    log::Info("TPM activation refused", {{"device_id", request->device_id}, {"detail", detail}});
    return std::unexpected(MakeProblem(403, "activation-failed", "Activation failed", std::move(detail)));
  };
  auto activation = store_.TakeTpmActivation(request->activation_id, ToUnixSeconds(now));
  if (!activation && activation.error().code() == ErrorCode::kNotFound) {
    return failed("no such activation (unknown, used or expired): attest again");
  }
  if (!activation) {
    return std::unexpected(
        MakeProblem(503, "unavailable", "Service unavailable", "store: " + activation.error().message()));
  }
  // Both compared whole, in constant time; the activation is gone either way.
  bool device_matches = crypto::ConstantTimeEqual(activation->device_id, request->device_id);
  bool secret_matches = crypto::ConstantTimeEqual(crypto::Sha256Hex(AsText(request->secret)), activation->secret_hash);
  if (!device_matches || !secret_matches) {
    return failed("the secret does not match: the attestation key is not in the TPM that holds the endorsement key");
  }
  store::TpmBinding binding{activation->device_id, activation->ek_fingerprint, ToUnixSeconds(now)};
  if (auto bound = store_.BindTpmKey(binding); !bound) {
    return std::unexpected(MakeProblem(503, "unavailable", "Service unavailable", "store: " + bound.error().message()));
  }
  store::AuditEvent event;
  event.time = ToUnixSeconds(now);
  event.actor = "device:" + activation->device_id;
  event.action = "tpm.activated";
  event.target = activation->device_id;
  event.details_json = Json{{"ek_fingerprint", activation->ek_fingerprint}}.dump();
  if (auto appended = store_.AppendAudit(event); !appended) {
    log::Warn("cannot append audit event", {{"error", appended.error().message()}});
  }
  log::Info("TPM attestation key activated", {{"device_id", activation->device_id}});
  return {};
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
  if (outcome && outcome->verdict == "activation-required") {
    // Not yet a device of the registry: nothing is recorded until its AK
    // is proven to live in its TPM.
    log::Info("attestation: TPM activation required", {{"device_id", parsed->evidence.device_id}});
  } else if (outcome) {
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

  // 1. Genuine: the identity key is certified by a trusted manufacturer, and
  // 2. the evidence is signed by that identity key. The kind of device (and
  // so which CAs and which signature) follows the "rot" field, and each kind
  // trusts only its own manufacturers: a chain of the other kind fails.
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
  auto genuine =
      evidence.tpm ? VerifyTpmDevice(signed_evidence, chain, now) : VerifySoftwareDevice(signed_evidence, chain, now);
  if (!genuine) return std::unexpected(genuine.error());

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

  // 4b. A TPM's attestation key is trusted only once the device proved it
  // lives in the TPM holding the certified EK.
  if (evidence.tpm) {
    auto activation = RequireActivation(evidence, *genuine, now);
    if (!activation) return std::unexpected(activation.error());
    if (*activation) return std::move(**activation);
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
  auto refused = [](std::string detail) {
    return std::unexpected(MakeProblem(403, "policy-violation", "Measurements refused", std::move(detail)));
  };
  std::vector<std::string> accepted_runtimes;
  bool require_published_apps = false;
  for (const auto& rule : *rules) {
    if (rule.kind == "revoked-os-version" && rule.value == os->version) {
      return refused("measurement os: version " + os->version + " is revoked");
    }
    if (rule.kind == "revoked-runtime-digest" && rule.value == runtime_digest) {
      return refused("measurement runtime: digest " + runtime_digest + " is revoked");
    }
    if (rule.kind == "accepted-runtime-digest") accepted_runtimes.push_back(rule.value);
    if (rule.kind == "require-published-apps") require_published_apps = true;
  }
  // Allow-lists: the first accepted runtime digest turns the list on. Every
  // runtime event must be on it (a restart with another binary adds one).
  if (!accepted_runtimes.empty()) {
    for (const auto& event : evidence.measurements) {
      if (event.type != "runtime") continue;
      std::string digest = HexEncode(event.digest);
      if (std::find(accepted_runtimes.begin(), accepted_runtimes.end(), digest) == accepted_runtimes.end()) {
        return refused("measurement runtime: digest " + digest + " is not an accepted runtime digest");
      }
    }
  }
  if (require_published_apps) {
    for (const auto& event : evidence.measurements) {
      if (event.type != "app") continue;
      std::string digest = HexEncode(event.digest);
      auto image = store_.GetImage(device->tenant_id, digest);
      if (!image && image.error().code() == ErrorCode::kNotFound) {
        return refused("measurement app " + event.name + " " + event.version + ": image " + digest +
                       " is not an image this tenant published");
      }
      if (!image) {
        return std::unexpected(
            MakeProblem(503, "unavailable", "Service unavailable", "store: " + image.error().message()));
      }
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
