// Fuzzes what the service does first with an attestation body from an
// untrusted device: the strict evidence parser, the signature check, and the
// parsing of the chain and replay of the log that follow it. Must never
// crash; and whatever the parser accepts must re-serialise to exactly the
// bytes the signature is checked over, so the appraiser acts on what was
// signed and nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/encoding.hpp"
#include "crypto/crypto.hpp"
#include "protocol/protocol.hpp"
#include "rot/rot.hpp"

namespace {

// The identity key that signed corpus/evidence_fuzz/valid_evidence.json.
#include "evidence_fuzz_identity.inc"

const citadel::crypto::PublicKey& SeedIdentityKey() {
  static const citadel::crypto::PublicKey key = [] {
    auto parsed = citadel::crypto::PublicKey::FromPem(kEvidenceSeedIdentityPem);
    if (!parsed) {
      std::fprintf(stderr, "evidence_fuzz_identity.inc: %s\n", parsed.error().message().c_str());
      std::abort();
    }
    return *parsed;
  }();
  return key;
}

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "evidence_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace protocol = citadel::protocol;
  auto parsed = protocol::ParseSignedEvidence(citadel::AsText({data, size}));
  if (!parsed) return 0;

  const protocol::Evidence& evidence = parsed->evidence;
  if (evidence.registers.size() != citadel::rot::kRegisterCount) Fail("accepted a wrong register count");
  if (evidence.measurements.size() > protocol::kMaxMeasurements) Fail("accepted too many measurements");
  if (evidence.manufacturer_chain.size() > protocol::kMaxManufacturerChain) Fail("accepted too long a chain");
  if (evidence.nonce.size() != protocol::kNonceBytes) Fail("accepted a wrong nonce size");

  auto reserialised = citadel::CanonicalJson(protocol::EvidenceToJson(evidence));
  if (!reserialised || *reserialised != parsed->canonical_evidence) {
    Fail("parsed evidence differs from the signed bytes");
  }

  (void)protocol::VerifyEvidenceSignature(*parsed, SeedIdentityKey());
  if (!evidence.manufacturer_chain.empty()) {
    auto leaf = citadel::crypto::Certificate::FromPem(evidence.manufacturer_chain.front());
    if (leaf) (void)protocol::VerifyEvidenceSignature(*parsed, leaf->SubjectPublicKey());
  }
  (void)citadel::rot::ReplayLog(evidence.measurements);
  (void)citadel::crypto::CertificateRequest::FromPem(evidence.csr);
  return 0;
}
