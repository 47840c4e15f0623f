// Failure reporting on the service. The rules as pure functions
// (signature, title, version order, regression, bounded zstd), then the
// real thing in-process: an HTTPS service on loopback with a real SQLite
// store, real devices (software roots of trust) uploading zstd batches over
// mutual TLS, and symbol files written here by hand.
#include "server/failures.hpp"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "common/file.hpp"
#include "common/time.hpp"
#include "protocol/failure_report.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"
#include "service_fixture.hpp"

namespace citadel::server {
namespace {

using testing::Headers;
using testing::Must;
using Tenant = testing::TenantAccess;
using Device = testing::EnrolledDevice;

constexpr const char* kApp = "0c0c0c0c-0000-4000-8000-00000000000c";

std::string Compress(std::string_view text, int level = 3) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const std::size_t size = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), level);
  EXPECT_EQ(ZSTD_isError(size), 0U);
  out.resize(size);
  return out;
}

SymbolizedFrame Frame(std::string module, std::uint64_t offset, std::string function = "") {
  return SymbolizedFrame{std::move(module), "ab12", offset, std::move(function), "", 0};
}

protocol::FailureReport CrashReport(std::string error_code = "SIGSEGV") {
  protocol::FailureReport report;
  report.report_id = std::string(32, 'a');
  report.failure_class = "app-crash";
  report.component_id = kApp;
  report.component_version = "1.0.0";
  report.error_code = std::move(error_code);
  return report;
}

// ---------------------------------------------------------------- pure rules

TEST(FailureRulesTest, VersionsCompareByNumericParts) {
  EXPECT_LT(CompareVersions("1.9.0", "1.10.0"), 0);
  EXPECT_GT(CompareVersions("2.0.0", "1.99.99"), 0);
  EXPECT_EQ(CompareVersions("1.0", "1.0.0"), 0);
  EXPECT_LT(CompareVersions("1.0.0-rc1", "1.0.0"), 0);
  EXPECT_LT(CompareVersions("1.0.0-rc1", "1.0.0-rc2"), 0);
  EXPECT_EQ(CompareVersions("1.0.0+build5", "1.0.0"), 0);
  EXPECT_EQ(HighestVersion({"1.2.0", "1.10.0", "1.9.9"}), "1.10.0");
  EXPECT_EQ(HighestVersion({}), "");
}

TEST(FailureRulesTest, OnlyANewerVersionReopensAResolvedIssue) {
  EXPECT_TRUE(ReopensResolvedIssue("2.0.0", "3.0.0"));
  EXPECT_FALSE(ReopensResolvedIssue("2.0.0", "2.0.0"));
  EXPECT_FALSE(ReopensResolvedIssue("2.0.0", "1.0.0"));
  EXPECT_TRUE(ReopensResolvedIssue("", "1.0.0"));
}

TEST(FailureRulesTest, SignatureIsClassComponentErrorCodeAndTopThreeFrames) {
  auto report = CrashReport();
  const std::vector<SymbolizedFrame> frames = {Frame("crashy", 0x10, "read_sensor"), Frame("crashy", 0x20, "loop"),
                                               Frame("crashy", 0x30, "main"), Frame("libc.so.6", 0x40)};
  const std::string signature = IssueSignature(report, frames);
  EXPECT_EQ(signature.size(), 64u);

  // What varies per occurrence does not matter: id, message, versions,
  // registers, frames below the third, offsets once symbolized.
  auto other = report;
  other.report_id = std::string(32, 'b');
  other.message = "another message";
  other.component_version = "2.0.0";
  auto deeper = frames;
  deeper[3] = Frame("other.so", 0x99);
  deeper[0].offset = 0x14;
  EXPECT_EQ(IssueSignature(other, deeper), signature);

  // What identifies the bug does.
  auto different_function = frames;
  different_function[1].function = "other_loop";
  EXPECT_NE(IssueSignature(report, different_function), signature);
  EXPECT_NE(IssueSignature(CrashReport("SIGBUS"), frames), signature);
  auto other_component = report;
  other_component.component_id = "0d0d0d0d-0000-4000-8000-00000000000d";
  EXPECT_NE(IssueSignature(other_component, frames), signature);
  // Unsymbolized frames count by module and offset.
  EXPECT_NE(IssueSignature(report, {Frame("crashy", 0x10)}), IssueSignature(report, {Frame("crashy", 0x11)}));
}

