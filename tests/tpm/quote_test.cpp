// VerifyQuote's checks one by one, on quotes made here and signed with a
// software P-256 key standing in for the attestation key (the checks are
// pure logic; swtpm_test.cpp verifies quotes a real TPM made).
#include "tpm/quote.hpp"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <string>

#include "common/encoding.hpp"
#include "crypto/crypto.hpp"
#include "support/tpm_forgery.hpp"

namespace citadel::tpm {
namespace {

crypto::Sha256Digest Digest(std::string_view text) { return crypto::Sha256(text); }

QuoteExpectation DefaultExpectation() {
  QuoteExpectation expected;
  expected.extra_data = Digest("evidence");
  for (std::uint32_t pcr = 8; pcr <= 15; ++pcr) {
    expected.pcrs.push_back(pcr);
    expected.pcr_values.push_back(Digest("pcr " + std::to_string(pcr)));
  }
  return expected;
}

// What a TPM would attest for DefaultExpectation().
TPMS_ATTEST DefaultAttest() {
  const QuoteExpectation expected = DefaultExpectation();
  TPMS_ATTEST attest{};
  attest.magic = TPM2_GENERATED_VALUE;
  attest.type = TPM2_ST_ATTEST_QUOTE;
  attest.qualifiedSigner.size = 34;
  attest.extraData.size = 32;
  std::copy(expected.extra_data.begin(), expected.extra_data.end(), attest.extraData.buffer);
  attest.clockInfo.clock = 123456;
  attest.clockInfo.resetCount = 7;
  attest.clockInfo.restartCount = 2;
  attest.clockInfo.safe = TPM2_YES;
  attest.firmwareVersion = 0x0001000200030004;
  TPML_PCR_SELECTION& selection = attest.attested.quote.pcrSelect;
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  selection.pcrSelections[0].pcrSelect[1] = 0xff;  // PCRs 8..15
  const crypto::Sha256Digest digest = PcrDigest(expected.pcr_values);
  attest.attested.quote.pcrDigest.size = 32;
  std::copy(digest.begin(), digest.end(), attest.attested.quote.pcrDigest.buffer);
  return attest;
}

using citadel::testing::MarshalAttest;
using citadel::testing::SignAttest;

class QuoteTest : public ::testing::Test {
 protected:
  Bytes Blob(const TPMS_ATTEST& attest) const {
    const TPM2B_ATTEST marshalled = MarshalAttest(attest);
    return MarshalQuoteBlob(marshalled, SignAttest(ak_, marshalled));
  }
  void ExpectRefused(const Bytes& blob, const std::string& reason,
                     const QuoteExpectation& expected = DefaultExpectation()) const {
    auto verified = VerifyQuote(blob, ak_.Public(), expected);
    ASSERT_FALSE(verified.has_value()) << reason;
    EXPECT_EQ(verified.error().code(), ErrorCode::kFailedPrecondition) << verified.error().message();
    EXPECT_NE(verified.error().message().find(reason), std::string::npos) << verified.error().message();
  }

