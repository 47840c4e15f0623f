#include "tpm/quote.hpp"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <cstdio>
#include <memory>
#include <string>

#include "crypto/openssl_ptr.hpp"
#include "tpm/public_area.hpp"

namespace citadel::tpm {
namespace {

// The largest blob MarshalQuoteBlob can produce; anything longer is refused
// before any unmarshalling.
constexpr std::size_t kMaxBlobSize = sizeof(TPM2B_ATTEST) + sizeof(TPMT_SIGNATURE);
// Registers a TPMS_PCR_SELECTION can name.
constexpr std::uint32_t kMaxPcrs = 8 * TPM2_PCR_SELECT_MAX;

std::string DescribePcrs(const std::vector<std::uint32_t>& pcrs) {
  std::string text = "sha256:";
  for (std::size_t i = 0; i < pcrs.size(); ++i) text += (i == 0 ? "" : ",") + std::to_string(pcrs[i]);
  return text;
}

Expected<void> CheckExpectation(const QuoteExpectation& expected) {
  if (expected.pcrs.empty() || expected.pcrs.size() != expected.pcr_values.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "quote: the expectation needs one value per register, " +
                                                      std::to_string(expected.pcrs.size()) + " registers and " +
                                                      std::to_string(expected.pcr_values.size()) + " values");
  }
  for (std::size_t i = 0; i < expected.pcrs.size(); ++i) {
    if (expected.pcrs[i] >= kMaxPcrs || (i > 0 && expected.pcrs[i] <= expected.pcrs[i - 1])) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "quote: the expected registers must be strictly ascending and below " +
                           std::to_string(kMaxPcrs) + ": " + DescribePcrs(expected.pcrs));
    }
  }
  return kOk;
}

// The TPM's ECDSA signature (r, s) as the DER ECDSA-Sig-Value OpenSSL takes.
Bytes EcdsaDer(const TPMS_SIGNATURE_ECC& ecdsa) {
  crypto::EcdsaSigPtr signature(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(ecdsa.signatureR.buffer, ecdsa.signatureR.size, nullptr);
  BIGNUM* s = BN_bin2bn(ecdsa.signatureS.buffer, ecdsa.signatureS.size, nullptr);
  if (!signature || r == nullptr || s == nullptr || ECDSA_SIG_set0(signature.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return {};  // an empty signature never verifies
  }
  const int size = i2d_ECDSA_SIG(signature.get(), nullptr);
  if (size <= 0) return {};
  Bytes der(static_cast<std::size_t>(size));
  std::uint8_t* cursor = der.data();
  if (i2d_ECDSA_SIG(signature.get(), &cursor) != size) return {};
  return der;
}

Expected<std::vector<std::uint32_t>> SelectedPcrs(const TPML_PCR_SELECTION& selection) {
  auto refuse = [](const std::string& what) {
    return MakeError(ErrorCode::kFailedPrecondition, "quote: PCR selection " + what);
  };
  if (selection.count != 1) return refuse("has " + std::to_string(selection.count) + " banks, not one");
  const TPMS_PCR_SELECTION& bank = selection.pcrSelections[0];
  if (bank.hash != TPM2_ALG_SHA256) return refuse("is of bank " + HandleHex(bank.hash) + ", not SHA-256");
  if (bank.sizeofSelect > TPM2_PCR_SELECT_MAX) return refuse("is larger than any TPM's");
  std::vector<std::uint32_t> pcrs;
  for (std::uint32_t index = 0; index < 8U * bank.sizeofSelect; ++index) {
    if ((bank.pcrSelect[index / 8] & (1U << (index % 8))) != 0) pcrs.push_back(index);
  }
  return pcrs;
}

}  // namespace

Bytes MarshalQuoteBlob(const TPM2B_ATTEST& attest, const TPMT_SIGNATURE& signature) {
  Bytes blob(kMaxBlobSize);
  std::size_t offset = 0;
  if (Tss2_MU_TPM2B_ATTEST_Marshal(&attest, blob.data(), blob.size(), &offset) != 0 ||
      Tss2_MU_TPMT_SIGNATURE_Marshal(&signature, blob.data(), blob.size(), &offset) != 0) {
    return {};
  }
  blob.resize(offset);
  return blob;
}

Expected<QuoteBlob> ParseQuoteBlob(std::span<const std::uint8_t> blob) {
  if (blob.size() > kMaxBlobSize) {
    return MakeError(ErrorCode::kParse,
                     "quote: " + std::to_string(blob.size()) + " bytes is larger than any TPM quote");
  }
  QuoteBlob parsed;
  std::size_t offset = 0;
  if (blob.empty() || Tss2_MU_TPM2B_ATTEST_Unmarshal(blob.data(), blob.size(), &offset, &parsed.attest) != 0) {
    return MakeError(ErrorCode::kParse, "quote: malformed TPM2B_ATTEST");
  }
  if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(blob.data(), blob.size(), &offset, &parsed.signature) != 0) {
    return MakeError(ErrorCode::kParse, "quote: malformed TPMT_SIGNATURE after the TPM2B_ATTEST");
  }
  if (offset != blob.size()) {
    return MakeError(ErrorCode::kParse,
                     "quote: " + std::to_string(blob.size() - offset) + " bytes after the signature");
  }
  return parsed;
}

