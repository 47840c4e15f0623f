// Backpressure, fairness and metrics on the real service in-process
// (HTTPS on loopback, SQLite, software-RoT devices over mutual TLS):
//   * a flood from one tenant's devices gets 503 + Retry-After while
//     another tenant's device is served every time, and every report the
//     flood had acknowledged is in the store;
//   * per-device and per-tenant rate limits answer 429 + Retry-After;
//   * GET /metrics needs the operator or metrics token, parses with the
//     reference Prometheus parser, and its counters move with the traffic.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/time.hpp"
#include "protocol/failure_report.hpp"
#include "server/data_dir.hpp"
#include "server/load_control.hpp"
#include "server/metrics.hpp"
#include "service_fixture.hpp"

namespace citadel::server {
namespace {

using namespace std::chrono_literals;
using testing::Headers;
using testing::Must;
using Tenant = testing::TenantAccess;
using Device = testing::EnrolledDevice;

std::string Header(const http::Response& response, const std::string& name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

std::string CheckInBody() {
  protocol::CheckIn check_in;
  check_in.os_version = "1.0.0";
  check_in.runtime_version = "0.1.0";
  return protocol::CheckInToJson(check_in).dump();
}

http::Response CheckIn(http::Client& client) {
  return Must(client.Send("POST", "/v1/device/check-in", CheckInBody(), {{"Content-Type", "application/json"}}),
              "check-in");
}

// One report batch with a report id unique to (device, n).
std::string ReportBatch(const std::string& report_id) {
  protocol::FailureReport report;
  report.report_id = report_id;
  report.failure_class = "app-crash";
  report.component_id = "0c0c0c0c-0000-4000-8000-00000000000c";
  report.component_version = "1.0.0";
  report.occurred_at = FormatRfc3339(Clock::now() - std::chrono::seconds(5));
  report.last_occurred_at = report.occurred_at;
  report.os_version = "1.0.0";
  report.runtime_version = "0.1.0";
  report.error_code = "SIGSEGV";
  report.message = "crashy was killed by SIGSEGV";
  protocol::ReportBatch batch;
  batch.reports = {report};
  return protocol::ReportBatchToJson(batch).dump();
}

std::string ReportId(int thread, int n) {
  char id[33];
  std::snprintf(id, sizeof(id), "%016x%016x", static_cast<unsigned>(thread + 1), static_cast<unsigned>(n + 1));
  return id;
}

// ---------------------------------------------------------------- fairness

class BackpressureTest : public testing::ServiceFixture {
 protected:
  void Configure(ServiceOptions& options) override {
    // One worker and a short queue: a few dozen connections overload it.
    options.admission.workers = 1;
    options.admission.max_queued = 6;
    options.admission.max_queue_delay = 5s;
    options.load.device = {0, 1};  // rate limits off: this is about admission
    options.load.tenant = {0, 1};
    options.access_log = false;
  }
};

TEST_F(BackpressureTest, AFloodFromOneTenantIsShedWhileAnotherTenantIsServed) {
  Tenant flooder = CreateTenantAccess("Flooder");
  Tenant quiet = CreateTenantAccess("Quiet");
  std::vector<Device> flood_devices;
  for (int i = 0; i < 4; ++i) flood_devices.push_back(Enroll(flooder, flooder.group_id, "f" + std::to_string(i)));
  Device quiet_device = Enroll(quiet, quiet.group_id, "q");

  constexpr int kFloodThreads = 24;
  constexpr int kMaxRequestsPerThread = 300;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  std::atomic<bool> stop{false};
  std::atomic<int> shed{0};
  std::atomic<int> shed_without_retry_after{0};
  std::atomic<int> other_failures{0};
  std::mutex acked_mutex;
  std::vector<std::set<std::string>> acked(flood_devices.size());
  std::vector<std::thread> flood;
  for (int t = 0; t < kFloodThreads; ++t) {
    flood.emplace_back([&, t] {
      const std::size_t which = static_cast<std::size_t>(t) % flood_devices.size();
      auto client = Client(flood_devices[which].Identity());
      for (int n = 0; n < kMaxRequestsPerThread && !stop && std::chrono::steady_clock::now() < deadline; ++n) {
        const std::string id = ReportId(t, n);
        auto response =
            client->Send("POST", "/v1/device/reports", ReportBatch(id), {{"Content-Type", "application/json"}});
        if (!response) {
          ++other_failures;
          continue;
        }
        if (response->status == 200) {
          auto reply = protocol::ParseReportBatchReply(response->body);
          std::lock_guard lock(acked_mutex);
          if (reply) acked[which].insert(reply->acknowledged.begin(), reply->acknowledged.end());
        } else if (response->status == 503) {
          ++shed;
          if (std::atoi(Header(*response, "retry-after").c_str()) < 1) ++shed_without_retry_after;
        } else {
          ++other_failures;
        }
      }
    });
  }
  // The quiet tenant's device checks in while the flood is being shed.
  while (shed == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_GT(shed.load(), 0) << "the flood never overloaded the service";
  auto quiet_client = Client(quiet_device.Identity());
  int quiet_ok = 0;
  std::vector<int> quiet_statuses;
  for (int i = 0; i < 20; ++i) {
    auto response = CheckIn(*quiet_client);
    quiet_statuses.push_back(response.status);
    if (response.status == 200) ++quiet_ok;
  }
  const int shed_during_quiet = shed.load();
  stop = true;
  for (auto& thread : flood) thread.join();

  EXPECT_EQ(quiet_ok, 20) << "the quiet tenant was starved; first statuses: " << quiet_statuses.front();
  EXPECT_GT(shed_during_quiet, 0);
  EXPECT_EQ(shed_without_retry_after.load(), 0) << "a 503 without Retry-After";
  EXPECT_EQ(other_failures.load(), 0);

  // Nothing accepted is lost: every acknowledged report is stored.
  std::size_t total_acked = 0;
  for (std::size_t i = 0; i < flood_devices.size(); ++i) {
    std::set<std::string> stored;
    store::FailureReportFilter filter;
    filter.tenant_id = flooder.id;
    filter.device_id = flood_devices[i].id;
    filter.limit = 1000;
    while (true) {
      auto page = Must(Store().ListFailureReports(filter), "reports");
      for (const auto& report : page) stored.insert(report.report_id);
      if (page.size() < 1000) break;
      filter.after_occurred_at = page.back().occurred_at;
      filter.after_report_id = page.back().report_id;
    }
    for (const auto& id : acked[i]) EXPECT_TRUE(stored.contains(id)) << "acknowledged report " << id << " lost";
    total_acked += acked[i].size();
  }
  EXPECT_GT(total_acked, 0U);
}

// Fairness keys come only from what is proven: a forged certificate or an
// unknown token is "anonymous", never the tenant it names.
TEST_F(BackpressureTest, FairnessKeysComeOnlyFromWhatIsProven) {
  Tenant tenant = CreateTenantAccess("Acme");
  Device device = Enroll(tenant, tenant.group_id, "d");
  auto data = Must(DataDirectory::Open(dir_.path() / "server"), "data directory");
  const crypto::SecretBytes master_key = Must(data.LoadOrCreateMasterKey(), "master key");
  TenantCaCache authorities(Store(), master_key);
  Metrics metrics;
  LoadControl load(LoadOptions{}, authorities, metrics);

  http::Request from_device;
  from_device.path = "/v1/device/check-in";
  from_device.peer_chain = {Must(crypto::Certificate::FromPem(device.chain_pem), "device certificate")};
  // Not in memory yet: not proven without the store.
  EXPECT_EQ(load.Classify(from_device).key, "anonymous");
  ASSERT_TRUE(authorities.Get(tenant.id));
  auto key = load.Classify(from_device);
  EXPECT_EQ(key.key, "t:" + tenant.id);
  EXPECT_TRUE(key.per_connection);

  // A self-made certificate naming the same tenant and device.
  auto forger_key = citadel::testing::GenerateTestKey();
  crypto::CertificateSpec spec;
  spec.common_name = device.id;
  spec.uri_sans = {DeviceUri(tenant.id, device.id)};
  spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
  http::Request forged = from_device;
  forged.peer_chain = {Must(crypto::IssueCertificate(spec, forger_key.Public(), nullptr, forger_key), "forged")};
  EXPECT_EQ(load.Classify(forged).key, "anonymous");

  http::Request with_token;
  with_token.path = "/v1/tenants/" + tenant.id + "/devices";
  with_token.headers["authorization"] = "Bearer " + tenant.token;
  EXPECT_EQ(load.Classify(with_token).key, "anonymous");  // never authenticated here
  load.RememberToken(with_token, Caller{"tok", tenant.id, store::Role::kAdmin});
  EXPECT_EQ(load.Classify(with_token).key, "t:" + tenant.id);
  http::Request other_token = with_token;
  other_token.headers["authorization"] = "Bearer cit_not-a-token-anyone-authenticated";
  EXPECT_EQ(load.Classify(other_token).key, "anonymous");

  http::Request health;
  health.path = "/v1/health";
  EXPECT_EQ(load.Classify(health).key, "health");
}

// ---------------------------------------------------------------- rate limits

class RateLimitTest : public testing::ServiceFixture {
 protected:
  void Configure(ServiceOptions& options) override {
    options.load.device = {/*per_second=*/0.2, /*burst=*/3};
    options.load.tenant = {/*per_second=*/0.2, /*burst=*/40};
    options.access_log = false;
  }
};

TEST_F(RateLimitTest, ADeviceBeyondItsRateGets429WithRetryAfter) {
  Tenant tenant = CreateTenantAccess("Acme");
  Device device = Enroll(tenant, tenant.group_id, "d");
  auto client = Client(device.Identity());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(CheckIn(*client).status, 200) << i;
  auto limited = CheckIn(*client);
  ASSERT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(Body(limited)["type"], "urn:citadel:problem:rate-limited");
  const int retry_after = std::atoi(Header(limited, "retry-after").c_str());
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 5);  // one token at 0.2/s
  // Another device of the same tenant has its own bucket.
  Device other = Enroll(tenant, tenant.group_id, "e");
  EXPECT_EQ(CheckIn(*Client(other.Identity())).status, 200);
}

TEST_F(RateLimitTest, ATenantBeyondItsRateGets429AndOtherTenantsAreNotAffected) {
  Tenant busy = CreateTenantAccess("Busy");
  Tenant calm = CreateTenantAccess("Calm");
  int first_refusal = -1;
  http::Response refusal;
  for (int i = 0; i < 60 && first_refusal < 0; ++i) {
    auto response = Call("GET", "/v1/tenants/" + busy.id + "/devices", busy.token);
    if (response.status == 429) {
      first_refusal = i;
      refusal = response;
    } else {
      ASSERT_EQ(response.status, 200) << response.body;
    }
  }
  ASSERT_GE(first_refusal, 0) << "the tenant limit never applied";
  EXPECT_GE(std::atoi(Header(refusal, "retry-after").c_str()), 1);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + calm.id + "/devices", calm.token).status, 200);
  // The operator is not a tenant and is not limited.
  EXPECT_EQ(Call("GET", "/v1/tenants/" + busy.id + "/devices", operator_token_).status, 200);
}

// ---------------------------------------------------------------- metrics

// The samples of an exposition, as the reference parser reads them.
Json ParsePrometheus(const std::filesystem::path& dir, const std::string& text) {
  const auto in = dir / "metrics.txt";
  const auto out = dir / "metrics.json";
  EXPECT_TRUE(WriteFileAtomic(in, text));
  const std::string command = "/usr/bin/python3 " CITADEL_SOURCE_DIR "/tests/server/prometheus_parse.py < " +
                              in.string() + " > " + out.string();
  EXPECT_EQ(std::system(command.c_str()), 0) << "the Prometheus parser refused the exposition:\n" << text;
  auto parsed = ParseJsonStrict(Must(ReadFile(out), "parser output"));
  EXPECT_TRUE(parsed.has_value());
  return parsed ? *parsed : Json::object();
}

double Sample(const Json& parsed, const std::string& name, const Json& labels) {
  for (const auto& sample : parsed["samples"]) {
    if (sample["name"] != name) continue;
    bool match = true;
    for (const auto& [key, value] : labels.items()) {
      if (!sample["labels"].contains(key) || sample["labels"][key] != value) match = false;
    }
    if (match) return sample["value"].get<double>();
  }
  return 0;
}

class MetricsTest : public testing::ServiceFixture {
 protected:
  void Configure(ServiceOptions& options) override {
    auto token = dir_.path() / "metrics-token";
    ASSERT_TRUE(WriteFileAtomic(token, std::string(kMetricsToken) + "\n"));
    options.metrics_token_file = token;
  }
  static constexpr const char* kMetricsToken = "prometheus-scrape-token-0123456789";
};

TEST_F(MetricsTest, MetricsAreValidPrometheusTextAndCountTheTraffic) {
  Tenant tenant = CreateTenantAccess("Acme");
  Device device = Enroll(tenant, tenant.group_id, "d");

  EXPECT_EQ(Call("GET", "/metrics", "").status, 401);
  EXPECT_EQ(Call("GET", "/metrics", "wrong-token-wrong-token").status, 401);
  EXPECT_EQ(Call("GET", "/metrics", tenant.token).status, 403);
  EXPECT_EQ(Call("GET", "/metrics", operator_token_).status, 200);
  auto before_response = Call("GET", "/metrics", kMetricsToken);
  ASSERT_EQ(before_response.status, 200);
  EXPECT_EQ(before_response.headers.empty(), false);
  EXPECT_NE(before_response.body.find("# TYPE citadel_http_requests_total counter"), std::string::npos);
  Json before = ParsePrometheus(dir_.path(), before_response.body);

  const Json check_in_200 = {{"method", "POST"}, {"route", "/v1/device/check-in"}, {"code", "200"}};
  auto client = Client(device.Identity());
  for (int i = 0; i < 3; ++i) ASSERT_EQ(CheckIn(*client).status, 200);
  auto upload = client->Send("POST", "/v1/device/reports", ReportBatch(std::string(32, 'b')),
                             {{"Content-Type", "application/json"}});
  ASSERT_TRUE(upload && upload->status == 200);
  Json after = ParsePrometheus(dir_.path(), Call("GET", "/metrics", kMetricsToken).body);

  EXPECT_EQ(Sample(after, "citadel_http_requests_total", check_in_200) -
                Sample(before, "citadel_http_requests_total", check_in_200),
            3);
  EXPECT_GE(Sample(after, "citadel_http_request_duration_seconds_count",
                   {{"method", "POST"}, {"route", "/v1/device/check-in"}}),
            3);
  // Routes are patterns, never ids.
  EXPECT_GE(Sample(after, "citadel_http_requests_total",
                   {{"method", "POST"}, {"route", "/v1/tenants/{tenant}/devices/{device}/claim"}, {"code", "200"}}),
            1);
  for (const auto& sample : after["samples"]) {
    if (sample["labels"].contains("route")) {
      EXPECT_EQ(sample["labels"]["route"].get<std::string>().find(device.id), std::string::npos);
    }
  }
  EXPECT_GE(Sample(after, "citadel_attestations_total", {{"outcome", "accepted-unclaimed"}}), 1);
  EXPECT_GE(Sample(after, "citadel_attestations_total", {{"outcome", "accepted"}}), 1);
  EXPECT_EQ(Sample(after, "citadel_failure_reports_total", {{"kind", "new"}}) -
                Sample(before, "citadel_failure_reports_total", {{"kind", "new"}}),
            1);
  EXPECT_GE(Sample(after, "citadel_http_admission", {{"state", "workers"}}), 4);
  // Store calls: at least one per check-in.
  EXPECT_GE(Sample(after, "citadel_store_call_duration_seconds_count", {{"backend", "sqlite"}}) -
                Sample(before, "citadel_store_call_duration_seconds_count", {{"backend", "sqlite"}}),
            3);
  EXPECT_EQ(after["families"]["citadel_http_request_duration_seconds"], "histogram");
}

}  // namespace
}  // namespace citadel::server
