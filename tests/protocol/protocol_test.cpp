#include "protocol/protocol.hpp"

#include <cstdlib>
#include <filesystem>
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rot/software/software_rot.hpp"

namespace citadel::protocol {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A provisioned software device: identity key, manufacturer chain, a boot's
// worth of measurements and a CSR for its TLS key.
class EvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "citadel-protocol-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    state_dir_ = pattern;
    auto rot = rot::SoftwareRootOfTrust::Open(state_dir_);
    ASSERT_TRUE(rot.has_value()) << rot.error().message();
    rot_ = std::move(*rot);
  }
  void TearDown() override { fs::remove_all(state_dir_); }

  void Provision() {
    auto ca_key = crypto::PrivateKey::GenerateP256();
    ASSERT_TRUE(ca_key.has_value());
    crypto::CertificateSpec ca_spec;
    ca_spec.common_name = "Test Manufacturer CA";
    ca_spec.is_ca = true;
    auto ca = crypto::IssueCertificate(ca_spec, ca_key->Public(), nullptr, *ca_key);
    ASSERT_TRUE(ca.has_value()) << ca.error().message();
    crypto::CertificateSpec leaf_spec;
    leaf_spec.common_name = rot_->DeviceId();
    auto leaf = crypto::IssueCertificate(leaf_spec, rot_->IdentityPublicKey(), &*ca, *ca_key);
    ASSERT_TRUE(leaf.has_value()) << leaf.error().message();
    ASSERT_TRUE(rot_->StoreManufacturerChain({*leaf, *ca}).has_value());

    std::vector<rot::MeasurementEvent> events = {
        {0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")},
        {1, "runtime", "citadeld", "0.1.0", crypto::Sha256("citadeld")},
        {2, "config", "device-config", "", crypto::Sha256("config")},
        {3, "app", "com.example.thermostat", "1.0", crypto::Sha256("app image")},
    };
    for (const auto& event : events) ASSERT_TRUE(rot_->Extend(event).has_value());

    auto csr = crypto::CertificateRequest::Create(rot_->TlsClientKey(), rot_->DeviceId());
    ASSERT_TRUE(csr.has_value()) << csr.error().message();
    csr_pem_ = csr->Pem();
    nonce_ = crypto::RandomBytes(kNonceBytes);
  }

  std::string SignedBody() {
    auto body = CreateSignedEvidence(*rot_, nonce_, csr_pem_);
    EXPECT_TRUE(body.has_value()) << (body ? "" : body.error().message());
    return body ? *body : std::string();
  }

  // The signed body as a JSON value, to be edited and re-serialised.
  Json SignedJson() { return Json::parse(SignedBody()); }

  static Error ParseError(const Json& body) {
    auto parsed = ParseSignedEvidence(body.dump());
    EXPECT_FALSE(parsed.has_value()) << body.dump();
    return parsed ? Error(ErrorCode::kInternal, "parsed") : parsed.error();
  }

  fs::path state_dir_;
  std::unique_ptr<rot::SoftwareRootOfTrust> rot_;
  std::string csr_pem_;
  Bytes nonce_;
};

TEST_F(EvidenceTest, RoundTripSignsAndVerifies) {
  Provision();
  std::string body = SignedBody();
  auto parsed = ParseSignedEvidence(body);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_TRUE(VerifyEvidenceSignature(*parsed, rot_->IdentityPublicKey()));
  EXPECT_FALSE(VerifyEvidenceSignature(*parsed, rot_->TlsClientKey().Public()));

  const Evidence& evidence = parsed->evidence;
  EXPECT_EQ(evidence.version, kEvidenceVersion);
  EXPECT_EQ(evidence.device_id, rot_->DeviceId());
  EXPECT_EQ(evidence.rot_backend, "software");
  EXPECT_EQ(evidence.nonce, nonce_);
  ASSERT_EQ(evidence.manufacturer_chain.size(), 2u);
  auto leaf = crypto::Certificate::FromPem(evidence.manufacturer_chain[0]);
  ASSERT_TRUE(leaf.has_value());
  EXPECT_TRUE(leaf->SubjectPublicKey() == rot_->IdentityPublicKey());
  EXPECT_EQ(evidence.registers, rot_->ReadRegisters());
  EXPECT_EQ(rot::ReplayLog(evidence.measurements), evidence.registers);
  ASSERT_EQ(evidence.measurements.size(), 4u);
  EXPECT_EQ(evidence.measurements[2].name, "device-config");
  EXPECT_EQ(evidence.measurements[2].version, "");
  EXPECT_EQ(evidence.measurements[3].register_index, 3u);
  EXPECT_EQ(evidence.measurements[3].digest, crypto::Sha256("app image"));
  EXPECT_EQ(evidence.csr, csr_pem_);

  // The signed bytes are the canonical JSON of the evidence member.
  EXPECT_EQ(parsed->canonical_evidence, CanonicalJson(EvidenceToJson(evidence)).value());
  EXPECT_EQ(parsed->canonical_evidence, CanonicalJson(Json::parse(body)["evidence"]).value());
}