crypto::Sha256Digest PcrDigest(std::span<const crypto::Sha256Digest> values) {
  Bytes concatenated;
  concatenated.reserve(values.size() * sizeof(crypto::Sha256Digest));
  for (const crypto::Sha256Digest& value : values) concatenated.insert(concatenated.end(), value.begin(), value.end());
  return crypto::Sha256(std::span<const std::uint8_t>(concatenated));
}

Expected<QuoteInfo> VerifyQuote(std::span<const std::uint8_t> blob, const crypto::PublicKey& ak,
                                const QuoteExpectation& expected) {
  CITADEL_TRY_VOID(CheckExpectation(expected));
  // Parse errors first, so that malformed bytes are reported as such.
  CITADEL_TRY(QuoteBlob parsed, ParseQuoteBlob(blob));
  const std::span<const std::uint8_t> attested(parsed.attest.attestationData, parsed.attest.size);
  TPMS_ATTEST attest{};
  std::size_t offset = 0;
  if (attested.empty() || Tss2_MU_TPMS_ATTEST_Unmarshal(attested.data(), attested.size(), &offset, &attest) != 0) {
    return MakeError(ErrorCode::kParse, "quote: malformed TPMS_ATTEST");
  }
  if (offset != attested.size()) {
    return MakeError(ErrorCode::kParse,
                     "quote: " + std::to_string(attested.size() - offset) + " bytes after the TPMS_ATTEST");
  }

  // Nothing in the attestation is trusted before the signature verifies.
  auto refuse = [](const std::string& what) { return MakeError(ErrorCode::kFailedPrecondition, "quote: " + what); };
  const TPMT_SIGNATURE& signature = parsed.signature;
  if (signature.sigAlg != TPM2_ALG_ECDSA || signature.signature.ecdsa.hash != TPM2_ALG_SHA256) {
    return refuse("the signature scheme is not ECDSA with SHA-256");
  }
  if (!ak.VerifyDigest(crypto::Sha256(attested), EcdsaDer(signature.signature.ecdsa))) {
    return refuse("signature does not verify with the attestation key");
  }

  // A restricted signing key signs outside data only if it does not start
  // with TPM_GENERATED_VALUE: the magic is what makes these bytes the TPM's.
  if (attest.magic != TPM2_GENERATED_VALUE) {
    return refuse("magic is not TPM_GENERATED_VALUE (the attested data was not made by the TPM)");
  }
  if (attest.type != TPM2_ST_ATTEST_QUOTE)
    return refuse("attestation type " + HandleHex(attest.type) + " is not a quote");
  if (!crypto::ConstantTimeEqual(std::span<const std::uint8_t>(attest.extraData.buffer, attest.extraData.size),
                                 expected.extra_data)) {
    return refuse("qualifying data does not match the evidence (wrong nonce or a replayed quote)");
  }
  CITADEL_TRY(std::vector<std::uint32_t> selected, SelectedPcrs(attest.attested.quote.pcrSelect));
  if (selected != expected.pcrs) {
    return refuse("PCR selection " + DescribePcrs(selected) + " is not the expected " + DescribePcrs(expected.pcrs));
  }
  const crypto::Sha256Digest digest = PcrDigest(expected.pcr_values);
  const TPM2B_DIGEST& quoted_digest = attest.attested.quote.pcrDigest;
  if (!crypto::ConstantTimeEqual(std::span<const std::uint8_t>(quoted_digest.buffer, quoted_digest.size), digest)) {
    return refuse("PCR digest does not match the reported registers");
  }

  QuoteInfo info;
  info.clock = attest.clockInfo.clock;
  info.reset_count = attest.clockInfo.resetCount;
  info.restart_count = attest.clockInfo.restartCount;
  info.safe = attest.clockInfo.safe != 0;
  info.firmware_version = attest.firmwareVersion;
  return info;
}

}  // namespace citadel::tpm
