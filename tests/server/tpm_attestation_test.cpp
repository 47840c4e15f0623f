// TPM-backed devices against the real service (issue 6): swtpm TPMs made
// like a vendor's (EK certificates from a test TPM manufacturer CA), the
// real Tpm2RootOfTrust, quotes as evidence signatures, credential
// activation, and every refusal the issue lists: a measurement outside the
// tenant's policy, a tampered event log, a replayed quote, a wrong nonce,
// an AK from another TPM, and a software key presented as a TPM key.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/encoding.hpp"
#include "rot/tpm2/tpm2_rot.hpp"
#include "service_fixture.hpp"
#include "support/swtpm.hpp"
#include "support/tpm_forgery.hpp"

namespace citadel::server::testing {
namespace {

struct TpmDevice {
  std::unique_ptr<rot::Tpm2RootOfTrust> rot;
  std::string id;
  std::string chain_pem;  // certificate + issuing CA, once accepted
};

class TpmAttestationTest : public ServiceFixture {
 protected:
  void SetUp() override {
    // TPM A is made first: its manufacture creates the vendor CA the
    // service is configured to trust.
    tpm_a_ = std::make_unique<citadel::testing::SoftwareTpm>(dir_.path() / "tpm-a", dir_.path() / "tpm-vendor");
    tcti_a_ = Must(tpm_a_->ManufactureAndStart(), "TPM A");
    tpm_b_ = std::make_unique<citadel::testing::SoftwareTpm>(dir_.path() / "tpm-b", dir_.path() / "tpm-vendor");
    tcti_b_ = Must(tpm_b_->ManufactureAndStart(), "TPM B");
    ServiceFixture::SetUp();
  }

  void Configure(ServiceOptions& options) override { options.tpm_manufacturer_ca_files = {tpm_a_->RootCaPath()}; }

  // A provisioned device on `tcti`: chain = [EK certificate, vendor
  // intermediate], OS and runtime measured.
  TpmDevice Open(const std::string& tcti, const std::string& name,
                 const crypto::Sha256Digest& runtime = crypto::Sha256("citadeld 0.1.0")) {
    TpmDevice device;
    device.rot = Must(rot::Tpm2RootOfTrust::Open({tcti, dir_.path() / name}), "TPM root of trust");
    device.id = device.rot->DeviceId();
    auto ek_certificate = Must(device.rot->ManufacturerChain(), "EK certificate").front();
    auto intermediate = Must(crypto::Certificate::FromPem(Must(ReadFile(tpm_a_->IntermediateCaPath()), "CA")), "CA");
    EXPECT_TRUE(device.rot->StoreManufacturerChain({ek_certificate, intermediate}));
    EXPECT_TRUE(device.rot->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")}));
    EXPECT_TRUE(device.rot->Extend({1, "runtime", "citadeld", "0.1.0", runtime}));
    return device;
  }

  Bytes Nonce() {
    return Must(protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", Json::object()).body),
                "challenge")
        .nonce;
  }

  std::string EvidenceBody(rot::RootOfTrust& rot, const std::string& device_id, const Bytes& nonce) {
    auto csr = Must(crypto::CertificateRequest::Create(rot.TlsClientKey(), device_id), "CSR");
    return Must(protocol::CreateSignedEvidence(rot, nonce, csr.Pem()), "evidence");
  }

  http::Response Post(const std::string& path, const std::string& body) {
    return Must(Client()->Send("POST", path, body, {{"Content-Type", "application/json"}}), "POST " + path);
  }

  // Re-signs edited evidence: the body a device holding `rot` would send.
  static std::string Resign(rot::RootOfTrust& rot, const Json& evidence) {
    auto canonical = Must(CanonicalJson(evidence), "canonical evidence");
    auto signature = Must(rot.SignWithIdentity(crypto::Sha256(canonical)), "quote");
    return Must(CanonicalJson(Json{{"evidence", evidence}, {"signature", Base64Encode(signature)}}), "body");
  }

  // The activation a verdict asks for, opened by the device's TPM.
  http::Response Activate(TpmDevice& device, const Json& verdict) {
    EXPECT_EQ(verdict["verdict"], "activation-required") << verdict.dump();
    auto result = Must(protocol::ParseAttestationResult(verdict.dump()), "verdict");
    auto secret =
        Must(device.rot->ActivateCredential(result.activation->credential_blob, result.activation->encrypted_secret),
             "TPM2_ActivateCredential");
    protocol::ActivationRequest request{result.activation->id, device.id, secret};
    return Post("/v1/attestation/activate", protocol::ActivationRequestToJson(request).dump());
  }

  // Activation, claim into the tenant's group, accepted.
  void Enroll(TpmDevice& device, const TenantAccess& tenant) {
    auto first = Post("/v1/attestation", EvidenceBody(*device.rot, device.id, Nonce()));
    ASSERT_EQ(first.status, 200) << first.body;
    auto activated = Activate(device, Body(first));
    ASSERT_EQ(activated.status, 204) << activated.body;
    auto unclaimed = Post("/v1/attestation", EvidenceBody(*device.rot, device.id, Nonce()));
    ASSERT_EQ(Body(unclaimed)["verdict"], "accepted-unclaimed") << unclaimed.body;
    auto claimed = Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/claim", tenant.token,
                        {{"device_group_id", tenant.group_id}});
    ASSERT_EQ(claimed.status, 200) << claimed.body;
    auto accepted = Post("/v1/attestation", EvidenceBody(*device.rot, device.id, Nonce()));
    ASSERT_EQ(Body(accepted)["verdict"], "accepted") << accepted.body;
    device.chain_pem = Body(accepted)["certificate"].get<std::string>() + Body(accepted)["chain"][0].get<std::string>();
  }