// "tpm" rides with rot "tpm2" and only with it; its keys are bounded base64.
TEST_F(EvidenceTest, TpmMemberIsPresentExactlyForTpmEvidence) {
  Provision();
  Json body = SignedJson();
  EXPECT_FALSE(body["evidence"].contains("tpm"));
  body["evidence"]["tpm"] = Json{{"ek_public", Base64Encode(Bytes{1, 2})}, {"ak_public", Base64Encode(Bytes{3})}};
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.tpm: must be present exactly when rot is \"tpm2\""));

  body["evidence"]["rot"] = "tpm2";
  auto parsed = ParseSignedEvidence(body.dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  ASSERT_TRUE(parsed->evidence.tpm.has_value());
  EXPECT_EQ(parsed->evidence.tpm->ek_public, (Bytes{1, 2}));
  EXPECT_EQ(parsed->evidence.tpm->ak_public, (Bytes{3}));
  // It is part of what the signature covers.
  EXPECT_NE(parsed->canonical_evidence.find("\"tpm\""), std::string::npos);
  EXPECT_EQ(parsed->canonical_evidence, CanonicalJson(EvidenceToJson(parsed->evidence)).value());

  Json oversize = body;
  oversize["evidence"]["tpm"]["ak_public"] = Base64Encode(Bytes(1025, 9));
  EXPECT_THAT(ParseError(oversize).message(), HasSubstr("evidence.tpm.ak_public: expected base64 of at most 1024"));
  Json extra = body;
  extra["evidence"]["tpm"]["pcrs"] = 1;
  EXPECT_THAT(ParseError(extra).message(), HasSubstr("evidence.tpm"));
  body["evidence"].erase("tpm");
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.tpm: must be present"));
}

TEST_F(EvidenceTest, NonCanonicalSpellingOfTheSameEvidenceStillVerifies) {
  Provision();
  std::string pretty = Json::parse(SignedBody()).dump(2);
  auto parsed = ParseSignedEvidence(pretty);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_TRUE(VerifyEvidenceSignature(*parsed, rot_->IdentityPublicKey()));
}

TEST_F(EvidenceTest, FlippingAnyMeasurementDigestCharacterBreaksTheSignature) {
  Provision();
  std::string body = SignedBody();
  int checked = 0;
  for (const auto& event : rot_->MeasurementLog()) {
    std::string hex = HexEncode(event.digest);
    auto at = body.find("\"" + hex + "\"");
    ASSERT_NE(at, std::string::npos);
    ASSERT_EQ(body.find("\"" + hex + "\"", at + 1), std::string::npos);
    for (std::size_t i = 0; i < hex.size(); ++i) {
      std::string tampered = body;
      char& c = tampered[at + 1 + i];
      c = c == '0' ? '1' : '0';
      auto parsed = ParseSignedEvidence(tampered);
      ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
      EXPECT_FALSE(VerifyEvidenceSignature(*parsed, rot_->IdentityPublicKey())) << "digest char " << i;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * 64);
}

TEST_F(EvidenceTest, TamperingWithOtherFieldsBreaksTheSignature) {
  Provision();
  auto original = SignedJson();
  std::vector<std::function<void(Json&)>> edits = {
      [](Json& e) { e["nonce"] = std::string(64, 'a'); },
      [](Json& e) { e["registers"][0] = std::string(64, 'b'); },
      [](Json& e) { e["measurements"][0]["version"] = "0.9.0"; },
      [](Json& e) { e["measurements"].erase(3); },
      [](Json& e) { e["manufacturer_chain"].erase(1); },
      [](Json& e) { e["csr"] = e["csr"].get<std::string>() + "\n"; },
      [](Json& e) { e["device_id"] = std::string(64, 'c'); },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    Json body = original;
    edits[i](body["evidence"]);
    auto parsed = ParseSignedEvidence(body.dump());
    ASSERT_TRUE(parsed.has_value()) << i << ": " << parsed.error().message();
    EXPECT_FALSE(VerifyEvidenceSignature(*parsed, rot_->IdentityPublicKey())) << "edit " << i;
  }
}

TEST_F(EvidenceTest, UnknownFieldsAreRefusedWithTheirPath) {
  Provision();
  Json body = SignedJson();
  body["extra"] = 1;
  EXPECT_THAT(ParseError(body).message(), HasSubstr("extra: unknown field"));

  body = SignedJson();
  body["evidence"]["firmware"] = "x";
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.firmware: unknown field"));

  body = SignedJson();
  body["evidence"]["measurements"][1]["pcr"] = 1;
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.measurements[1].pcr: unknown field"));
}

TEST_F(EvidenceTest, OversizeBodyIsRefusedBeforeParsing) {
  Provision();
  std::string body = SignedBody();
  ASSERT_LT(body.size(), kMaxEvidenceBytes);
  // Trailing white space is valid JSON, so only the bound can refuse this.
  std::string at_limit = body + std::string(kMaxEvidenceBytes - body.size(), ' ');
  EXPECT_TRUE(ParseSignedEvidence(at_limit).has_value());
  auto over = ParseSignedEvidence(at_limit + " ");
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), ErrorCode::kTooLarge);
}

