// The security service in-process: a real HTTPS server on loopback, a real
// SQLite store, real software roots of trust. Each refusal the foundation
// issue lists is its own test.
#include "server/service.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/file.hpp"
#include "device/trust_store.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "support/temp_dir.hpp"

namespace citadel::server {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;

// A manufacturer CA as a factory would hold it.
struct Manufacturer {
  crypto::PrivateKey key;
  crypto::Certificate cert;

  static Manufacturer Create(const std::string& name) {
    auto key = crypto::PrivateKey::GenerateP256();
    crypto::CertificateSpec spec;
    spec.common_name = name;
    spec.is_ca = true;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto cert = crypto::IssueCertificate(spec, key->Public(), nullptr, *key);
    return Manufacturer{std::move(*key), *cert};
  }

  std::vector<crypto::Certificate> Certify(const crypto::PublicKey& identity, const std::string& device_id) const {
    crypto::CertificateSpec spec;
    spec.common_name = device_id;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto leaf = crypto::IssueCertificate(spec, identity, &cert, key);
    return {*leaf, cert};
  }
};

// A device with a software RoT whose measurements are already extended.
struct TestDevice {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string id;

  static TestDevice Create(const fs::path& dir, const Manufacturer* manufacturer, const std::string& os_version) {
    auto opened = rot::SoftwareRootOfTrust::Open(dir);
    EXPECT_TRUE(opened) << opened.error().message();
    TestDevice device{std::move(*opened), ""};
    device.id = device.rot->DeviceId();
    if (manufacturer) {
      EXPECT_TRUE(
          device.rot->StoreManufacturerChain(manufacturer->Certify(device.rot->IdentityPublicKey(), device.id)));
    }
    EXPECT_TRUE(device.rot->Extend({0, "os", "citadel-os", os_version, crypto::Sha256("os image")}));
    EXPECT_TRUE(device.rot->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime binary")}));
    EXPECT_TRUE(device.rot->Extend({2, "config", "device-config", "", crypto::Sha256("{}")}));
    return device;
  }

  std::string Csr() const { return crypto::CertificateRequest::Create(rot->TlsClientKey(), id)->Pem(); }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    manufacturer_ = std::make_unique<Manufacturer>(Manufacturer::Create("Test Manufacturer"));
    auto ca_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file, manufacturer_->cert.Pem()));
    options_.port = 0;
    options_.data_dir = dir_.path() / "server";
    options_.manufacturer_ca_files = {ca_file};
    options_.threads = 2;
    StartService();
    auto token = ReadFile(options_.data_dir / "operator-token");
    ASSERT_TRUE(token);
    operator_token_ = token->substr(0, token->find('\n'));
  }

  void TearDown() override {
    if (service_) service_->Stop();
  }

  void StartService() {
    auto service = Service::Create(options_);
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
    ASSERT_TRUE(service_->Start());
    auto ca = ReadFile(options_.data_dir / "service-ca.pem");
    ASSERT_TRUE(ca);
    service_ca_ = *ca;
  }

  // The service's master key, read from its data directory.
  crypto::SecretBytes MasterKey() {
    auto master = ReadFile(options_.data_dir / "master.key");
    EXPECT_TRUE(master);
    if (!master) return crypto::SecretBytes(std::string());
    auto key_bytes = Base64Decode(master->substr(0, master->find('\n')));
    EXPECT_TRUE(key_bytes);
    if (!key_bytes) return crypto::SecretBytes(std::string());
    return crypto::SecretBytes(std::string(key_bytes->begin(), key_bytes->end()));
  }

  std::unique_ptr<http::Client> Client(std::optional<http::TlsIdentity> identity = std::nullopt) {
    http::ClientOptions options;
    options.base_url = "https://127.0.0.1:" + std::to_string(service_->port());
    options.ca_certificate_pem = service_ca_;
    options.client_identity = identity;
    auto client = http::Client::Create(options);
    EXPECT_TRUE(client) << client.error().message();
    return std::move(*client);
  }

  http::Response Call(const std::string& method, const std::string& path, const std::string& token,
                      const Json& body = nullptr) {
    Headers headers;
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("Content-Type", "application/json");
      text = body.dump();
    }
    auto response = Client()->Send(method, path, text, headers);
    EXPECT_TRUE(response) << response.error().message();
    return response ? *response : http::Response{0, "", "", {}};
  }

  static Json Body(const http::Response& response) {
    auto parsed = ParseJsonStrict(response.body);
    return parsed ? *parsed : Json();
  }
  static std::string ProblemType(const http::Response& response) { return Body(response).value("type", std::string()); }

  struct TenantHandle {
    std::string id;
    std::string admin_token;
    std::string group_id;
  };

  TenantHandle CreateTenant(const std::string& name) {
    auto created = Call("POST", "/v1/tenants", operator_token_, {{"name", name}});
    EXPECT_EQ(created.status, 201) << created.body;
    TenantHandle tenant{Body(created)["tenant"]["id"], Body(created)["admin_token"]["token"], ""};
    auto product = Call("POST", "/v1/tenants/" + tenant.id + "/products", tenant.admin_token, {{"name", "Thermostat"}});
    EXPECT_EQ(product.status, 201) << product.body;
    tenant.group_id = Body(product)["device_groups"][0]["id"];
    return tenant;
  }

  std::string Evidence(TestDevice& device, std::optional<Bytes> nonce = std::nullopt) {
    if (!nonce) {
      auto challenge = Call("POST", "/v1/attestation/challenge", "", Json::object());
      EXPECT_EQ(challenge.status, 200);
      auto parsed = protocol::ParseChallenge(challenge.body);
      EXPECT_TRUE(parsed);
      nonce = parsed->nonce;
    }
    auto evidence = protocol::CreateSignedEvidence(*device.rot, *nonce, device.Csr());
    EXPECT_TRUE(evidence) << evidence.error().message();
    return *evidence;
  }

  http::Response Attest(const std::string& evidence) {
    auto response = Client()->Send("POST", "/v1/attestation", evidence, {{"Content-Type", "application/json"}});
    EXPECT_TRUE(response);
    return *response;
  }

  // Attests, claims into tenant, attests again; returns the certificate PEM.
  std::string Enroll(TestDevice& device, const TenantHandle& tenant) {
    auto first = Attest(Evidence(device));
    EXPECT_EQ(first.status, 200) << first.body;
    EXPECT_EQ(Body(first)["verdict"], "accepted-unclaimed");
    auto claimed = Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/claim", tenant.admin_token,
                        {{"device_group_id", tenant.group_id}});
    EXPECT_EQ(claimed.status, 200) << claimed.body;
    auto second = Attest(Evidence(device));
    EXPECT_EQ(second.status, 200) << second.body;
    return Body(second).value("certificate", std::string());
  }

  TempDir dir_;
  ServiceOptions options_;
  std::unique_ptr<Manufacturer> manufacturer_;
  std::unique_ptr<Service> service_;
  std::string service_ca_;
  std::string operator_token_;
};

