// Tpm2RootOfTrust against a real software TPM (swtpm, made by
// scripts/swtpm-test-server the way a vendor makes a TPM). Every test
// manufactures its own TPM. Checks that need the TPM directly (evicting the
// EK, TPM2_Duplicate, NV_UndefineSpace) close the RoT first: swtpm serves
// one connection at a time.
#include "rot/tpm2/tpm2_rot.hpp"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/subprocess.hpp"
#include "rot/tpm2/esys_device.hpp"
#include "support/swtpm.hpp"
#include "support/temp_dir.hpp"
#include "tpm/public_area.hpp"
#include "tpm/quote.hpp"

namespace citadel::rot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using tpm2::EsysOut;

MeasurementEvent Event(Register reg, std::string name, std::string_view content) {
  MeasurementEvent event;
  event.register_index = static_cast<std::uint32_t>(reg);
  event.type = "app";
  event.name = std::move(name);
  event.version = "1.0";
  event.digest = crypto::Sha256(content);
  return event;
}

class Tpm2RootOfTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tcti = tpm_.ManufactureAndStart();
    ASSERT_TRUE(tcti.has_value()) << tcti.error().message();
    tcti_ = *tcti;
  }

  Tpm2Options Options() const { return Tpm2Options{.tcti = tcti_, .state_dir = temp_.path() / "state"}; }

  std::unique_ptr<Tpm2RootOfTrust> OpenOrFail() {
    auto rot = Tpm2RootOfTrust::Open(Options());
    EXPECT_TRUE(rot.has_value()) << (rot ? "" : rot.error().message());
    return rot ? std::move(*rot) : nullptr;
  }

  // A direct ESAPI connection (only while no RoT is open).
  std::shared_ptr<tpm2::EsysDevice> ConnectOrFail() {
    auto device = tpm2::EsysDevice::Connect(tcti_);
    EXPECT_TRUE(device.has_value()) << (device ? "" : device.error().message());
    return device ? *device : nullptr;
  }

  fs::path EventLogFile() const {
    for (const auto& entry : fs::directory_iterator(temp_.path() / "state" / "tpm2")) {
      if (entry.path().filename().string().starts_with("eventlog-")) return entry.path();
    }
    ADD_FAILURE() << "no event log file";
    return {};
  }

  Json ReadEventLog() const {
    auto text = ReadFile(EventLogFile());
    EXPECT_TRUE(text.has_value());
    auto json = ParseJsonStrict(text.value_or("{}"));
    EXPECT_TRUE(json.has_value());
    return json.value_or(Json::object());
  }

  void WriteEventLog(const Json& document) const {
    auto text = CanonicalJson(document);
    ASSERT_TRUE(text.has_value());
    ASSERT_TRUE(WriteFileAtomic(EventLogFile(), *text, 0600).has_value());
  }

  testing::TempDir temp_{"citadel-tpm2-rot"};
  testing::SoftwareTpm tpm_{temp_.path() / "tpm", temp_.path() / "ca"};
  std::string tcti_;
};

// ---- provisioning -----------------------------------------------------------

TEST_F(Tpm2RootOfTrustTest, ProvisionsOnceAndReopensWithTheSameIdentity) {
  std::string device_id;
  Bytes ak_public;
  Bytes ek_public;
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    EXPECT_EQ(rot->Backend(), "tpm2");
    device_id = rot->DeviceId();
    ak_public = rot->AkPublic();
    ek_public = rot->EkPublic();
    auto keys = rot->TpmKeys();
    ASSERT_TRUE(keys.has_value());
    EXPECT_EQ(keys->ak_public, ak_public);
    EXPECT_EQ(keys->ek_public, ek_public);
    auto area = tpm::ParsePublic(ak_public);
    ASSERT_TRUE(area.has_value()) << area.error().message();
    EXPECT_TRUE(tpm::CheckAttestationKey(*area).has_value());
    auto key = tpm::ToPublicKey(*area);
    ASSERT_TRUE(key.has_value());
    EXPECT_TRUE(*key == rot->IdentityPublicKey());
    Bytes spki = rot->IdentityPublicKey().SpkiDer();
    EXPECT_EQ(device_id, HexEncode(crypto::Sha256(std::span<const std::uint8_t>(spki))));
    auto ek_area = tpm::ParsePublic(ek_public);
    ASSERT_TRUE(ek_area.has_value());
    EXPECT_EQ(ek_area->area.type, TPM2_ALG_RSA);
  }
  {
    auto device = ConnectOrFail();
    ASSERT_TRUE(device);
    EsysOut<TPMS_CAPABILITY_DATA> data;
    TPMI_YES_NO more = TPM2_NO;
    ASSERT_EQ(Esys_GetCapability(device->esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                 TPM2_PERSISTENT_FIRST, 16, &more, data.put()),
              TSS2_RC_SUCCESS);
    std::vector<std::uint32_t> handles(data->data.handles.handle, data->data.handles.handle + data->data.handles.count);
    EXPECT_THAT(handles, ::testing::IsSupersetOf({Tpm2RootOfTrust::kSrkHandle, Tpm2RootOfTrust::kAkHandle,
                                                  Tpm2RootOfTrust::kTlsKeyHandle, Tpm2RootOfTrust::kEkHandle}));
  }
  auto reopened = OpenOrFail();
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->DeviceId(), device_id);
  EXPECT_EQ(reopened->AkPublic(), ak_public);
  EXPECT_EQ(reopened->EkPublic(), ek_public);
}