TEST_F(EvidenceTest, BadHexIsRefusedWithTheFieldNamed) {
  Provision();
  auto original = SignedJson();
  for (const std::string& bad :
       {std::string(64, 'z'), std::string(62, 'a'), std::string(66, 'a'), std::string(64, 'A'), std::string()}) {
    Json body = original;
    body["evidence"]["measurements"][3]["digest"] = bad;
    auto error = ParseError(body);
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(error.message(), HasSubstr("evidence.measurements[3].digest: expected 64 hex characters")) << bad;
  }
  Json body = original;
  body["evidence"]["measurements"][3]["digest"] = 7;
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.measurements[3].digest: expected 64 hex characters"));

  body = original;
  body["evidence"]["nonce"] = "abcd";
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.nonce: expected 64 hex characters"));
  body = original;
  body["evidence"]["registers"][5] = std::string(63, '0') + "g";
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.registers[5]: expected 64 hex characters"));
  body = original;
  body["evidence"]["device_id"] = "00";
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.device_id: expected 64 hex characters"));
  body = original;
  body["signature"] = "not base64!";
  EXPECT_THAT(ParseError(body).message(), HasSubstr("signature: expected base64"));
}

TEST_F(EvidenceTest, WrongRegisterCountIsRefused) {
  Provision();
  auto original = SignedJson();
  Json body = original;
  body["evidence"]["registers"].erase(7);
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.registers: expected 8 registers, got 7"));
  body = original;
  body["evidence"]["registers"].push_back(std::string(64, '0'));
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.registers: expected 8 registers, got 9"));
  body = original;
  body["evidence"]["registers"] = Json::array();
  EXPECT_THAT(ParseError(body).message(), HasSubstr("evidence.registers: expected 8 registers, got 0"));
}

TEST_F(EvidenceTest, WrongTypesMissingFieldsAndBoundsAreRefused) {
  Provision();
  auto original = SignedJson();
  struct Case {
    std::function<void(Json&)> edit;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](Json& b) { b["evidence"]["version"] = "1"; }, "evidence.version: expected an integer"},
      {[](Json& b) { b["evidence"]["version"] = 2; }, "evidence.version: unsupported version 2"},
      {[](Json& b) { b["evidence"]["version"] = 1.0; }, "evidence.version: expected an integer"},
      {[](Json& b) { b["evidence"].erase("csr"); }, "evidence.csr: missing field"},
      {[](Json& b) { b["evidence"]["csr"] = ""; }, "evidence.csr: must not be empty"},
      {[](Json& b) { b["evidence"]["rot"] = "hsm"; }, "evidence.rot: unknown root of trust"},
      {[](Json& b) { b.erase("signature"); }, "signature: missing field"},
      {[](Json& b) { b["evidence"] = Json::array(); }, "evidence: expected an object"},
      {[](Json& b) { b["evidence"]["measurements"][0]["register"] = 8; },
       "evidence.measurements[0].register: 8 is out of range (0..7)"},
      {[](Json& b) { b["evidence"]["measurements"][0]["register"] = -1; },
       "evidence.measurements[0].register: -1 is out of range (0..7)"},
      {[](Json& b) { b["evidence"]["measurements"][2]["name"] = nullptr; },
       "evidence.measurements[2].name: expected a string"},
      {[](Json& b) { b["evidence"]["measurements"] = Json::object(); }, "evidence.measurements: expected an array"},
      {[](Json& b) {
         Json& m = b["evidence"]["measurements"];
         while (m.size() <= kMaxMeasurements) m.push_back(m[0]);
       },
       "evidence.measurements: has 65 entries; the limit is 64"},
      {[](Json& b) {
         Json& c = b["evidence"]["manufacturer_chain"];
         while (c.size() <= kMaxManufacturerChain) c.push_back(c[0]);
       },
       "evidence.manufacturer_chain: has 5 entries; the limit is 4"},
      {[](Json& b) { b["evidence"]["manufacturer_chain"][1] = 5; },
       "evidence.manufacturer_chain[1]: expected a string"},
  };
  for (const auto& c : cases) {
    Json body = original;
    c.edit(body);
    EXPECT_THAT(ParseError(body).message(), HasSubstr(c.message));
  }
}