TEST_F(ServiceTest, ClaimedDeviceReceivesA24HourCertificateChainedToItsTenant) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto pem = Enroll(device, tenant);
  auto cert = crypto::Certificate::FromPem(pem);
  ASSERT_TRUE(cert) << pem;

  auto chain_response = Call("GET", "/v1/tenants/" + tenant.id + "/ca-certificates", tenant.admin_token);
  ASSERT_EQ(chain_response.status, 200);
  auto chain = crypto::ParsePemChain(chain_response.body);
  ASSERT_TRUE(chain);
  ASSERT_EQ(chain->size(), 2u);
  std::vector<crypto::Certificate> intermediates{(*chain)[0]};
  std::vector<crypto::Certificate> roots{(*chain)[1]};
  crypto::ChainVerification verification;
  verification.purpose = crypto::ExtendedKeyUsage::kClientAuth;
  EXPECT_TRUE(crypto::VerifyCertificateChain(*cert, intermediates, roots, verification));
  EXPECT_EQ(cert->UriSans(), std::vector<std::string>{"citadel://tenant/" + tenant.id + "/device/" + device.id});
  EXPECT_EQ(cert->SubjectCommonName(), device.id);
  // Valid for 24 hours from now (not before: one minute ago, for clock skew).
  auto remaining = cert->NotAfter() - Clock::now();
  EXPECT_GE(remaining, std::chrono::hours(24) - std::chrono::minutes(1));
  EXPECT_LE(remaining, std::chrono::hours(24));
  EXPECT_LE(cert->NotBefore(), Clock::now() - std::chrono::seconds(55));
  EXPECT_EQ(cert->SubjectPublicKey(), device.rot->TlsClientKey().Public());

  // Mutual TLS check-in with that certificate records inventory.
  auto client = Client(http::TlsIdentity{pem + (*chain)[0].Pem(), &device.rot->TlsClientKey()});
  protocol::CheckIn check_in{"1.0.0", "0.1.0", 42, 1000};
  auto response = client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson(check_in).dump(),
                               {{"Content-Type", "application/json"}});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200) << response->body;
  auto shown = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id, tenant.admin_token);
  EXPECT_EQ(Body(shown)["uptime_seconds"], 42);
  EXPECT_EQ(Body(shown)["last_verdict"], "accepted");
  EXPECT_EQ(Body(shown)["certificate_serial"], cert->SerialHex());
}

TEST_F(ServiceTest, UnclaimedDeviceGetsNoCertificate) {
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto response = Attest(Evidence(device));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response)["verdict"], "accepted-unclaimed");
  EXPECT_FALSE(Body(response).contains("certificate") && !Body(response)["certificate"].get<std::string>().empty());
  EXPECT_GT(Body(response)["retry_after_seconds"].get<int>(), 0);
}

TEST_F(ServiceTest, DeviceWithoutManufacturerChainIsRefused) {
  auto device = TestDevice::Create(dir_.path() / "d1", nullptr, "1.0.0");
  auto response = Attest(Evidence(device));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:not-genuine");
}

TEST_F(ServiceTest, DeviceCertifiedByAnUntrustedManufacturerIsRefused) {
  auto rogue = Manufacturer::Create("Rogue Manufacturer");
  auto device = TestDevice::Create(dir_.path() / "d1", &rogue, "1.0.0");
  auto response = Attest(Evidence(device));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:not-genuine");
}