TEST(FailureRulesTest, CrashMachineryFramesAreSkipped) {
  auto report = CrashReport("SIGABRT");
  const std::vector<SymbolizedFrame> app = {Frame("crashy", 0x10, "check"), Frame("crashy", 0x20, "main")};
  std::vector<SymbolizedFrame> with_machinery = {Frame("libapplibs.so", 0x500, "crash_handler"),
                                                 Frame("libc.so.6", 0x600, "__pthread_kill_implementation"),
                                                 Frame("libc.so.6", 0x700, "raise"), Frame("libc.so.6", 0x800)};
  with_machinery.insert(with_machinery.end(), app.begin(), app.end());
  EXPECT_EQ(IssueSignature(report, with_machinery), IssueSignature(report, app));
  EXPECT_EQ(SignatureFrames(with_machinery).front().function, "check");
  // A libc frame below the app's frames stays (only leading ones go).
  EXPECT_FALSE(IsCrashMachineryFrame(Frame("crashy", 0x10, "raise")));
  EXPECT_TRUE(IsCrashMachineryFrame(Frame("libc.so.6", 0x10, "abort")));
  EXPECT_FALSE(IsCrashMachineryFrame(Frame("libc.so.6", 0x10, "memcpy")));
}

TEST(FailureRulesTest, TitlesNameTheTopFrame) {
  auto report = CrashReport();
  SymbolizedFrame top = Frame("crashy", 0x1139, "read_sensor");
  top.file = "/src/app/sensor.c";
  top.line = 42;
  EXPECT_EQ(IssueTitle(report, {top}), "SIGSEGV in read_sensor (sensor.c:42)");
  EXPECT_EQ(IssueTitle(report, {Frame("crashy", 0x1139)}), "SIGSEGV at crashy+0x1139");
  protocol::FailureReport reboot;
  reboot.failure_class = "unplanned-reboot";
  reboot.error_code = "watchdog";
  EXPECT_EQ(IssueTitle(reboot, {}), "unplanned-reboot watchdog");
  reboot.os_version = "1.2.0";
  EXPECT_EQ(ReportVersion(reboot), "1.2.0");
  EXPECT_EQ(ReportVersion(report), "1.0.0");
}