TEST_F(EvidenceTest, MalformedJsonIsRefused) {
  Provision();
  std::string body = SignedBody();
  EXPECT_FALSE(ParseSignedEvidence(body.substr(0, body.size() - 1)).has_value());
  EXPECT_FALSE(ParseSignedEvidence(body + "x").has_value());
  EXPECT_FALSE(ParseSignedEvidence("").has_value());
  EXPECT_FALSE(ParseSignedEvidence("[]").has_value());
  // A duplicate key could make two parsers see different evidence.
  std::string duplicated = body;
  duplicated.insert(duplicated.size() - 1, ",\"signature\":\"AAAA\"");
  auto parsed = ParseSignedEvidence(duplicated);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("duplicate key"));
}

TEST_F(EvidenceTest, UnprovisionedDeviceSendsSignedEvidenceWithEmptyChain) {
  // The service, not the device, decides such a device is not genuine.
  auto csr = crypto::CertificateRequest::Create(rot_->TlsClientKey(), rot_->DeviceId());
  ASSERT_TRUE(csr.has_value());
  auto body = CreateSignedEvidence(*rot_, crypto::RandomBytes(kNonceBytes), csr->Pem());
  ASSERT_TRUE(body.has_value()) << body.error().message();
  auto parsed = ParseSignedEvidence(*body);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_TRUE(parsed->evidence.manufacturer_chain.empty());
  EXPECT_TRUE(VerifyEvidenceSignature(*parsed, rot_->IdentityPublicKey()));
}

TEST_F(EvidenceTest, CreateRefusesBadNonceAndCsr) {
  Provision();
  auto short_nonce = CreateSignedEvidence(*rot_, crypto::RandomBytes(16), csr_pem_);
  ASSERT_FALSE(short_nonce.has_value());
  EXPECT_EQ(short_nonce.error().code(), ErrorCode::kInvalidArgument);
  auto no_csr = CreateSignedEvidence(*rot_, nonce_, "");
  ASSERT_FALSE(no_csr.has_value());
  EXPECT_THAT(no_csr.error().message(), HasSubstr("evidence.csr"));
}

TEST(CheckInTest, RoundTrip) {
  CheckIn in{.os_version = "1.2.3", .runtime_version = "0.1.0", .uptime_seconds = 3600, .free_memory_kb = 51200};
  auto parsed = ParseCheckIn(CanonicalJson(CheckInToJson(in)).value());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->os_version, "1.2.3");
  EXPECT_EQ(parsed->runtime_version, "0.1.0");
  EXPECT_EQ(parsed->uptime_seconds, 3600);
  EXPECT_EQ(parsed->free_memory_kb, 51200);
}

TEST(CheckInTest, IsStrict) {
  const std::string valid = R"({"os_version":"1","runtime_version":"2","uptime_seconds":1,"free_memory_kb":2})";
  ASSERT_TRUE(ParseCheckIn(valid).has_value());
  struct Case {
    std::string body;
    std::string message;
  };
  std::vector<Case> cases = {
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":1,"free_memory_kb":2,"x":0})", "x: unknown field"},
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":1})", "free_memory_kb: missing field"},
      {R"({"os_version":1,"runtime_version":"2","uptime_seconds":1,"free_memory_kb":2})",
       "os_version: expected a string"},
      {R"({"os_version":")" + std::string(129, 'v') +
           R"(","runtime_version":"2","uptime_seconds":1,"free_memory_kb":2})",
       "os_version: is 129 bytes; the limit is 128"},
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":-1,"free_memory_kb":2})",
       "uptime_seconds: -1 is out of range (0..9007199254740991)"},
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":1.5,"free_memory_kb":2})",
       "uptime_seconds: expected an integer"},
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":"1","free_memory_kb":2})",
       "uptime_seconds: expected an integer"},
      {R"({"os_version":"1","runtime_version":"2","uptime_seconds":18446744073709551615,"free_memory_kb":2})",
       "uptime_seconds: 18446744073709551615 is out of range (0..9007199254740991)"},
      {R"([1])", "document: expected an object"},
  };
  for (const auto& c : cases) {
    auto parsed = ParseCheckIn(c.body);
    ASSERT_FALSE(parsed.has_value()) << c.body;
    EXPECT_THAT(parsed.error().message(), HasSubstr(c.message)) << c.body;
  }
  EXPECT_FALSE(
      ParseCheckIn(R"({"os_version":"1","os_version":"1","runtime_version":"2","uptime_seconds":1,"free_memory_kb":2})")
          .has_value());
  std::string huge(kMaxMessageBytes + 1, ' ');
  auto too_large = ParseCheckIn(huge);
  ASSERT_FALSE(too_large.has_value());
  EXPECT_EQ(too_large.error().code(), ErrorCode::kTooLarge);
}