TEST_F(ServiceTest, ReplayedEvidenceIsRefused) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto evidence = Evidence(device);
  EXPECT_EQ(Attest(evidence).status, 200);
  auto replay = Attest(evidence);
  EXPECT_EQ(replay.status, 401);
  EXPECT_EQ(ProblemType(replay), "urn:citadel:problem:nonce-invalid");
}

TEST_F(ServiceTest, NonceTheServiceNeverIssuedIsRefused) {
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto response = Attest(Evidence(device, crypto::RandomBytes(32)));
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:nonce-invalid");
}

TEST_F(ServiceTest, ExpiredNonceIsRefused) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto challenge = service_->attestor().CreateChallenge(Clock::now());
  ASSERT_TRUE(challenge);
  auto evidence = Evidence(device, challenge->nonce);
  // Appraised 61 s after the challenge was issued: past its 60 s lifetime.
  auto outcome = service_->attestor().Attest(evidence, Clock::now() + std::chrono::seconds(61));
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().type, "urn:citadel:problem:nonce-expired");
  EXPECT_EQ(outcome.error().status, 401);
}

TEST_F(ServiceTest, EvidenceWithOneFlippedMeasurementByteIsRefused) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto evidence = *ParseJsonStrict(Evidence(device));
  std::string digest = evidence["evidence"]["measurements"][1]["digest"];
  digest[0] = digest[0] == '0' ? '1' : '0';
  evidence["evidence"]["measurements"][1]["digest"] = digest;
  auto response = Attest(evidence.dump());
  EXPECT_EQ(response.status, 401) << response.body;
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:bad-signature");
}

TEST_F(ServiceTest, RevokedOsVersionIsRefusedAndTheVerdictNamesIt) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto revoked = Call("POST", "/v1/tenants/" + tenant.id + "/policy/rules", tenant.admin_token,
                      {{"kind", "revoked-os-version"}, {"value", "1.0.0"}});
  ASSERT_EQ(revoked.status, 201) << revoked.body;
  auto response = Attest(Evidence(device));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:policy-violation");
  EXPECT_NE(Body(response)["detail"].get<std::string>().find("1.0.0"), std::string::npos);
  auto shown = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id, tenant.admin_token);
  EXPECT_EQ(Body(shown)["last_verdict"], "policy-violation");
}

TEST_F(ServiceTest, RevokedRuntimeDigestIsRefused) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto revoked = Call("POST", "/v1/tenants/" + tenant.id + "/policy/rules", tenant.admin_token,
                      {{"kind", "revoked-runtime-digest"}, {"value", crypto::Sha256Hex("runtime binary")}});
  ASSERT_EQ(revoked.status, 201) << revoked.body;
  auto response = Attest(Evidence(device));
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:policy-violation");
}

TEST_F(ServiceTest, TenantTokenCannotReadOrChangeAnotherTenantsDevices) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, b);

  EXPECT_EQ(Call("GET", "/v1/tenants/" + b.id + "/devices", a.admin_token).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + b.id + "/devices/" + device.id, a.admin_token).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + a.id + "/devices/" + device.id, a.admin_token).status, 404);
  EXPECT_EQ(
      Call("POST", "/v1/tenants/" + b.id + "/devices/" + device.id + "/claim", a.admin_token, Json::object()).status,
      404);
  auto steal = Call("POST", "/v1/tenants/" + a.id + "/devices/" + device.id + "/claim", a.admin_token, Json::object());
  EXPECT_EQ(steal.status, 409);
  EXPECT_EQ(ProblemType(steal), "urn:citadel:problem:device-claimed-elsewhere");
  EXPECT_EQ(Call("POST", "/v1/tenants/" + b.id + "/policy/rules", a.admin_token,
                 {{"kind", "revoked-os-version"}, {"value", "1.0.0"}})
                .status,
            404);
  auto listed = Call("GET", "/v1/tenants/" + a.id + "/devices", a.admin_token);
  EXPECT_TRUE(Body(listed)["devices"].empty());
  // B's device is untouched.
  EXPECT_EQ(Body(Call("GET", "/v1/tenants/" + b.id + "/devices/" + device.id, b.admin_token))["tenant_id"], b.id);
}

TEST_F(ServiceTest, TenantADeviceCertificateIsRefusedOnTenantBEndpoints) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto pem = Enroll(device, a);
  auto a_chain = crypto::ParsePemChain(Call("GET", "/v1/tenants/" + a.id + "/ca-certificates", a.admin_token).body);
  auto client = Client(http::TlsIdentity{pem + (*a_chain)[0].Pem(), &device.rot->TlsClientKey()});
  // A device certificate is not an API credential for any tenant.
  auto response = client->Send("GET", "/v1/tenants/" + b.id + "/devices");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 401);

  // The same certificate still works where it belongs.
  protocol::CheckIn check_in{"1.0.0", "0.1.0", 1, 1};
  auto body = protocol::CheckInToJson(check_in).dump();
  auto good = client->Send("POST", "/v1/device/check-in", body, {{"Content-Type", "application/json"}});
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
}

