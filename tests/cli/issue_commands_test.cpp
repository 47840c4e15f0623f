// The failure-reporting commands (symbols upload, image pack --symbols, the
// .sym beside `image upload`, issue list / show / resolve / mute / reopen,
// device report list, device telemetry, device-group update-settings
// --crash-dumps) driven in-process through RunCli and the real HTTPS client
// against a real citadel-server on loopback: real SQLite store, real devices
// (software roots of trust) attested, claimed and uploading report batches
// over mutual TLS, and programs compiled here by the system gcc. A recorder
// around the real client notes each request, so the tests see what went
// over the wire. Argument syntax and rendering are tested without a service.
#include "cli/commands_issues.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/subprocess.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"
#include "protocol/failure_report.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::cli {
namespace {

namespace fs = std::filesystem;
using citadel::testing::TempDir;
using nlohmann::json;

constexpr const char* kApp = "0c0c0c0c-0000-4000-8000-00000000000c";
constexpr const char* kBuildV1 = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
const TimePoint kNow = FromUnixSeconds(1'795'000'000);  // 2026-11-18T...

template <typename T>
T Must(Expected<T> value, const char* what) {
  EXPECT_TRUE(value) << what << ": " << value.error().message();
  if (!value) std::abort();
  return std::move(*value);
}

void Write(const fs::path& path, std::string_view text) {
  fs::create_directories(path.parent_path());
  auto written = WriteFileAtomic(path, text);
  ASSERT_TRUE(written) << written.error().message();
}

// A C program that dereferences null in read_sensor (line 4), built with -g
// and a build id as a maker builds an app.
constexpr std::string_view kCrashySource =
    "static volatile int sink;\n"
    "__attribute__((noinline)) int read_sensor(int* p) {\n"
    "  sink = 1;\n"
    "  return *p;\n"
    "}\n"
    "int main(void) { return read_sensor((int*)0); }\n";

fs::path CompileCrashy(const fs::path& dir, const fs::path& output) {
  Write(dir / "crashy.c", kCrashySource);
  auto result = Must(RunSubprocess({.argv = {"/usr/bin/gcc", "-g", "-O1", "-Wl,--build-id", (dir / "crashy.c").string(),
                                             "-o", output.string()},
                                    .timeout = std::chrono::seconds(60)}),
                     "gcc");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return output;
}

// An app directory with the compiled program as its entry point.
fs::path AppDirectory(const fs::path& dir) {
  fs::path app = dir / "crashy-app";
  fs::create_directories(app / "bin");
  json manifest = {{"SchemaVersion", 1},
                   {"Name", "Crashy"},
                   {"ComponentId", kApp},
                   {"EntryPoint", "/bin/crashy"},
                   {"ApplicationType", "Default"},
                   {"Capabilities", json::object()},
                   {"Version", "1.0.0"}};
  std::ofstream(app / "app_manifest.json") << manifest.dump();
  CompileCrashy(dir, app / "bin" / "crashy");
  Write(app / "share" / "readme.txt", "not an ELF file");
  return app;
}

// Written by hand, like tests/server/failures_test.cpp: read_sensor
// dereferences null at sensor.c:42; main calls it at main.c:7.
std::string SymbolFile() {
  return std::string("CITADEL-SYMBOLS 1\n") + "MODULE " + kBuildV1 +
         " crashy\n"
         "FILE 0 /src/crashy/sensor.c\n"
         "FILE 1 /src/crashy/main.c\n"
         "FUNC 1100 40 read_sensor\n"
         "FUNC 1300 80 main\n"
         "LINE 1100 10 41 0\n"
         "LINE 1110 30 42 0\n"
         "LINE 1300 80 7 1\n";
}

// ---- the CLI without a service ---------------------------------------------------

// RunCli with no server: any attempt to connect fails the test.
struct LocalCli {
  int Run(std::vector<std::string> args) {
    out.str("");
    err.str("");
    args.insert(args.begin(), "citadel");
    Environment environment;
    environment.env = [this](std::string_view name) -> std::optional<std::string> {
      if (name == "CITADEL_CONFIG") return (dir.path() / "config.json").string();
      if (name == "CITADEL_SERVER") return "https://127.0.0.1:1";
      if (name == "CITADEL_TOKEN") return "cit_unused";
      return std::nullopt;
    };
    environment.out = &out;
    environment.err = &err;
    environment.make_client = [](const http::ClientOptions&) -> Expected<std::unique_ptr<http::Client>> {
      ADD_FAILURE() << "the command contacted the service";
      return MakeError(ErrorCode::kUnavailable, "no service in this test");
    };
    environment.now = [] { return kNow; };
    return RunCli(args, environment);
  }
  TempDir dir{"issue-cli"};
  std::ostringstream out;
  std::ostringstream err;
};

TEST(IssueSyntaxTest, SinceTakesDurationsAndTimes) {
  EXPECT_EQ(*ParseSinceSpec("7d", kNow), FormatRfc3339(kNow - std::chrono::hours(7 * 24)));
  EXPECT_EQ(*ParseSinceSpec("90m", kNow), FormatRfc3339(kNow - std::chrono::minutes(90)));
  EXPECT_EQ(*ParseSinceSpec("2h", kNow), FormatRfc3339(kNow - std::chrono::hours(2)));
  EXPECT_EQ(*ParseSinceSpec("45s", kNow), FormatRfc3339(kNow - std::chrono::seconds(45)));
  EXPECT_EQ(*ParseSinceSpec("2026-11-20T00:00:00Z", kNow), "2026-11-20T00:00:00Z");
  for (const char* bad : {"", "7w", "-1d", "367d", "2026-11-20 00:00", "yesterday", "1.5h", "7 d"}) {
    auto parsed = ParseSinceSpec(bad, kNow);
    ASSERT_FALSE(parsed) << "\"" << bad << "\" gave " << *parsed;
    EXPECT_EQ(parsed.error().exit_code, ExitCode::kUsage) << bad;
    EXPECT_NE(parsed.error().hint.find("RFC 3339"), std::string::npos) << bad;
  }
}

TEST(IssueSyntaxTest, StatesClassesAndOnOffAreChecked) {
  for (const char* state : {"open", "resolved", "muted"}) EXPECT_EQ(*ParseIssueStateSpec(state), state);
  for (const char* bad : {"", "Open", "closed", "open,muted"}) {
    auto parsed = ParseIssueStateSpec(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(parsed.error().hint.find("open, resolved, muted"), std::string::npos);
  }
  for (const char* failure_class : {"app-crash", "app-exit", "restart-loop", "sandbox-violation", "runtime-error",
                                    "unplanned-reboot", "update-failure"}) {
    EXPECT_TRUE(ParseFailureClassSpec(failure_class)) << failure_class;
  }
  EXPECT_FALSE(ParseFailureClassSpec("crash"));
  EXPECT_EQ(*ParseOnOff("on", "--crash-dumps"), true);
  EXPECT_EQ(*ParseOnOff("off", "--crash-dumps"), false);
  auto bad = ParseOnOff("yes", "--crash-dumps");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().exit_code, ExitCode::kUsage);
}

TEST(IssueRenderingTest, FramesReadAsFunctionFileAndLine) {
  EXPECT_EQ(FormatFrame({{"module", "crashy"},
                         {"build_id", "aa"},
                         {"offset", "0x1118"},
                         {"function", "read_sensor"},
                         {"file", "/src/crashy/sensor.c"},
                         {"line", 42}}),
            "read_sensor (sensor.c:42)");
  EXPECT_EQ(FormatFrame({{"module", "crashy"}, {"offset", "0x1118"}, {"function", "read_sensor"}}),
            "read_sensor (crashy+0x1118)");
  EXPECT_EQ(FormatFrame({{"module", "crashy"}, {"build_id", "aa"}, {"offset", "0x1118"}}), "crashy+0x1118");
  // A hostile function name cannot drive the terminal.
  EXPECT_EQ(FormatFrame({{"module", "m"}, {"offset", "0x1"}, {"function", "f\x1b[2J"}}), "f?[2J (m+0x1)");
  EXPECT_EQ(FormatFrame(json::object()), "?+0x?");
}

TEST(IssueRenderingTest, IssueTableShowsStateCountsAndRegressions) {
  json issues = json::array({
      {{"id", "iss_1"},
       {"state", "open"},
       {"regression", true},
       {"class", "app-crash"},
       {"count", 15},
       {"device_count", 3},
       {"last_seen", FormatRfc3339(kNow - std::chrono::minutes(3))},
       {"title", "SIGSEGV in read_sensor (sensor.c:42)"}},
      {{"id", "iss_2"}, {"state", "muted"}, {"class", "unplanned-reboot"}, {"count", 1}, {"device_count", 1}},
  });
  const auto text = IssueTable(issues, kNow);
  EXPECT_NE(text.find("ID     STATE              CLASS"), std::string::npos) << text;
  EXPECT_NE(text.find("iss_1  open (regression)  app-crash         15     3        3m ago     SIGSEGV in read_sensor"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("iss_2  muted"), std::string::npos) << text;
  EXPECT_NE(DescribeUploadedSymbols(
                {{"modules", {{{"name", "crashy"}, {"build_id", kBuildV1}, {"functions", 2}, {"lines", 3}}}}})
                .find("crashy  build id aa11aa11aa11, 2 functions, 3 lines"),
            std::string::npos);
}

TEST(IssueLocalCommandsTest, BadArgumentsFailBeforeAnyRequest) {
  LocalCli cli;
  const std::vector<std::vector<std::string>> bad = {
      {"issue", "list", "--state", "closed"},
      {"issue", "list", "--class", "crash"},
      {"issue", "list", "--since", "last week"},
      {"issue", "list", "--limit", "0"},
      {"issue", "show", "iss/../x"},
      {"issue", "resolve", ""},
      {"device", "report", "list", "abc"},
      {"device", "telemetry", std::string(64, 'g')},
      {"device", "telemetry", std::string(64, 'a'), "--days", "91"},
      {"device-group", "update-settings", "grp_1", "--crash-dumps", "maybe"},
  };
  for (const auto& args : bad) {
    std::string name;
    for (const auto& word : args) name += word + " ";
    EXPECT_EQ(cli.Run(args), 2) << name << cli.err.str();
    EXPECT_FALSE(cli.err.str().empty()) << name;
  }
  // A malformed symbol file is refused locally, with the line.
  Write(cli.dir.path() / "bad.sym", "CITADEL-SYMBOLS 1\nFUNC 0 1 f\n");
  EXPECT_EQ(cli.Run({"symbols", "upload", (cli.dir.path() / "bad.sym").string()}), 2);
  EXPECT_NE(cli.err.str().find("line 2"), std::string::npos) << cli.err.str();
  EXPECT_EQ(cli.Run({"symbols", "upload", (cli.dir.path() / "absent.sym").string()}), 4) << cli.err.str();
}

TEST(IssueLocalCommandsTest, EveryCommandTeachesWithAnExampleAndTheNextStep) {
  LocalCli cli;
  const std::vector<std::vector<std::string>> commands = {
      {"symbols", "upload"},        {"issue", "list"},      {"issue", "show"},
      {"issue", "resolve"},         {"issue", "mute"},      {"issue", "reopen"},
      {"device", "report", "list"}, {"device", "telemetry"}};
  for (auto args : commands) {
    std::string name = "citadel";
    for (const auto& word : args) name += " " + word;
    args.push_back("--help");
    EXPECT_EQ(cli.Run(args), 0) << name;
    EXPECT_NE(cli.out.str().find("Example:\n  " + name), std::string::npos) << name << ":\n" << cli.out.str();
    EXPECT_NE(cli.out.str().find("Next"), std::string::npos) << name << ":\n" << cli.out.str();
  }
  EXPECT_EQ(cli.Run({"image", "pack", "--help"}), 0);
  EXPECT_NE(cli.out.str().find("--symbols"), std::string::npos);
  EXPECT_NE(cli.out.str().find("not stripped"), std::string::npos) << cli.out.str();
  EXPECT_EQ(cli.Run({"image", "upload", "--help"}), 0);
  EXPECT_NE(cli.out.str().find("app.sym"), std::string::npos) << cli.out.str();
  EXPECT_EQ(cli.Run({"device-group", "update-settings", "--help"}), 0);
  EXPECT_NE(cli.out.str().find("--crash-dumps"), std::string::npos);
}

TEST(IssueLocalCommandsTest, PackWritesTheSymbolsOfTheImagesElfFiles) {
  LocalCli cli;
  const auto app = AppDirectory(cli.dir.path());
  ASSERT_EQ(cli.Run({"publisher-key", "create", "--out", (cli.dir.path() / "keys").string()}), 0) << cli.err.str();
  const auto image_file = cli.dir.path() / "crashy.img";
  const auto symbols_file = cli.dir.path() / "crashy.sym";
  ASSERT_EQ(cli.Run({"image", "pack", app.string(), "--key", (cli.dir.path() / "keys" / "publisher.key").string(), "-o",
                     image_file.string(), "--symbols", symbols_file.string()}),
            0)
      << cli.err.str();
  EXPECT_NE(cli.out.str().find("Symbols:"), std::string::npos) << cli.out.str();
  EXPECT_NE(cli.out.str().find("1 modules (crashy)"), std::string::npos) << cli.out.str();

  const auto modules = Must(symbols::ParseSymbolFile(Must(ReadFile(symbols_file), "symbol file")), "parse");
  ASSERT_EQ(modules.size(), 1u);  // the text file is not ELF
  EXPECT_EQ(modules[0].name, "crashy");
  EXPECT_EQ(modules[0].build_id.size(), 40u);
  const auto read_sensor = std::find_if(modules[0].functions.begin(), modules[0].functions.end(),
                                        [](const symbols::Function& f) { return f.name == "read_sensor"; });
  ASSERT_NE(read_sensor, modules[0].functions.end());
  bool line_4 = false;
  for (std::uint64_t offset = read_sensor->start; offset < read_sensor->start + read_sensor->size; ++offset) {
    auto location = symbols::Lookup(modules[0], offset);
    if (location && location->line == 4 && fs::path(location->file).filename() == "crashy.c") line_4 = true;
  }
  EXPECT_TRUE(line_4);

  // --json describes the symbol file too; the image carries the program as it was (not stripped).
  ASSERT_EQ(cli.Run({"image", "pack", app.string(), "--key", (cli.dir.path() / "keys" / "publisher.key").string(), "-o",
                     image_file.string(), "--symbols", symbols_file.string(), "--json"}),
            0);
  const auto described = json::parse(cli.out.str());
  EXPECT_EQ(described["symbols"]["modules"][0]["name"], "crashy");
  EXPECT_GT(described["symbols"]["modules"][0]["functions"].get<int>(), 1);

  // Without ELF files: an empty symbol file and a warning.
  fs::remove(app / "bin" / "crashy");
  Write(app / "bin" / "crashy", "#!/bin/sh\n");
  ASSERT_EQ(cli.Run({"image", "pack", app.string(), "--key", (cli.dir.path() / "keys" / "publisher.key").string(), "-o",
                     image_file.string(), "--symbols", symbols_file.string()}),
            0);
  EXPECT_NE(cli.err.str().find("warning: no ELF file"), std::string::npos) << cli.err.str();
  EXPECT_EQ(Must(ReadFile(symbols_file), "symbol file"), "CITADEL-SYMBOLS 1\n");
}

// ---- against a real service ---------------------------------------------------------

struct Sent {
  std::string method;
  std::string path;
  int status = 0;
};

class RecordingClient : public http::Client {
 public:
  RecordingClient(std::unique_ptr<http::Client> real, std::vector<Sent>& log) : real_(std::move(real)), log_(log) {}
  Expected<http::Response> Send(std::string_view method, std::string_view path_and_query, std::string_view body,
                                const std::vector<std::pair<std::string, std::string>>& headers) override {
    auto response = real_->Send(method, path_and_query, body, headers);
    log_.push_back({std::string(method), std::string(path_and_query), response ? response->status : 0});
    return response;
  }

 private:
  std::unique_ptr<http::Client> real_;
  std::vector<Sent>& log_;
};

struct Device {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string id;
  std::string chain_pem;
};

class IssueCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file, manufacturer_.Pem()));
    server::ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_.path() / "server";
    options.manufacturer_ca_files = {ca_file};
    options.threads = 2;
    service_ = Must(server::Service::Create(options), "creating the service");
    ASSERT_TRUE(service_->Start());
    service_ca_file_ = options.data_dir / "service-ca.pem";
    service_ca_ = Must(ReadFile(service_ca_file_), "service CA");
    auto token = Must(ReadFile(options.data_dir / "operator-token"), "operator token");
    const std::string operator_token = token.substr(0, token.find('\n'));
    auto created = Call("POST", "/v1/tenants", operator_token, {{"name", "Acme"}});
    ASSERT_EQ(created.status, 201) << created.body;
    tenant_ = Body(created)["tenant"]["id"];
    token_ = Body(created)["admin_token"]["token"];
    auto product = Call("POST", Tenant("/products"), token_, {{"name", "Thermostat"}});
    ASSERT_EQ(product.status, 201) << product.body;
    product_ = Body(product)["product"]["id"];
    group_ = Body(product)["device_groups"][0]["id"];
  }

  void TearDown() override { service_->Stop(); }

  std::string BaseUrl() const { return "https://127.0.0.1:" + std::to_string(service_->port()); }
  std::string Tenant(const std::string& suffix) const { return "/v1/tenants/" + tenant_ + suffix; }

  std::unique_ptr<http::Client> Client(std::optional<http::TlsIdentity> identity = std::nullopt) {
    http::ClientOptions options;
    options.base_url = BaseUrl();
    options.ca_certificate_pem = service_ca_;
    options.client_identity = std::move(identity);
    return Must(http::Client::Create(options), "client");
  }
  http::Response Call(const std::string& method, const std::string& path, const std::string& token, const json& body) {
    std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", "application/json"}};
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    return Must(Client()->Send(method, path, body.dump(), headers), "request");
  }
  static json Body(const http::Response& response) { return json::parse(response.body, nullptr, false); }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    sent_.clear();
    args.insert(args.begin(), "citadel");
    Environment environment = ProcessEnvironmentForMain();
    std::map<std::string, std::string> env = {{"CITADEL_SERVER", BaseUrl()},
                                              {"CITADEL_TOKEN", token_},
                                              {"CITADEL_CA", service_ca_file_.string()},
                                              {"CITADEL_CONFIG", (dir_.path() / "config.json").string()}};
    environment.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    environment.out = &out_;
    environment.err = &err_;
    environment.make_client = [this](http::ClientOptions options) -> Expected<std::unique_ptr<http::Client>> {
      CITADEL_TRY(auto real, http::Client::Create(std::move(options)));
      return std::make_unique<RecordingClient>(std::move(real), sent_);
    };
    return RunCli(args, environment);
  }

  json OutJson() const {
    auto parsed = json::parse(out_.str(), nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << out_.str();
    return parsed;
  }

  std::vector<Sent> SentWith(const std::string& method, const std::string& path_prefix) const {
    std::vector<Sent> matching;
    for (const auto& sent : sent_) {
      if (sent.method == method && sent.path.starts_with(path_prefix)) matching.push_back(sent);
    }
    return matching;
  }

  // A genuine device, attested, claimed into the product's group and
  // attested again for its TLS certificate.
  Device Enroll(const std::string& name) {
    Device device;
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
    auto claimed = Call("POST", Tenant("/devices/" + device.id + "/claim"), token_, {{"device_group_id", group_}});
    EXPECT_EQ(claimed.status, 200) << claimed.body;
    json accepted = Attest(device);
    EXPECT_EQ(accepted["verdict"], "accepted") << accepted.dump();
    device.chain_pem = accepted["certificate"].get<std::string>() + accepted["chain"][0].get<std::string>();
    return device;
  }

  json Attest(Device& device) {
    auto challenge =
        Must(protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", json::object()).body), "challenge");
    auto csr = Must(crypto::CertificateRequest::Create(device.rot->TlsClientKey(), device.id), "CSR");
    auto evidence = Must(protocol::CreateSignedEvidence(*device.rot, challenge.nonce, csr.Pem()), "evidence");
    auto response =
        Must(Client()->Send("POST", "/v1/attestation", evidence, {{"Content-Type", "application/json"}}), "attest");
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response);
  }

  // A crash in read_sensor (+0x18, line 42) called from main, under
  // applibs' handler frame.
  protocol::FailureReport Crash() {
    protocol::FailureReport report;
    char id[40];
    (void)std::snprintf(id, sizeof id, "%032llx", static_cast<unsigned long long>(++report_counter_));
    report.report_id = id;
    report.failure_class = "app-crash";
    report.occurred_at = FormatRfc3339(Clock::now() - std::chrono::seconds(5));
    report.last_occurred_at = report.occurred_at;
    report.component_id = kApp;
    report.component_version = "1.0.0";
    report.os_version = "1.0.0";
    report.runtime_version = "0.1.0";
    report.error_code = "SIGSEGV";
    report.message = "crashy was killed by SIGSEGV (address 0x0)";
    protocol::CrashDetails crash;
    crash.signal = 11;
    crash.signal_code = 1;
    crash.registers = {{"rip", 0x55d0c0e01118}};
    crash.frames = {{"libapplibs.so", "dd44dd44", 0x900}, {"crashy", kBuildV1, 0x1118}, {"crashy", kBuildV1, 0x1310}};
    report.crash = crash;
    return report;
  }

  // Uploads uncompressed (the service takes both); expects every id back.
  void UploadReports(const Device& device, const std::vector<protocol::FailureReport>& reports) {
    auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    auto response = Must(client->Send("POST", "/v1/device/reports",
                                      protocol::ReportBatchToJson(protocol::ReportBatch{reports, 0}).dump(),
                                      {{"Content-Type", "application/json"}}),
                         "upload");
    ASSERT_EQ(response.status, 200) << response.body;
  }

  void CheckIn(const Device& device) {
    protocol::CheckIn check_in{
        .os_version = "1.0.0", .runtime_version = "0.1.0", .uptime_seconds = 3600, .free_memory_kb = 2048};
    auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    auto response = Must(client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson(check_in).dump(),
                                      {{"Content-Type", "application/json"}}),
                         "check-in");
    ASSERT_EQ(response.status, 200) << response.body;
  }

  // Symbols uploaded through the CLI, then five crashes from one device.
  std::pair<Device, std::string> OneSymbolizedIssue() {
    Write(dir_.path() / "crashy.sym", SymbolFile());
    EXPECT_EQ(Run({"symbols", "upload", (dir_.path() / "crashy.sym").string()}), 0) << err_.str();
    Device device = Enroll("device-1");
    std::vector<protocol::FailureReport> reports;
    reports.reserve(5);
    for (int i = 0; i < 5; ++i) reports.push_back(Crash());
    UploadReports(device, reports);
    EXPECT_EQ(Run({"issue", "list", "--json"}), 0) << err_.str();
    const json issues = OutJson()["issues"];
    EXPECT_EQ(issues.size(), 1u) << issues.dump();
    return {std::move(device), issues.empty() ? std::string() : issues[0]["id"].get<std::string>()};
  }

  std::int64_t report_counter_ = 0;
  TempDir dir_;
  crypto::PrivateKey manufacturer_key_ = citadel::testing::GenerateTestKey();
  crypto::Certificate manufacturer_ = citadel::testing::IssueTestCa("Test Manufacturer", manufacturer_key_);
  std::unique_ptr<server::Service> service_;
  fs::path service_ca_file_;
  std::string service_ca_;
  std::string tenant_;
  std::string token_;
  std::string product_;
  std::string group_;
  std::vector<Sent> sent_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(IssueCommandsTest, SymbolsUploadSendsTheFileAndSaysWhatItHolds) {
  Write(dir_.path() / "crashy.sym", SymbolFile());
  ASSERT_EQ(Run({"symbols", "upload", (dir_.path() / "crashy.sym").string()}), 0) << err_.str();
  auto posts = SentWith("POST", Tenant("/symbols"));
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].status, 201);
  EXPECT_NE(out_.str().find("crashy  build id aa11aa11aa11, 2 functions, 3 lines"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"symbols", "upload", (dir_.path() / "crashy.sym").string(), "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["modules"][0]["build_id"], kBuildV1);
}

TEST_F(IssueCommandsTest, ImageUploadSendsTheSymbolFileBesideTheImage) {
  auto key = citadel::testing::GenerateTestKey();
  auto registered =
      Call("POST", Tenant("/publisher-keys"), token_, {{"name", "release"}, {"public_key_pem", key.Public().Pem()}});
  ASSERT_EQ(registered.status, 201) << registered.body;
  Write(dir_.path() / "keys" / "publisher.key", Must(key.ToPem(), "pem").reveal());
  const auto app = AppDirectory(dir_.path());
  const auto image_file = dir_.path() / "crashy.img";
  ASSERT_EQ(Run({"image", "pack", app.string(), "--key", (dir_.path() / "keys" / "publisher.key").string(), "-o",
                 image_file.string(), "--symbols", (dir_.path() / "crashy.sym").string()}),
            0)
      << err_.str();
  ASSERT_EQ(Run({"image", "upload", image_file.string(), "--json"}), 0) << err_.str();
  auto posts = SentWith("POST", Tenant("/symbols"));
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].status, 201);
  const json image = OutJson();
  EXPECT_EQ(image["symbols"]["modules"][0]["name"], "crashy");
  EXPECT_EQ(image["symbols"]["modules"][0]["build_id"].get<std::string>().size(), 40u);

  // Without a .sym beside it nothing else is sent.
  fs::remove(dir_.path() / "crashy.sym");
  ASSERT_EQ(Run({"image", "upload", image_file.string()}), 0) << err_.str();
  EXPECT_TRUE(SentWith("POST", Tenant("/symbols")).empty());
  EXPECT_EQ(out_.str().find("Symbols"), std::string::npos) << out_.str();
}