TEST(ChallengeTest, RoundTripAndStrictNonce) {
  Challenge challenge{.nonce = crypto::RandomBytes(kNonceBytes), .expires_at = "2026-11-21T10:00:00Z"};
  auto parsed = ParseChallenge(ChallengeToJson(challenge).dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->nonce, challenge.nonce);
  EXPECT_EQ(parsed->expires_at, challenge.expires_at);

  auto short_nonce = ParseChallenge(R"({"nonce":"abcd","expires_at":"2026-11-21T10:00:00Z"})");
  ASSERT_FALSE(short_nonce.has_value());
  EXPECT_THAT(short_nonce.error().message(), HasSubstr("nonce: expected 64 hex characters"));
  EXPECT_FALSE(ParseChallenge("{\"nonce\":\"" + std::string(64, 'a') + "\",\"expires_at\":\"tomorrow\"}").has_value());
}

TEST(AttestationResultTest, AcceptedRoundTripToleratesNewFields) {
  AttestationResult result{.verdict = "accepted",
                           .device_id = std::string(64, 'a'),
                           .tenant_id = "t-1",
                           .certificate = "-----BEGIN CERTIFICATE-----\n...",
                           .chain = {"issuing", "root"},
                           .expires_at = "2026-11-22T10:00:00Z"};
  Json json = AttestationResultToJson(result);
  json["added_by_a_newer_service"] = true;
  auto parsed = ParseAttestationResult(json.dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->verdict, "accepted");
  EXPECT_EQ(parsed->device_id, result.device_id);
  EXPECT_EQ(parsed->tenant_id, "t-1");
  EXPECT_EQ(parsed->certificate, result.certificate);
  EXPECT_EQ(parsed->chain, result.chain);
  EXPECT_EQ(parsed->expires_at, result.expires_at);

  json.erase("certificate");
  auto missing = ParseAttestationResult(json.dump());
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message(), HasSubstr("certificate: missing field"));
}

TEST(AttestationResultTest, UnclaimedAndUnknownVerdicts) {
  auto parsed = ParseAttestationResult(R"({"verdict":"accepted-unclaimed","retry_after_seconds":300})");
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->verdict, "accepted-unclaimed");
  EXPECT_EQ(parsed->retry_after_seconds, 300);
  EXPECT_TRUE(parsed->certificate.empty());

  AttestationResult unclaimed;
  unclaimed.verdict = "accepted-unclaimed";
  unclaimed.retry_after_seconds = 60;
  auto round_trip = ParseAttestationResult(AttestationResultToJson(unclaimed).dump());
  ASSERT_TRUE(round_trip.has_value());
  EXPECT_EQ(round_trip->retry_after_seconds, 60);

  auto unknown = ParseAttestationResult(R"({"verdict":"maybe"})");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_THAT(unknown.error().message(), HasSubstr("verdict: unknown verdict \"maybe\""));
  // The verdict is the service's text: it reaches the operator escaped.
  auto hostile = ParseAttestationResult(R"({"verdict":"ok\u001b[2J"})");
  ASSERT_FALSE(hostile.has_value());
  EXPECT_THAT(hostile.error().message(), HasSubstr("unknown verdict \"ok\\x1b[2J\""));
}

TEST(AttestationResultTest, ActivationRequiredRoundTripIsStrict) {
  AttestationResult required;
  required.verdict = "activation-required";
  required.device_id = std::string(64, 'a');
  required.activation = TpmActivationChallenge{"0123abcd", Bytes{1, 2, 3}, Bytes{4, 5}};
  auto parsed = ParseAttestationResult(AttestationResultToJson(required).dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  ASSERT_TRUE(parsed->activation.has_value());
  EXPECT_EQ(parsed->activation->id, "0123abcd");
  EXPECT_EQ(parsed->activation->credential_blob, (Bytes{1, 2, 3}));
  EXPECT_EQ(parsed->activation->encrypted_secret, (Bytes{4, 5}));
  EXPECT_TRUE(parsed->certificate.empty());

  Json body = AttestationResultToJson(required);
  body["activation"].erase("encrypted_secret");
  auto missing = ParseAttestationResult(body.dump());
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message(), HasSubstr("activation.encrypted_secret"));
  body = AttestationResultToJson(required);
  body["activation"]["id"] = "NOT-HEX";
  EXPECT_FALSE(ParseAttestationResult(body.dump()).has_value());
  body = AttestationResultToJson(required);
  body["activation"]["credential_blob"] = "%%%";
  auto bad = ParseAttestationResult(body.dump());
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), HasSubstr("activation.credential_blob: expected base64"));
  EXPECT_FALSE(ParseAttestationResult(R"({"verdict":"activation-required"})").has_value());
}