TEST_F(Tpm2RootOfTrustTest, RefusesATpmWithoutEndorsementKey) {
  {
    auto device = ConnectOrFail();
    ASSERT_TRUE(device);
    ESYS_TR ek = ESYS_TR_NONE;
    ASSERT_EQ(Esys_TR_FromTPMPublic(device->esys(), Tpm2RootOfTrust::kEkHandle, ESYS_TR_NONE, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &ek),
              TSS2_RC_SUCCESS);
    ESYS_TR out = ESYS_TR_NONE;
    ASSERT_EQ(Esys_EvictControl(device->esys(), ESYS_TR_RH_OWNER, ek, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                Tpm2RootOfTrust::kEkHandle, &out),
              TSS2_RC_SUCCESS);
  }
  auto rot = Tpm2RootOfTrust::Open(Options());
  ASSERT_FALSE(rot.has_value());
  EXPECT_EQ(rot.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(rot.error().message(), HasSubstr("no endorsement key at 0x81010001"));
}

TEST_F(Tpm2RootOfTrustTest, UnreachableTpmIsUnavailable) {
  ASSERT_TRUE(tpm_.Stop().has_value());
  auto rot = Tpm2RootOfTrust::Open(Options());
  ASSERT_FALSE(rot.has_value());
  EXPECT_EQ(rot.error().code(), ErrorCode::kUnavailable) << rot.error().message();
}

TEST_F(Tpm2RootOfTrustTest, ManufacturerChainIsTheEkCertificateAndStoredIntermediates) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto ek_der = rot->ReadEkCertificate();
  ASSERT_TRUE(ek_der.has_value()) << ek_der.error().message();
  auto ek_certificate = crypto::Certificate::FromDer(*ek_der);
  ASSERT_TRUE(ek_certificate.has_value()) << ek_certificate.error().message();
  EXPECT_EQ(ek_certificate->Der(), *ek_der);  // no NV padding left
  auto ek_area = tpm::ParsePublic(rot->EkPublic());
  ASSERT_TRUE(ek_area.has_value());
  auto ek_key = tpm::ToPublicKey(*ek_area);
  ASSERT_TRUE(ek_key.has_value());
  EXPECT_TRUE(ek_certificate->SubjectPublicKey() == *ek_key);

  auto chain = rot->ManufacturerChain();
  ASSERT_TRUE(chain.has_value()) << chain.error().message();
  ASSERT_EQ(chain->size(), 1u);

  auto intermediate_pem = ReadFile(tpm_.IntermediateCaPath());
  ASSERT_TRUE(intermediate_pem.has_value());
  auto intermediate = crypto::Certificate::FromPem(*intermediate_pem);
  ASSERT_TRUE(intermediate.has_value());
  EXPECT_FALSE(rot->StoreManufacturerChain({*intermediate}).has_value());
  ASSERT_TRUE(rot->StoreManufacturerChain({*ek_certificate, *intermediate}).has_value());
  chain = rot->ManufacturerChain();
  ASSERT_TRUE(chain.has_value());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[0].Der(), *ek_der);
  EXPECT_EQ((*chain)[1].Der(), intermediate->Der());
}