TEST(FailureRulesTest, ZstdDecompressionIsBounded) {
  const std::string text(100'000, 'x');
  EXPECT_EQ(Must(DecompressZstdBounded(Compress(text), 100'000), "exact limit"), text);
  // Two frames back to back are one body.
  EXPECT_EQ(Must(DecompressZstdBounded(Compress("ab") + Compress("cd"), 10), "two frames"), "abcd");
  // Bombs: within the window the service allows (level 3: 2 MiB), stopped
  // by the output limit; with a larger window (level 19), by the window.
  for (int level : {3, 19}) {
    auto bomb = DecompressZstdBounded(Compress(std::string(8 * 1024 * 1024, ' '), level), 1024 * 1024);
    ASSERT_FALSE(bomb);
    EXPECT_EQ(bomb.error().code(), ErrorCode::kTooLarge) << level << ": " << bomb.error().message();
  }
  auto garbage = DecompressZstdBounded("not zstd at all", 1024);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), ErrorCode::kParse);
  const std::string whole = Compress(text);
  auto truncated = DecompressZstdBounded(std::string_view(whole).substr(0, whole.size() / 2), 1024 * 1024);
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code(), ErrorCode::kParse);
}

// ---------------------------------------------------------------- the service

// Build ids of the app's two releases: the same source, relinked, so the
// same function sits at other offsets.
constexpr const char* kBuildV1 = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
constexpr const char* kBuildV2 = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";
constexpr const char* kBuildV3 = "cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33";

// Written by hand: read_sensor dereferences null at sensor.c:42; main calls
// it at main.c:7 (v1 layout; v2 and v3 shift everything by 0x1000 and
// 0x2000).
std::string SymbolFile(const std::string& build_id, std::uint64_t shift) {
  auto hex = [shift](std::uint64_t value) {
    char buffer[32];
    (void)std::snprintf(buffer, sizeof buffer, "%llx", static_cast<unsigned long long>(value) + shift);
    return std::string(buffer);
  };
  const std::vector<std::string> lines = {
      "CITADEL-SYMBOLS 1",
      "MODULE " + build_id + " crashy",
      "FILE 0 /src/crashy/sensor.c",
      "FILE 1 /src/crashy/main.c",
      "FUNC " + hex(0x1100) + " 40 read_sensor",
      "FUNC " + hex(0x1200) + " 80 compute",
      "FUNC " + hex(0x1300) + " 80 main",
      "LINE " + hex(0x1100) + " 10 41 0",
      "LINE " + hex(0x1110) + " 30 42 0",
      "LINE " + hex(0x1200) + " 80 60 0",
      "LINE " + hex(0x1300) + " 80 7 1",
  };
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

class FailureServiceTest : public testing::ServiceFixture {
 protected:
  Tenant CreateTenant(const std::string& name) { return CreateTenantAccess(name); }
  using ServiceFixture::Enroll;
  Device Enroll(const Tenant& tenant, const std::string& name) { return Enroll(tenant, tenant.group_id, name); }

  void UploadSymbols(const Tenant& tenant, const std::string& text) {
    auto response = Must(Client()->Send("POST", "/v1/tenants/" + tenant.id + "/symbols", text,
                                        {{"Authorization", "Bearer " + tenant.token}, {"Content-Type", "text/plain"}}),
                         "symbols");
    ASSERT_EQ(response.status, 201) << response.body;
  }

  // A crash of the app: read_sensor (+0x18 into it, line 42) called from
  // main, after applibs' handler frame; `version` picks the build.
  protocol::FailureReport Crash(const std::string& version, const std::string& function = "read_sensor") {
    const std::string build = version == "1.0.0" ? kBuildV1 : version == "2.0.0" ? kBuildV2 : kBuildV3;
    const std::uint64_t shift = version == "1.0.0" ? 0 : version == "2.0.0" ? 0x1000 : 0x2000;
    const std::uint64_t top = (function == "read_sensor" ? 0x1118 : 0x1210) + shift;
    protocol::FailureReport report;
    char id[40];
    (void)std::snprintf(id, sizeof id, "%032llx", static_cast<unsigned long long>(++report_counter_));
    report.report_id = id;
    report.failure_class = "app-crash";
    report.occurred_at = FormatRfc3339(Clock::now() - std::chrono::seconds(5));
    report.last_occurred_at = report.occurred_at;
    report.component_id = kApp;
    report.component_version = version;
    report.os_version = "1.0.0";
    report.runtime_version = "0.1.0";
    report.error_code = "SIGSEGV";
    report.message = "crashy was killed by SIGSEGV (address 0x0)";
    protocol::CrashDetails crash;
    crash.signal = 11;
    crash.signal_code = 1;
    crash.registers = {{"rip", 0x55d0c0e01139}, {"rsp", 0x7ffc0000}};
    crash.frames = {{"libapplibs.so", "dd44dd44", 0x900}, {"crashy", build, top}, {"crashy", build, 0x1310 + shift}};
    report.crash = crash;
    return report;
  }

  http::Response Upload(const Device& device, const std::string& body, const std::string& encoding = "zstd",
                        const std::string& content_type = "application/json") {
    Headers headers{{"Content-Type", content_type}};
    if (!encoding.empty()) headers.emplace_back("Content-Encoding", encoding);
    auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    return Must(client->Send("POST", "/v1/device/reports", body, headers), "upload");
  }

  // Uploads zstd-compressed; expects 200 and every id acknowledged.
  void UploadBatch(const Device& device, const std::vector<protocol::FailureReport>& reports,
                   std::int64_t dropped = 0) {
    protocol::ReportBatch batch{reports, dropped};
    auto response = Upload(device, Compress(protocol::ReportBatchToJson(batch).dump()));
    ASSERT_EQ(response.status, 200) << response.body;
    auto reply = Must(protocol::ParseReportBatchReply(response.body), "reply");
    std::vector<std::string> ids;
    ids.reserve(reports.size());
    for (const auto& report : reports) ids.push_back(report.report_id);
    EXPECT_EQ(reply.acknowledged, ids);
  }

  Json Issues(const Tenant& tenant, const std::string& query = "") {
    auto response = Call("GET", "/v1/tenants/" + tenant.id + "/issues" + query, tenant.token);
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["issues"];
  }

  Json Issue(const Tenant& tenant, const std::string& id) {
    auto response = Call("GET", "/v1/tenants/" + tenant.id + "/issues/" + id, tenant.token);
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response);
  }

  std::int64_t report_counter_ = 0;
};

TEST_F(FailureServiceTest, FifteenCrashesOfOneBugOnThreeDevicesAreOneSymbolizedIssue) {
  auto tenant = CreateTenant("Acme");
  UploadSymbols(tenant, SymbolFile(kBuildV1, 0));
  std::vector<Device> devices;
  devices.reserve(3);
  for (int i = 0; i < 3; ++i) devices.push_back(Enroll(tenant, "d" + std::to_string(i)));
  for (const Device& device : devices) {
    std::vector<protocol::FailureReport> batch;
    batch.reserve(5);
    for (int i = 0; i < 5; ++i) batch.push_back(Crash("1.0.0"));
    UploadBatch(device, batch);
  }
  Json issues = Issues(tenant);
  ASSERT_EQ(issues.size(), 1u) << issues.dump();
  EXPECT_EQ(issues[0]["count"], 15);
  EXPECT_EQ(issues[0]["device_count"], 3);
  EXPECT_EQ(issues[0]["state"], "open");
  EXPECT_EQ(issues[0]["class"], "app-crash");
  EXPECT_EQ(issues[0]["product_id"], tenant.product_id);
  EXPECT_EQ(issues[0]["title"], "SIGSEGV in read_sensor (sensor.c:42)");

  Json issue = Issue(tenant, issues[0]["id"]);
  // The handler's frame is kept in the report but the top app frame is
  // symbolized to the function and line; the caller's return address to
  // the call's line in main.
  ASSERT_EQ(issue["frames"].size(), 3u) << issue.dump();
  EXPECT_EQ(issue["frames"][1]["function"], "read_sensor");
  EXPECT_EQ(issue["frames"][1]["file"], "/src/crashy/sensor.c");
  EXPECT_EQ(issue["frames"][1]["line"], 42);
  EXPECT_EQ(issue["frames"][2]["function"], "main");
  EXPECT_EQ(issue["frames"][2]["line"], 7);
  EXPECT_EQ(issue["devices"].size(), 3u);
  ASSERT_EQ(issue["versions"].size(), 1u);
  EXPECT_EQ(issue["versions"][0]["version"], "1.0.0");
  EXPECT_EQ(issue["versions"][0]["count"], 15);
  ASSERT_EQ(issue["reports"].size(), 15u);
  EXPECT_EQ(issue["reports"][0]["frames"][1]["function"], "read_sensor");
  EXPECT_EQ(issue["reports"][0]["message"], "crashy was killed by SIGSEGV (address 0x0)");

  // A device's own reports, paginated newest first.
  auto page = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + devices[0].id + "/reports?limit=3", tenant.token);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(Body(page)["reports"].size(), 3u);
  ASSERT_TRUE(Body(page)["next"].is_string());
  auto rest = Call("GET",
                   "/v1/tenants/" + tenant.id + "/devices/" + devices[0].id +
                       "/reports?limit=3&after=" + Body(page)["next"].get<std::string>(),
                   tenant.token);
  ASSERT_EQ(rest.status, 200) << rest.body;
  EXPECT_EQ(Body(rest)["reports"].size(), 2u);
}