  static void ExpectProblem(const http::Response& response, int status, const std::string& type,
                            const std::string& detail) {
    EXPECT_EQ(response.status, status) << response.body;
    Json body = Body(response);
    EXPECT_EQ(body["type"], "urn:citadel:problem:" + type) << response.body;
    EXPECT_NE(body.value("detail", std::string()).find(detail), std::string::npos) << response.body;
  }

  std::unique_ptr<citadel::testing::SoftwareTpm> tpm_a_;
  std::unique_ptr<citadel::testing::SoftwareTpm> tpm_b_;
  std::string tcti_a_;
  std::string tcti_b_;
};

// Acceptance 1 (service side): the quote is the signature, the AK is
// activated once, the certificate is for the TPM-resident TLS key, and
// mutual TLS with that key works.
TEST_F(TpmAttestationTest, ATpmDeviceIsActivatedOnceThenCertifiedAndUsesItsTpmKeyForMutualTls) {
  auto tenant = CreateTenantAccess("Acme");
  TpmDevice device = Open(tcti_a_, "device-a");
  EXPECT_FALSE(Must(Store().GetTpmBinding(device.id), "binding").has_value());
  Enroll(device, tenant);
  auto binding = Must(Store().GetTpmBinding(device.id), "binding");
  ASSERT_TRUE(binding.has_value());

  auto certificate = Must(crypto::Certificate::FromPem(device.chain_pem), "certificate");
  EXPECT_TRUE(certificate.SubjectPublicKey() == device.rot->TlsClientKey().Public());
  protocol::CheckIn body{.os_version = "1.0.0", .runtime_version = "0.1.0", .uptime_seconds = 1, .free_memory_kb = 1};
  auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
  auto check_in = Must(client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson(body).dump(),
                                    {{"Content-Type", "application/json"}}),
                       "check-in over mutual TLS with the TPM key");
  EXPECT_EQ(check_in.status, 200) << check_in.body;

  // Bound: the next attestation needs no activation.
  auto again = Post("/v1/attestation", EvidenceBody(*device.rot, device.id, Nonce()));
  EXPECT_EQ(Body(again)["verdict"], "accepted") << again.body;
}

// Acceptance 2: another runtime binary or an app image the tenant did not
// publish changes the quoted PCRs; the verdict names the measurement.
TEST_F(TpmAttestationTest, MeasurementsOutsideTheTenantsPolicyAreRefusedByName) {
  auto tenant = CreateTenantAccess("Acme");
  const auto genuine_runtime = crypto::Sha256("citadeld 0.1.0");
  auto accepted = Call("POST", "/v1/tenants/" + tenant.id + "/policy/rules", tenant.token,
                       {{"kind", "accepted-runtime-digest"}, {"value", HexEncode(genuine_runtime)}});
  ASSERT_EQ(accepted.status, 201) << accepted.body;

  TpmDevice genuine = Open(tcti_a_, "device-a", genuine_runtime);
  Enroll(genuine, tenant);

  const auto changed_runtime = crypto::Sha256("citadeld 0.1.0 with one byte changed");
  TpmDevice changed = Open(tcti_b_, "device-b", changed_runtime);
  auto first = Post("/v1/attestation", EvidenceBody(*changed.rot, changed.id, Nonce()));
  ASSERT_EQ(Activate(changed, Body(first)).status, 204);
  ASSERT_EQ(Body(Post("/v1/attestation", EvidenceBody(*changed.rot, changed.id, Nonce())))["verdict"],
            "accepted-unclaimed");
  ASSERT_EQ(Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + changed.id + "/claim", tenant.token,
                 {{"device_group_id", tenant.group_id}})
                .status,
            200);
  ExpectProblem(Post("/v1/attestation", EvidenceBody(*changed.rot, changed.id, Nonce())), 403, "policy-violation",
                "measurement runtime: digest " + HexEncode(changed_runtime) + " is not an accepted runtime digest");