// ---- measurements -----------------------------------------------------------

TEST_F(Tpm2RootOfTrustTest, ExtendMovesPcrsTheWayTheLogReplays) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto before = rot->ReadRegisters();
  ASSERT_EQ(before.size(), kRegisterCount);
  EXPECT_EQ(before, ReplayLog({}));
  ASSERT_TRUE(rot->Extend(Event(Register::kOs, "os", "image")).has_value());
  ASSERT_TRUE(rot->Extend(Event(Register::kApps, "a", "app a")).has_value());
  ASSERT_TRUE(rot->Extend(Event(Register::kApps, "b", "app b")).has_value());
  auto registers = rot->ReadRegisters();
  EXPECT_EQ(rot->MeasurementLog().size(), 3u);
  EXPECT_EQ(registers, ReplayLog(rot->MeasurementLog()));
  EXPECT_NE(registers[0], crypto::Sha256Digest{});
  EXPECT_NE(registers[3], crypto::Sha256Digest{});
  EXPECT_EQ(registers[1], crypto::Sha256Digest{});
  // Re-measuring the same object in the same boot does not extend again.
  ASSERT_TRUE(rot->Extend(Event(Register::kOs, "os", "image")).has_value());
  EXPECT_EQ(rot->ReadRegisters(), registers);
  EXPECT_EQ(rot->MeasurementLog().size(), 3u);
  MeasurementEvent bad = Event(Register::kOs, "x", "x");
  bad.register_index = kRegisterCount;
  EXPECT_FALSE(rot->Extend(bad).has_value());
}

TEST_F(Tpm2RootOfTrustTest, ReopeningInTheSameBootKeepsTheLog) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    ASSERT_TRUE(rot->Extend(Event(Register::kRuntime, "citadeld", "binary")).has_value());
  }
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_EQ(rot->MeasurementLog().size(), 1u);
  EXPECT_EQ(rot->MeasurementLog()[0].name, "citadeld");
  EXPECT_EQ(rot->ReadRegisters(), ReplayLog(rot->MeasurementLog()));
  auto quote = rot->CreateQuote(Bytes{1, 2, 3});
  EXPECT_TRUE(quote.has_value()) << quote.error().message();
}

TEST_F(Tpm2RootOfTrustTest, RebootStartsAnEmptyLogAndZeroRegisters) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    ASSERT_TRUE(rot->Extend(Event(Register::kRuntime, "citadeld", "binary")).has_value());
  }
  ASSERT_TRUE(tpm_.Reboot().has_value());
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_TRUE(rot->MeasurementLog().empty());
  EXPECT_EQ(rot->ReadRegisters(), ReplayLog({}));
  EXPECT_TRUE(rot->CreateQuote(Bytes{1}).has_value());
}

TEST_F(Tpm2RootOfTrustTest, LogEventNeverExtendedIsCutAtOpen) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    ASSERT_TRUE(rot->Extend(Event(Register::kOs, "os", "image")).has_value());
  }
  // Power lost after the log was written, before the extend.
  Json log = ReadEventLog();
  ASSERT_EQ(log["events"].size(), 1u);
  Json extra = log["events"][0];
  extra["name"] = "never-extended";
  log["events"].push_back(extra);
  WriteEventLog(log);

  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_EQ(rot->MeasurementLog().size(), 1u);
  EXPECT_EQ(rot->MeasurementLog()[0].name, "os");
  EXPECT_EQ(ReadEventLog()["events"].size(), 1u);
  auto quote = rot->CreateQuote(Bytes{7});
  EXPECT_TRUE(quote.has_value()) << quote.error().message();
}

TEST_F(Tpm2RootOfTrustTest, LogThatDoesNotExplainThePcrsStopsAttestation) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    ASSERT_TRUE(rot->Extend(Event(Register::kOs, "os", "image")).has_value());
    ASSERT_TRUE(rot->Extend(Event(Register::kApps, "app", "app")).has_value());
  }
  Json log = ReadEventLog();
  log["events"][0]["version"] = "2.0";  // claims another OS than was measured
  WriteEventLog(log);

  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto quote = rot->CreateQuote(Bytes{7});
  ASSERT_FALSE(quote.has_value());
  EXPECT_EQ(quote.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(quote.error().message(), HasSubstr("cannot attest until the TPM is reset"));
  EXPECT_FALSE(rot->SignWithIdentity(crypto::Sha256("x")).has_value());
}