TEST(ActivationRequestTest, RoundTripIsStrictAndBounded) {
  ActivationRequest request{"00ff", std::string(64, 'b'), Bytes(32, 7)};
  auto parsed = ParseActivationRequest(ActivationRequestToJson(request).dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->activation_id, "00ff");
  EXPECT_EQ(parsed->device_id, std::string(64, 'b'));
  EXPECT_EQ(parsed->secret, Bytes(32, 7));

  Json body = ActivationRequestToJson(request);
  body["extra"] = 1;
  EXPECT_THAT(ParseActivationRequest(body.dump()).error().message(), HasSubstr("extra"));
  body = ActivationRequestToJson(request);
  body["device_id"] = "short";
  EXPECT_THAT(ParseActivationRequest(body.dump()).error().message(), HasSubstr("device_id"));
  body = ActivationRequestToJson(request);
  body["secret"] = Base64Encode(Bytes(65, 1));
  EXPECT_THAT(ParseActivationRequest(body.dump()).error().message(),
              HasSubstr("secret: expected base64 of at most 64 bytes"));
  body = ActivationRequestToJson(request);
  body["secret"] = "";
  EXPECT_FALSE(ParseActivationRequest(body.dump()).has_value());
  EXPECT_FALSE(ParseActivationRequest("not json").has_value());
}

TEST(ProblemTest, RoundTripAndTolerance) {
  EXPECT_EQ(ProblemType("bad-signature"), "urn:citadel:problem:bad-signature");
  Problem problem{.type = ProblemType("nonce-expired"),
                  .title = "Nonce expired",
                  .status = 401,
                  .detail = "ask for a new challenge"};
  Json json = ProblemToJson(problem);
  json["instance"] = "/v1/attestation";
  auto parsed = ParseProblem(json.dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->type, problem.type);
  EXPECT_EQ(parsed->title, problem.title);
  EXPECT_EQ(parsed->status, 401);
  EXPECT_EQ(parsed->detail, problem.detail);

  EXPECT_FALSE(ParseProblem(R"({"title":"no type"})").has_value());
  EXPECT_FALSE(ParseProblem(R"({"type":"x","status":"401"})").has_value());
}

TEST(CheckInReplyTest, RoundTripWithKeysAndCapabilityToleratesNewFields) {
  auto publisher = crypto::PrivateKey::GenerateP256();
  auto ca_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec spec;
  spec.common_name = "Issuing";
  spec.is_ca = true;
  auto ca = crypto::IssueCertificate(spec, ca_key->Public(), nullptr, *ca_key);
  ASSERT_TRUE(ca);
  DevelopmentCapabilityClaims claims{std::string(64, 'd'), "ten_1", "2026-01-01T00:00:00Z", "id-1", {}};
  auto envelope = CreateDevelopmentCapabilityEnvelope(claims, *ca_key, *ca);
  ASSERT_TRUE(envelope) << envelope.error().message();

  CheckInReply reply{
      std::string(64, 'd'), "ten_1", 30, {{KeyId(publisher->Public()), publisher->Public().Pem()}}, *envelope};
  auto json = CheckInReplyToJson(reply);
  json["something_new"] = {{"x", 1}};
  auto parsed = ParseCheckInReply(json.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->next_check_in_seconds, 30);
  ASSERT_EQ(parsed->publisher_keys.size(), 1u);
  EXPECT_EQ(parsed->publisher_keys[0].key_id, KeyId(publisher->Public()));
  EXPECT_EQ(parsed->app_development, *envelope);

  // The signature covers the canonical capability.
  auto decoded = ParseDevelopmentCapabilityEnvelope(*envelope);
  ASSERT_TRUE(decoded);
  EXPECT_TRUE(ca->SubjectPublicKey().Verify(AsBytes(decoded->canonical_capability), decoded->signature));

  // An older reply without the new members still parses.
  auto old = ParseCheckInReply(R"({"device_id":"d","tenant_id":"t","next_check_in_seconds":5})");
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->publisher_keys.empty());
  EXPECT_TRUE(old->app_development.is_null());
}

TEST(CheckInReplyTest, BadKeysAndCapabilitiesAreRefused) {
  auto publisher = crypto::PrivateKey::GenerateP256()->Public();
  auto with_keys = [](const Json& keys) { return Json{{"publisher_keys", keys}}.dump(); };
  EXPECT_FALSE(ParseCheckInReply(
      with_keys(Json::array({{{"key_id", std::string(64, '0')}, {"public_key_pem", publisher.Pem()}}}))));
  EXPECT_FALSE(ParseCheckInReply(with_keys(Json::array({{{"key_id", KeyId(publisher)}, {"public_key_pem", "x"}}}))));
  EXPECT_FALSE(ParseCheckInReply(
      with_keys(Json::array({{{"key_id", KeyId(publisher)}, {"public_key_pem", publisher.Pem()}, {"extra", true}}}))));
  Json many = Json::array();
  for (std::size_t i = 0; i <= kMaxPublisherKeys; ++i) {
    many.push_back({{"key_id", KeyId(publisher)}, {"public_key_pem", publisher.Pem()}});
  }
  auto too_many = ParseCheckInReply(with_keys(many));
  ASSERT_FALSE(too_many);
  EXPECT_THAT(too_many.error().message(), HasSubstr("publisher_keys"));
  EXPECT_FALSE(ParseCheckInReply(R"({"next_check_in_seconds":-1})"));
  EXPECT_FALSE(ParseCheckInReply(R"({"app_development":{"capability":{}}})"));
}