  // An app image: measured into its PCR, refused once the tenant requires
  // published images.
  ASSERT_EQ(Call("POST", "/v1/tenants/" + tenant.id + "/policy/rules", tenant.token,
                 {{"kind", "require-published-apps"}, {"value", "true"}})
                .status,
            201);
  const auto app_image = crypto::Sha256("thermostat image, rebuilt by someone else");
  ASSERT_TRUE(genuine.rot->Extend({3, "app", "com.example.thermostat", "1.0.0", app_image}));
  ExpectProblem(Post("/v1/attestation", EvidenceBody(*genuine.rot, genuine.id, Nonce())), 403, "policy-violation",
                "measurement app com.example.thermostat 1.0.0: image " + HexEncode(app_image) +
                    " is not an image this tenant published");
}

// Acceptance 3: tampered event log, replayed quote, wrong nonce.
TEST_F(TpmAttestationTest, ATamperedLogAReplayedQuoteAndAWrongNonceAreRefused) {
  auto tenant = CreateTenantAccess("Acme");
  TpmDevice device = Open(tcti_a_, "device-a");
  Enroll(device, tenant);

  // The log edited after the quote: the quote's qualifying data no longer
  // matches, whether the registers are edited along with it or not.
  Json tampered = Json::parse(EvidenceBody(*device.rot, device.id, Nonce()));
  tampered["evidence"]["measurements"][1]["digest"] = HexEncode(crypto::Sha256("another runtime"));
  ExpectProblem(Post("/v1/attestation", tampered.dump()), 401, "bad-signature", "qualifying data");
  Json consistent = Json::parse(EvidenceBody(*device.rot, device.id, Nonce()));
  consistent["evidence"]["measurements"][1]["digest"] = HexEncode(crypto::Sha256("another runtime"));
  auto edited = Must(protocol::ParseSignedEvidence(consistent.dump()), "edited evidence").evidence;
  auto replayed = rot::ReplayLog(edited.measurements);
  for (std::size_t i = 0; i < replayed.size(); ++i) consistent["evidence"]["registers"][i] = HexEncode(replayed[i]);
  ExpectProblem(Post("/v1/attestation", consistent.dump()), 401, "bad-signature", "qualifying data");

  // A quote sent twice: its nonce is spent.
  std::string body = EvidenceBody(*device.rot, device.id, Nonce());
  ASSERT_EQ(Body(Post("/v1/attestation", body))["verdict"], "accepted");
  ExpectProblem(Post("/v1/attestation", body), 401, "nonce-invalid", "already used");
  // The old quote under a fresh nonce: the quote covers the old one.
  Json renonced = Json::parse(body);
  renonced["evidence"]["nonce"] = HexEncode(Nonce());
  ExpectProblem(Post("/v1/attestation", renonced.dump()), 401, "bad-signature", "qualifying data");
  // A nonce the service never issued, honestly quoted.
  ExpectProblem(Post("/v1/attestation", EvidenceBody(*device.rot, device.id, crypto::RandomBytes(32))), 401,
                "nonce-invalid", "unknown");
}

