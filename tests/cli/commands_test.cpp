// Drives the whole CLI in-process (RunCli) against a fake HTTPS client that
// records requests and answers from a route table.
#include "cli/cli.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/manufacturer.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

using citadel::testing::TempDir;
using nlohmann::json;

constexpr const char* kServer = "https://127.0.0.1:8443";
const std::string kDeviceA = "3f2a9c0d17b4" + std::string(52, 'a');
const std::string kDeviceB = "77aa00bb11cc" + std::string(52, 'b');

struct Call {
  std::string method;
  std::string path;
  std::string body;
  std::map<std::string, std::string> headers;
};

struct FakeService {
  std::map<std::string, http::Response> routes;  // "GET /v1/tenants"
  std::vector<Call> calls;
  std::optional<Error> transport_error;
  std::vector<http::ClientOptions> clients;

  void Answer(const std::string& route, int status, const json& body) {
    routes[route] = http::Response{
        status, status >= 400 ? "application/problem+json" : "application/json", body.is_null() ? "" : body.dump(), {}};
  }
  void Problem(const std::string& route, int status, const std::string& name, const std::string& detail) {
    Answer(route, status,
           {{"type", "urn:citadel:problem:" + name}, {"title", name}, {"status", status}, {"detail", detail}});
  }
  const Call* Find(const std::string& method, const std::string& path) const {
    for (const auto& call : calls) {
      if (call.method == method && call.path == path) return &call;
    }
    return nullptr;
  }
};