TEST_F(ServiceTest, CertificateNamingAnotherTenantIsRefusedOnDeviceEndpoints) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, b);
  // Forge: tenant A's issuing CA signs a certificate that claims to be the
  // tenant-B device.
  crypto::SecretBytes master_key = MasterKey();
  TenantCaCache cache(service_->store(), master_key);
  auto authority_a = cache.Get(a.id);
  ASSERT_TRUE(authority_a) << authority_a.error().message();
  auto forged = IssueDeviceCertificate(**authority_a, b.id, device.id, device.rot->TlsClientKey().Public(),
                                       std::chrono::hours(1));
  ASSERT_TRUE(forged);
  auto client = Client(http::TlsIdentity{forged->Pem() + (*authority_a)->issuing.Pem(), &device.rot->TlsClientKey()});
  auto response = client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson({"1.0.0", "0.1.0", 1, 1}).dump(),
                               {{"Content-Type", "application/json"}});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 401);
  EXPECT_EQ(ProblemType(*response), "urn:citadel:problem:device-certificate-invalid");
}

// The chain memo of device authentication: a success is remembered, but
// never beyond the certificate's validity, and never for a certificate the
// authority did not issue.
TEST_F(ServiceTest, RememberedDeviceChainStillExpiresAndBindsToItsIssuer) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  crypto::SecretBytes master_key = MasterKey();
  TenantCaCache cache(service_->store(), master_key);
  auto authority_a = cache.Get(a.id);
  auto authority_b = cache.Get(b.id);
  ASSERT_TRUE(authority_a && authority_b);
  auto leaf = IssueDeviceCertificate(**authority_a, a.id, device.id, device.rot->TlsClientKey().Public(),
                                     std::chrono::hours(1));
  ASSERT_TRUE(leaf);
  const auto now = Clock::now();
  EXPECT_TRUE(cache.VerifyDevice(*leaf, **authority_a, now));
  EXPECT_TRUE(cache.VerifyDevice(*leaf, **authority_a, now + std::chrono::minutes(1)));  // remembered
  // Past the certificate's end, remembered or not, it is refused.
  auto expired = cache.VerifyDevice(*leaf, **authority_a, now + std::chrono::hours(2));
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code(), ErrorCode::kUnauthenticated);
  // Before its start too (a clock set back does not reuse the memo).
  EXPECT_FALSE(cache.VerifyDevice(*leaf, **authority_a, now - std::chrono::hours(1)));
  // Another tenant's authority did not issue it.
  auto other = IssueDeviceCertificate(**authority_b, a.id, device.id, device.rot->TlsClientKey().Public(),
                                      std::chrono::hours(1));
  ASSERT_TRUE(other);
  EXPECT_FALSE(cache.VerifyDevice(*other, **authority_a, now));
  EXPECT_TRUE(cache.VerifyDevice(*leaf, **authority_a, now));
}

TEST_F(ServiceTest, RevokedCertificateGets401AndTheDeviceCanReattest) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto pem = Enroll(device, tenant);
  auto chain =
      crypto::ParsePemChain(Call("GET", "/v1/tenants/" + tenant.id + "/ca-certificates", tenant.admin_token).body);
  auto revoke = Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/certificate/revoke",
                     tenant.admin_token, Json::object());
  ASSERT_EQ(revoke.status, 200) << revoke.body;
  auto client = Client(http::TlsIdentity{pem + (*chain)[0].Pem(), &device.rot->TlsClientKey()});
  auto response = client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson({"1.0.0", "0.1.0", 1, 1}).dump(),
                               {{"Content-Type", "application/json"}});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 401);
  auto again = Attest(Evidence(device));
  EXPECT_EQ(again.status, 200);
  EXPECT_NE(Body(again)["certificate"], pem);
}

TEST_F(ServiceTest, CheckInWithoutCertificateIs401) {
  auto response = Call("POST", "/v1/device/check-in", "", protocol::CheckInToJson({"1", "1", 1, 1}));
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:device-certificate-invalid");
}

TEST_F(ServiceTest, RolesAreEnforced) {
  auto tenant = CreateTenant("Acme");
  auto reader = Call("POST", "/v1/tenants/" + tenant.id + "/tokens", tenant.admin_token,
                     {{"name", "viewer"}, {"role", "reader"}});
  ASSERT_EQ(reader.status, 201);
  std::string reader_token = Body(reader)["token"];
  EXPECT_EQ(Call("GET", "/v1/tenants/" + tenant.id + "/devices", reader_token).status, 200);
  EXPECT_EQ(Call("POST", "/v1/tenants/" + tenant.id + "/products", reader_token, {{"name", "X"}}).status, 403);
  EXPECT_EQ(
      Call("POST", "/v1/tenants/" + tenant.id + "/tokens", reader_token, {{"name", "x"}, {"role", "admin"}}).status,
      403);
  EXPECT_EQ(Call("POST", "/v1/tenants", tenant.admin_token, {{"name", "Other"}}).status, 403);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + tenant.id + "/devices", "cit_not-a-token").status, 401);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + tenant.id + "/devices", "").status, 401);
  // A revoked token stops working.
  auto tokens = Body(Call("GET", "/v1/tenants/" + tenant.id + "/tokens", tenant.admin_token));
  std::string reader_id;
  for (const auto& t : tokens["tokens"]) {
    if (t["name"] == "viewer") reader_id = t["id"];
  }
  EXPECT_EQ(Call("DELETE", "/v1/tenants/" + tenant.id + "/tokens/" + reader_id, tenant.admin_token).status, 204);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + tenant.id + "/devices", reader_token).status, 401);
}

