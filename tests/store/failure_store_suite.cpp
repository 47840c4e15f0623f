// Failure reporting in the store (schema v4), on every backend: ingest is
// idempotent per (device, report id) and counts into issues, devices and
// versions in one transaction; the regression rule comes from the caller;
// symbols, telemetry and retention.
#include <cstdio>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/migrations.hpp"
#include "store_suite.hpp"

namespace citadel::store::test {
namespace {

constexpr std::int64_t kDay = 24 * 60 * 60;
constexpr std::int64_t kNow = 1'800'000'000;  // a fixed "now": no test reads the clock

std::string DeviceId(int n) {
  char buffer[65];
  (void)std::snprintf(buffer, sizeof buffer, "%064x", n + 0x5000);
  return buffer;
}

// A tenant "<t>" with product "<t>-p", group "<t>-g" and claimed devices
// DeviceId(first..first+count-1).
void SetUpTenant(Store& store, const std::string& tenant, int first, int count) {
  ASSERT_OK(store.CreateTenant(Tenant{tenant, "Tenant " + tenant, 1000},
                               TenantCa{tenant, "root", "issuing", "sealed-root", "sealed-issuing"}));
  ASSERT_OK(store.CreateProduct(Product{tenant + "-p", tenant, "Thermostat", "", 1000},
                                {DeviceGroup{tenant + "-g", tenant, tenant + "-p", "Production", 1000}}));
  for (int i = first; i < first + count; ++i) {
    ASSERT_OK(store.RecordDeviceSeen(DeviceId(i), "software", 1000));
    ASSERT_OK(store.ClaimDevice(DeviceId(i), tenant, tenant + "-p", tenant + "-g", 1000));
  }
}

FailureReportRecord Report(const std::string& tenant, const std::string& report_id, const std::string& signature,
                           const std::string& version = "1.0.0", std::int64_t occurrences = 1,
                           std::int64_t at = kNow - 100) {
  FailureReportRecord record;
  record.report_id = report_id;
  record.product_id = tenant + "-p";
  record.signature = signature;
  record.new_issue_id = "iss-" + tenant + "-" + signature + "-" + report_id;
  record.failure_class = "app-crash";
  record.component_id = "app-1";
  record.error_code = "SIGSEGV";
  record.title = "SIGSEGV in " + signature;
  record.frames_json = R"([{"module":"crashy","build_id":"ab","offset":"0x10","function":")" + signature + R"("}])";
  record.version = version;
  record.occurrences = occurrences;
  record.occurred_at = at;
  record.last_occurred_at = at;
  record.body = R"({"report_id":")" + report_id + R"("})";
  return record;
}

// The caller's rule in tests: versions compare as text ("1.0.0" < "2.0.0").
bool NewerReopens(std::string_view resolved_in, std::string_view version) { return version > resolved_in; }

FailureIssue OnlyIssue(Store& store, const std::string& tenant) {
  FailureIssueFilter filter;
  filter.tenant_id = tenant;
  auto issues = Value(store.ListFailureIssues(filter));
  EXPECT_EQ(issues.size(), 1u);
  return issues.empty() ? FailureIssue{} : issues.front();
}

}  // namespace

TEST_P(StoreSuite, FailureReportsAreCountedIntoOneIssuePerSignature) {
  SetUpTenant(*store_, "t1", 1, 3);
  // 15 reports of one bug from 3 devices, in batches of 5.
  for (int device = 1; device <= 3; ++device) {
    std::vector<FailureReportRecord> batch;
    batch.reserve(5);
    for (int i = 0; i < 5; ++i) batch.push_back(Report("t1", "r" + std::to_string(i), "deref"));
    auto result = Value(store_->IngestFailureReports("t1", DeviceId(device), batch, 0, kNow, NewerReopens));
    EXPECT_EQ(result.new_reports, 5);
    EXPECT_EQ(result.acknowledged.size(), 5u);
  }
  FailureIssue issue = OnlyIssue(*store_, "t1");
  EXPECT_EQ(issue.count, 15);
  EXPECT_EQ(issue.device_count, 3);
  EXPECT_EQ(issue.state, IssueState::kOpen);
  EXPECT_FALSE(issue.regression);
  EXPECT_EQ(issue.versions, std::vector<std::string>{"1.0.0"});
  EXPECT_EQ(issue.title, "SIGSEGV in deref");
  EXPECT_EQ(issue.product_id, "t1-p");
  EXPECT_EQ(Value(store_->ListFailureIssueDevices("t1", issue.id, 100)).size(), 3u);
  auto versions = Value(store_->ListFailureIssueVersions("t1", issue.id));
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].count, 15);

  // A second signature is a second issue.
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "other", "overflow")}, 0, kNow, NewerReopens));
  FailureIssueFilter filter;
  filter.tenant_id = "t1";
  EXPECT_EQ(Value(store_->ListFailureIssues(filter)).size(), 2u);
}