// ---- Updates in the check-in

CheckInUpdate SampleUpdate() {
  CheckInUpdate update;
  update.installed.push_back({"app", "3c1f0000-0000-4000-8000-000000000001", "1.0.0", std::string(64, 'a')});
  update.installed.push_back({"os", "citadel-os", "2026.1", ""});
  update.reports.push_back({"dep_1", "apps/x/2.0.0/x.img", "downloading", "", "2026-11-21T10:00:00Z"});
  update.reports.push_back({"dep_1", "apps/x/2.0.0/x.img", "failed", "crash-loop", "2026-11-21T10:05:00Z"});
  return update;
}

TEST(CheckInUpdateTest, RoundTripAndOldDevicesOmitIt) {
  CheckIn in{.os_version = "1", .runtime_version = "2", .uptime_seconds = 3, .free_memory_kb = 4};
  in.update = SampleUpdate();
  auto parsed = ParseCheckIn(CheckInToJson(in).dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_TRUE(parsed->update.has_value());
  ASSERT_EQ(parsed->update->installed.size(), 2u);
  EXPECT_EQ(parsed->update->installed[0].component_id, in.update->installed[0].component_id);
  EXPECT_EQ(parsed->update->installed[0].sha256, std::string(64, 'a'));
  EXPECT_EQ(parsed->update->installed[1].kind, "os");
  EXPECT_EQ(parsed->update->installed[1].sha256, "");
  ASSERT_EQ(parsed->update->reports.size(), 2u);
  EXPECT_EQ(parsed->update->reports[1].state, "failed");
  EXPECT_EQ(parsed->update->reports[1].reason, "crash-loop");
  EXPECT_EQ(parsed->update->reports[1].reported_at, "2026-11-21T10:05:00Z");

  CheckIn old{.os_version = "1", .runtime_version = "2", .uptime_seconds = 3, .free_memory_kb = 4};
  Json old_json = CheckInToJson(old);
  EXPECT_FALSE(old_json.contains("update"));
  auto old_parsed = ParseCheckIn(old_json.dump());
  ASSERT_TRUE(old_parsed);
  EXPECT_FALSE(old_parsed->update.has_value());
}

TEST(CheckInUpdateTest, IsStrictAndBounded) {
  CheckIn base{.os_version = "1", .runtime_version = "2", .uptime_seconds = 3, .free_memory_kb = 4};
  base.update = SampleUpdate();
  const Json valid = CheckInToJson(base);
  struct Case {
    std::function<void(Json&)> change;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](Json& j) { j["update"]["extra"] = 1; }, "update.extra: unknown field"},
      {[](Json& j) { j["update"].erase("reports"); }, "update.reports: missing field"},
      {[](Json& j) { j["update"] = "x"; }, "update: expected an object"},
      {[](Json& j) { j["update"]["installed"][0]["kind"] = "firmware"; }, "update.installed[0].kind"},
      {[](Json& j) { j["update"]["installed"][0]["sha256"] = "ABC"; }, "update.installed[0].sha256"},
      {[](Json& j) { j["update"]["installed"][1]["version"] = std::string(65, 'v'); },
       "update.installed[1].version: is 65 bytes"},
      {[](Json& j) { j["update"]["reports"][0]["state"] = "done"; }, "update.reports[0].state: unknown state"},
      {[](Json& j) { j["update"]["reports"][0]["reported_at"] = "yesterday"; },
       "update.reports[0].reported_at: expected an RFC 3339 time"},
      {[](Json& j) { j["update"]["reports"][1]["deployment_id"] = ""; },
       "update.reports[1].deployment_id: must not be empty"},
      {[](Json& j) { j["update"]["reports"][1]["target_name"] = std::string(kMaxTargetNameBytes + 1, 't'); },
       "update.reports[1].target_name: is 513 bytes"},
      {[](Json& j) { j["update"]["reports"][1]["reason"] = std::string(kMaxUpdateReasonBytes + 1, 'r'); },
       "update.reports[1].reason"},
      {[](Json& j) { j["update"]["reports"][0]["x"] = true; }, "update.reports[0].x: unknown field"},
      {[](Json& j) {
         Json many = Json::array();
         for (std::size_t i = 0; i <= kMaxUpdateEntries; ++i) many.push_back(j["update"]["reports"][0]);
         j["update"]["reports"] = many;
       },
       "update.reports"},
  };
  for (const auto& c : cases) {
    Json changed = valid;
    c.change(changed);
    auto parsed = ParseCheckIn(changed.dump());
    ASSERT_FALSE(parsed) << changed.dump();
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(parsed.error().message(), HasSubstr(c.message)) << changed.dump();
  }
  // Exactly the bound is fine.
  Json full = valid;
  Json many = Json::array();
  for (std::size_t i = 0; i < kMaxUpdateEntries; ++i) many.push_back(full["update"]["reports"][0]);
  full["update"]["reports"] = many;
  EXPECT_TRUE(ParseCheckIn(full.dump()));
}