  crypto::PrivateKey ak_ = std::move(crypto::PrivateKey::GenerateP256()).value();
};

TEST(PcrDigestTest, IsTheTpmsDigestOfTheValuesInOrder) {
  // From swtpm: PCRs 8, 9, 10 extended once with the 32-byte big-endian
  // numbers 8, 9, 10, PCRs 11..15 untouched; tpm2_quote's pcrDigest.
  std::vector<crypto::Sha256Digest> values(8);
  for (std::uint8_t pcr = 8; pcr <= 10; ++pcr) {
    Bytes extend(64, 0);
    extend[63] = pcr;
    values[pcr - 8] = crypto::Sha256(std::span<const std::uint8_t>(extend));
  }
  EXPECT_EQ(HexEncode(PcrDigest(values)), "8847be4db84b24c7131f594903d097a5b2d0910a7a34b7e19bec58d9d156f51e");
  EXPECT_EQ(PcrDigest({}), crypto::Sha256(std::string_view()));
}

TEST_F(QuoteTest, AcceptsAMatchingQuoteAndReportsTheClock) {
  auto verified = VerifyQuote(Blob(DefaultAttest()), ak_.Public(), DefaultExpectation());
  ASSERT_TRUE(verified.has_value()) << verified.error().message();
  EXPECT_EQ(verified->clock, 123456U);
  EXPECT_EQ(verified->reset_count, 7U);
  EXPECT_EQ(verified->restart_count, 2U);
  EXPECT_TRUE(verified->safe);
  EXPECT_EQ(verified->firmware_version, 0x0001000200030004U);
}

TEST_F(QuoteTest, BlobRoundTripsAndRefusesBadFraming) {
  const Bytes blob = Blob(DefaultAttest());
  auto parsed = ParseQuoteBlob(blob);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(MarshalQuoteBlob(parsed->attest, parsed->signature), blob);

  Bytes trailing = blob;
  trailing.push_back(0);
  EXPECT_EQ(ParseQuoteBlob(trailing).error().code(), ErrorCode::kParse);
  EXPECT_EQ(VerifyQuote(trailing, ak_.Public(), DefaultExpectation()).error().code(), ErrorCode::kParse);
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{2}, blob.size() / 2, blob.size() - 1}) {
    EXPECT_EQ(ParseQuoteBlob(std::span(blob).first(size)).error().code(), ErrorCode::kParse) << size;
  }
  EXPECT_EQ(ParseQuoteBlob(Bytes(sizeof(TPM2B_ATTEST) + sizeof(TPMT_SIGNATURE) + 1, 0)).error().code(),
            ErrorCode::kParse);
}

TEST_F(QuoteTest, ReportsParseErrorsBeforeTheSignature) {
  // A TPMS_ATTEST with a byte after it, signed: still malformed.
  TPM2B_ATTEST attest = MarshalAttest(DefaultAttest());
  attest.attestationData[attest.size++] = 0;
  auto trailing = VerifyQuote(MarshalQuoteBlob(attest, SignAttest(ak_, attest)), ak_.Public(), DefaultExpectation());
  ASSERT_FALSE(trailing.has_value());
  EXPECT_EQ(trailing.error().code(), ErrorCode::kParse) << trailing.error().message();
  // Truncated attestation with a signature by another key: parse error.
  TPM2B_ATTEST truncated = MarshalAttest(DefaultAttest());
  truncated.size = 10;
  auto verified =
      VerifyQuote(MarshalQuoteBlob(truncated, SignAttest(ak_, truncated)), ak_.Public(), DefaultExpectation());
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code(), ErrorCode::kParse) << verified.error().message();
}

TEST_F(QuoteTest, ChecksTheSignatureBeforeAnyField) {
  TPMS_ATTEST attest = DefaultAttest();
  attest.magic = 0;  // would be refused for the magic, but the signature comes first
  const TPM2B_ATTEST marshalled = MarshalAttest(attest);
  auto other = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(other.has_value());
  ExpectRefused(MarshalQuoteBlob(marshalled, SignAttest(*other, marshalled)),
                "signature does not verify with the attestation key");
}

TEST_F(QuoteTest, RefusesOtherSignatureSchemes) {
  const TPM2B_ATTEST marshalled = MarshalAttest(DefaultAttest());
  TPMT_SIGNATURE signature = SignAttest(ak_, marshalled);
  signature.signature.ecdsa.hash = TPM2_ALG_SHA384;
  ExpectRefused(MarshalQuoteBlob(marshalled, signature), "signature scheme is not ECDSA with SHA-256");
  signature = SignAttest(ak_, marshalled);
  signature.sigAlg = TPM2_ALG_ECSCHNORR;
  ExpectRefused(MarshalQuoteBlob(marshalled, signature), "signature scheme is not ECDSA with SHA-256");
  signature = SignAttest(ak_, marshalled);
  signature.signature.ecdsa.signatureS.buffer[5] ^= 1;
  ExpectRefused(MarshalQuoteBlob(marshalled, signature), "signature does not verify");
}