TEST_P(StoreSuite, RetriedBatchCountsOnceAndIsAcknowledgedAgain) {
  SetUpTenant(*store_, "t1", 1, 1);
  std::vector<FailureReportRecord> batch = {Report("t1", "a", "deref", "1.0.0", 3), Report("t1", "b", "deref")};
  auto first = Value(store_->IngestFailureReports("t1", DeviceId(1), batch, 7, kNow, NewerReopens));
  auto second = Value(store_->IngestFailureReports("t1", DeviceId(1), batch, 7, kNow + 5, NewerReopens));
  EXPECT_EQ(first.new_reports, 2);
  EXPECT_EQ(second.new_reports, 0);
  EXPECT_EQ(second.acknowledged, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(OnlyIssue(*store_, "t1").count, 4);  // occurrences add: 3 + 1
  // The dropped count of a retried batch is not added twice.
  EXPECT_EQ(Value(store_->GetDevice(DeviceId(1))).reports_dropped, 7);
}

TEST_P(StoreSuite, ConcurrentRetriesOfOneBatchCountOnce) {
  SetUpTenant(*store_, "t1", 1, 1);
  std::vector<FailureReportRecord> batch;
  batch.reserve(8);
  for (int i = 0; i < 8; ++i) batch.push_back(Report("t1", "r" + std::to_string(i), i % 2 == 0 ? "a" : "b"));
  constexpr int kReplicas = 4;
  std::vector<std::unique_ptr<Store>> replicas;
  for (int i = 0; i < kReplicas; ++i) {
    auto replica = backend_->Open();
    ASSERT_TRUE(replica.has_value()) << replica.error().message();
    replicas.push_back(std::move(*replica));
  }
  std::latch start(kReplicas);
  std::vector<std::thread> threads;
  threads.reserve(kReplicas);
  std::vector<int> failures(kReplicas, 0);
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      // A replica that loses a race may fail (the device retries); none
      // may double count.
      for (int attempt = 0; attempt < 5; ++attempt) {
        if (replicas[static_cast<std::size_t>(i)]->IngestFailureReports("t1", DeviceId(1), batch, 0, kNow,
                                                                        NewerReopens)) {
          return;
        }
        ++failures[static_cast<std::size_t>(i)];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  FailureIssueFilter filter;
  filter.tenant_id = "t1";
  std::int64_t total = 0;
  for (const auto& issue : Value(store_->ListFailureIssues(filter))) total += issue.count;
  EXPECT_EQ(total, 8);
}

TEST_P(StoreSuite, ResolvedIssueReopensOnlyForWhatTheRuleSays) {
  SetUpTenant(*store_, "t1", 1, 1);
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "v1", "deref", "1.0.0")}, 0, kNow, NewerReopens));
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "v2", "deref", "2.0.0")}, 0, kNow, NewerReopens));
  FailureIssue issue = OnlyIssue(*store_, "t1");
  EXPECT_EQ(issue.versions, (std::vector<std::string>{"1.0.0", "2.0.0"}));
  auto resolved = Value(store_->SetFailureIssueState("t1", issue.id, IssueState::kResolved, "2.0.0"));
  EXPECT_EQ(resolved.state, IssueState::kResolved);
  EXPECT_EQ(resolved.resolved_in_version, "2.0.0");

  // An old version: counted, stays resolved.
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "old", "deref", "1.0.0")}, 0, kNow, NewerReopens));
  issue = Value(store_->GetFailureIssue("t1", issue.id));
  EXPECT_EQ(issue.state, IssueState::kResolved);
  EXPECT_EQ(issue.count, 3);

  // A newer version: a regression.
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "v3", "deref", "3.0.0")}, 0, kNow, NewerReopens));
  issue = Value(store_->GetFailureIssue("t1", issue.id));
  EXPECT_EQ(issue.state, IssueState::kOpen);
  EXPECT_TRUE(issue.regression);
  EXPECT_EQ(issue.resolved_in_version, "");
  EXPECT_EQ(issue.count, 4);

  // Muted issues keep counting and stay muted.
  ASSERT_OK(store_->SetFailureIssueState("t1", issue.id, IssueState::kMuted, ""));
  ASSERT_OK(
      store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "v4", "deref", "4.0.0")}, 0, kNow, NewerReopens));
  issue = Value(store_->GetFailureIssue("t1", issue.id));
  EXPECT_EQ(issue.state, IssueState::kMuted);
  EXPECT_EQ(issue.count, 5);
}