TEST_F(FailureServiceTest, TwoBugsAreTwoIssuesAndOneBugInTwoVersionsIsOne) {
  auto tenant = CreateTenant("Acme");
  UploadSymbols(tenant, SymbolFile(kBuildV1, 0) + SymbolFile(kBuildV2, 0x1000).substr(18));
  auto device = Enroll(tenant, "d");
  UploadBatch(device, {Crash("1.0.0"), Crash("1.0.0", "compute"), Crash("2.0.0")});
  Json issues = Issues(tenant);
  ASSERT_EQ(issues.size(), 2u) << issues.dump();
  std::map<std::string, Json> by_title;
  for (const auto& issue : issues) by_title[issue["title"].get<std::string>()] = issue;
  ASSERT_TRUE(by_title.count("SIGSEGV in read_sensor (sensor.c:42)")) << issues.dump();
  ASSERT_TRUE(by_title.count("SIGSEGV in compute (sensor.c:60)")) << issues.dump();
  const Json& both = by_title["SIGSEGV in read_sensor (sensor.c:42)"];
  EXPECT_EQ(both["count"], 2);
  EXPECT_EQ(both["versions"], Json::array({"1.0.0", "2.0.0"}));
  EXPECT_EQ(by_title["SIGSEGV in compute (sensor.c:60)"]["count"], 1);
}

