// src/tpm against a real TPM: a software TPM (swtpm, made by
// scripts/swtpm-test-server with its endorsement keys) and tpm2-tools as
// the device side. These are the conformance tests: MakeCredential is right
// only if the TPM's TPM2_ActivateCredential returns the secret, and
// VerifyQuote only if it accepts what TPM2_Quote signs.
//
// Two TPMs made with the same manufacturer CA, each with an SRK
// (0x81000001) and an AK (0x81000002) made as a device makes them.
// There is no resource manager: every tool call that leaves transient
// objects or sessions is followed by tpm2_flushcontext.
#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/subprocess.hpp"
#include "crypto/crypto.hpp"
#include "support/swtpm.hpp"
#include "support/temp_dir.hpp"
#include "tpm/credential.hpp"
#include "tpm/public_area.hpp"
#include "tpm/quote.hpp"

namespace citadel::tpm {
namespace {

namespace fs = std::filesystem;

constexpr const char* kEkHandle = "0x81010001";
constexpr const char* kSrkHandle = "0x81000001";
constexpr const char* kAkHandle = "0x81000002";
constexpr const char* kAkAttributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign";

Bytes ToBytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

Bytes ReadBytes(const fs::path& path) {
  auto text = ReadFile(path);
  EXPECT_TRUE(text.has_value()) << path << ": " << text.error().message();
  return text ? ToBytes(*text) : Bytes{};
}

void WriteBytes(const fs::path& path, std::span<const std::uint8_t> bytes) {
  auto written = WriteFileAtomic(path, AsText(bytes), 0600);
  ASSERT_TRUE(written.has_value()) << written.error().message();
}

// One software TPM and what the fixture made in it.
struct Device {
  std::unique_ptr<testing::SoftwareTpm> tpm;
  fs::path dir;         // the tool files of this TPM
  Bytes ek_public;      // TPM2B_PUBLIC of the RSA EK
  Bytes ek_name;        // as tpm2_readpublic prints it
  Bytes ak_public;      // TPM2B_PUBLIC of the AK
  Bytes ak_name;        // as tpm2_load prints it
  Bytes tls_public;     // an unrestricted signing key (the TLS key's template)
  Bytes srk_public;     // a restricted decryption key
  Bytes policy_public;  // the AK's template with an authPolicy

  // Runs /usr/bin/<tool> against this TPM. Never fails the test itself.
  SubprocessResult Tool(const std::string& tool, const std::vector<std::string>& arguments) const {
    SubprocessOptions options;
    options.argv = {"/usr/bin/" + tool, "--tcti=" + tpm->tcti()};
    options.argv.insert(options.argv.end(), arguments.begin(), arguments.end());
    options.timeout = std::chrono::seconds(30);
    auto result = RunSubprocess(options);
    if (!result) return SubprocessResult{.exit_code = -1, .out = {}, .err = result.error().message()};
    return *result;
  }
  // Runs a tool that must succeed, then flushes transient objects.
  std::string MustRun(const std::string& tool, const std::vector<std::string>& arguments) const {
    SubprocessResult result = Tool(tool, arguments);
    EXPECT_EQ(result.exit_code, 0) << tool << ": " << result.err;
    Flush();
    return result.out;
  }
  void Flush() const {
    SubprocessResult transient = Tool("tpm2_flushcontext", {"-t"});
    EXPECT_EQ(transient.exit_code, 0) << transient.err;
    SubprocessResult sessions = Tool("tpm2_flushcontext", {"-s"});
    EXPECT_EQ(sessions.exit_code, 0) << sessions.err;
  }

  // TPM2_ActivateCredential(object, EK) with the EK authorised by a
  // PolicySecret session on the endorsement hierarchy; the tool's result.
  SubprocessResult Activate(const std::string& object, const Credential& credential, const std::string& label) const {
    // tpm2-tools' credential file: magic, version, TPM2B_ID_OBJECT,
    // TPM2B_ENCRYPTED_SECRET.
    Bytes file = {0xba, 0xdc, 0xc0, 0xde, 0x00, 0x00, 0x00, 0x01};
    file.insert(file.end(), credential.credential_blob.begin(), credential.credential_blob.end());
    file.insert(file.end(), credential.encrypted_secret.begin(), credential.encrypted_secret.end());
    const fs::path blob = dir / (label + ".cred");
    const fs::path session = dir / (label + ".session");
    const fs::path out = dir / (label + ".secret");
    WriteBytes(blob, file);
    SubprocessResult result = Tool("tpm2_startauthsession", {"--policy-session", "-S", session.string()});
    if (result.exit_code == 0) result = Tool("tpm2_policysecret", {"-S", session.string(), "-c", "e"});
    if (result.exit_code == 0) {
      result = Tool("tpm2_activatecredential", {"-c", object, "-C", kEkHandle, "-i", blob.string(), "-o", out.string(),
                                                "-P", "session:" + session.string()});
      if (result.exit_code == 0) result.out = std::string(AsText(ReadBytes(out)));
    }
    Flush();
    return result;
  }