// ---- app trust: publisher keys and development capabilities ---------------

std::string PublicPem() { return crypto::PrivateKey::GenerateP256()->Public().Pem(); }

TEST_F(ServiceTest, PublisherKeysAreRegisteredListedAndRevoked) {
  auto tenant = CreateTenant("Acme");
  const std::string path = "/v1/tenants/" + tenant.id + "/publisher-keys";
  auto key = crypto::PrivateKey::GenerateP256();
  auto registered =
      Call("POST", path, tenant.admin_token, {{"name", "release"}, {"public_key_pem", key->Public().Pem()}});
  ASSERT_EQ(registered.status, 201) << registered.body;
  // The id is the image format's publisher key id.
  const std::string key_id = Body(registered)["key_id"];
  EXPECT_EQ(key_id, HexEncode(crypto::Sha256(key->Public().SpkiDer())));
  EXPECT_EQ(Body(registered)["name"], "release");

  auto duplicate = Call("POST", path, tenant.admin_token, {{"name", "again"}, {"public_key_pem", key->Public().Pem()}});
  EXPECT_EQ(duplicate.status, 409);
  EXPECT_EQ(ProblemType(duplicate), "urn:citadel:problem:publisher-key-exists");

  // Not a P-256 public key: refused with a reason; a private key is refused
  // outright (it must never reach the service).
  auto garbage = Call("POST", path, tenant.admin_token, {{"name", "x"}, {"public_key_pem", "not a key"}});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(ProblemType(garbage), "urn:citadel:problem:invalid-publisher-key");
  auto private_pem = key->ToPem();
  auto private_key =
      Call("POST", path, tenant.admin_token, {{"name", "x"}, {"public_key_pem", std::string(private_pem->reveal())}});
  EXPECT_EQ(private_key.status, 400);
  EXPECT_NE(Body(private_key)["detail"].get<std::string>().find("private key"), std::string::npos);
  EXPECT_EQ(Call("POST", path, tenant.admin_token, {{"public_key_pem", key->Public().Pem()}}).status, 400);

  auto listed = Body(Call("GET", path, tenant.admin_token));
  ASSERT_EQ(listed["publisher_keys"].size(), 1u);
  EXPECT_EQ(listed["publisher_keys"][0]["key_id"], key_id);
  EXPECT_EQ(listed["publisher_keys"][0]["revoked"], false);

  EXPECT_EQ(Call("DELETE", path + "/" + key_id, tenant.admin_token).status, 204);
  EXPECT_EQ(Call("DELETE", path + "/" + key_id, tenant.admin_token).status, 409);
  EXPECT_EQ(Call("DELETE", path + "/" + std::string(64, '0'), tenant.admin_token).status, 404);
  listed = Body(Call("GET", path, tenant.admin_token));
  ASSERT_EQ(listed["publisher_keys"].size(), 1u);
  EXPECT_EQ(listed["publisher_keys"][0]["revoked"], true);

  auto audit = Body(Call("GET", "/v1/tenants/" + tenant.id + "/audit", tenant.admin_token));
  std::set<std::string> actions;
  for (const auto& e : audit["events"]) actions.insert(e["action"]);
  EXPECT_TRUE(actions.contains("publisher-key.register"));
  EXPECT_TRUE(actions.contains("publisher-key.revoke"));
}

TEST_F(ServiceTest, PublisherKeysAreTenantScopedAndNeedAdminToChange) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  const std::string a_path = "/v1/tenants/" + a.id + "/publisher-keys";
  auto registered = Call("POST", a_path, a.admin_token, {{"name", "a"}, {"public_key_pem", PublicPem()}});
  ASSERT_EQ(registered.status, 201);
  const std::string key_id = Body(registered)["key_id"];

  // Another tenant's token sees nothing of A: 404, as for a missing tenant.
  EXPECT_EQ(Call("GET", a_path, b.admin_token).status, 404);
  EXPECT_EQ(Call("POST", a_path, b.admin_token, {{"name", "b"}, {"public_key_pem", PublicPem()}}).status, 404);
  EXPECT_EQ(Call("DELETE", a_path + "/" + key_id, b.admin_token).status, 404);
  // B's own path does not reach A's key either.
  EXPECT_EQ(Call("DELETE", "/v1/tenants/" + b.id + "/publisher-keys/" + key_id, b.admin_token).status, 404);
  EXPECT_EQ(Body(Call("GET", "/v1/tenants/" + b.id + "/publisher-keys", b.admin_token))["publisher_keys"].size(), 0u);

  auto reader = Call("POST", "/v1/tenants/" + a.id + "/tokens", a.admin_token, {{"name", "r"}, {"role", "reader"}});
  ASSERT_EQ(reader.status, 201);
  std::string reader_token = Body(reader)["token"];
  EXPECT_EQ(Call("GET", a_path, reader_token).status, 200);
  EXPECT_EQ(Call("POST", a_path, reader_token, {{"name", "r"}, {"public_key_pem", PublicPem()}}).status, 403);
  EXPECT_EQ(Call("DELETE", a_path + "/" + key_id, reader_token).status, 403);
  auto contributor =
      Call("POST", "/v1/tenants/" + a.id + "/tokens", a.admin_token, {{"name", "c"}, {"role", "contributor"}});
  std::string contributor_token = Body(contributor)["token"];
  EXPECT_EQ(Call("POST", a_path, contributor_token, {{"name", "c"}, {"public_key_pem", PublicPem()}}).status, 403);
  const std::string dev_path = "/v1/tenants/" + a.id + "/devices/" + std::string(64, 'a') + "/app-development";
  EXPECT_EQ(Call("POST", dev_path, reader_token, Json::object()).status, 403);
  EXPECT_EQ(Call("DELETE", dev_path, contributor_token).status, 403);
}

