// Fuzzes what the service parses from a TPM device's evidence (src/tpm):
// the quote blob (TPM2B_ATTEST || TPMT_SIGNATURE) through VerifyQuote, and
// the public areas (TPM2B_PUBLIC) through ParsePublic and what follows it.
// Properties: nothing crashes or reads out of bounds; a refusal has a
// reason; an accepted public area marshals again and has a name.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "crypto/crypto.hpp"
#include "tpm/public_area.hpp"
#include "tpm/quote.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "tpm_quote_fuzz: %s\n", what);
  std::abort();
}

const citadel::crypto::PublicKey& AttestationKey() {
  static const citadel::crypto::PublicKey key = citadel::crypto::PrivateKey::GenerateP256().value().Public();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // tss2-mu logs every refused structure to stderr; that is noise here.
  setenv("TSS2_LOG", "all+NONE", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);

  auto blob = citadel::tpm::ParseQuoteBlob(input);
  if (!blob && blob.error().message().empty()) Fail("quote blob refused without a reason");
  citadel::tpm::QuoteExpectation expected;
  expected.pcrs = {8, 9, 10, 11, 12, 13, 14, 15};
  expected.pcr_values.resize(expected.pcrs.size());
  auto verified = citadel::tpm::VerifyQuote(input, AttestationKey(), expected);
  // The key is random: no input can carry a valid signature by it.
  if (verified) Fail("a quote verified without a signature by the key");
  if (verified.error().message().empty()) Fail("quote refused without a reason");
  if (!blob && verified.error().code() != citadel::ErrorCode::kParse) {
    Fail("a blob that does not parse was refused for something else");
  }

  auto area = citadel::tpm::ParsePublic(input);
  if (!area) {
    if (area.error().message().empty()) Fail("public area refused without a reason");
    return 0;
  }
  if (citadel::tpm::ObjectName(*area).size() != 34) Fail("a name is not 34 bytes");
  if (!citadel::tpm::MarshalPublic(area->area)) Fail("an accepted public area does not marshal");
  auto key = citadel::tpm::ToPublicKey(*area);
  if (!key && key.error().message().empty()) Fail("key refused without a reason");
  auto checked = citadel::tpm::CheckAttestationKey(*area);
  if (!checked && checked.error().message().empty()) Fail("attestation key refused without a reason");
  return 0;
}
