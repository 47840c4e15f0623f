// TPM2_Quote evidence: the bytes a device sends and the checks the service
// makes on them (docs/ARCHITECTURE.md, "Evidence from a TPM device").
//
// The evidence's signature is TPM2B_ATTEST || TPMT_SIGNATURE, both as the
// TPM marshals them. VerifyQuote trusts nothing in it before the signature
// by the attestation key verifies over the attested bytes; it then requires
// a quote (magic TPM_GENERATED_VALUE, type ATTEST_QUOTE) whose qualifying
// data, PCR selection and PCR digest are what the caller expects. What it
// does not do: decide that `ak` belongs to this device's TPM (that is
// CheckAttestationKey plus credential activation, credential.hpp), or that
// the nonce inside the qualifying data is fresh.
//
// Untrusted input: parsing is bounded by the structures' maximum sizes and
// refuses trailing bytes. Thread safety: pure functions.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "common/encoding.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::tpm {

// A quote blob parsed into its two structures (attest.attestationData holds
// the signed TPMS_ATTEST bytes).
struct QuoteBlob {
  TPM2B_ATTEST attest{};
  TPMT_SIGNATURE signature{};
};

// TPM2B_ATTEST || TPMT_SIGNATURE, as the device sends it. Empty when the
// structures cannot be marshalled (a size beyond its buffer or an unknown
// signature algorithm: never what a TPM returns), which no verifier accepts.
Bytes MarshalQuoteBlob(const TPM2B_ATTEST& attest, const TPMT_SIGNATURE& signature);

// The inverse of MarshalQuoteBlob: kParse for malformed or trailing bytes.
// Checks the framing only, not the contents (VerifyQuote does).
[[nodiscard]] Expected<QuoteBlob> ParseQuoteBlob(std::span<const std::uint8_t> blob);

// A TPM's PCR digest over the SHA-256 bank: SHA-256 of the register values
// concatenated in selection order (ascending register index).
crypto::Sha256Digest PcrDigest(std::span<const crypto::Sha256Digest> values);

// What the verifier expects the quote to say.
struct QuoteExpectation {
  crypto::Sha256Digest extra_data{};             // the qualifying data (SHA-256 of the canonical evidence)
  std::vector<std::uint32_t> pcrs;               // the SHA-256 bank registers quoted, strictly ascending
  std::vector<crypto::Sha256Digest> pcr_values;  // their values, one per entry of pcrs
};

// The TPM's clock and firmware as the (verified) quote reports them.
struct QuoteInfo {
  std::uint64_t clock = 0;          // milliseconds the TPM has been powered
  std::uint32_t reset_count = 0;    // TPM resets (reboots)
  std::uint32_t restart_count = 0;  // restarts/resumes since the last reset
  bool safe = false;                // the clock has not gone backwards
  std::uint64_t firmware_version = 0;
};

// Verifies a quote blob made by the TPM holding `ak` (a P-256 key), in this
// order: kParse for malformed bytes (the blob or the TPMS_ATTEST inside);
// then kFailedPrecondition naming the first failed check: the signature
// scheme (ECDSA with SHA-256), the signature over SHA-256 of the TPMS_ATTEST
// bytes, the magic, the attestation type, the qualifying data, the PCR
// selection (exactly one, SHA-256 bank, exactly `pcrs`) and the PCR digest.
// kInvalidArgument when `expected` itself is inconsistent (pcrs not
// strictly ascending or beyond the selection's range, or not one value per
// register).
[[nodiscard]] Expected<QuoteInfo> VerifyQuote(std::span<const std::uint8_t> blob, const crypto::PublicKey& ak,
                                              const QuoteExpectation& expected);

}  // namespace citadel::tpm