TEST_F(ServiceTest, CheckInCarriesPublisherKeysAndAVerifiableDevelopmentCapability) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto pem = Enroll(device, tenant);
  auto chain =
      crypto::ParsePemChain(Call("GET", "/v1/tenants/" + tenant.id + "/ca-certificates", tenant.admin_token).body);
  ASSERT_TRUE(chain);
  auto client = Client(http::TlsIdentity{pem + (*chain)[0].Pem(), &device.rot->TlsClientKey()});
  auto check_in = [&]() {
    auto response =
        client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson({"1.0.0", "0.1.0", 1, 1}).dump(),
                     {{"Content-Type", "application/json"}});
    EXPECT_TRUE(response);
    EXPECT_EQ(response->status, 200) << response->body;
    auto reply = protocol::ParseCheckInReply(response->body);
    EXPECT_TRUE(reply) << reply.error().message();
    return reply.value_or(protocol::CheckInReply{});
  };

  // Nothing registered yet.
  auto reply = check_in();
  EXPECT_TRUE(reply.publisher_keys.empty());
  EXPECT_TRUE(reply.app_development.is_null());

  const std::string keys_path = "/v1/tenants/" + tenant.id + "/publisher-keys";
  auto active = crypto::PrivateKey::GenerateP256()->Public();
  auto revoked = crypto::PrivateKey::GenerateP256()->Public();
  ASSERT_EQ(Call("POST", keys_path, tenant.admin_token, {{"name", "a"}, {"public_key_pem", active.Pem()}}).status, 201);
  auto second = Call("POST", keys_path, tenant.admin_token, {{"name", "r"}, {"public_key_pem", revoked.Pem()}});
  ASSERT_EQ(second.status, 201);
  ASSERT_EQ(Call("DELETE", keys_path + "/" + Body(second)["key_id"].get<std::string>(), tenant.admin_token).status,
            204);
  // Another tenant's key never reaches this device.
  auto other = CreateTenant("Other");
  ASSERT_EQ(Call("POST", "/v1/tenants/" + other.id + "/publisher-keys", other.admin_token,
                 {{"name", "o"}, {"public_key_pem", PublicPem()}})
                .status,
            201);

  auto developer = crypto::PrivateKey::GenerateP256()->Public();
  const std::string dev_path = "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/app-development";
  auto enabled = Call("POST", dev_path, tenant.admin_token, {{"developer_keys", Json::array({developer.Pem()})}});
  ASSERT_EQ(enabled.status, 201) << enabled.body;
  auto envelope = Body(enabled);
  EXPECT_EQ(envelope["capability"]["Type"], "AppDevelopment");
  EXPECT_EQ(envelope["capability"]["DeviceId"], device.id);
  EXPECT_EQ(envelope["capability"]["TenantId"], tenant.id);
  EXPECT_EQ(envelope["certificate"], (*chain)[0].Pem());

  reply = check_in();
  ASSERT_EQ(reply.publisher_keys.size(), 1u);
  EXPECT_EQ(reply.publisher_keys[0].key_id, protocol::KeyId(active));
  EXPECT_EQ(reply.app_development, envelope);

  // The device's check: signed by the CA that certified it, for it.
  auto verified = device::VerifyDevelopmentCapability(reply.app_development.dump(), device.id, tenant.id, (*chain)[0]);
  ASSERT_TRUE(verified) << verified.error().message();
  EXPECT_EQ(verified->capability_id, envelope["capability"]["CapabilityId"]);
  ASSERT_EQ(verified->developer_keys.size(), 1u);
  EXPECT_TRUE(verified->developer_keys[0] == developer);
  // ... and it fails for another device, another tenant's CA, or a tampered copy.
  EXPECT_FALSE(device::VerifyDevelopmentCapability(envelope.dump(), std::string(64, 'a'), tenant.id, (*chain)[0]));
  auto other_chain =
      crypto::ParsePemChain(Call("GET", "/v1/tenants/" + other.id + "/ca-certificates", other.admin_token).body);
  EXPECT_FALSE(device::VerifyDevelopmentCapability(envelope.dump(), device.id, tenant.id, (*other_chain)[0]));
  auto tampered = envelope;
  tampered["capability"]["DeveloperKeys"].push_back(
      Base64Encode(crypto::PrivateKey::GenerateP256()->Public().SpkiDer()));
  EXPECT_FALSE(device::VerifyDevelopmentCapability(tampered.dump(), device.id, tenant.id, (*chain)[0]));

  // Issuing again replaces it; disabling withdraws it at the next check-in.
  auto again = Call("POST", dev_path, tenant.admin_token);
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_NE(Body(again)["capability"]["CapabilityId"], envelope["capability"]["CapabilityId"]);
  EXPECT_EQ(check_in().app_development, Body(again));
  EXPECT_EQ(Call("DELETE", dev_path, tenant.admin_token).status, 204);
  EXPECT_EQ(Call("DELETE", dev_path, tenant.admin_token).status, 404);
  EXPECT_TRUE(check_in().app_development.is_null());

  // A revoked key leaves the very next check-in's reply (the reply's keys
  // are remembered for a moment; revoking through this replica forgets them).
  ASSERT_EQ(Call("DELETE", keys_path + "/" + protocol::KeyId(active), tenant.admin_token).status, 204);
  EXPECT_TRUE(check_in().publisher_keys.empty());
}