TEST(CheckInUpdateTest, ReplyRoundTripAndStrictPaths) {
  CheckInReply reply;
  reply.device_id = std::string(64, 'd');
  reply.tenant_id = "ten_1";
  reply.update = CheckInUpdateReply{"/v1/repo/ten_1/image", "/v1/repo/ten_1/director/grp_1", 7, true, 2};
  Json json = CheckInReplyToJson(reply);
  json["update"]["added_later"] = 1;  // a newer service may say more
  auto parsed = ParseCheckInReply(json.dump());
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_TRUE(parsed->update.has_value());
  EXPECT_EQ(parsed->update->image_repository, "/v1/repo/ten_1/image");
  EXPECT_EQ(parsed->update->director, "/v1/repo/ten_1/director/grp_1");
  EXPECT_EQ(parsed->update->director_timestamp_version, 7);
  EXPECT_TRUE(parsed->update->update_now);
  EXPECT_EQ(parsed->update->acknowledged, 2);

  CheckInReply without;
  EXPECT_FALSE(CheckInReplyToJson(without).contains("update"));
  auto none = ParseCheckInReply(CheckInReplyToJson(without).dump());
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->update.has_value());

  for (const char* bad : {"https://evil.example/v1/repo/t/image", "/v1/repo/../../etc", "/v1/repo/t//image",
                          "/v1/repo/", "/v1/other/t", "/v1/repo/t/image/", "/v1/repo/t/im age"}) {
    Json changed = CheckInReplyToJson(reply);
    changed["update"]["director"] = bad;
    auto refused = ParseCheckInReply(changed.dump());
    ASSERT_FALSE(refused) << bad;
    EXPECT_THAT(refused.error().message(), HasSubstr("update.director")) << bad;
  }
  Json wrong_type = CheckInReplyToJson(reply);
  wrong_type["update"]["update_now"] = 1;
  EXPECT_FALSE(ParseCheckInReply(wrong_type.dump()));
  Json negative = CheckInReplyToJson(reply);
  negative["update"]["director_timestamp_version"] = -1;
  EXPECT_FALSE(ParseCheckInReply(negative.dump()));
  Json missing = CheckInReplyToJson(reply);
  missing["update"].erase("acknowledged");
  EXPECT_FALSE(ParseCheckInReply(missing.dump()));
}

// ---- The rollout bucket

TEST(RolloutTest, BucketIsTheFirst32BitsOfTheHashModTenThousand) {
  const std::string device = std::string(64, 'a');
  const crypto::Sha256Digest digest = crypto::Sha256("dep_1:" + device);
  const std::uint32_t first = (std::uint32_t{digest[0]} << 24) | (std::uint32_t{digest[1]} << 16) |
                              (std::uint32_t{digest[2]} << 8) | std::uint32_t{digest[3]};
  EXPECT_EQ(RolloutBucket(device, "dep_1"), first % 10000);
  EXPECT_LT(RolloutBucket(device, "dep_1"), kRolloutBuckets);
  EXPECT_FALSE(InRollout(device, "dep_1", 0));
  EXPECT_TRUE(InRollout(device, "dep_1", 100));
  EXPECT_TRUE(InRollout(device, "dep_1", 1000));  // clamped
  EXPECT_FALSE(InRollout(device, "dep_1", -5));
}

TEST(RolloutTest, FractionIsWithinTwoPercentAndRaisingThePercentNeverRemovesADevice) {
  constexpr int kDevices = 10000;
  std::vector<std::string> ids;
  ids.reserve(kDevices);
  for (int i = 0; i < kDevices; ++i) ids.push_back(HexEncode(crypto::RandomBytes(32)));
  for (const char* deployment : {"dep_a", "dep_b"}) {
    std::vector<bool> previous(kDevices, false);
    for (std::int64_t percent : {0, 1, 5, 10, 25, 50, 75, 90, 100}) {
      int in = 0;
      for (int i = 0; i < kDevices; ++i) {
        const bool now_in = InRollout(ids[static_cast<std::size_t>(i)], deployment, percent);
        if (previous[static_cast<std::size_t>(i)]) {
          EXPECT_TRUE(now_in) << "device left the rollout at " << percent << "%";
        }
        previous[static_cast<std::size_t>(i)] = now_in;
        in += now_in ? 1 : 0;
      }
      const double fraction = 100.0 * in / kDevices;
      EXPECT_NEAR(fraction, static_cast<double>(percent), 2.0) << deployment << " at " << percent << "%";
    }
  }
}

}  // namespace
}  // namespace citadel::protocol