TEST_P(StoreSuite, FailureReportsAreTenantScoped) {
  SetUpTenant(*store_, "t1", 1, 1);
  SetUpTenant(*store_, "t2", 2, 1);
  // t2's device cannot report into t1, nor name t1's product.
  EXPECT_EQ(
      CodeOf(store_->IngestFailureReports("t1", DeviceId(2), {Report("t1", "x", "deref")}, 0, kNow, NewerReopens)),
      ErrorCode::kNotFound);
  EXPECT_EQ(
      CodeOf(store_->IngestFailureReports("t2", DeviceId(2), {Report("t1", "x", "deref")}, 0, kNow, NewerReopens)),
      ErrorCode::kInvalidArgument);
  ASSERT_OK(store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "x", "deref")}, 0, kNow, NewerReopens));
  ASSERT_OK(store_->IngestFailureReports("t2", DeviceId(2), {Report("t2", "x", "deref")}, 0, kNow, NewerReopens));
  FailureIssue mine = OnlyIssue(*store_, "t1");
  EXPECT_EQ(mine.count, 1);
  EXPECT_EQ(CodeOf(store_->GetFailureIssue("t2", mine.id)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->SetFailureIssueState("t2", mine.id, IssueState::kMuted, "")), ErrorCode::kNotFound);
  FailureReportFilter reports;
  reports.tenant_id = "t2";
  reports.device_id = DeviceId(1);
  EXPECT_TRUE(Value(store_->ListFailureReports(reports)).empty());
  // Nothing of a refused batch was kept.
  reports.tenant_id = "t1";
  EXPECT_EQ(Value(store_->ListFailureReports(reports)).size(), 1u);
}

TEST_P(StoreSuite, IssuesAreFilteredAndPaginatedMostRecentFirst) {
  SetUpTenant(*store_, "t1", 1, 1);
  for (int i = 0; i < 5; ++i) {
    auto report = Report("t1", "r" + std::to_string(i), "sig" + std::to_string(i), "1.0.0", 1, kNow - 1000 + i);
    if (i == 4) report.failure_class = "app-exit";
    ASSERT_OK(store_->IngestFailureReports("t1", DeviceId(1), {report}, 0, kNow, NewerReopens));
  }
  FailureIssueFilter filter;
  filter.tenant_id = "t1";
  filter.limit = 2;
  std::vector<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    auto issues = Value(store_->ListFailureIssues(filter));
    for (const auto& issue : issues) seen.push_back(issue.signature);
    if (issues.size() < 2) break;
    filter.after_last_seen = issues.back().last_seen;
    filter.after_id = issues.back().id;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"sig4", "sig3", "sig2", "sig1", "sig0"}));

  FailureIssueFilter by_class;
  by_class.tenant_id = "t1";
  by_class.failure_class = "app-exit";
  EXPECT_EQ(Value(store_->ListFailureIssues(by_class)).size(), 1u);
  FailureIssueFilter since;
  since.tenant_id = "t1";
  since.since = kNow - 1000 + 3;
  EXPECT_EQ(Value(store_->ListFailureIssues(since)).size(), 2u);
  FailureIssueFilter resolved;
  resolved.tenant_id = "t1";
  resolved.state = IssueState::kResolved;
  EXPECT_TRUE(Value(store_->ListFailureIssues(resolved)).empty());
}

