// The CLI through the real HTTPS client (src/http) against a real
// http::Server on 127.0.0.1: pinning the service CA, a wrong CA, and a
// server that is not running.
#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "http/http.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

using citadel::testing::TempDir;
using nlohmann::json;

using citadel::testing::Must;

struct Pki {
  crypto::PrivateKey ca_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate ca = Issue("Test Service CA", true, ca_key, nullptr, ca_key);
  crypto::PrivateKey server_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate server = Issue("127.0.0.1", false, server_key, &ca, ca_key);
  crypto::PrivateKey other_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate other_ca = Issue("Other CA", true, other_key, nullptr, other_key);

  static crypto::Certificate Issue(const std::string& name, bool is_ca, const crypto::PrivateKey& key,
                                   const crypto::Certificate* issuer, const crypto::PrivateKey& issuer_key) {
    crypto::CertificateSpec spec;
    spec.common_name = name;
    spec.is_ca = is_ca;
    if (!is_ca) {
      spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
      spec.ip_sans = {"127.0.0.1"};
    }
    return Must(crypto::IssueCertificate(spec, key.Public(), issuer, issuer_key));
  }
};

class RealHttpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    http::ServerOptions options;
    options.identity = http::TlsIdentity{pki_.server.Pem(), &pki_.server_key};
    options.threads = 1;
    auto server = http::Server::Create(options, [this](const http::Request& request) {
      seen_authorization_.push_back(request.Header("authorization"));
      if (request.path == "/v1/health") return http::Response{200, "application/json", R"({"status":"ok"})", {}};
      if (request.path == "/v1/tenants" && request.Header("authorization") == "Bearer cit_good") {
        return http::Response{200, "application/json", R"({"tenants":[{"id":"t1","name":"acme"}]})", {}};
      }
      return http::Response{401,
                            "application/problem+json",
                            R"({"type":"urn:citadel:problem:unauthenticated","status":401,"detail":"bad token"})",
                            {}};
    });
    ASSERT_TRUE(server.has_value()) << server.error().message();
    server_ = std::move(*server);
    auto started = server_->Start();
    ASSERT_TRUE(started.has_value()) << started.error().message();
    url_ = "https://127.0.0.1:" + std::to_string(server_->port());
    ca_file_ = dir_.path() / "service-ca.pem";
    other_ca_file_ = dir_.path() / "other-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file_, pki_.ca.Pem()).has_value());
    ASSERT_TRUE(WriteFileAtomic(other_ca_file_, pki_.other_ca.Pem()).has_value());
  }
  void TearDown() override {
    if (server_) {
      server_->Stop();
      server_->Wait();
    }
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "citadel");
    Environment environment = ProcessEnvironmentForMain();
    auto config = (dir_.path() / "config.json").string();
    environment.env = [config](std::string_view name) -> std::optional<std::string> {
      if (name == "CITADEL_CONFIG") return config;
      return std::nullopt;
    };
    environment.out = &out_;
    environment.err = &err_;
    return RunCli(args, environment);
  }

  Pki pki_;
  TempDir dir_;
  std::unique_ptr<http::Server> server_;
  std::string url_;
  std::filesystem::path ca_file_;
  std::filesystem::path other_ca_file_;
  std::vector<std::string> seen_authorization_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(RealHttpsTest, LoginPinsTheServiceCa) {
  ASSERT_EQ(Run({"login", "--server", url_, "--token", "cit_good", "--ca", ca_file_.string(), "--json"}), 0)
      << err_.str();
  auto answer = json::parse(out_.str());
  EXPECT_EQ(answer["tenants"][0]["id"], "t1");
  // The health check carries no credentials; the tenant lookup does.
  ASSERT_EQ(seen_authorization_.size(), 2u);
  EXPECT_EQ(seen_authorization_[0], "");
  EXPECT_EQ(seen_authorization_[1], "Bearer cit_good");
}

TEST_F(RealHttpsTest, AServerOutsideThePinnedCaIsRefusedBeforeTheTokenIsSent) {
  EXPECT_EQ(Run({"login", "--server", url_, "--token", "cit_good", "--ca", other_ca_file_.string()}), 1);
  EXPECT_NE(err_.str().find("--ca"), std::string::npos) << err_.str();
  EXPECT_TRUE(seen_authorization_.empty()) << "no request may reach an unverified server";
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "config.json"));
}

TEST_F(RealHttpsTest, ABadTokenExitsWithThree) {
  EXPECT_EQ(Run({"login", "--server", url_, "--token", "cit_bad", "--ca", ca_file_.string()}), 3);
  EXPECT_NE(err_.str().find("bad token"), std::string::npos) << err_.str();
}

TEST_F(RealHttpsTest, AStoppedServerIsUnreachable) {
  server_->Stop();
  server_->Wait();
  server_.reset();  // closes the listening socket
  EXPECT_EQ(Run({"login", "--server", url_, "--token", "cit_good", "--ca", ca_file_.string()}), 6);
  EXPECT_NE(err_.str().find("is citadel-server running at " + url_ + "?"), std::string::npos) << err_.str();
}

}  // namespace
}  // namespace citadel::cli