TEST_F(ServiceTest, DevelopmentCapabilityOnlyForTheTenantsOwnDevices) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, a);
  // B cannot enable (or disable) development on A's device: 404.
  auto foreign =
      Call("POST", "/v1/tenants/" + b.id + "/devices/" + device.id + "/app-development", b.admin_token, Json::object());
  EXPECT_EQ(foreign.status, 404) << foreign.body;
  EXPECT_EQ(Call("DELETE", "/v1/tenants/" + b.id + "/devices/" + device.id + "/app-development", b.admin_token).status,
            404);
  EXPECT_EQ(
      Call("POST", "/v1/tenants/" + a.id + "/devices/" + device.id + "/app-development", b.admin_token, Json::object())
          .status,
      404);
  // An unknown or unclaimed device: 404 too.
  EXPECT_EQ(Call("POST", "/v1/tenants/" + a.id + "/devices/" + std::string(64, 'a') + "/app-development", a.admin_token,
                 Json::object())
                .status,
            404);
  auto unclaimed = TestDevice::Create(dir_.path() / "d2", manufacturer_.get(), "1.0.0");
  ASSERT_EQ(Attest(Evidence(unclaimed)).status, 200);
  EXPECT_EQ(Call("POST", "/v1/tenants/" + a.id + "/devices/" + unclaimed.id + "/app-development", a.admin_token,
                 Json::object())
                .status,
            404);
  // Developer keys must be P-256 public keys.
  auto bad = Call("POST", "/v1/tenants/" + a.id + "/devices/" + device.id + "/app-development", a.admin_token,
                  {{"developer_keys", Json::array({"nope"})}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Call("POST", "/v1/tenants/" + a.id + "/devices/" + device.id + "/app-development", a.admin_token,
                 {{"developer_keys", "not-an-array"}})
                .status,
            400);
}

TEST_F(ServiceTest, ProductCreatesTheDefaultDeviceGroups) {
  auto tenant = CreateTenant("Acme");
  auto groups = Body(Call("GET", "/v1/tenants/" + tenant.id + "/device-groups", tenant.admin_token));
  std::set<std::string> names;
  for (const auto& g : groups["device_groups"]) names.insert(g["name"]);
  EXPECT_EQ(names, (std::set<std::string>{"Development", "Field Test", "Production"}));
}

TEST_F(ServiceTest, AuditLogRecordsChangesAndVerdicts) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  Enroll(device, tenant);
  auto events = Body(Call("GET", "/v1/tenants/" + tenant.id + "/audit", tenant.admin_token))["events"];
  std::set<std::string> actions;
  for (const auto& e : events) actions.insert(e["action"]);
  EXPECT_TRUE(actions.contains("device.claim"));
  EXPECT_TRUE(actions.contains("attestation.verdict"));
  EXPECT_TRUE(actions.contains("product.create"));
}

// --- bad input ------------------------------------------------------------

TEST_F(ServiceTest, MalformedJsonIs400) {
  auto tenant = CreateTenant("Acme");
  auto response = Client()->Send(
      "POST", "/v1/tenants/" + tenant.id + "/products",
      "{\"name\": ", {{"Authorization", "Bearer " + tenant.admin_token}, {"Content-Type", "application/json"}});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(response->content_type, "application/problem+json");
  auto evidence = Attest("{not json");
  EXPECT_EQ(evidence.status, 400);
  EXPECT_EQ(ProblemType(evidence), "urn:citadel:problem:malformed-evidence");
}

TEST_F(ServiceTest, UnknownFieldsAre400) {
  auto tenant = CreateTenant("Acme");
  auto response =
      Call("POST", "/v1/tenants/" + tenant.id + "/products", tenant.admin_token, {{"name", "X"}, {"colour", "red"}});
  EXPECT_EQ(response.status, 400);
  EXPECT_NE(Body(response)["detail"].get<std::string>().find("colour"), std::string::npos);
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto evidence = *ParseJsonStrict(Evidence(device));
  evidence["evidence"]["extra"] = 1;
  EXPECT_EQ(ProblemType(Attest(evidence.dump())), "urn:citadel:problem:malformed-evidence");
}

TEST_F(ServiceTest, WrongContentTypeIs415) {
  auto tenant = CreateTenant("Acme");
  auto response = Client()->Send("POST", "/v1/tenants/" + tenant.id + "/products", R"({"name":"X"})",
                                 {{"Authorization", "Bearer " + tenant.admin_token}, {"Content-Type", "text/plain"}});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 415);
  auto evidence = Client()->Send("POST", "/v1/attestation", "{}", {{"Content-Type", "text/plain"}});
  EXPECT_EQ(evidence->status, 415);
}