TEST_P(StoreSuite, DeviceReportsArePaginatedNewestFirstAndPruned) {
  SetUpTenant(*store_, "t1", 1, 1);
  std::vector<FailureReportRecord> batch;
  batch.reserve(5);
  for (int i = 0; i < 5; ++i) batch.push_back(Report("t1", "r" + std::to_string(i), "deref", "1.0.0", 1, kNow - i));
  ASSERT_OK(store_->IngestFailureReports("t1", DeviceId(1), batch, 0, kNow - 100 * kDay, NewerReopens));
  ASSERT_OK(store_->IngestFailureReports("t1", DeviceId(1), {Report("t1", "late", "deref")}, 0, kNow, NewerReopens));
  FailureReportFilter filter;
  filter.tenant_id = "t1";
  filter.device_id = DeviceId(1);
  filter.limit = 4;
  auto first = Value(store_->ListFailureReports(filter));
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].report_id, "late");
  filter.after_occurred_at = first.back().occurred_at;
  filter.after_report_id = first.back().report_id;
  EXPECT_EQ(Value(store_->ListFailureReports(filter)).size(), 2u);
  EXPECT_FALSE(first[0].issue_id.empty());
  EXPECT_EQ(first[0].body, R"({"report_id":"late"})");

  // 90-day retention: the old batch goes, the issue's count stays.
  EXPECT_EQ(Value(store_->PruneFailureReports(kNow - 90 * kDay)), 5);
  FailureReportFilter all;
  all.tenant_id = "t1";
  all.device_id = DeviceId(1);
  EXPECT_EQ(Value(store_->ListFailureReports(all)).size(), 1u);
  EXPECT_EQ(OnlyIssue(*store_, "t1").count, 6);
}