// ---- quotes -----------------------------------------------------------------

TEST_F(Tpm2RootOfTrustTest, QuoteBlobIsATpmQuoteOverTheDigest) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_TRUE(rot->Extend(Event(Register::kConfig, "config", "cfg")).has_value());
  Bytes nonce = crypto::RandomBytes(16);
  auto quote = rot->CreateQuote(nonce);
  ASSERT_TRUE(quote.has_value()) << quote.error().message();
  EXPECT_EQ(quote->nonce, nonce);
  EXPECT_EQ(quote->registers, rot->ReadRegisters());

  const Bytes& blob = quote->signature;
  std::size_t offset = 0;
  TPM2B_ATTEST attest{};
  ASSERT_EQ(Tss2_MU_TPM2B_ATTEST_Unmarshal(blob.data(), blob.size(), &offset, &attest), TSS2_RC_SUCCESS);
  TPMT_SIGNATURE signature{};
  ASSERT_EQ(Tss2_MU_TPMT_SIGNATURE_Unmarshal(blob.data(), blob.size(), &offset, &signature), TSS2_RC_SUCCESS);
  EXPECT_EQ(offset, blob.size());

  TPMS_ATTEST attested{};
  std::size_t attest_offset = 0;
  ASSERT_EQ(Tss2_MU_TPMS_ATTEST_Unmarshal(attest.attestationData, attest.size, &attest_offset, &attested),
            TSS2_RC_SUCCESS);
  EXPECT_EQ(attested.magic, TPM2_GENERATED_VALUE);
  EXPECT_EQ(attested.type, TPM2_ST_ATTEST_QUOTE);
  crypto::Sha256Digest digest = QuoteDigest(quote->registers, nonce);
  ASSERT_EQ(attested.extraData.size, digest.size());
  EXPECT_TRUE(std::equal(digest.begin(), digest.end(), attested.extraData.buffer));
  Bytes concatenated;
  for (const auto& reg : quote->registers) concatenated.insert(concatenated.end(), reg.begin(), reg.end());
  crypto::Sha256Digest pcr_digest = crypto::Sha256(std::span<const std::uint8_t>(concatenated));
  ASSERT_EQ(attested.attested.quote.pcrDigest.size, 32u);
  EXPECT_TRUE(std::equal(pcr_digest.begin(), pcr_digest.end(), attested.attested.quote.pcrDigest.buffer));

  ASSERT_EQ(signature.sigAlg, TPM2_ALG_ECDSA);
  ASSERT_EQ(signature.signature.ecdsa.hash, TPM2_ALG_SHA256);
  ECDSA_SIG* ecdsa = ECDSA_SIG_new();
  ASSERT_NE(ecdsa, nullptr);
  ECDSA_SIG_set0(
      ecdsa, BN_bin2bn(signature.signature.ecdsa.signatureR.buffer, signature.signature.ecdsa.signatureR.size, nullptr),
      BN_bin2bn(signature.signature.ecdsa.signatureS.buffer, signature.signature.ecdsa.signatureS.size, nullptr));
  unsigned char* der = nullptr;
  int der_length = i2d_ECDSA_SIG(ecdsa, &der);
  ASSERT_GT(der_length, 0);
  Bytes der_signature(der, der + der_length);
  OPENSSL_free(der);
  ECDSA_SIG_free(ecdsa);
  std::span<const std::uint8_t> attested_bytes(attest.attestationData, attest.size);
  EXPECT_TRUE(rot->IdentityPublicKey().Verify(attested_bytes, der_signature));
  Bytes tampered(attested_bytes.begin(), attested_bytes.end());
  tampered.back() ^= 1;
  EXPECT_FALSE(rot->IdentityPublicKey().Verify(tampered, der_signature));

  EXPECT_FALSE(rot->CreateQuote({}).has_value());
}

