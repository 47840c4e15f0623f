// The device <-> service wire messages (docs/PROTOCOL.md). Everything a
// device sends is untrusted input: parsers are strict (unknown fields,
// wrong types and oversized values are refused with a message naming the
// field) and bounded, and have fuzz targets in fuzz/.
#pragma once

#include <cstddef>
#include <cstdint>
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
struct AttestationResult {
  std::string verdict;  // "accepted" | "accepted-unclaimed"
  std::string device_id;
  std::string tenant_id;                 // empty when unclaimed
  std::string certificate;               // PEM, empty when unclaimed
  std::vector<std::string> chain;        // issuing CA, root CA (PEM)
  std::string expires_at;                // RFC 3339, empty when unclaimed
  std::int64_t retry_after_seconds = 0;  // when unclaimed: ask again later
};
Json AttestationResultToJson(const AttestationResult& result);
Expected<AttestationResult> ParseAttestationResult(std::string_view body);

// POST /v1/device/check-in (mutual TLS)
struct CheckIn {
  std::string os_version;
  std::string runtime_version;
  std::int64_t uptime_seconds = 0;
  std::int64_t free_memory_kb = 0;
};
Json CheckInToJson(const CheckIn& check_in);
Expected<CheckIn> ParseCheckIn(std::string_view body);

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