TEST_F(ServiceTest, BodiesOverTheLimitAreRefusedAndTheServerKeepsServing) {
  std::string huge(2 * 1024 * 1024, 'x');
  auto response = Client()->Send("POST", "/v1/attestation", huge, {{"Content-Type", "application/json"}});
  if (response) {
    EXPECT_EQ(response->status, 413);
  }
  // Evidence is bounded tighter than other bodies.
  std::string big_evidence = R"({"evidence":{"pad":")" + std::string(100 * 1024, 'a') + R"("},"signature":""})";
  auto evidence = Attest(big_evidence);
  EXPECT_EQ(evidence.status, 413);
  EXPECT_EQ(Call("GET", "/v1/health", "").status, 200);
}

TEST_F(ServiceTest, HugeCertificateChainIsRefused) {
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto evidence = *ParseJsonStrict(Evidence(device));
  auto chain = evidence["evidence"]["manufacturer_chain"];
  for (int i = 0; i < 20; ++i) evidence["evidence"]["manufacturer_chain"].push_back(chain[1]);
  auto response = Attest(evidence.dump());
  EXPECT_TRUE(response.status == 400 || response.status == 413) << response.status;
  EXPECT_EQ(ProblemType(response), "urn:citadel:problem:malformed-evidence");
}

TEST_F(ServiceTest, GarbageBytesOnTheTlsPortCloseThatConnectionOnly) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(service_->port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\xff\xff garbage";
  ASSERT_GT(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL), 0);
  char buffer[256];
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ssize_t n;
  do {
    n = ::recv(fd, buffer, sizeof buffer, 0);
  } while (n > 0);
  EXPECT_EQ(n, 0) << "the server should close the connection";
  ::close(fd);
  EXPECT_EQ(Call("GET", "/v1/health", "").status, 200);
}

TEST_F(ServiceTest, StateSurvivesARestart) {
  auto tenant = CreateTenant("Acme");
  auto device = TestDevice::Create(dir_.path() / "d1", manufacturer_.get(), "1.0.0");
  auto pem = Enroll(device, tenant);
  service_->Stop();
  service_->Wait();
  service_.reset();
  StartService();
  auto shown = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id, tenant.admin_token);
  ASSERT_EQ(shown.status, 200);
  EXPECT_EQ(Body(shown)["certificate_serial"], crypto::Certificate::FromPem(pem)->SerialHex());
  // The tenant CA key survived sealed in the store: a new certificate chains
  // to the same root.
  auto again = Attest(Evidence(device));
  ASSERT_EQ(again.status, 200);
  auto chain = Call("GET", "/v1/tenants/" + tenant.id + "/ca-certificates", tenant.admin_token).body;
  EXPECT_NE(chain.find(Body(again)["chain"][1].get<std::string>()), std::string::npos);
}

}  // namespace
}  // namespace citadel::server

namespace citadel::server {
namespace {

TEST_F(ServiceTest, ServesAConfiguredTlsCertificateFromTheOperatorsPki) {
  auto pki = Manufacturer::Create("Operator PKI Root");
  auto server_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec spec;
  spec.common_name = "citadel.example";
  spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
  spec.ip_sans = {"127.0.0.1"};
  auto leaf = crypto::IssueCertificate(spec, server_key->Public(), &pki.cert, pki.key);
  ASSERT_TRUE(leaf);
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "tls.pem", leaf->Pem() + pki.cert.Pem()));
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "tls.key", server_key->ToPem()->reveal(), 0600));

  service_->Stop();
  service_->Wait();
  service_.reset();
  options_.tls_certificate_file = dir_.path() / "tls.pem";
  options_.tls_key_file = dir_.path() / "tls.key";
  auto service = Service::Create(options_);
  ASSERT_TRUE(service) << service.error().message();
  service_ = std::move(*service);
  ASSERT_TRUE(service_->Start());

  service_ca_ = pki.cert.Pem();
  EXPECT_EQ(Call("GET", "/v1/health", "").status, 200);
  // A client pinning the service's own CA no longer trusts it.
  http::ClientOptions pinned_old;
  pinned_old.base_url = "https://127.0.0.1:" + std::to_string(service_->port());
  pinned_old.ca_certificate_pem = *ReadFile(options_.data_dir / "service-ca.pem");
  auto client = http::Client::Create(pinned_old);
  ASSERT_TRUE(client);
  EXPECT_FALSE((*client)->Send("GET", "/v1/health"));
}

TEST_F(ServiceTest, ConfiguredTlsKeyMustMatchTheCertificate) {
  auto other_key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "tls.key", other_key->ToPem()->reveal(), 0600));
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "tls.pem", *ReadFile(options_.data_dir / "server.pem")));
  auto options = options_;
  options.tls_certificate_file = dir_.path() / "tls.pem";
  options.tls_key_file = dir_.path() / "tls.key";
  auto service = Service::Create(options);
  ASSERT_FALSE(service);
  EXPECT_NE(service.error().message().find("does not match"), std::string::npos);
}

}  // namespace
}  // namespace citadel::server