// The service's verifier (src/tpm/quote) accepts exactly what the device makes.
TEST_F(Tpm2RootOfTrustTest, QuoteVerifiesWithTheServiceVerifier) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_TRUE(rot->Extend(Event(Register::kOs, "os", "image")).has_value());
  Bytes nonce = crypto::RandomBytes(16);
  auto quote = rot->CreateQuote(nonce);
  ASSERT_TRUE(quote.has_value()) << quote.error().message();
  tpm::QuoteExpectation expected;
  expected.extra_data = QuoteDigest(quote->registers, nonce);
  for (std::uint32_t i = 0; i < kRegisterCount; ++i) expected.pcrs.push_back(kTpmFirstRegisterPcr + i);
  expected.pcr_values = quote->registers;
  auto verified = tpm::VerifyQuote(quote->signature, rot->IdentityPublicKey(), expected);
  EXPECT_TRUE(verified.has_value()) << verified.error().message();
  expected.extra_data[0] ^= 1;
  EXPECT_FALSE(tpm::VerifyQuote(quote->signature, rot->IdentityPublicKey(), expected).has_value());
}

// ---- counters ---------------------------------------------------------------

TEST_F(Tpm2RootOfTrustTest, CountersStartAtZeroAndOnlyGoUp) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    EXPECT_EQ(rot->ReadCounter("floor.os").value_or(99), 0u);
    for (std::uint64_t expected = 1; expected <= 3; ++expected) {
      auto value = rot->IncrementCounter("floor.os");
      ASSERT_TRUE(value.has_value()) << value.error().message();
      EXPECT_EQ(*value, expected);
    }
    EXPECT_EQ(rot->ReadCounter("floor.os").value_or(0), 3u);
    EXPECT_FALSE(rot->ReadCounter("bad name!").has_value());
  }
  ASSERT_TRUE(tpm_.Stop().has_value());
  auto tcti = tpm_.Start();
  ASSERT_TRUE(tcti.has_value()) << tcti.error().message();
  tcti_ = *tcti;
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    EXPECT_EQ(rot->ReadCounter("floor.os").value_or(0), 3u);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(rot->IncrementCounter("floor.apps").has_value());
    EXPECT_EQ(rot->ReadCounter("floor.apps").value_or(0), 5u);
    // A new NV counter starts at the TPM's highest count; the base hides it.
    EXPECT_EQ(rot->ReadCounter("floor.runtime").value_or(99), 0u);
    EXPECT_EQ(rot->IncrementCounter("floor.runtime").value_or(0), 1u);
    EXPECT_EQ(rot->ReadCounter("floor.os").value_or(0), 3u);
  }
  // The owner cannot delete the counter (or its base) to start it over.
  {
    auto device = ConnectOrFail();
    ASSERT_TRUE(device);
    EsysOut<TPMS_CAPABILITY_DATA> data;
    TPMI_YES_NO more = TPM2_NO;
    ASSERT_EQ(Esys_GetCapability(device->esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, 0x01500000,
                                 64, &more, data.put()),
              TSS2_RC_SUCCESS);
    int tried = 0;
    for (std::uint32_t i = 0; i < data->data.handles.count; ++i) {
      std::uint32_t handle = data->data.handles.handle[i];
      if (handle >= 0x01700000) break;
      ESYS_TR index = ESYS_TR_NONE;
      ASSERT_EQ(Esys_TR_FromTPMPublic(device->esys(), handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &index),
                TSS2_RC_SUCCESS);
      EXPECT_NE(
          Esys_NV_UndefineSpace(device->esys(), ESYS_TR_RH_OWNER, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE),
          TSS2_RC_SUCCESS)
          << "owner deleted NV index " << handle;
      ++tried;
    }
    EXPECT_EQ(tried, 6);  // three counters, three bases
  }
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_EQ(rot->ReadCounter("floor.os").value_or(0), 3u);
  EXPECT_EQ(rot->IncrementCounter("floor.os").value_or(0), 4u);
}

// ---- sealing and credential activation ------------------------------------