  // Orderly shutdown and power cycle: PCRs back to zero, keys stay. Without
  // TPM2_Shutdown first, the TPM counts the reset as a dictionary-attack
  // failure and soon refuses the AK (not noDA) with TPM_RC_LOCKOUT.
  void Reboot() const {
    MustRun("tpm2_shutdown", {"-c"});
    auto rebooted = tpm->Reboot();
    ASSERT_TRUE(rebooted.has_value()) << rebooted.error().message();
  }
};

class SwtpmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = std::make_unique<testing::TempDir>("citadel-tpm-test");
    for (auto* device : {&a_, &b_}) *device = std::make_unique<Device>();
    setup_error_ = Make(*a_, "a");
    if (setup_error_.empty()) setup_error_ = Make(*b_, "b");
  }
  static void TearDownTestSuite() {
    a_.reset();
    b_.reset();
    root_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  // Manufactures a TPM and provisions it as a device would.
  static std::string Make(Device& device, const std::string& name) {
    device.dir = root_->path() / (name + "-files");
    fs::create_directories(device.dir);
    device.tpm = std::make_unique<testing::SoftwareTpm>(root_->path() / (name + "-tpm"), root_->path() / "ca");
    auto started = device.tpm->ManufactureAndStart();
    if (!started) return started.error().message();
    const fs::path d = device.dir;
    auto run = [&](const std::string& tool, const std::vector<std::string>& arguments) {
      SubprocessResult result = device.Tool(tool, arguments);
      SubprocessResult flushed = device.Tool("tpm2_flushcontext", {"-t"});
      if (result.exit_code != 0) return tool + " failed: " + result.err;
      if (flushed.exit_code != 0) return "tpm2_flushcontext failed: " + flushed.err;
      return std::string();
    };
    const std::string ecc_scheme = "ecc256:ecdsa-sha256:null";
    const std::array<std::string, 9> errors = {
        run("tpm2_readpublic", {"-c", kEkHandle, "-o", (d / "ek.pub").string(), "-n", (d / "ek.name").string()}),
        run("tpm2_createprimary", {"-C", "o", "-G", "ecc", "-c", (d / "srk.ctx").string()}),
        run("tpm2_evictcontrol", {"-C", "o", "-c", (d / "srk.ctx").string(), kSrkHandle}),
        run("tpm2_create", {"-C", kSrkHandle, "-G", ecc_scheme, "-a", kAkAttributes, "-u", (d / "ak.pub").string(),
                            "-r", (d / "ak.priv").string()}),
        run("tpm2_load", {"-C", kSrkHandle, "-u", (d / "ak.pub").string(), "-r", (d / "ak.priv").string(), "-c",
                          (d / "ak.ctx").string(), "-n", (d / "ak.name").string()}),
        run("tpm2_evictcontrol", {"-C", "o", "-c", (d / "ak.ctx").string(), kAkHandle}),
        run("tpm2_readpublic", {"-c", kSrkHandle, "-o", (d / "srk.pub").string()}),
        run("tpm2_create", {"-C", kSrkHandle, "-G", "ecc256:ecdsa-sha256", "-a",
                            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-u",
                            (d / "tls.pub").string(), "-r", (d / "tls.priv").string()}),
        [&] {
          WriteBytes(d / "policy.digest", Bytes(32, 0x5a));
          return run("tpm2_create",
                     {"-C", kSrkHandle, "-G", ecc_scheme, "-a", kAkAttributes, "-L", (d / "policy.digest").string(),
                      "-u", (d / "policy.pub").string(), "-r", (d / "policy.priv").string()});
        }(),
    };
    for (const std::string& error : errors) {
      if (!error.empty()) return std::string(name).append(": ").append(error);
    }
    device.ek_public = ReadBytes(d / "ek.pub");
    device.ek_name = ReadBytes(d / "ek.name");
    device.ak_public = ReadBytes(d / "ak.pub");
    device.ak_name = ReadBytes(d / "ak.name");
    device.tls_public = ReadBytes(d / "tls.pub");
    device.srk_public = ReadBytes(d / "srk.pub");
    device.policy_public = ReadBytes(d / "policy.pub");
    return {};
  }

  static PublicArea Parse(const Bytes& bytes) {
    auto parsed = ParsePublic(bytes);
    EXPECT_TRUE(parsed.has_value()) << parsed.error().message();
    return parsed ? *parsed : PublicArea{};
  }
  static crypto::PublicKey KeyOf(const Bytes& bytes) {
    auto key = ToPublicKey(Parse(bytes));
    EXPECT_TRUE(key.has_value()) << key.error().message();
    return std::move(key).value();
  }

  static std::unique_ptr<testing::TempDir> root_;
  static std::unique_ptr<Device> a_;
  static std::unique_ptr<Device> b_;
  static std::string setup_error_;
};

std::unique_ptr<testing::TempDir> SwtpmTest::root_;
std::unique_ptr<Device> SwtpmTest::a_;
std::unique_ptr<Device> SwtpmTest::b_;
std::string SwtpmTest::setup_error_;

// ---- public areas ---------------------------------------------------------

TEST_F(SwtpmTest, ParsesTheRealEndorsementAndAttestationKeys) {
  const PublicArea ek = Parse(a_->ek_public);
  EXPECT_EQ(ek.area.type, TPM2_ALG_RSA);
  EXPECT_EQ(ek.area.parameters.rsaDetail.symmetric.algorithm, TPM2_ALG_AES);
  const PublicArea ak = Parse(a_->ak_public);
  EXPECT_EQ(ak.area.type, TPM2_ALG_ECC);
  // The names tpm2-tools computed (the TPM's own, from TPM2_ReadPublic and
  // TPM2_Load) are ours.
  EXPECT_EQ(ObjectName(ek), a_->ek_name);
  EXPECT_EQ(ObjectName(ak), a_->ak_name);
  EXPECT_NE(ObjectName(ak), ObjectName(Parse(b_->ak_public)));
  // Marshalling the parsed area gives back the TPM's bytes.
  auto marshalled = MarshalPublic(ak.area);
  ASSERT_TRUE(marshalled.has_value());
  EXPECT_EQ(*marshalled, a_->ak_public);
  auto ek_key = ToPublicKey(ek);
  ASSERT_TRUE(ek_key.has_value()) << ek_key.error().message();
}

TEST_F(SwtpmTest, AttestationKeyVerifiesWhatTheTpmSigned) {
  const std::string message = "data signed by the attestation key";
  WriteBytes(a_->dir / "sign.msg", AsBytes(message));
  a_->MustRun("tpm2_sign", {"-c", kAkHandle, "-g", "sha256", "-f", "plain", "-o", (a_->dir / "sign.sig").string(),
                            (a_->dir / "sign.msg").string()});
  const Bytes signature = ReadBytes(a_->dir / "sign.sig");
  EXPECT_TRUE(KeyOf(a_->ak_public).Verify(AsBytes(message), signature));
  EXPECT_FALSE(KeyOf(b_->ak_public).Verify(AsBytes(message), signature));
  EXPECT_FALSE(KeyOf(a_->ak_public).Verify(AsBytes(message + "!"), signature));
}

TEST_F(SwtpmTest, CheckAttestationKeyAcceptsOnlyTheAttestationKeyTemplate) {
  EXPECT_TRUE(CheckAttestationKey(Parse(a_->ak_public)).has_value());
  auto refused = [&](const Bytes& bytes, const std::string& reason) {
    auto checked = CheckAttestationKey(Parse(bytes));
    ASSERT_FALSE(checked.has_value()) << reason;
    EXPECT_EQ(checked.error().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(checked.error().message().find(reason), std::string::npos) << checked.error().message();
  };
  refused(a_->tls_public, "restricted must be set");
  refused(a_->srk_public, "sign must be set");
  refused(a_->policy_public, "authPolicy must be empty");
  refused(a_->ek_public, "not an ECC key");

  // Each attribute rule, one at a time, on the real AK.
  struct Change {
    TPMA_OBJECT bit;
    const char* reason;
  };
  for (const Change& change :
       {Change{TPMA_OBJECT_FIXEDTPM, "fixedTPM"}, Change{TPMA_OBJECT_FIXEDPARENT, "fixedParent"},
        Change{TPMA_OBJECT_SENSITIVEDATAORIGIN, "sensitiveDataOrigin"},
        Change{TPMA_OBJECT_USERWITHAUTH, "userWithAuth"}, Change{TPMA_OBJECT_ADMINWITHPOLICY, "adminWithPolicy"},
        Change{TPMA_OBJECT_DECRYPT, "decrypt"}}) {
    PublicArea ak = Parse(a_->ak_public);
    ak.area.objectAttributes ^= change.bit;
    auto bytes = MarshalPublic(ak.area);
    ASSERT_TRUE(bytes.has_value());
    refused(*bytes, change.reason);
  }
  PublicArea sha1_scheme = Parse(a_->ak_public);
  sha1_scheme.area.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA1;
  refused(*MarshalPublic(sha1_scheme.area), "ECDSA with SHA-256");
}

TEST_F(SwtpmTest, ParsePublicRefusesMalformedAndTrailingBytes) {
  Bytes trailing = a_->ak_public;
  trailing.push_back(0);
  EXPECT_EQ(ParsePublic(trailing).error().code(), ErrorCode::kParse);
  Bytes truncated(a_->ak_public.begin(), a_->ak_public.end() - 1);
  EXPECT_EQ(ParsePublic(truncated).error().code(), ErrorCode::kParse);
  Bytes short_prefix = a_->ak_public;  // the size prefix one byte short, one byte after it
  short_prefix[1] = static_cast<std::uint8_t>(short_prefix[1] - 1);
  EXPECT_EQ(ParsePublic(short_prefix).error().code(), ErrorCode::kParse);
  EXPECT_EQ(ParsePublic({}).error().code(), ErrorCode::kParse);
}

// ---- credential protection -------------------------------------------------

TEST_F(SwtpmTest, ActivateCredentialInTheTpmReturnsTheSecret) {
  for (std::size_t size : {std::size_t{1}, std::size_t{16}, std::size_t{32}}) {
    const Bytes secret = crypto::RandomBytes(size);
    auto credential = MakeCredential(Parse(a_->ek_public), a_->ak_name, secret);
    ASSERT_TRUE(credential.has_value()) << credential.error().message();
    SubprocessResult activated = a_->Activate(kAkHandle, *credential, "good" + std::to_string(size));
    ASSERT_EQ(activated.exit_code, 0) << activated.err;
    EXPECT_EQ(ToBytes(activated.out), secret);
  }
}

TEST_F(SwtpmTest, CredentialForAnotherNameIsRefused) {
  auto credential = MakeCredential(Parse(a_->ek_public), a_->ak_name, crypto::RandomBytes(32));
  ASSERT_TRUE(credential.has_value());
  // The SRK is loaded in the same TPM, but the HMAC covers the AK's name.
  SubprocessResult activated = a_->Activate(kSrkHandle, *credential, "other-name");
  EXPECT_NE(activated.exit_code, 0);
}

TEST_F(SwtpmTest, CredentialForOneTpmCannotBeActivatedInAnother) {
  const Bytes secret = crypto::RandomBytes(32);
  // Made for A's EK, with B's AK name: B holds the AK but not the EK.
  auto for_a = MakeCredential(Parse(a_->ek_public), b_->ak_name, secret);
  ASSERT_TRUE(for_a.has_value());
  SubprocessResult in_b = b_->Activate(kAkHandle, *for_a, "cross");
  EXPECT_NE(in_b.exit_code, 0);
  EXPECT_NE(ToBytes(in_b.out), secret);
  // The same, made for B's EK, activates in B: the EK was the difference.
  auto for_b = MakeCredential(Parse(b_->ek_public), b_->ak_name, secret);
  ASSERT_TRUE(for_b.has_value());
  SubprocessResult own = b_->Activate(kAkHandle, *for_b, "own");
  ASSERT_EQ(own.exit_code, 0) << own.err;
  EXPECT_EQ(ToBytes(own.out), secret);
}

TEST_F(SwtpmTest, LoadExternalCopyOfTheAttestationKeyCannotActivate) {
  const fs::path context = a_->dir / "external.ctx";
  const fs::path name = a_->dir / "external.name";
  // Not flushed yet: the activation below uses the loaded copy.
  SubprocessResult loaded = a_->Tool("tpm2_loadexternal", {"-C", "n", "-u", (a_->dir / "ak.pub").string(), "-c",
                                                           context.string(), "-n", name.string()});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_EQ(ReadBytes(name), a_->ak_name);  // the same name as the real AK
  auto credential = MakeCredential(Parse(a_->ek_public), a_->ak_name, crypto::RandomBytes(32));
  ASSERT_TRUE(credential.has_value());
  SubprocessResult activated = a_->Activate(context.string(), *credential, "external");
  EXPECT_NE(activated.exit_code, 0);
  // TPM_RC_AUTH_UNAVAILABLE: a public-only object has no authValue.
  EXPECT_NE(activated.err.find("0x12F"), std::string::npos) << activated.err;
}

// ---- quotes ----------------------------------------------------------------

struct Quote {
  Bytes blob;
  QuoteExpectation expected;
};

std::string HexOf(const crypto::Sha256Digest& digest) { return HexEncode(digest); }

// Reboots the TPM (PCRs to zero), extends PCRs 8..15 once each, and quotes
// `selection` with tpm2_quote; the expectation holds the values computed
// here from the extends (SHA-256(zeros || digest)).
Quote MakeQuote(const Device& device, const crypto::Sha256Digest& extra_data, const std::string& selection) {
  device.Reboot();
  Quote quote;
  quote.expected.extra_data = extra_data;
  for (std::uint32_t pcr = 8; pcr <= 15; ++pcr) {
    const crypto::Sha256Digest event = crypto::Sha256("event for PCR " + std::to_string(pcr));
    device.MustRun("tpm2_pcrextend", {std::to_string(pcr) + ":sha256=" + HexOf(event)});
    Bytes extend(32, 0);
    extend.insert(extend.end(), event.begin(), event.end());
    quote.expected.pcrs.push_back(pcr);
    quote.expected.pcr_values.push_back(crypto::Sha256(std::span<const std::uint8_t>(extend)));
  }
  const fs::path message = device.dir / "quote.msg";
  const fs::path signature = device.dir / "quote.sig";
  device.MustRun("tpm2_quote", {"-c", kAkHandle, "-l", selection, "-q", HexOf(extra_data), "-g", "sha256", "-m",
                                message.string(), "-s", signature.string()});
  // tpm2-tools writes the TPMS_ATTEST bytes and the TPMT_SIGNATURE.
  const Bytes attested = ReadBytes(message);
  const Bytes signature_bytes = ReadBytes(signature);
  TPM2B_ATTEST attest{};
  EXPECT_LE(attested.size(), sizeof attest.attestationData);
  attest.size = static_cast<UINT16>(attested.size());
  std::copy(attested.begin(), attested.end(), attest.attestationData);
  TPMT_SIGNATURE tpm_signature{};
  std::size_t offset = 0;
  EXPECT_EQ(Tss2_MU_TPMT_SIGNATURE_Unmarshal(signature_bytes.data(), signature_bytes.size(), &offset, &tpm_signature),
            0U);
  quote.blob = MarshalQuoteBlob(attest, tpm_signature);
  EXPECT_EQ(quote.blob.size(), 2 + attested.size() + signature_bytes.size());
  return quote;
}

constexpr const char* kAllRegisters = "sha256:8,9,10,11,12,13,14,15";

void ExpectRefused(const Expected<QuoteInfo>& verified, const std::string& reason) {
  ASSERT_FALSE(verified.has_value()) << "expected a refusal: " << reason;
  EXPECT_EQ(verified.error().code(), ErrorCode::kFailedPrecondition) << verified.error().message();
  EXPECT_NE(verified.error().message().find(reason), std::string::npos) << verified.error().message();
}

TEST_F(SwtpmTest, QuoteFromTheTpmVerifies) {
  const crypto::Sha256Digest nonce = crypto::Sha256("canonical evidence");
  const Quote quote = MakeQuote(*a_, nonce, kAllRegisters);
  auto verified = VerifyQuote(quote.blob, KeyOf(a_->ak_public), quote.expected);
  ASSERT_TRUE(verified.has_value()) << verified.error().message();
  EXPECT_GT(verified->clock, 0U);
  EXPECT_TRUE(verified->safe);
  // Each Reboot() is a TPM reset.
  const Quote after_reboot = MakeQuote(*a_, nonce, kAllRegisters);
  auto again = VerifyQuote(after_reboot.blob, KeyOf(a_->ak_public), after_reboot.expected);
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_EQ(again->reset_count, verified->reset_count + 1);
}

TEST_F(SwtpmTest, AlteredQuotesAreRefused) {
  const crypto::Sha256Digest nonce = crypto::Sha256("canonical evidence");
  const Quote quote = MakeQuote(*a_, nonce, kAllRegisters);
  const crypto::PublicKey ak = KeyOf(a_->ak_public);
  ASSERT_TRUE(VerifyQuote(quote.blob, ak, quote.expected).has_value());

  // Any flipped byte: either the framing breaks or the signature does.
  for (std::size_t i = 0; i < quote.blob.size(); ++i) {
    Bytes altered = quote.blob;
    altered[i] ^= 0x01;
    auto verified = VerifyQuote(altered, ak, quote.expected);
    ASSERT_FALSE(verified.has_value()) << "byte " << i;
    EXPECT_TRUE(verified.error().code() == ErrorCode::kParse ||
                verified.error().code() == ErrorCode::kFailedPrecondition)
        << "byte " << i << ": " << verified.error().message();
  }

  QuoteExpectation other_nonce = quote.expected;
  other_nonce.extra_data = crypto::Sha256("other evidence");
  ExpectRefused(VerifyQuote(quote.blob, ak, other_nonce), "qualifying data does not match the evidence");

  QuoteExpectation other_values = quote.expected;
  other_values.pcr_values[3][0] ^= 0x80;
  ExpectRefused(VerifyQuote(quote.blob, ak, other_values), "PCR digest does not match the reported registers");

  QuoteExpectation fewer_registers = quote.expected;
  fewer_registers.pcrs.pop_back();
  fewer_registers.pcr_values.pop_back();
  ExpectRefused(VerifyQuote(quote.blob, ak, fewer_registers), "PCR selection");

  ExpectRefused(VerifyQuote(quote.blob, KeyOf(b_->ak_public), quote.expected),
                "signature does not verify with the attestation key");
}

TEST_F(SwtpmTest, QuoteOfOtherRegistersIsRefused) {
  const crypto::Sha256Digest nonce = crypto::Sha256("canonical evidence");
  const Quote quote = MakeQuote(*a_, nonce, "sha256:8,9,10,11,12,13,14");
  QuoteExpectation expected = quote.expected;  // all of 8..15
  ExpectRefused(VerifyQuote(quote.blob, KeyOf(a_->ak_public), expected), "PCR selection");
  expected.pcrs.pop_back();
  expected.pcr_values.pop_back();
  EXPECT_TRUE(VerifyQuote(quote.blob, KeyOf(a_->ak_public), expected).has_value());
}

// The magic check is what stops the AK's ordinary signatures from passing
// as quotes: a restricted key signs any outside data that does not start
// with TPM_GENERATED_VALUE, and refuses data that does.
TEST_F(SwtpmTest, SignedDataWithoutTheMagicIsNotAQuote) {
  const crypto::Sha256Digest nonce = crypto::Sha256("canonical evidence");
  const Quote quote = MakeQuote(*a_, nonce, kAllRegisters);
  auto parsed = ParseQuoteBlob(quote.blob);
  ASSERT_TRUE(parsed.has_value());
  Bytes forged(parsed->attest.attestationData, parsed->attest.attestationData + parsed->attest.size);
  const fs::path message = a_->dir / "forged.msg";
  const fs::path signature = a_->dir / "forged.sig";
  WriteBytes(message, forged);
  SubprocessResult refused =
      a_->Tool("tpm2_sign", {"-c", kAkHandle, "-g", "sha256", "-o", signature.string(), message.string()});
  a_->Flush();
  EXPECT_NE(refused.exit_code, 0) << "the TPM signed data that starts with TPM_GENERATED_VALUE";

  forged[0] ^= 0x01;  // the magic's first byte
  WriteBytes(message, forged);
  a_->MustRun("tpm2_sign", {"-c", kAkHandle, "-g", "sha256", "-o", signature.string(), message.string()});
  const Bytes signature_bytes = ReadBytes(signature);
  QuoteBlob blob{};
  blob.attest.size = static_cast<UINT16>(forged.size());
  std::copy(forged.begin(), forged.end(), blob.attest.attestationData);
  std::size_t offset = 0;
  ASSERT_EQ(Tss2_MU_TPMT_SIGNATURE_Unmarshal(signature_bytes.data(), signature_bytes.size(), &offset, &blob.signature),
            0U);
  ExpectRefused(VerifyQuote(MarshalQuoteBlob(blob.attest, blob.signature), KeyOf(a_->ak_public), quote.expected),
                "magic is not TPM_GENERATED_VALUE");
}

}  // namespace
}  // namespace citadel::tpm