TEST_F(IssueCommandsTest, IssueListAndShowRenderSymbolizedFrames) {
  auto [device, id] = OneSymbolizedIssue();
  ASSERT_FALSE(id.empty());

  ASSERT_EQ(Run({"issue", "list"}), 0) << err_.str();
  std::string text = out_.str();
  for (const std::string& expected : {std::string("ID"), id, std::string("open"), std::string("app-crash"),
                                      std::string("read_sensor"), std::string("citadel issue show ID")}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " in:\n" << text;
  }
  auto gets = SentWith("GET", Tenant("/issues?"));
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_NE(gets[0].path.find("limit=50"), std::string::npos) << gets[0].path;

  // Filters go to the service as query parameters.
  ASSERT_EQ(Run({"issue", "list", "--product", product_, "--state", "open", "--class", "app-crash", "--since", "1h",
                 "--json"}),
            0)
      << err_.str();
  EXPECT_EQ(OutJson()["issues"].size(), 1u);
  gets = SentWith("GET", Tenant("/issues?"));
  ASSERT_EQ(gets.size(), 1u);
  for (const std::string& part :
       {"product=" + product_, std::string("state=open"), std::string("class=app-crash"), std::string("since=")}) {
    EXPECT_NE(gets[0].path.find(part), std::string::npos) << part << " in " << gets[0].path;
  }
  ASSERT_EQ(Run({"issue", "list", "--class", "unplanned-reboot", "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["issues"].size(), 0u);
  ASSERT_EQ(Run({"issue", "list", "--state", "muted"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("No issues match"), std::string::npos) << out_.str();

  ASSERT_EQ(Run({"issue", "show", id}), 0) << err_.str();
  text = out_.str();
  for (const std::string& expected :
       {std::string("Count:"), std::string("5"), std::string("read_sensor (sensor.c:42)"),
        std::string("main (main.c:7)"), std::string("libapplibs.so+0x900"), std::string("1.0.0"),
        device.id.substr(0, 12), std::string("Latest reports"), std::string("crashy was killed by SIGSEGV"),
        std::string("citadel issue resolve " + id)}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " in:\n" << text;
  }
  ASSERT_EQ(Run({"issue", "show", id, "--json"}), 0) << err_.str();
  const json issue = OutJson();
  EXPECT_EQ(issue["count"], 5);
  EXPECT_EQ(issue["device_count"], 1);
  EXPECT_EQ(issue["frames"][1]["function"], "read_sensor");

  EXPECT_EQ(Run({"issue", "show", "iss_does_not_exist"}), 4);
  EXPECT_NE(err_.str().find("citadel issue list"), std::string::npos) << err_.str();
}

TEST_F(IssueCommandsTest, ResolveMuteAndReopenChangeTheState) {
  auto [device, id] = OneSymbolizedIssue();
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Run({"issue", "resolve", id}), 0) << err_.str();
  auto patches = SentWith("PATCH", Tenant("/issues/" + id));
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].status, 200);
  EXPECT_NE(out_.str().find("is now resolved (in version 1.0.0)"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"issue", "list", "--state", "resolved", "--json"}), 0);
  EXPECT_EQ(OutJson()["issues"].size(), 1u);

  ASSERT_EQ(Run({"issue", "mute", id, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["state"], "muted");
  ASSERT_EQ(Run({"issue", "reopen", id}), 0) << err_.str();
  EXPECT_NE(out_.str().find("is now open"), std::string::npos) << out_.str();
  EXPECT_EQ(Run({"issue", "mute", "iss_does_not_exist"}), 4);
}

TEST_F(IssueCommandsTest, DeviceReportListAndTelemetry) {
  auto [device, id] = OneSymbolizedIssue();
  ASSERT_EQ(Run({"device", "report", "list", device.id, "--json"}), 0) << err_.str();
  const json reports = OutJson()["reports"];
  ASSERT_EQ(reports.size(), 5u);
  EXPECT_EQ(reports[0]["issue_id"], id);
  ASSERT_EQ(Run({"device", "report", "list", device.id, "--limit", "2"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("app-crash"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("SIGSEGV"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("ISSUE"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find(id), std::string::npos) << out_.str();
  EXPECT_NE(err_.str().find("More reports"), std::string::npos) << err_.str();
  // Two pages of at most 2 would have been enough for --limit 2: one request.
  EXPECT_EQ(SentWith("GET", Tenant("/devices/" + device.id + "/reports")).size(), 1u);

  ASSERT_EQ(Run({"device", "telemetry", device.id}), 0) << err_.str();
  EXPECT_NE(out_.str().find("No telemetry"), std::string::npos) << out_.str();
  CheckIn(device);
  CheckIn(device);
  ASSERT_EQ(Run({"device", "telemetry", device.id, "--days", "7"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("CHECK-INS"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("1h"), std::string::npos) << out_.str();  // max uptime 3600 s
  EXPECT_NE(SentWith("GET", Tenant("/devices/" + device.id + "/telemetry?days=7")).size(), 0u);
  ASSERT_EQ(Run({"device", "telemetry", device.id, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["days"][0]["check_ins"], 2);

  EXPECT_EQ(Run({"device", "report", "list", std::string(64, 'a')}), 4) << err_.str();
}

TEST_F(IssueCommandsTest, CrashDumpsAreSwitchedPerDeviceGroup) {
  ASSERT_EQ(Run({"device-group", "update-settings", group_, "--crash-dumps", "on", "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["crash_dumps"], true);
  ASSERT_EQ(Run({"device-group", "update-settings", group_, "--crash-dumps", "off"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Crash dumps"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("off"), std::string::npos) << out_.str();
}

}  // namespace
}  // namespace citadel::cli