TEST_F(Tpm2RootOfTrustTest, SealedSecretOpensOnlyWhileItsRegistersAreUnchanged) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_TRUE(rot->Extend(Event(Register::kRuntime, "citadeld", "v1")).has_value());
  std::string secret = "the disk key, 32 bytes long.....";
  auto sealed = rot->Seal(AsBytes(secret), {Register::kRuntime, Register::kOs});
  ASSERT_TRUE(sealed.has_value()) << sealed.error().message();
  auto opened = rot->Unseal(*sealed);
  ASSERT_TRUE(opened.has_value()) << opened.error().message();
  EXPECT_EQ(opened->reveal(), secret);
  // A register outside the policy does not matter.
  ASSERT_TRUE(rot->Extend(Event(Register::kApps, "app", "app")).has_value());
  EXPECT_TRUE(rot->Unseal(*sealed).has_value());
  ASSERT_TRUE(rot->Extend(Event(Register::kRuntime, "citadeld", "v2")).has_value());
  auto refused = rot->Unseal(*sealed);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kPermissionDenied) << refused.error().message();
  Bytes truncated(sealed->begin(), sealed->end() - 1);
  EXPECT_FALSE(rot->Unseal(truncated).has_value());
}

class MakeCredentialTest : public Tpm2RootOfTrustTest {
 protected:
  // RunSubprocess wants a path; tpm2-tools come from scripts/install-deps.
  static std::string FindProgram(std::string_view name) {
    std::string_view path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin";
    while (!path.empty()) {
      std::size_t colon = path.find(':');
      fs::path candidate = fs::path(path.substr(0, colon)) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      if (colon == std::string_view::npos) break;
      path.remove_prefix(colon + 1);
    }
    ADD_FAILURE() << name << " not found in PATH (run scripts/install-deps)";
    return std::string(name);
  }

  // tpm2_makecredential without a TPM, as a service would do it (tpm2-tools
  // 5.x takes the object's name as hex on the command line).
  // Returns {TPM2B_ID_OBJECT body, TPM2B_ENCRYPTED_SECRET body}.
  std::pair<Bytes, Bytes> MakeCredential(const Bytes& ek_public, const Bytes& name, std::string_view secret) {
    fs::path dir = temp_.path() / "credential";
    fs::create_directories(dir);
    EXPECT_TRUE(WriteFileAtomic(dir / "ek.pub", AsText(ek_public)).has_value());
    EXPECT_TRUE(WriteFileAtomic(dir / "secret", secret).has_value());
    SubprocessOptions options;
    options.argv = {FindProgram("tpm2_makecredential"), "-T", "none",          "-u", (dir / "ek.pub").string(), "-s",
                    (dir / "secret").string(),          "-n", HexEncode(name), "-o", (dir / "blob").string()};
    options.timeout = std::chrono::seconds(30);
    auto result = RunSubprocess(options);
    EXPECT_TRUE(result.has_value() && result->exit_code == 0) << (result ? result->err : result.error().message());
    auto blob_text = ReadFile(dir / "blob");
    if (!blob_text) {
      ADD_FAILURE() << "tpm2_makecredential wrote no blob";
      return {};
    }
    Bytes blob(blob_text->begin(), blob_text->end());
    // tpm2-tools' credential file: magic 0xBADCC0DE, version, then the
    // TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (size-prefixed, big-endian).
    EXPECT_GE(blob.size(), 12u);
    EXPECT_EQ(Bytes(blob.begin(), blob.begin() + 4), (Bytes{0xBA, 0xDC, 0xC0, 0xDE}));
    std::size_t offset = 8;
    TPM2B_ID_OBJECT credential{};
    TPM2B_ENCRYPTED_SECRET encrypted{};
    EXPECT_EQ(Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(blob.data(), blob.size(), &offset, &credential), TSS2_RC_SUCCESS);
    EXPECT_EQ(Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(blob.data(), blob.size(), &offset, &encrypted), TSS2_RC_SUCCESS);
    EXPECT_EQ(offset, blob.size());
    // As the service sends them: each TPM2B marshalled, size prefix included.
    const std::size_t credential_start = 8;
    const std::size_t secret_start = credential_start + 2 + credential.size;
    return {Bytes(blob.begin() + credential_start, blob.begin() + static_cast<std::ptrdiff_t>(secret_start)),
            Bytes(blob.begin() + static_cast<std::ptrdiff_t>(secret_start), blob.end())};
  }
};