TEST_F(FailureServiceTest, ResolvedIssueRegressesInANewerVersionOnly) {
  auto tenant = CreateTenant("Acme");
  UploadSymbols(tenant, SymbolFile(kBuildV1, 0));
  UploadSymbols(tenant, SymbolFile(kBuildV2, 0x1000));
  UploadSymbols(tenant, SymbolFile(kBuildV3, 0x2000));
  auto device = Enroll(tenant, "d");
  UploadBatch(device, {Crash("1.0.0"), Crash("2.0.0")});
  const std::string id = Issues(tenant)[0]["id"];
  auto resolved = Call("PATCH", "/v1/tenants/" + tenant.id + "/issues/" + id, tenant.token, {{"state", "resolved"}});
  ASSERT_EQ(resolved.status, 200) << resolved.body;
  EXPECT_EQ(Body(resolved)["state"], "resolved");
  EXPECT_EQ(Body(resolved)["resolved_in_version"], "2.0.0");

  // v1 after the resolve: a device not updated yet. Counted, still resolved.
  UploadBatch(device, {Crash("1.0.0")});
  Json issue = Issue(tenant, id);
  EXPECT_EQ(issue["state"], "resolved");
  EXPECT_EQ(issue["regression"], false);
  EXPECT_EQ(issue["count"], 3);

  // v3: the bug is back.
  UploadBatch(device, {Crash("3.0.0")});
  issue = Issue(tenant, id);
  EXPECT_EQ(issue["state"], "open");
  EXPECT_EQ(issue["regression"], true);
  EXPECT_EQ(issue["count"], 4);
  EXPECT_EQ(issue["versions"].size(), 3u);
  EXPECT_EQ(Issues(tenant, "?state=open").size(), 1u);
  EXPECT_EQ(Issues(tenant, "?state=resolved").size(), 0u);
}

TEST_F(FailureServiceTest, SameBatchTwiceCountsOnceAndOccurrencesAdd) {
  auto tenant = CreateTenant("Acme");
  auto device = Enroll(tenant, "d");
  auto folded = Crash("1.0.0");
  folded.occurrences = 40;  // the device's rate limit folded 39 crashes into it
  std::vector<protocol::FailureReport> batch = {folded, Crash("1.0.0")};
  UploadBatch(device, batch, 3);
  UploadBatch(device, batch, 3);  // the reply was lost; the device retries
  Json issues = Issues(tenant);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0]["count"], 41);
  // Unsymbolized (no symbols uploaded): module and offset.
  EXPECT_EQ(issues[0]["title"], "SIGSEGV at crashy+0x1118");
  auto shown = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/reports", tenant.token);
  EXPECT_EQ(Body(shown)["reports"].size(), 2u);
  EXPECT_EQ(service_->store().GetDevice(device.id)->reports_dropped, 3);
  // Uncompressed is accepted too.
  protocol::ReportBatch plain{{Crash("1.0.0")}, 0};
  EXPECT_EQ(Upload(device, protocol::ReportBatchToJson(plain).dump(), "").status, 200);
  EXPECT_EQ(Issues(tenant)[0]["count"], 42);
}