TEST_P(StoreSuite, SymbolModulesAreKeptPerTenantAndBuildId) {
  SetUpTenant(*store_, "t1", 1, 0);
  SetUpTenant(*store_, "t2", 2, 0);
  ASSERT_OK(store_->PutSymbolModule(SymbolModule{"t1", "abcd", "crashy", "v1", 2, 3, 1000}));
  ASSERT_OK(store_->PutSymbolModule(SymbolModule{"t1", "abcd", "crashy", "v2", 4, 5, 2000}));
  auto module = Value(store_->GetSymbolModule("t1", "abcd"));
  EXPECT_EQ(module.symbols, "v2");
  EXPECT_EQ(module.functions, 4);
  EXPECT_EQ(module.lines, 5);
  EXPECT_EQ(CodeOf(store_->GetSymbolModule("t2", "abcd")), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, TelemetryIsOneRowPerDeviceDayWithCounterDeltas) {
  SetUpTenant(*store_, "t1", 1, 1);
  SetUpTenant(*store_, "t2", 2, 1);
  const std::int64_t day = kNow - kNow % kDay;
  auto sample = [&](std::int64_t at, std::int64_t uptime, std::int64_t memory, std::int64_t restarts, std::int64_t rx) {
    TelemetrySample s;
    s.tenant_id = "t1";
    s.device_id = DeviceId(1);
    s.now = at;
    s.uptime_seconds = uptime;
    s.free_memory_kb = memory;
    s.app_restarts = restarts;
    s.rx_bytes = rx;
    s.tx_bytes = rx / 2;
    return s;
  };
  ASSERT_OK(store_->RecordTelemetry(sample(day + 10, 100, 5000, 2, 1000)));
  ASSERT_OK(store_->RecordTelemetry(sample(day + 20, 200, 4000, 3, 1500)));
  // The runtime restarted (uptime went down): counters began again.
  ASSERT_OK(store_->RecordTelemetry(sample(day + 30, 5, 4500, 1, 100)));
  ASSERT_OK(store_->RecordTelemetry(sample(day + kDay + 5, 50, 6000, 4, 300)));
  auto days = Value(store_->ListTelemetry("t1", DeviceId(1), 0));
  ASSERT_EQ(days.size(), 2u);
  EXPECT_EQ(days[0].day, day);
  EXPECT_EQ(days[0].check_ins, 3);
  EXPECT_EQ(days[0].max_uptime_seconds, 200);
  EXPECT_EQ(days[0].min_free_memory_kb, 4000);
  EXPECT_EQ(days[0].app_restarts, 2 + 1 + 1);
  EXPECT_EQ(days[0].rx_bytes, 1000 + 500 + 100);
  EXPECT_EQ(days[1].app_restarts, 3);
  EXPECT_EQ(days[1].rx_bytes, 200);
  EXPECT_EQ(days[1].tx_bytes, 100);
  // Another tenant sees nothing and cannot write it.
  EXPECT_TRUE(Value(store_->ListTelemetry("t2", DeviceId(1), 0)).empty());
  TelemetrySample foreign = sample(day, 1, 1, 1, 1);
  foreign.tenant_id = "t2";
  EXPECT_EQ(CodeOf(store_->RecordTelemetry(foreign)), ErrorCode::kNotFound);
  // Retention.
  EXPECT_EQ(Value(store_->PruneTelemetry(day + kDay)), 1);
  EXPECT_EQ(Value(store_->ListTelemetry("t1", DeviceId(1), 0)).size(), 1u);
}

// A check-in writes the device row and the day's telemetry in one
// transaction: both or neither.
TEST_P(StoreSuite, CheckInWithTelemetryWritesBothOrNeither) {
  SetUpTenant(*store_, "t1", 1, 1);
  SetUpTenant(*store_, "t2", 2, 1);
  const std::int64_t day = kNow - kNow % kDay;
  TelemetrySample sample;
  sample.tenant_id = "t1";
  sample.device_id = DeviceId(1);
  sample.now = day + 100;
  sample.uptime_seconds = 3600;
  sample.free_memory_kb = 2048;
  sample.app_restarts = 1;
  ASSERT_OK(store_->RecordCheckInWithTelemetry("1.3.0", "0.9.1", sample));
  Device device = Value(store_->GetDevice(DeviceId(1)));
  EXPECT_EQ(device.os_version, "1.3.0");
  EXPECT_EQ(device.runtime_version, "0.9.1");
  EXPECT_EQ(device.uptime_seconds, 3600);
  EXPECT_EQ(device.free_memory_kb, 2048);
  EXPECT_EQ(device.last_seen, day + 100);
  auto days = Value(store_->ListTelemetry("t1", DeviceId(1), 0));
  ASSERT_EQ(days.size(), 1u);
  EXPECT_EQ(days[0].check_ins, 1);
  EXPECT_EQ(days[0].app_restarts, 1);

  // Named under another tenant: the telemetry row is refused, and the
  // device row's update goes with it.
  TelemetrySample foreign = sample;
  foreign.tenant_id = "t2";
  foreign.now = day + 200;
  foreign.uptime_seconds = 7200;
  EXPECT_EQ(CodeOf(store_->RecordCheckInWithTelemetry("9.9.9", "9.9.9", foreign)), ErrorCode::kNotFound);
  device = Value(store_->GetDevice(DeviceId(1)));
  EXPECT_EQ(device.os_version, "1.3.0");
  EXPECT_EQ(device.uptime_seconds, 3600);
  EXPECT_EQ(device.last_seen, day + 100);
  EXPECT_EQ(Value(store_->ListTelemetry("t1", DeviceId(1), 0))[0].check_ins, 1);

  // A device never seen.
  TelemetrySample unknown = sample;
  unknown.device_id = DeviceId(9);
  EXPECT_EQ(CodeOf(store_->RecordCheckInWithTelemetry("1.0", "1.0", unknown)), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, DeviceGroupsCarryTheCrashDumpsFlag) {
  SetUpTenant(*store_, "t1", 1, 0);
  SetUpTenant(*store_, "t2", 2, 0);
  EXPECT_FALSE(Value(store_->GetDeviceGroup("t1", "t1-g")).crash_dumps);
  ASSERT_OK(store_->SetDeviceGroupCrashDumps("t1", "t1-g", true));
  EXPECT_TRUE(Value(store_->GetDeviceGroup("t1", "t1-g")).crash_dumps);
  EXPECT_EQ(CodeOf(store_->SetDeviceGroupCrashDumps("t2", "t1-g", true)), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, SchemaIsAtLeastVersionFive) { EXPECT_GE(Value(store_->SchemaVersion()), 5); }

TEST(CounterDeltaTest, ResetCountsTheNewValue) {
  EXPECT_EQ(CounterDelta(10, 15), 5);
  EXPECT_EQ(CounterDelta(10, 10), 0);
  EXPECT_EQ(CounterDelta(10, 3), 3);
  EXPECT_EQ(CounterDelta(0, -1), 0);
}

}  // namespace citadel::store::test