TEST_F(MakeCredentialTest, ActivateCredentialRecoversTheSecretForThisAk) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto ak_area = tpm::ParsePublic(rot->AkPublic());
  ASSERT_TRUE(ak_area.has_value());
  std::string secret = "0123456789abcdef0123456789abcdef";
  auto [credential, encrypted] = MakeCredential(rot->EkPublic(), tpm::ObjectName(*ak_area), secret);
  ASSERT_FALSE(credential.empty());
  auto recovered = rot->ActivateCredential(credential, encrypted);
  ASSERT_TRUE(recovered.has_value()) << recovered.error().message();
  EXPECT_EQ(AsText(*recovered), secret);

  // A credential made for another key's name does not activate with the AK.
  Bytes other_name = tpm::ObjectName(*ak_area);
  other_name.back() ^= 1;
  auto [other_credential, other_encrypted] = MakeCredential(rot->EkPublic(), other_name, secret);
  EXPECT_FALSE(rot->ActivateCredential(other_credential, other_encrypted).has_value());
}

// ---- keys never leave the TPM -----------------------------------------------

TEST_F(Tpm2RootOfTrustTest, KeysCannotBeExported) {
  {
    auto rot = OpenOrFail();
    ASSERT_TRUE(rot);
    EXPECT_FALSE(rot->TlsClientKey().ToPem().has_value());
    // OpenSSL 3.0 answers this query for a legacy EC key without a private
    // scalar with 0 instead of failing; either way no private value exists.
    BIGNUM* priv = nullptr;
    if (EVP_PKEY_get_bn_param(rot->TlsClientKey().evp(), OSSL_PKEY_PARAM_PRIV_KEY, &priv) == 1) {
      ASSERT_NE(priv, nullptr);
      EXPECT_TRUE(BN_is_zero(priv)) << "the TLS key's private scalar left the TPM";
    }
    BN_free(priv);
    unsigned char* der = nullptr;
    int der_length = i2d_PrivateKey(rot->TlsClientKey().evp(), &der);
    EXPECT_LE(der_length, 0) << "the TLS key exported as DER";
    OPENSSL_free(der);
  }
  auto device = ConnectOrFail();
  ASSERT_TRUE(device);
  ESYS_CONTEXT* esys = device->esys();
  for (std::uint32_t handle : {Tpm2RootOfTrust::kAkHandle, Tpm2RootOfTrust::kTlsKeyHandle}) {
    ESYS_TR key = ESYS_TR_NONE;
    ASSERT_EQ(Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &key), TSS2_RC_SUCCESS);
    EsysOut<TPM2B_PUBLIC> key_public;
    ASSERT_EQ(Esys_ReadPublic(esys, key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, key_public.put(), nullptr, nullptr),
              TSS2_RC_SUCCESS);
    EXPECT_NE(key_public->publicArea.objectAttributes & TPMA_OBJECT_FIXEDTPM, 0u) << handle;
    EXPECT_NE(key_public->publicArea.objectAttributes & TPMA_OBJECT_FIXEDPARENT, 0u) << handle;

    TPMT_SYM_DEF session_symmetric{};
    session_symmetric.algorithm = TPM2_ALG_NULL;
    ESYS_TR session = ESYS_TR_NONE;
    ASSERT_EQ(Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                    TPM2_SE_POLICY, &session_symmetric, TPM2_ALG_SHA256, &session),
              TSS2_RC_SUCCESS);
    tpm2::FlushOnExit flush(esys, session);
    ASSERT_EQ(Esys_PolicyCommandCode(esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CC_Duplicate),
              TSS2_RC_SUCCESS);
    TPM2B_DATA encryption_key{};
    TPMT_SYM_DEF_OBJECT symmetric{};
    symmetric.algorithm = TPM2_ALG_NULL;
    EsysOut<TPM2B_DATA> key_out;
    EsysOut<TPM2B_PRIVATE> duplicate;
    EsysOut<TPM2B_ENCRYPTED_SECRET> seed;
    EXPECT_NE(Esys_Duplicate(esys, key, ESYS_TR_RH_NULL, session, ESYS_TR_NONE, ESYS_TR_NONE, &encryption_key,
                             &symmetric, key_out.put(), duplicate.put(), seed.put()),
              TSS2_RC_SUCCESS)
        << "TPM2_Duplicate exported key " << handle;
    (void)Esys_TR_Close(esys, &key);
  }
}