TEST_F(FailureServiceTest, BadBatchesAreRefusedAndNothingIsStored) {
  auto tenant = CreateTenant("Acme");
  auto device = Enroll(tenant, "d");
  // Malformed: a bad report id, named in the error.
  auto bad = Crash("1.0.0");
  bad.report_id = "not-hex";
  auto malformed = Upload(device, Compress(protocol::ReportBatchToJson({{Crash("1.0.0"), bad}, 0}).dump()));
  EXPECT_EQ(malformed.status, 400) << malformed.body;
  EXPECT_EQ(Body(malformed)["type"].get<std::string>().find("invalid-report") != std::string::npos, true)
      << malformed.body;
  EXPECT_NE(malformed.body.find("report_id"), std::string::npos) << malformed.body;
  EXPECT_EQ(Upload(device, Compress("{not json")).status, 400);
  EXPECT_EQ(Upload(device, "definitely not zstd").status, 400);
  // A zstd bomb: a few KiB that inflate to 8 MiB of blanks.
  std::string bomb_json = protocol::ReportBatchToJson({{Crash("1.0.0")}, 0}).dump();
  bomb_json.insert(1, std::string(8 * 1024 * 1024, ' '));
  for (int level : {3, 19}) {
    const std::string bomb = Compress(bomb_json, level);
    ASSERT_LT(bomb.size(), protocol::kMaxCompressedReportBatchBytes);
    auto bombed = Upload(device, bomb);
    EXPECT_EQ(bombed.status, 413) << bombed.body;
  }
  // Oversized on the wire (incompressible bytes) and uncompressed.
  auto random = crypto::RandomBytes(protocol::kMaxCompressedReportBatchBytes + 1);
  EXPECT_EQ(Upload(device, std::string(random.begin(), random.end())).status, 413);
  std::string large_json = protocol::ReportBatchToJson({{Crash("1.0.0")}, 0}).dump();
  large_json.insert(1, std::string(protocol::kMaxReportBatchBytes, ' '));
  // (The HTTP layer's own body limit is the same 1 MiB: it answers 413 or
  // closes the connection.)
  auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
  auto too_large = client->Send("POST", "/v1/device/reports", large_json, {{"Content-Type", "application/json"}});
  if (too_large) {
    EXPECT_EQ(too_large->status, 413) << too_large->body;
  }
  // Other encodings and content types.
  EXPECT_EQ(Upload(device, Compress("{}"), "gzip").status, 415);
  EXPECT_EQ(Upload(device, Compress("{}"), "zstd", "text/plain").status, 415);
  // Without a device certificate.
  EXPECT_EQ(
      Must(Client()->Send("POST", "/v1/device/reports", "{}", {{"Content-Type", "application/json"}}), "anon").status,
      401);

  EXPECT_TRUE(Issues(tenant).empty());
  auto shown = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/reports", tenant.token);
  EXPECT_TRUE(Body(shown)["reports"].empty()) << shown.body;
}

TEST_F(FailureServiceTest, TenantsCannotTouchEachOthersIssues) {
  auto acme = CreateTenant("Acme");
  auto other = CreateTenant("Other");
  auto mine = Enroll(acme, "mine");
  auto theirs = Enroll(other, "theirs");
  UploadBatch(mine, {Crash("1.0.0")});
  // The same bug on the other tenant's device is the other tenant's issue.
  UploadBatch(theirs, {Crash("1.0.0"), Crash("1.0.0")});
  Json acme_issues = Issues(acme);
  ASSERT_EQ(acme_issues.size(), 1u);
  EXPECT_EQ(acme_issues[0]["count"], 1);
  EXPECT_EQ(Issues(other)[0]["count"], 2);
  const std::string id = acme_issues[0]["id"];
  EXPECT_EQ(Call("GET", "/v1/tenants/" + other.id + "/issues/" + id, other.token).status, 404);
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + other.id + "/issues/" + id, other.token, {{"state", "muted"}}).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + acme.id + "/issues/" + id, other.token).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + other.id + "/devices/" + mine.id + "/reports", other.token).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + other.id + "/devices/" + mine.id + "/telemetry", other.token).status, 404);
  EXPECT_EQ(Issue(acme, id)["state"], "open");
}

TEST_F(FailureServiceTest, ReaderCanReadButNotChangeIssues) {
  auto tenant = CreateTenant("Acme");
  auto device = Enroll(tenant, "d");
  UploadBatch(device, {Crash("1.0.0")});
  const std::string reader = Token(tenant, "reader");
  const std::string id = Issues(tenant)[0]["id"];
  EXPECT_EQ(Call("GET", "/v1/tenants/" + tenant.id + "/issues/" + id, reader).status, 200);
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + tenant.id + "/issues/" + id, reader, {{"state", "muted"}}).status, 403);
  auto symbols = Must(Client()->Send("POST", "/v1/tenants/" + tenant.id + "/symbols", SymbolFile(kBuildV1, 0),
                                     {{"Authorization", "Bearer " + reader}, {"Content-Type", "text/plain"}}),
                      "symbols");
  EXPECT_EQ(symbols.status, 403);
  const std::string contributor = Token(tenant, "contributor");
  auto muted = Call("PATCH", "/v1/tenants/" + tenant.id + "/issues/" + id, contributor, {{"state", "muted"}});
  EXPECT_EQ(muted.status, 200) << muted.body;
  EXPECT_EQ(Body(muted)["state"], "muted");
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + tenant.id + "/issues/" + id, contributor, {{"state", "gone"}}).status, 400);
}

