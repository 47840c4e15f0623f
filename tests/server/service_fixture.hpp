// A real citadel-server in-process for the service tests: HTTPS on
// loopback, a SQLite store in a temporary directory, a trusted test
// manufacturer CA, and helpers to act as the operator, as a tenant, and as
// its devices (software roots of trust, attested and claimed, with the
// certificate chain they present for mutual TLS).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "http/http.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace citadel::server::testing {

using citadel::testing::Must;
using Headers = std::vector<std::pair<std::string, std::string>>;

// A tenant as its admin sees it: a product ("Thermostat") and its first
// device group.
struct TenantAccess {
  std::string id;
  std::string token;  // the admin token
  std::string product_id;
  std::string group_id;
};

// A claimed device with its certificate chain for mutual TLS.
struct EnrolledDevice {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string id;
  std::string chain_pem;

  http::TlsIdentity Identity() const { return {chain_pem, &rot->TlsClientKey()}; }
};

class ServiceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file, manufacturer_.Pem()));
    ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_.path() / "server";
    options.manufacturer_ca_files = {ca_file};
    options.threads = 2;
    Configure(options);
    service_ = Must(Service::Create(options), "creating the service");
    ASSERT_TRUE(service_->Start());
    service_ca_ = Must(ReadFile(options.data_dir / "service-ca.pem"), "service CA");
    auto token = Must(ReadFile(options.data_dir / "operator-token"), "operator token");
    operator_token_ = token.substr(0, token.find('\n'));
  }

  void TearDown() override {
    if (service_) service_->Stop();
  }

  // Called before the service is created: a derived fixture adds its settings.
  virtual void Configure(ServiceOptions& options) { (void)options; }

  store::Store& Store() { return service_->store(); }

  std::unique_ptr<http::Client> Client(std::optional<http::TlsIdentity> identity = std::nullopt) {
    http::ClientOptions options;
    options.base_url = "https://127.0.0.1:" + std::to_string(service_->port());
    options.ca_certificate_pem = service_ca_;
    options.client_identity = std::move(identity);
    return Must(http::Client::Create(options), "client");
  }

  // A JSON call with a bearer token; a null body sends none.
  http::Response Call(const std::string& method, const std::string& path, const std::string& token,
                      const Json& body = nullptr) {
    Headers headers{{"Authorization", "Bearer " + token}};
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("Content-Type", "application/json");
      text = body.dump();
    }
    return Must(Client()->Send(method, path, text, headers), "request");
  }

  // The response body as JSON; null when it is not JSON.
  static Json Body(const http::Response& response) {
    auto parsed = ParseJsonStrict(response.body);
    return parsed ? *parsed : Json();
  }

  TenantAccess CreateTenantAccess(const std::string& name) {
    auto created = Call("POST", "/v1/tenants", operator_token_, {{"name", name}});
    EXPECT_EQ(created.status, 201) << created.body;
    TenantAccess tenant;
    tenant.id = Body(created)["tenant"]["id"];
    tenant.token = Body(created)["admin_token"]["token"];
    auto product = Call("POST", "/v1/tenants/" + tenant.id + "/products", tenant.token, {{"name", "Thermostat"}});
    EXPECT_EQ(product.status, 201) << product.body;
    tenant.product_id = Body(product)["product"]["id"];
    tenant.group_id = Body(product)["device_groups"][0]["id"];
    return tenant;
  }

  // A new token of `role` in the tenant.
  std::string Token(const TenantAccess& tenant, const std::string& role) {
    auto created = Call("POST", "/v1/tenants/" + tenant.id + "/tokens", tenant.token, {{"name", role}, {"role", role}});
    EXPECT_EQ(created.status, 201) << created.body;
    return Body(created)["token"];
  }

  // A genuine device (manufacturer chain, OS and runtime measured) that
  // attests unclaimed, is claimed into `group_id` and attests again.
  EnrolledDevice Enroll(const TenantAccess& tenant, const std::string& group_id, const std::string& name) {
    EnrolledDevice device;
    device.rot = Must(rot::SoftwareRootOfTrust::Open(dir_.path() / name), "device RoT");
    device.id = device.rot->DeviceId();
    crypto::CertificateSpec spec;
    spec.common_name = device.id;
    auto leaf = Must(crypto::IssueCertificate(spec, device.rot->IdentityPublicKey(), &manufacturer_, manufacturer_key_),
                     "manufacturer certificate");
    EXPECT_TRUE(device.rot->StoreManufacturerChain({leaf, manufacturer_}));
    EXPECT_TRUE(device.rot->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")}));
    EXPECT_TRUE(device.rot->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime")}));
    EXPECT_EQ(Attest(device)["verdict"], "accepted-unclaimed");
    auto claimed = Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/claim", tenant.token,
                        {{"device_group_id", group_id}});
    EXPECT_EQ(claimed.status, 200) << claimed.body;
    Json accepted = Attest(device);
    EXPECT_EQ(accepted["verdict"], "accepted") << accepted.dump();
    device.chain_pem = accepted["certificate"].get<std::string>() + accepted["chain"][0].get<std::string>();
    return device;
  }

  // Challenge, signed evidence with a fresh CSR: the verdict as JSON.
  Json Attest(EnrolledDevice& device) {
    auto challenge =
        Must(protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", Json::object()).body), "challenge");
    auto csr = Must(crypto::CertificateRequest::Create(device.rot->TlsClientKey(), device.id), "CSR");
    auto evidence = Must(protocol::CreateSignedEvidence(*device.rot, challenge.nonce, csr.Pem()), "evidence");
    auto response =
        Must(Client()->Send("POST", "/v1/attestation", evidence, {{"Content-Type", "application/json"}}), "attest");
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response);
  }

  citadel::testing::TempDir dir_;
  crypto::PrivateKey manufacturer_key_ = citadel::testing::GenerateTestKey();
  crypto::Certificate manufacturer_ = citadel::testing::IssueTestCa("Test Manufacturer", manufacturer_key_);
  std::unique_ptr<Service> service_;
  std::string service_ca_;
  std::string operator_token_;
};

}  // namespace citadel::server::testing