TEST_F(Tpm2RootOfTrustTest, TlsKeySignsInsideTheTpm) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  const crypto::PrivateKey& key = rot->TlsClientKey();
  EXPECT_TRUE(key.Public().IsP256());
  EXPECT_FALSE(key.Public() == rot->IdentityPublicKey());
  crypto::Sha256Digest digest = crypto::Sha256("to be signed");
  auto signature = key.SignDigest(digest);
  ASSERT_TRUE(signature.has_value()) << signature.error().message();
  EXPECT_TRUE(key.Public().VerifyDigest(digest, *signature));
  auto data_signature = key.Sign(AsBytes("message"));
  ASSERT_TRUE(data_signature.has_value());
  EXPECT_TRUE(key.Public().Verify(AsBytes("message"), *data_signature));

  // TLS signatures arrive from other threads while the RoT quotes.
  std::thread signer([&] {
    for (int i = 0; i < 5; ++i) {
      auto other = key.SignDigest(digest);
      EXPECT_TRUE(other.has_value() && key.Public().VerifyDigest(digest, *other));
    }
  });
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rot->CreateQuote(Bytes{static_cast<std::uint8_t>(i + 1)}).has_value());
  signer.join();
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

TEST_F(Tpm2RootOfTrustTest, TlsClientAuthenticationWithTheTpmKey) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  const crypto::PrivateKey& client_key = rot->TlsClientKey();
  crypto::CertificateSpec client_spec;
  client_spec.common_name = "tpm-device";
  client_spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
  // Self-signed by the TPM key: signing the certificate goes through it too.
  auto client_certificate = crypto::IssueCertificate(client_spec, client_key.Public(), nullptr, client_key);
  ASSERT_TRUE(client_certificate.has_value()) << client_certificate.error().message();

  auto server_key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(server_key.has_value());
  crypto::CertificateSpec server_spec;
  server_spec.common_name = "localhost";
  server_spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
  auto server_certificate = crypto::IssueCertificate(server_spec, server_key->Public(), nullptr, *server_key);
  ASSERT_TRUE(server_certificate.has_value());

  std::unique_ptr<SSL_CTX, SslCtxDeleter> server_context(SSL_CTX_new(TLS_server_method()));
  std::unique_ptr<SSL_CTX, SslCtxDeleter> client_context(SSL_CTX_new(TLS_client_method()));
  ASSERT_TRUE(server_context && client_context);
  for (SSL_CTX* context : {server_context.get(), client_context.get()}) {
    ASSERT_EQ(SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION), 1);
  }
  ASSERT_EQ(SSL_CTX_use_certificate(server_context.get(), server_certificate->x509()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(server_context.get(), server_key->evp()), 1);
  // The client certificate is required; its chain is not the point here,
  // but the CertificateVerify signature (made by the TPM) is checked.
  SSL_CTX_set_verify(server_context.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     [](int, X509_STORE_CTX*) { return 1; });
  ASSERT_EQ(SSL_CTX_use_certificate(client_context.get(), client_certificate->x509()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(client_context.get(), client_key.evp()), 1);
  SSL_CTX_set_verify(client_context.get(), SSL_VERIFY_NONE, nullptr);

  std::unique_ptr<SSL, SslDeleter> server(SSL_new(server_context.get()));
  std::unique_ptr<SSL, SslDeleter> client(SSL_new(client_context.get()));
  ASSERT_TRUE(server && client);
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  ASSERT_EQ(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());

  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 50 && !(client_done && server_done); ++round) {
    if (!client_done) {
      int rc = SSL_do_handshake(client.get());
      client_done = rc == 1;
      if (!client_done) {
        int error = SSL_get_error(client.get(), rc);
        ASSERT_TRUE(error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) << "client error " << error;
      }
    }
    if (!server_done) {
      int rc = SSL_do_handshake(server.get());
      server_done = rc == 1;
      if (!server_done) {
        int error = SSL_get_error(server.get(), rc);
        ASSERT_TRUE(error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) << "server error " << error;
      }
    }
  }
  ASSERT_TRUE(client_done && server_done);
  X509* peer = SSL_get0_peer_certificate(server.get());
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(X509_cmp(peer, client_certificate->x509()), 0);

  const char message[] = "hello";
  ASSERT_EQ(SSL_write(client.get(), message, sizeof message), static_cast<int>(sizeof message));
  char received[sizeof message] = {};
  ASSERT_EQ(SSL_read(server.get(), received, sizeof received), static_cast<int>(sizeof message));
  EXPECT_STREQ(received, message);
}

}  // namespace
}  // namespace citadel::rot