TEST_F(QuoteTest, RefusesWhatIsNotAQuoteFromTheTpm) {
  TPMS_ATTEST attest = DefaultAttest();
  attest.magic = 0x12345678;
  ExpectRefused(Blob(attest), "magic is not TPM_GENERATED_VALUE");
  attest = DefaultAttest();
  attest.type = TPM2_ST_ATTEST_TIME;
  attest.attested.time = {};
  ExpectRefused(Blob(attest), "is not a quote");
}

TEST_F(QuoteTest, RefusesOtherQualifyingData) {
  TPMS_ATTEST attest = DefaultAttest();
  attest.extraData.buffer[31] ^= 1;
  ExpectRefused(Blob(attest), "qualifying data does not match the evidence (wrong nonce or a replayed quote)");
  attest.extraData.size = 31;  // a prefix of the expected value
  attest.extraData.buffer[31] ^= 1;
  ExpectRefused(Blob(attest), "qualifying data does not match");
  attest.extraData.size = 0;
  ExpectRefused(Blob(attest), "qualifying data does not match");
}

TEST_F(QuoteTest, RefusesOtherPcrSelections) {
  TPMS_ATTEST attest = DefaultAttest();
  attest.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[2] = 0x01;  // and PCR 16
  ExpectRefused(Blob(attest), "PCR selection sha256:8,9,10,11,12,13,14,15,16 is not the expected");
  attest = DefaultAttest();
  attest.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[1] = 0x7f;  // without PCR 15
  ExpectRefused(Blob(attest), "PCR selection");
  attest = DefaultAttest();
  attest.attested.quote.pcrSelect.pcrSelections[0].hash = TPM2_ALG_SHA1;
  ExpectRefused(Blob(attest), "not SHA-256");
  attest = DefaultAttest();
  attest.attested.quote.pcrSelect.count = 2;
  attest.attested.quote.pcrSelect.pcrSelections[1] = attest.attested.quote.pcrSelect.pcrSelections[0];
  attest.attested.quote.pcrSelect.pcrSelections[1].hash = TPM2_ALG_SHA384;
  ExpectRefused(Blob(attest), "banks, not one");
  attest.attested.quote.pcrSelect.count = 0;
  ExpectRefused(Blob(attest), "banks, not one");
}

TEST_F(QuoteTest, RefusesAnotherPcrDigest) {
  QuoteExpectation expected = DefaultExpectation();
  std::swap(expected.pcr_values[0], expected.pcr_values[1]);  // order matters
  ExpectRefused(Blob(DefaultAttest()), "PCR digest does not match the reported registers", expected);
  TPMS_ATTEST attest = DefaultAttest();
  attest.attested.quote.pcrDigest.size = 0;
  ExpectRefused(Blob(attest), "PCR digest does not match");
}

TEST_F(QuoteTest, RefusesAnInconsistentExpectation) {
  const Bytes blob = Blob(DefaultAttest());
  QuoteExpectation expected = DefaultExpectation();
  expected.pcr_values.pop_back();
  EXPECT_EQ(VerifyQuote(blob, ak_.Public(), expected).error().code(), ErrorCode::kInvalidArgument);
  expected = DefaultExpectation();
  std::swap(expected.pcrs[0], expected.pcrs[1]);
  EXPECT_EQ(VerifyQuote(blob, ak_.Public(), expected).error().code(), ErrorCode::kInvalidArgument);
  expected = DefaultExpectation();
  expected.pcrs.back() = 32;
  EXPECT_EQ(VerifyQuote(blob, ak_.Public(), expected).error().code(), ErrorCode::kInvalidArgument);
  expected.pcrs.clear();
  expected.pcr_values.clear();
  EXPECT_EQ(VerifyQuote(blob, ak_.Public(), expected).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace citadel::tpm