class FakeClient : public http::Client {
 public:
  explicit FakeClient(std::shared_ptr<FakeService> service) : service_(std::move(service)) {}
  Expected<http::Response> Send(std::string_view method, std::string_view path_and_query, std::string_view body,
                                const std::vector<std::pair<std::string, std::string>>& headers) override {
    Call call{std::string(method), std::string(path_and_query), std::string(body), {}};
    for (const auto& [name, value] : headers) call.headers[name] = value;
    service_->calls.push_back(call);
    if (service_->transport_error) return std::unexpected(*service_->transport_error);
    auto it = service_->routes.find(call.method + " " + call.path);
    if (it == service_->routes.end()) {
      return http::Response{404,
                            "application/problem+json",
                            R"({"type":"urn:citadel:problem:not-found","status":404,"detail":"no route )" +
                                call.method + " " + call.path + R"("})",
                            {}};
    }
    return it->second;
  }

 private:
  std::shared_ptr<FakeService> service_;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_["CITADEL_CONFIG"] = (dir_.path() / "config" / "config.json").string();
    ca_file_ = dir_.path() / "service-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file_, "SERVICE CA PEM").has_value());
    service_->Answer("GET /v1/health", 200, {{"status", "ok"}, {"store", "sqlite"}});
    service_->Answer(
        "GET /v1/tenants", 200,
        {{"tenants", json::array({{{"id", "t1"}, {"name", "acme"}, {"created_at", "2026-01-01T00:00:00Z"}}})},
         {"role", "admin"}});
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "citadel");
    Environment environment;
    environment.env = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_.find(std::string(name));
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
    environment.out = &out_;
    environment.err = &err_;
    environment.make_client = [this](http::ClientOptions options) -> Expected<std::unique_ptr<http::Client>> {
      service_->clients.push_back(options);
      return std::make_unique<FakeClient>(service_);
    };
    environment.now = [] { return FromUnixSeconds(1'800'000'000); };
    return RunCli(args, environment);
  }

  std::filesystem::path ConfigFile() const { return env_.at("CITADEL_CONFIG"); }

  void LogIn() { ASSERT_TRUE(SaveConfig(ConfigFile(), Config{kServer, "cit_saved", "SAVED CA"}).has_value()); }

  json OutJson() const {
    auto parsed = json::parse(out_.str(), nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << out_.str();
    return parsed;
  }

  TempDir dir_;
  std::filesystem::path ca_file_;
  std::map<std::string, std::string> env_;
  std::ostringstream out_;
  std::ostringstream err_;
  std::shared_ptr<FakeService> service_ = std::make_shared<FakeService>();
};

// ---- help and usage -----------------------------------------------------------

TEST_F(CliTest, RootHelpDocumentsCommandsEnvironmentAndExitCodes) {
  EXPECT_EQ(Run({"--help"}), 0);
  auto help = out_.str();
  for (const char* text : {"login", "device", "manufacturer", "policy", "CITADEL_TOKEN", "CITADEL_CONFIG", "Exit codes",
                           "6  server unreachable", "3  authentication", "--json"}) {
    EXPECT_NE(help.find(text), std::string::npos) << text;
  }
  EXPECT_TRUE(service_->calls.empty());
}

TEST_F(CliTest, EveryCommandHasADescriptionAndAnExample) {
  const std::vector<std::vector<std::string>> commands = {{"login"},
                                                          {"logout"},
                                                          {"tenant", "create"},
                                                          {"tenant", "list"},
                                                          {"tenant", "show"},
                                                          {"token", "create"},
                                                          {"token", "list"},
                                                          {"token", "revoke"},
                                                          {"product", "create"},
                                                          {"product", "list"},
                                                          {"device-group", "list"},
                                                          {"device-group", "create"},
                                                          {"device", "claim"},
                                                          {"device", "list"},
                                                          {"device", "show"},
                                                          {"device", "revoke-certificate"},
                                                          {"ca-certificate", "download"},
                                                          {"policy", "list"},
                                                          {"policy", "revoke-os-version"},
                                                          {"policy", "revoke-runtime-digest"},
                                                          {"policy", "remove"},
                                                          {"audit", "list"},
                                                          {"manufacturer", "create-ca"},
                                                          {"manufacturer", "show"}};
  for (auto args : commands) {
    std::string name = "citadel";
    for (const auto& word : args) name += " " + word;
    args.push_back("--help");
    EXPECT_EQ(Run(args), 0) << name;
    EXPECT_NE(out_.str().find("Example:\n  " + name), std::string::npos) << name << ":\n" << out_.str();
  }
}

TEST_F(CliTest, UsageErrorsExitWithTwo) {
  EXPECT_EQ(Run({}), 0);  // bare `citadel` prints help
  EXPECT_NE(out_.str().find("Exit codes"), std::string::npos);
  EXPECT_EQ(Run({"device"}), 2);
  EXPECT_NE(err_.str().find("claim"), std::string::npos);  // the group's help lists its commands
  EXPECT_EQ(Run({"device", "list", "--bogus"}), 2);
  EXPECT_EQ(Run({"token", "create", "--name", "ci"}), 2);                     // --role missing
  EXPECT_EQ(Run({"token", "create", "--name", "ci", "--role", "owner"}), 2);  // not a role
  EXPECT_EQ(Run({"no-such-command"}), 2);
  EXPECT_TRUE(service_->calls.empty());
}

// ---- login / logout -----------------------------------------------------------

TEST_F(CliTest, LoginChecksServerAndTokenThenSavesConfig0600) {
  ASSERT_EQ(Run({"login", "--server", kServer, "--token", "cit_new", "--ca", ca_file_.string()}), 0) << err_.str();
  ASSERT_EQ(service_->clients.size(), 1u);
  EXPECT_EQ(service_->clients[0].base_url, kServer);
  EXPECT_EQ(service_->clients[0].ca_certificate_pem, "SERVICE CA PEM");

  const Call* health = service_->Find("GET", "/v1/health");
  ASSERT_NE(health, nullptr);
  EXPECT_EQ(health->headers.count("Authorization"), 0u);
  const Call* tenants = service_->Find("GET", "/v1/tenants");
  ASSERT_NE(tenants, nullptr);
  EXPECT_EQ(tenants->headers.at("Authorization"), "Bearer cit_new");

  struct stat info {};
  ASSERT_EQ(::stat(ConfigFile().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  auto saved = LoadConfig(ConfigFile());
  ASSERT_TRUE(saved.has_value() && saved->has_value());
  EXPECT_EQ((*saved)->server, kServer);
  EXPECT_EQ((*saved)->token, "cit_new");
  EXPECT_EQ((*saved)->ca_pem, "SERVICE CA PEM");  // contents, not the path

  EXPECT_NE(out_.str().find("acme (t1)"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("Role:    admin"), std::string::npos) << out_.str();
  EXPECT_EQ(out_.str().find("cit_new"), std::string::npos) << "the token must not be printed";

  // Later commands use the saved login.
  service_->Answer("GET /v1/tenants/t1/products", 200, {{"products", json::array()}});
  EXPECT_EQ(Run({"product", "list"}), 0) << err_.str();
  EXPECT_EQ(service_->calls.back().headers.at("Authorization"), "Bearer cit_new");
}

TEST_F(CliTest, LoginWithARefusedTokenSavesNothing) {
  service_->Problem("GET /v1/tenants", 401, "unauthenticated", "unknown or revoked token");
  EXPECT_EQ(Run({"login", "--server", kServer, "--token", "cit_bad", "--ca", ca_file_.string()}), 3);
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
  EXPECT_NE(err_.str().find("error: the server refused the token: unknown or revoked token"), std::string::npos)
      << err_.str();
  EXPECT_NE(err_.str().find("hint: "), std::string::npos);
}

TEST_F(CliTest, LoginToAnUnreachableServerSaysSo) {
  service_->transport_error = Error(ErrorCode::kUnavailable, "connect: connection refused");
  EXPECT_EQ(Run({"login", "--server", kServer, "--token", "cit_x", "--ca", ca_file_.string()}), 6);
  EXPECT_NE(err_.str().find("is citadel-server running at https://127.0.0.1:8443?"), std::string::npos) << err_.str();
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(CliTest, LoginWithoutSettingsIsAUsageError) {
  EXPECT_EQ(Run({"login", "--token", "cit_x"}), 2);
  EXPECT_NE(err_.str().find("--server"), std::string::npos);
  EXPECT_TRUE(service_->calls.empty());
}

TEST_F(CliTest, LogoutDeletesTheConfig) {
  LogIn();
  EXPECT_EQ(Run({"logout"}), 0);
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
  EXPECT_EQ(Run({"logout", "--json"}), 0);
  EXPECT_EQ(OutJson()["logged_out"], false);
}

TEST_F(CliTest, WithoutLoginCommandsAskToLogIn) {
  EXPECT_EQ(Run({"product", "list"}), 3);
  EXPECT_NE(err_.str().find("citadel login"), std::string::npos);
  EXPECT_TRUE(service_->calls.empty());
}

TEST_F(CliTest, EnvironmentAndFlagsOverrideTheSavedLogin) {
  LogIn();
  service_->Answer("GET /v1/tenants/t1/products", 200, {{"products", json::array()}});
  env_["CITADEL_TOKEN"] = "cit_env";
  ASSERT_EQ(Run({"product", "list"}), 0);
  EXPECT_EQ(service_->calls.back().headers.at("Authorization"), "Bearer cit_env");
  ASSERT_EQ(Run({"product", "list", "--token", "cit_flag"}), 0);
  EXPECT_EQ(service_->calls.back().headers.at("Authorization"), "Bearer cit_flag");
  EXPECT_EQ(service_->clients.back().ca_certificate_pem, "SAVED CA");
}

// ---- errors -------------------------------------------------------------------

TEST_F(CliTest, ServiceProblemsMapToExitCodes) {
  LogIn();
  service_->Problem("POST /v1/tenants/t1/devices/" + kDeviceA + "/claim", 409, "device-claimed-elsewhere",
                    "the device is claimed by another tenant");
  EXPECT_EQ(Run({"device", "claim", kDeviceA}), 5);
  EXPECT_NE(err_.str().find("error: the device is claimed by another tenant"), std::string::npos);
  EXPECT_NE(err_.str().find("hint: "), std::string::npos);

  service_->Problem("GET /v1/tenants/t1/devices/" + kDeviceB, 404, "not-found", "no such device");
  EXPECT_EQ(Run({"device", "show", kDeviceB}), 4);
  EXPECT_NE(err_.str().find("citadel device list"), std::string::npos);

  service_->Problem("POST /v1/tenants", 403, "forbidden", "operator role required");
  EXPECT_EQ(Run({"tenant", "create", "globex"}), 3);
  EXPECT_NE(err_.str().find("operator token"), std::string::npos);

  service_->transport_error = Error(ErrorCode::kUnavailable, "connection refused");
  EXPECT_EQ(Run({"device", "list"}), 6);
}

// ---- tenant resolution --------------------------------------------------------

TEST_F(CliTest, OperatorTokenMustNameATenant) {
  LogIn();
  service_->Answer("GET /v1/tenants", 200,
                   {{"tenants", json::array({{{"id", "t1"}, {"name", "acme"}}, {{"id", "t2"}, {"name", "globex"}}})}});
  service_->Answer("GET /v1/tenants/t2/products", 200, {{"products", json::array()}});
  EXPECT_EQ(Run({"product", "list"}), 2);
  EXPECT_NE(err_.str().find("--tenant"), std::string::npos);
  EXPECT_EQ(Run({"product", "list", "--tenant", "t2"}), 0) << err_.str();
  EXPECT_EQ(service_->calls.back().path, "/v1/tenants/t2/products");
  EXPECT_EQ(service_->Find("GET", "/v1/tenants/t1/products"), nullptr);
}

// ---- tenants and tokens -------------------------------------------------------

TEST_F(CliTest, TenantCreatePrintsTheAdminTokenWithAWarning) {
  LogIn();
  service_->Answer("POST /v1/tenants", 201,
                   {{"tenant", {{"id", "t9"}, {"name", "globex"}}},
                    {"admin_token", {{"id", "k1"}, {"name", "admin"}, {"role", "admin"}, {"token", "cit_once"}}}});
  ASSERT_EQ(Run({"tenant", "create", "globex"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json({{"name", "globex"}}));
  EXPECT_EQ(service_->calls.back().headers.at("Content-Type"), "application/json");
  EXPECT_NE(out_.str().find("t9"), std::string::npos);
  EXPECT_NE(out_.str().find("cit_once"), std::string::npos);
  EXPECT_NE(err_.str().find("shown only once"), std::string::npos);
}

TEST_F(CliTest, TokenCommands) {
  LogIn();
  service_->Answer("POST /v1/tenants/t1/tokens", 201,
                   {{"id", "k2"}, {"name", "ci"}, {"role", "contributor"}, {"token", "cit_ci"}});
  ASSERT_EQ(Run({"token", "create", "--name", "ci", "--role", "contributor"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json({{"name", "ci"}, {"role", "contributor"}}));
  EXPECT_NE(out_.str().find("cit_ci"), std::string::npos);
  EXPECT_NE(err_.str().find("shown only once"), std::string::npos);

  service_->Answer("GET /v1/tenants/t1/tokens", 200,
                   {{"tokens", json::array({{{"id", "k1"},
                                             {"name", "admin"},
                                             {"role", "admin"},
                                             {"created_at", "2026-01-01T00:00:00Z"},
                                             {"revoked", false}},
                                            {{"id", "k2"},
                                             {"name", "ci"},
                                             {"role", "contributor"},
                                             {"created_at", "2026-01-01T00:00:00Z"},
                                             {"revoked", true}}})}});
  ASSERT_EQ(Run({"token", "list"}), 0);
  EXPECT_NE(out_.str().find("ROLE"), std::string::npos);
  EXPECT_NE(out_.str().find("revoked"), std::string::npos);

  service_->Answer("DELETE /v1/tenants/t1/tokens/k2", 204, nullptr);
  ASSERT_EQ(Run({"token", "revoke", "k2", "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson(), json({{"id", "k2"}, {"revoked", true}}));
}

// ---- devices ------------------------------------------------------------------

json Device(const std::string& id, const std::string& os) {
  return {{"id", id},
          {"tenant_id", "t1"},
          {"device_group_id", "g1"},
          {"os_version", os},
          {"runtime_version", "0.1.0"},
          {"last_verdict", "accepted"},
          {"revoked", false},
          {"last_seen", FormatRfc3339(FromUnixSeconds(1'800'000'000 - 180))}};
}

TEST_F(CliTest, DeviceListAllFollowsTheCursor) {
  LogIn();
  service_->Answer("GET /v1/tenants/t1/devices?limit=1", 200,
                   {{"devices", json::array({Device(kDeviceA, "1.0.0")})}, {"next", "c1"}});
  service_->Answer("GET /v1/tenants/t1/devices?limit=1&after=c1", 200,
                   {{"devices", json::array({Device(kDeviceB, "1.1.0")})}, {"next", nullptr}});

  ASSERT_EQ(Run({"device", "list", "--limit", "1", "--all", "--json"}), 0) << err_.str();
  auto listed = OutJson();
  ASSERT_EQ(listed["devices"].size(), 2u);
  EXPECT_EQ(listed["devices"][0]["id"], kDeviceA);  // full IDs in JSON
  EXPECT_EQ(listed["devices"][1]["id"], kDeviceB);
  EXPECT_TRUE(listed["next"].is_null());

  // Without --all: one page and a pointer to the next.
  ASSERT_EQ(Run({"device", "list", "--limit", "1"}), 0);
  EXPECT_NE(out_.str().find(kDeviceA.substr(0, 12)), std::string::npos);
  EXPECT_EQ(out_.str().find(kDeviceA), std::string::npos) << "lists show shortened IDs";
  EXPECT_EQ(out_.str().find(kDeviceB.substr(0, 12)), std::string::npos);
  EXPECT_NE(out_.str().find("3m ago"), std::string::npos);
  EXPECT_NE(err_.str().find("--after c1"), std::string::npos);
}

TEST_F(CliTest, DeviceListFiltersAreEncodedAndGlobalFlagsGoAnywhere) {
  LogIn();
  service_->Answer("GET /v1/tenants/t1/devices?device_group=g%201&os_version=1.0.0%2Bdev", 200,
                   {{"devices", json::array()}, {"next", nullptr}});
  ASSERT_EQ(Run({"--json", "device", "list", "--device-group", "g 1", "--os-version", "1.0.0+dev"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["devices"], json::array());
  ASSERT_EQ(Run({"device", "list", "--device-group", "g 1", "--os-version", "1.0.0+dev", "--json"}), 0);
  EXPECT_EQ(OutJson()["devices"], json::array());
}

TEST_F(CliTest, DeviceListRefusesACursorLoop) {
  LogIn();
  service_->Answer("GET /v1/tenants/t1/devices", 200, {{"devices", json::array()}, {"next", "c1"}});
  service_->Answer("GET /v1/tenants/t1/devices?after=c1", 200, {{"devices", json::array()}, {"next", "c1"}});
  EXPECT_EQ(Run({"device", "list", "--all"}), 1);
  EXPECT_NE(err_.str().find("twice"), std::string::npos);
}

TEST_F(CliTest, DeviceShowAcceptsAUniquePrefix) {
  LogIn();
  service_->Answer(
      "GET /v1/tenants/t1/devices", 200,
      {{"devices", json::array({Device(kDeviceA, "1.0.0"), Device(kDeviceB, "1.0.0")})}, {"next", nullptr}});
  service_->Answer("GET /v1/tenants/t1/devices/" + kDeviceA, 200, Device(kDeviceA, "1.0.0"));
  ASSERT_EQ(Run({"device", "show", kDeviceA.substr(0, 12)}), 0) << err_.str();
  EXPECT_NE(out_.str().find(kDeviceA), std::string::npos) << "show prints the full ID";
  EXPECT_NE(out_.str().find("Last seen"), std::string::npos);
  EXPECT_EQ(Run({"device", "show", "ffff"}), 4);
}

TEST_F(CliTest, DeviceClaimSendsTheGroupAndValidatesTheId) {
  LogIn();
  service_->Answer("POST /v1/tenants/t1/devices/" + kDeviceA + "/claim", 200, Device(kDeviceA, "1.0.0"));
  ASSERT_EQ(Run({"device", "claim", kDeviceA, "--device-group", "g1"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json({{"device_group_id", "g1"}}));
  ASSERT_EQ(Run({"device", "claim", kDeviceA}), 0);
  EXPECT_EQ(json::parse(service_->calls.back().body), json::object());
  auto calls = service_->calls.size();
  EXPECT_EQ(Run({"device", "claim", "not-a-device"}), 2);
  EXPECT_EQ(service_->calls.size(), calls);

  service_->Problem("POST /v1/tenants/t1/devices/" + kDeviceB + "/claim", 400, "device-group-required",
                    "this tenant has several products; name a device group");
  EXPECT_EQ(Run({"device", "claim", kDeviceB}), 1);
  EXPECT_NE(err_.str().find("--device-group"), std::string::npos) << err_.str();
}

TEST_F(CliTest, DeviceRevokeCertificate) {
  LogIn();
  service_->Answer("POST /v1/tenants/t1/devices/" + kDeviceA + "/certificate/revoke", 200, {{"revoked", "0a1b"}});
  ASSERT_EQ(Run({"device", "revoke-certificate", kDeviceA}), 0) << err_.str();
  EXPECT_NE(out_.str().find("serial 0a1b"), std::string::npos);
  EXPECT_EQ(Run({"device", "revoke-certificate", "zz"}), 2);
}

TEST_F(CliTest, LimitsAreCheckedBeforeAnyRequest) {
  LogIn();
  EXPECT_EQ(Run({"device", "list", "--limit", "0"}), 2);
  EXPECT_EQ(Run({"audit", "list", "--limit", "5000"}), 2);
  EXPECT_TRUE(service_->calls.empty());
}

TEST_F(CliTest, ProductCreateShowsDefaultGroups) {
  LogIn();
  service_->Answer("POST /v1/tenants/t1/products", 201,
                   {{"product", {{"id", "p1"}, {"name", "thermostat"}}},
                    {"device_groups", json::array({{{"id", "g1"}, {"name", "Development"}, {"product_id", "p1"}},
                                                   {{"id", "g2"}, {"name", "Field Test"}, {"product_id", "p1"}},
                                                   {{"id", "g3"}, {"name", "Production"}, {"product_id", "p1"}}})}});
  ASSERT_EQ(Run({"product", "create", "thermostat", "--description", "rev B"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json({{"name", "thermostat"}, {"description", "rev B"}}));
  for (const char* text : {"p1", "Development", "Field Test", "Production"}) {
    EXPECT_NE(out_.str().find(text), std::string::npos) << text;
  }
}

// ---- policy -------------------------------------------------------------------

TEST_F(CliTest, PolicyCommands) {
  LogIn();
  service_->Answer("POST /v1/tenants/t1/policy/rules", 201, {{"kind", "revoked-os-version"}, {"value", "1.0.0"}});
  ASSERT_EQ(Run({"policy", "revoke-os-version", "1.0.0"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json({{"kind", "revoked-os-version"}, {"value", "1.0.0"}}));

  std::string digest(64, 'A');
  ASSERT_EQ(Run({"policy", "revoke-runtime-digest", digest}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body),
            json({{"kind", "revoked-runtime-digest"}, {"value", std::string(64, 'a')}}));
  auto calls = service_->calls.size();
  EXPECT_EQ(Run({"policy", "revoke-runtime-digest", "xyz"}), 2);
  EXPECT_EQ(service_->calls.size(), calls);

  service_->Answer("DELETE /v1/tenants/t1/policy/rules?kind=revoked-os-version&value=1.0.0%2Bbeta", 204, nullptr);
  ASSERT_EQ(Run({"policy", "remove", "--kind", "revoked-os-version", "--value", "1.0.0+beta"}), 0) << err_.str();
  EXPECT_EQ(Run({"policy", "remove", "--kind", "nonsense", "--value", "x"}), 2);
}

// ---- ca-certificate -----------------------------------------------------------

TEST_F(CliTest, CaCertificateDownloadWritesTheChain) {
  LogIn();
  auto ca = CreateManufacturerCa({dir_.path() / "ca", "Tenant Root", false});
  ASSERT_TRUE(ca.has_value());
  service_->routes["GET /v1/tenants/t1/ca-certificates"] =
      http::Response{200, "application/x-pem-file", ca->certificate.Pem(), {}};
  ASSERT_EQ(Run({"ca-certificate", "download"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), ca->certificate.Pem());

  auto file = dir_.path() / "chain.pem";
  ASSERT_EQ(Run({"ca-certificate", "download", "-o", file.string()}), 0) << err_.str();
  EXPECT_EQ(*ReadFile(file), ca->certificate.Pem());
  EXPECT_NE(out_.str().find("Wrote 1 certificate"), std::string::npos);

  service_->routes["GET /v1/tenants/t1/ca-certificates"] = http::Response{200, "text/html", "<html>", {}};
  EXPECT_EQ(Run({"ca-certificate", "download"}), 1);
}

// ---- manufacturer (local) -----------------------------------------------------

// ---- publisher keys and app development -----------------------------------------

TEST_F(CliTest, PublisherKeyRegisterSendsOnlyThePublicKey) {
  LogIn();
  auto key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(key);
  auto private_file = dir_.path() / "publisher.key";
  ASSERT_TRUE(WriteFileAtomic(private_file, key->ToPem()->reveal(), 0600).has_value());
  const std::string key_id = HexEncode(crypto::Sha256(key->Public().SpkiDer()));
  service_->Answer("POST /v1/tenants/t1/publisher-keys", 201,
                   {{"key_id", key_id}, {"name", "release"}, {"public_key_pem", key->Public().Pem()}});
  ASSERT_EQ(Run({"publisher-key", "register", private_file.string(), "--name", "release"}), 0) << err_.str();
  const auto& call = service_->calls.back();
  EXPECT_EQ(call.body.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(json::parse(call.body), json({{"name", "release"}, {"public_key_pem", key->Public().Pem()}}));
  EXPECT_NE(out_.str().find(key_id), std::string::npos) << out_.str();

  // A public key file works the same; garbage is a usage error, sent nowhere.
  auto public_file = dir_.path() / "publisher.pem";
  ASSERT_TRUE(WriteFileAtomic(public_file, key->Public().Pem()).has_value());
  ASSERT_EQ(Run({"publisher-key", "register", public_file.string(), "--name", "release"}), 0) << err_.str();
  auto calls = service_->calls.size();
  auto garbage = dir_.path() / "garbage.pem";
  ASSERT_TRUE(WriteFileAtomic(garbage, "not a key").has_value());
  EXPECT_EQ(Run({"publisher-key", "register", garbage.string(), "--name", "x"}), 2);
  EXPECT_EQ(service_->calls.size(), calls);

  // Duplicates and missing roles map to their exit codes.
  service_->Problem("POST /v1/tenants/t1/publisher-keys", 409, "publisher-key-exists", "already registered");
  EXPECT_EQ(Run({"publisher-key", "register", public_file.string(), "--name", "release"}), 5);
  service_->Problem("POST /v1/tenants/t1/publisher-keys", 403, "forbidden", "this needs the admin role");
  EXPECT_EQ(Run({"publisher-key", "register", public_file.string(), "--name", "release"}), 3);
  EXPECT_NE(err_.str().find("admin"), std::string::npos) << err_.str();
}

TEST_F(CliTest, PublisherKeyListAndRevoke) {
  LogIn();
  const std::string active(64, 'a');
  const std::string revoked(64, 'b');
  service_->Answer(
      "GET /v1/tenants/t1/publisher-keys", 200,
      {{"publisher_keys",
        json::array(
            {{{"key_id", active}, {"name", "release"}, {"created_at", "2026-01-01T00:00:00Z"}, {"revoked", false}},
             {{"key_id", revoked},
              {"name", "old"},
              {"created_at", "2026-01-01T00:00:00Z"},
              {"revoked_at", "2026-02-01T00:00:00Z"},
              {"revoked", true}}})}});
  ASSERT_EQ(Run({"publisher-key", "list"}), 0) << err_.str();
  EXPECT_NE(out_.str().find(active), std::string::npos);
  EXPECT_NE(out_.str().find("active"), std::string::npos);
  EXPECT_NE(out_.str().find("revoked"), std::string::npos);
  ASSERT_EQ(Run({"publisher-key", "list", "--json"}), 0);
  EXPECT_EQ(OutJson()["publisher_keys"].size(), 2u);

  service_->Answer("DELETE /v1/tenants/t1/publisher-keys/" + active, 204, nullptr);
  ASSERT_EQ(Run({"publisher-key", "revoke", active}), 0) << err_.str();
  EXPECT_EQ(service_->calls.back().method, "DELETE");
  EXPECT_NE(out_.str().find("Revoked publisher key " + active), std::string::npos);
  auto calls = service_->calls.size();
  EXPECT_EQ(Run({"publisher-key", "revoke", "abc"}), 2);
  EXPECT_EQ(service_->calls.size(), calls);
  EXPECT_EQ(Run({"publisher-key", "revoke", std::string(64, 'c')}), 4);  // the fake has no such route: 404
}

json Envelope(const std::string& device_id) {
  return {{"capability",
           {{"Type", "AppDevelopment"},
            {"DeviceId", device_id},
            {"TenantId", "t1"},
            {"IssuedAt", "2026-01-01T00:00:00Z"},
            {"CapabilityId", "5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b"},
            {"DeveloperKeys", json::array({"MFkw"})}}},
          {"signature", "MEUCIQ=="},
          {"certificate", "-----BEGIN CERTIFICATE-----\n"}};
}

TEST_F(CliTest, DeviceEnableDevelopmentSendsKeysAndWritesTheCapability) {
  LogIn();
  auto developer = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(developer);
  auto key_file = dir_.path() / "dev.pem";
  ASSERT_TRUE(WriteFileAtomic(key_file, developer->Public().Pem()).has_value());
  auto output = dir_.path() / "dev-cap.json";
  const std::string route = "POST /v1/tenants/t1/devices/" + kDeviceA + "/app-development";
  service_->Answer(route, 201, Envelope(kDeviceA));
  ASSERT_EQ(
      Run({"device", "enable-development", kDeviceA, "--developer-key", key_file.string(), "-o", output.string()}), 0)
      << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body),
            json({{"developer_keys", json::array({developer->Public().Pem()})}}));
  auto written = ReadFile(output);
  ASSERT_TRUE(written.has_value());
  EXPECT_EQ(json::parse(*written), Envelope(kDeviceA));
  EXPECT_NE(out_.str().find("5b0e3c9e-8f3a-4b7e-9d7a-0c1d2e3f4a5b"), std::string::npos) << out_.str();

  // Without keys the body is empty; --json shows the capability.
  ASSERT_EQ(Run({"device", "enable-development", kDeviceA, "--json"}), 0) << err_.str();
  EXPECT_EQ(json::parse(service_->calls.back().body), json::object());
  EXPECT_EQ(OutJson()["capability"], Envelope(kDeviceA));

  // A capability for another device is not written or reported as success.
  std::filesystem::remove(output);
  service_->Answer(route, 201, Envelope(kDeviceB));
  EXPECT_EQ(Run({"device", "enable-development", kDeviceA, "-o", output.string()}), 1);
  EXPECT_FALSE(std::filesystem::exists(output));

  auto bad_key = dir_.path() / "bad.pem";
  ASSERT_TRUE(WriteFileAtomic(bad_key, "nope").has_value());
  EXPECT_EQ(Run({"device", "enable-development", kDeviceA, "--developer-key", bad_key.string()}), 2);
}

TEST_F(CliTest, DeviceDisableDevelopment) {
  LogIn();
  service_->Answer("DELETE /v1/tenants/t1/devices/" + kDeviceA + "/app-development", 204, nullptr);
  ASSERT_EQ(Run({"device", "disable-development", kDeviceA}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Disabled app development"), std::string::npos);
  EXPECT_EQ(Run({"device", "disable-development", kDeviceB}), 4);
}

TEST_F(CliTest, ManufacturerCreateCaIsLocalAndRefusesOverwrite) {
  auto directory = (dir_.path() / "mfg").string();
  ASSERT_EQ(Run({"manufacturer", "create-ca", "--dir", directory}), 0) << err_.str();
  EXPECT_NE(out_.str().find("DEVELOPMENT"), std::string::npos);
  EXPECT_NE(out_.str().find("manufacturer-cas/"), std::string::npos);
  EXPECT_NE(out_.str().find("--trust-manufacturer-ca"), std::string::npos);
  EXPECT_TRUE(service_->clients.empty()) << "no server is involved";

  EXPECT_EQ(Run({"manufacturer", "create-ca", "--dir", directory}), 5);
  EXPECT_NE(err_.str().find("--force"), std::string::npos);

  ASSERT_EQ(Run({"manufacturer", "show", "--dir", directory, "--json"}), 0) << err_.str();
  EXPECT_NE(OutJson()["subject"].get<std::string>().find("Citadel Development Manufacturer"), std::string::npos);
  EXPECT_EQ(Run({"manufacturer", "show", "--dir", (dir_.path() / "none").string()}), 4);
}

}  // namespace
}  // namespace citadel::cli
