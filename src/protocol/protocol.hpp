// The device <-> service wire messages (docs/PROTOCOL.md). Everything a
// device sends is untrusted input: parsers are strict (unknown fields,
// wrong types and oversized values are refused with a message naming the
// field) and bounded, and have fuzz targets in fuzz/.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "rot/rot.hpp"

namespace citadel::protocol {

inline constexpr int kEvidenceVersion = 1;
inline constexpr std::size_t kMaxEvidenceBytes = 64 * 1024;
inline constexpr std::size_t kMaxManufacturerChain = 4;
inline constexpr std::size_t kMaxMeasurements = 64;
inline constexpr std::size_t kNonceBytes = 32;
// Bound on every other message body (docs/PROTOCOL.md: bodies <= 1 MiB).
inline constexpr std::size_t kMaxMessageBytes = 1024 * 1024;

// Parse errors: kTooLarge for an oversized body, kParse for bytes that are
// not JSON (or hold duplicate keys / too deep nesting), kInvalidArgument for
// a value that breaks the message's rules; the message names the field:
// "evidence.measurements[3].digest: expected 64 hex characters".

// POST /v1/attestation/challenge -> Challenge
struct Challenge {
  Bytes nonce;             // kNonceBytes random bytes, hex on the wire
  std::string expires_at;  // RFC 3339
};
Json ChallengeToJson(const Challenge& challenge);
Expected<Challenge> ParseChallenge(std::string_view body);

// What the device claims about itself, signed by its identity key.
struct Evidence {
  int version = kEvidenceVersion;
  std::string device_id;                            // hex SHA-256 of identity SPKI
  std::string rot_backend;                          // "software" | "tpm2"
  Bytes nonce;                                      // from the challenge
  std::vector<std::string> manufacturer_chain;      // PEM, leaf first
  std::vector<rot::MeasurementEvent> measurements;  // the event log
  std::vector<crypto::Sha256Digest> registers;      // kRegisterCount entries
  std::string csr;                                  // PEM PKCS#10 for the TLS key
  // Present exactly when rot_backend is "tpm2": the manufacturer chain then
  // starts with the EK certificate, and the signature is a TPM2 quote.
  std::optional<rot::TpmPublicKeys> tpm{};
};

// The wire form: {"evidence": {...}, "signature": "<base64 DER ECDSA>"}; the
// signature covers SHA-256 of the canonical JSON of the "evidence" member.
struct SignedEvidence {
  Evidence evidence;
  std::string canonical_evidence;  // the exact bytes that were signed
  Bytes signature;
};

Json EvidenceToJson(const Evidence& evidence);
// Builds evidence from the RoT's current state (chain, log, registers) and
// signs it with the identity key.
Expected<std::string> CreateSignedEvidence(rot::RootOfTrust& rot, std::span<const std::uint8_t> nonce,
                                           const std::string& csr_pem);
// Strict, bounded parse of an evidence request body; does not check the
// signature (the verifier needs the manufacturer chain first).
Expected<SignedEvidence> ParseSignedEvidence(std::string_view body);
// Checks the signature against the identity key.
bool VerifyEvidenceSignature(const SignedEvidence& evidence, const crypto::PublicKey& identity_key);

// Successful attestation reply.
// The credential a TPM device must open before its AK is trusted
// (verdict "activation-required"); the device answers with
// ActivationRequest at POST /v1/attest/activate, then attests again.
struct TpmActivationChallenge {
  std::string id;          // names the activation; hex
  Bytes credential_blob;   // TPM2B_ID_OBJECT, marshalled
  Bytes encrypted_secret;  // TPM2B_ENCRYPTED_SECRET, marshalled
};
struct ActivationRequest {
  std::string activation_id;
  std::string device_id;
  Bytes secret;  // what TPM2_ActivateCredential returned
};
Json ActivationRequestToJson(const ActivationRequest& request);
Expected<ActivationRequest> ParseActivationRequest(std::string_view body);

struct AttestationResult {
  std::string verdict;  // "accepted" | "accepted-unclaimed" | "activation-required"
  std::string device_id;
  std::string tenant_id;                               // empty when unclaimed
  std::string certificate;                             // PEM, empty when unclaimed
  std::vector<std::string> chain;                      // issuing CA, root CA (PEM)
  std::string expires_at;                              // RFC 3339, empty when unclaimed
  std::int64_t retry_after_seconds = 0;                // when unclaimed: ask again later
  std::optional<TpmActivationChallenge> activation{};  // when activation-required
};
Json AttestationResultToJson(const AttestationResult& result);
Expected<AttestationResult> ParseAttestationResult(std::string_view body);

// ---- Over-the-air updates in the check-in (docs/PROTOCOL.md, "Updates").
inline constexpr std::size_t kMaxUpdateEntries = 64;  // installed[] and reports[] each
inline constexpr std::size_t kMaxTargetNameBytes = 512;
inline constexpr std::size_t kMaxComponentIdBytes = 128;
inline constexpr std::size_t kMaxVersionBytes = 64;
inline constexpr std::size_t kMaxDeploymentIdBytes = 64;
inline constexpr std::size_t kMaxUpdateReasonBytes = 1024;
inline constexpr std::size_t kMaxRepositoryPathBytes = 256;
// The states a device reports, in the order an update goes through them.
inline constexpr std::array<std::string_view, 5> kUpdateStates = {"downloading", "installing", "pending-reboot",
                                                                  "committed", "failed"};

// A component the device runs now.
struct InstalledComponent {
  std::string kind;  // "app" | "os"
  std::string component_id;
  std::string version;
  std::string sha256;  // 64 lower-case hex of the installed image, or "" when unknown (a factory image)
};

// One state change of one target of one deployment. The device re-sends a
// report until a check-in reply acknowledges it.
struct UpdateReportEntry {
  std::string deployment_id;
  std::string target_name;
  std::string state;        // one of kUpdateStates
  std::string reason;       // why it failed; "" otherwise
  std::string reported_at;  // RFC 3339: when the device entered the state
};

struct CheckInUpdate {
  std::vector<InstalledComponent> installed;  // <= kMaxUpdateEntries
  std::vector<UpdateReportEntry> reports;     // <= kMaxUpdateEntries, oldest first
};

// The telemetry heartbeat's counters since the runtime started (the
// service turns them into daily per-device rows; docs/PROTOCOL.md,
// "Telemetry").
struct CheckInTelemetry {
  std::int64_t app_restarts = 0;    // automatic app restarts
  std::int64_t rx_bytes = 0;        // received on the device's network interfaces
  std::int64_t tx_bytes = 0;        // sent
  std::int64_t reports_queued = 0;  // failure reports waiting in the device's queue
};

// POST /v1/device/check-in (mutual TLS)
struct CheckIn {
  std::string os_version;
  std::string runtime_version;
  std::int64_t uptime_seconds = 0;
  std::int64_t free_memory_kb = 0;
  // Absent for devices without the update client (they omit the member).
  std::optional<CheckInUpdate> update{};
  // Absent from devices older than failure reporting.
  std::optional<CheckInTelemetry> telemetry{};
};
Json CheckInToJson(const CheckIn& check_in);
Expected<CheckIn> ParseCheckIn(std::string_view body);

// The service's reply to a check-in. The device learns the tenant's app
// trust from it (docs/PROTOCOL.md, "App trust"). Unknown top-level members
// are ignored so the service can add fields; the members below are parsed
// strictly and bounded.
inline constexpr std::size_t kMaxPublisherKeys = 64;
inline constexpr std::size_t kMaxPublisherKeyPemBytes = 4096;
inline constexpr std::size_t kMaxDeveloperKeys = 16;
inline constexpr std::size_t kMaxCapabilityBytes = 64 * 1024;

struct PublisherKeyEntry {
  std::string key_id;          // lower-case hex SHA-256 of the DER SPKI
  std::string public_key_pem;  // an EC P-256 public key
};
// Parses the PEM, checks it is P-256 and that key_id is its SPKI's SHA-256.
Expected<crypto::PublicKey> PublisherKeyFromEntry(const PublisherKeyEntry& entry);
// Lower-case hex SHA-256 of the key's DER SPKI (= image::PublisherKeyId).
std::string KeyId(const crypto::PublicKey& key);

// Where the device's update client looks, and whether it needs to. Paths
// are absolute paths on the service ("/v1/repo/T/image").
struct CheckInUpdateReply {
  std::string image_repository;
  std::string director;
  // The group's current director timestamp version: the device refreshes
  // its director only when this moved (or update_now), so an idle check-in
  // costs no repository traffic.
  std::int64_t director_timestamp_version = 0;
  bool update_now = false;  // refresh and install now, outside the maintenance window
  // The first `acknowledged` reports of the check-in were handled (recorded,
  // already known, or dropped as naming no deployment of the tenant); the
  // device stops re-sending them.
  std::int64_t acknowledged = 0;
};

// What the device's group asks of failure reporting.
struct ReportingSettings {
  // Attach the crashing thread's stack (<= kMaxCrashDumpBytes) to app
  // crash reports. Off by default.
  bool crash_dumps = false;
};

struct CheckInReply {
  std::string device_id;
  std::string tenant_id;
  std::int64_t next_check_in_seconds = 0;  // 0 = no wish
  std::vector<PublisherKeyEntry> publisher_keys;
  // The AppDevelopment envelope (not yet verified), or null.
  Json app_development;
  // Present when the device is in a group whose tenant publishes updates.
  std::optional<CheckInUpdateReply> update{};
  // Absent from services older than failure reporting: defaults apply.
  std::optional<ReportingSettings> reporting{};
};
Json CheckInReplyToJson(const CheckInReply& reply);
Expected<CheckInReply> ParseCheckInReply(std::string_view body);

// The staged-rollout rule (docs/PROTOCOL.md, "Updates"), shared by the
// service (progress) and the device (whether to take a deployment's current
// target): bucket = the first 4 bytes, big-endian, of SHA-256(deployment_id
// ":" device_id) mod kRolloutBuckets; a device is in the rollout when
// bucket < percent * 100. The bucket does not depend on the percent, so
// raising the percent never removes a device.
inline constexpr std::uint32_t kRolloutBuckets = 10000;
std::uint32_t RolloutBucket(std::string_view device_id, std::string_view deployment_id);
// percent is clamped to 0..100: 0 takes no device, 100 every device.
bool InRollout(std::string_view device_id, std::string_view deployment_id, std::int64_t percent);

// The AppDevelopment capability (docs/helpers/CONTRACTS.md, docs/PROTOCOL.md
// "App trust"): the signed part of the envelope
//   {"capability": {...}, "signature": "<base64 DER ECDSA>",
//    "certificate": "<PEM of the signing tenant issuing CA>"}
// The signature covers SHA-256 of the canonical JSON of "capability".
inline constexpr std::string_view kAppDevelopmentType = "AppDevelopment";

struct DevelopmentCapabilityClaims {
  std::string device_id;  // 64 lower-case hex
  std::string tenant_id;
  std::string issued_at;                          // RFC 3339
  std::string capability_id;                      // UUID
  std::vector<crypto::PublicKey> developer_keys;  // "DeveloperKeys": SPKI DER base64; omitted when empty
};

struct DevelopmentCapabilityEnvelope {
  DevelopmentCapabilityClaims claims;
  std::string canonical_capability;  // the exact bytes the signature covers
  Bytes signature;
  std::string certificate_pem;  // as sent: the claimed signer, not trusted yet
};

Json DevelopmentCapabilityClaimsToJson(const DevelopmentCapabilityClaims& claims);
// Signs the claims with the issuing CA key; returns the envelope object.
Expected<Json> CreateDevelopmentCapabilityEnvelope(const DevelopmentCapabilityClaims& claims,
                                                   const crypto::PrivateKey& issuing_key,
                                                   const crypto::Certificate& issuing_certificate);
// Strict, bounded structural parse; checks neither signer nor signature.
Expected<DevelopmentCapabilityEnvelope> ParseDevelopmentCapabilityEnvelope(const Json& envelope);
Expected<DevelopmentCapabilityEnvelope> ParseDevelopmentCapabilityEnvelope(std::string_view text);

// RFC 9457 problem details. `type` is stable: "urn:citadel:problem:<name>".
struct Problem {
  std::string type;
  std::string title;
  int status = 500;
  std::string detail;
};
Json ProblemToJson(const Problem& problem);
Expected<Problem> ParseProblem(std::string_view body);
std::string ProblemType(std::string_view name);  // "urn:citadel:problem:" + name

}  // namespace citadel::protocol