TEST_F(FailureServiceTest, BadSymbolFilesAreRefused) {
  auto tenant = CreateTenant("Acme");
  auto refused = Must(Client()->Send("POST", "/v1/tenants/" + tenant.id + "/symbols", "CITADEL-SYMBOLS 1\nFUNC x\n",
                                     {{"Authorization", "Bearer " + tenant.token}, {"Content-Type", "text/plain"}}),
                      "symbols");
  EXPECT_EQ(refused.status, 400) << refused.body;
  auto wrong_type = Call("POST", "/v1/tenants/" + tenant.id + "/symbols", tenant.token, Json::object());
  EXPECT_EQ(wrong_type.status, 415);
}

// Symbol files of real apps exceed the 1 MiB every other request is held
// to: the symbols route alone takes up to symbols::kMaxSymbolFileBytes.
TEST_F(FailureServiceTest, SymbolFilesLargerThanOtherRequestsAreAccepted) {
  auto tenant = CreateTenant("Acme");
  std::string text = "CITADEL-SYMBOLS 1\nMODULE " + std::string(kBuildV1) + " crashy\nFILE 0 /src/crashy/big.c\n";
  constexpr int kFunctions = 60'000;  // ~3 MiB of FUNC records
  for (int i = 0; i < kFunctions; ++i) {
    char line[96];
    (void)std::snprintf(line, sizeof line, "FUNC %x 10 generated_function_with_a_long_name_%d\n", 0x1000 + 0x10 * i, i);
    text += line;
  }
  ASSERT_GT(text.size(), std::size_t{2} << 20);
  UploadSymbols(tenant, text);
  // Any other route keeps the 1 MiB limit.
  auto refused = Client()->Send("POST", "/v1/tenants/" + tenant.id + "/products", std::string(text.size(), ' '),
                                {{"Authorization", "Bearer " + tenant.token}, {"Content-Type", "application/json"}});
  ASSERT_TRUE(refused.has_value()) << refused.error().message();
  EXPECT_EQ(refused->status, 413);
}

TEST_F(FailureServiceTest, CheckInStoresTelemetryAndCarriesTheGroupsCrashDumpSetting) {
  auto tenant = CreateTenant("Acme");
  auto device = Enroll(tenant, "d");
  auto check_in = [&](std::int64_t uptime, std::int64_t restarts, std::int64_t rx) {
    protocol::CheckIn body{
        .os_version = "1.0.0", .runtime_version = "0.1.0", .uptime_seconds = uptime, .free_memory_kb = 1000 - uptime};
    body.telemetry = protocol::CheckInTelemetry{restarts, rx, rx / 2, 0};
    auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    auto response = Must(client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson(body).dump(),
                                      {{"Content-Type", "application/json"}}),
                         "check-in");
    EXPECT_EQ(response.status, 200) << response.body;
    return Must(protocol::ParseCheckInReply(response.body), "reply");
  };
  auto reply = check_in(100, 1, 1000);
  ASSERT_TRUE(reply.reporting);
  EXPECT_FALSE(reply.reporting->crash_dumps);

  auto patched = Call("PATCH", "/v1/tenants/" + tenant.id + "/device-groups/" + tenant.group_id, tenant.token,
                      {{"crash_dumps", true}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Body(patched)["crash_dumps"], true);
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + tenant.id + "/device-groups/" + tenant.group_id, tenant.token,
                 {{"crash_dumps", "yes"}})
                .status,
            400);
  reply = check_in(200, 4, 1500);
  ASSERT_TRUE(reply.reporting);
  EXPECT_TRUE(reply.reporting->crash_dumps);

  auto telemetry = Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/telemetry", tenant.token);
  ASSERT_EQ(telemetry.status, 200) << telemetry.body;
  Json days = Body(telemetry)["days"];
  ASSERT_EQ(days.size(), 1u) << telemetry.body;
  EXPECT_EQ(days[0]["day"], FormatRfc3339(Clock::now()).substr(0, 10));
  EXPECT_EQ(days[0]["check_ins"], 2);
  EXPECT_EQ(days[0]["max_uptime_seconds"], 200);
  EXPECT_EQ(days[0]["min_free_memory_kb"], 800);
  EXPECT_EQ(days[0]["app_restarts"], 4);
  EXPECT_EQ(days[0]["rx_bytes"], 1500);
  EXPECT_EQ(days[0]["tx_bytes"], 750);
  EXPECT_EQ(
      Call("GET", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/telemetry?days=91", tenant.token).status,
      400);
}

}  // namespace
}  // namespace citadel::server