// Acceptance 3: TPM B's AK presented with TPM A's endorsement key cannot
// be activated (the credential opens only in TPM A), so it is never
// trusted; guessing the secret burns the activation.
TEST_F(TpmAttestationTest, AnAttestationKeyFromAnotherTpmIsNeverTrusted) {
  TpmDevice device_a = Open(tcti_a_, "device-a");
  TpmDevice device_b = Open(tcti_b_, "device-b");
  auto keys_a = device_a.rot->TpmKeys();
  ASSERT_TRUE(keys_a.has_value());
  auto chain_a = Must(device_a.rot->ManufacturerChain(), "chain A");

  // B's evidence, claiming A's EK, quoted by B's AK.
  Json evidence = Json::parse(EvidenceBody(*device_b.rot, device_b.id, Nonce()))["evidence"];
  evidence["manufacturer_chain"] = Json::array({chain_a[0].Pem(), chain_a[1].Pem()});
  evidence["tpm"]["ek_public"] = Base64Encode(keys_a->ek_public);
  auto verdict = Post("/v1/attestation", Resign(*device_b.rot, evidence));
  ASSERT_EQ(Body(verdict)["verdict"], "activation-required") << verdict.body;
  auto result = Must(protocol::ParseAttestationResult(verdict.body), "verdict");
  // TPM B holds B's EK, not A's: it cannot open the credential.
  auto opened =
      device_b.rot->ActivateCredential(result.activation->credential_blob, result.activation->encrypted_secret);
  EXPECT_FALSE(opened.has_value());
  // Nor does a guess pass, and the activation is gone after it.
  protocol::ActivationRequest guess{result.activation->id, device_b.id, crypto::RandomBytes(32)};
  ExpectProblem(Post("/v1/attestation/activate", protocol::ActivationRequestToJson(guess).dump()), 403,
                "activation-failed", "does not match");
  ExpectProblem(Post("/v1/attestation/activate", protocol::ActivationRequestToJson(guess).dump()), 403,
                "activation-failed", "no such activation");
  EXPECT_FALSE(Must(Store().GetTpmBinding(device_b.id), "binding").has_value());
  // Still untrusted: each attempt only asks for an activation again.
  evidence["nonce"] = HexEncode(Nonce());
  EXPECT_EQ(Body(Post("/v1/attestation", Resign(*device_b.rot, evidence)))["verdict"], "activation-required");
}

// Acceptance 3: a software key presented as a TPM key. With rot "tpm2" the
// forged quote verifies against the forged AK public, but the key is never
// activated: the credential opens only inside the TPM that holds the EK and
// the AK (swtpm refuses a public-only copy: tests/tpm). Presented as a
// software device with the TPM's EK chain, it is not genuine.
TEST_F(TpmAttestationTest, ASoftwareKeyPresentedAsATpmKeyIsRefused) {
  TpmDevice device_a = Open(tcti_a_, "device-a");
  auto keys_a = device_a.rot->TpmKeys();
  ASSERT_TRUE(keys_a.has_value());
  auto chain_a = Must(device_a.rot->ManufacturerChain(), "chain A");
  auto software_key = Must(crypto::PrivateKey::GenerateP256(), "software key");
  std::string software_id = crypto::Sha256Hex(AsText(software_key.Public().SpkiDer()));

  Json evidence = Json::parse(EvidenceBody(*device_a.rot, device_a.id, Nonce()))["evidence"];
  evidence["device_id"] = software_id;
  evidence["tpm"]["ak_public"] = Base64Encode(citadel::testing::ForgeAttestationKeyPublic(software_key));
  auto registers =
      Must(protocol::ParseSignedEvidence(Json{{"evidence", evidence}, {"signature", "AA=="}}.dump()), "forged evidence")
          .evidence.registers;
  auto forge = [&](const Json& forged) {
    Bytes quote =
        citadel::testing::ForgeQuote(software_key, crypto::Sha256(Must(CanonicalJson(forged), "canonical")), registers);
    return Must(CanonicalJson(Json{{"evidence", forged}, {"signature", Base64Encode(quote)}}), "body");
  };
  auto verdict = Post("/v1/attestation", forge(evidence));
  ASSERT_EQ(Body(verdict)["verdict"], "activation-required") << verdict.body;
  auto result = Must(protocol::ParseAttestationResult(verdict.body), "verdict");
  protocol::ActivationRequest guess{result.activation->id, software_id, crypto::RandomBytes(32)};
  ExpectProblem(Post("/v1/attestation/activate", protocol::ActivationRequestToJson(guess).dump()), 403,
                "activation-failed", "does not match");
  evidence["nonce"] = HexEncode(Nonce());
  EXPECT_EQ(Body(Post("/v1/attestation", forge(evidence)))["verdict"], "activation-required");

  // The same key as a software device carrying the TPM's EK chain.
  Json software = evidence;
  software["rot"] = "software";
  software.erase("tpm");
  software["nonce"] = HexEncode(Nonce());
  auto canonical = Must(CanonicalJson(software), "canonical");
  auto signature = Must(software_key.SignDigest(crypto::Sha256(canonical)), "signature");
  ExpectProblem(Post("/v1/attestation",
                     Must(CanonicalJson(Json{{"evidence", software}, {"signature", Base64Encode(signature)}}), "body")),
                403, "not-genuine", "trusted manufacturer CA");
}

}  // namespace
}  // namespace citadel::server::testing
