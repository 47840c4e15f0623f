// Failure report ingest: reports per second through the real endpoint.
//
// A real citadel-server on loopback (SQLite in a temporary directory, or
// the PostgreSQL named by CITADEL_BENCH_POSTGRES_URL), real devices
// (software roots of trust, attested and claimed over HTTPS) each with one
// keep-alive mutual-TLS connection, POST /v1/device/reports with zstd
// batches of 32 reports. The fleet's bug population is seeded first (64
// issues); then in every batch 90 % of the reports are new occurrences of
// those issues and 10 % are new bugs, so the measured path is the common
// one: a new report deduplicated into an existing issue (insert report,
// update issue, device and version rows), one transaction per batch.
// Building and compressing the batch (the device's work) is inside the
// timed loop, on the same machine.
//
// Run: citadel-report-ingest-bench [--benchmark_min_time=5s]
//      CITADEL_BENCH_POSTGRES_URL=$(scripts/postgres-test-server start DIR PORT) citadel-report-ingest-bench
// Bounded: Google Benchmark stops each run at its minimum time (default
// here 5 s; Google Benchmark also caps iterations).
#include <benchmark/benchmark.h>
#include <zstd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "common/file.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "protocol/failure_report.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;

constexpr std::size_t kBatch = 32;
constexpr int kKnownBugs = 64;
constexpr int kMaxThreads = 4;
constexpr const char* kApp = "0c0c0c0c-0000-4000-8000-00000000000c";

[[noreturn]] void Fail(const std::string& what) {
  std::cerr << "report-ingest-bench: " << what << "\n";
  std::exit(1);
}

template <typename T>
T Must(Expected<T> value, const std::string& what) {
  if (!value) Fail(what + ": " + value.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*value);
}

std::string Compress(const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const std::size_t size = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3);
  if (ZSTD_isError(size) != 0U) Fail("zstd compression failed");
  out.resize(size);
  return out;
}

struct Device {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string id;
  std::string chain_pem;
  std::unique_ptr<http::Client> client;  // one keep-alive mTLS connection
};

// One service with one tenant and kMaxThreads claimed devices.
class Fleet {
 public:
  Fleet(const std::string& database, const std::string& name) : name_(name) {
    char pattern[] = "/tmp/citadel-report-bench.XXXXXX";
    if (mkdtemp(pattern) == nullptr) Fail("mkdtemp");
    dir_ = pattern;
    auto ca_key = Must(crypto::PrivateKey::GenerateP256(), "manufacturer key");
    crypto::CertificateSpec ca_spec;
    ca_spec.common_name = "Bench Manufacturer";
    ca_spec.is_ca = true;
    auto ca = Must(crypto::IssueCertificate(ca_spec, ca_key.Public(), nullptr, ca_key), "manufacturer CA");
    Must(WriteFileAtomic(dir_ / "manufacturer.pem", ca.Pem()), "writing the manufacturer CA");

    server::ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_ / "server";
    options.database = database;
    options.manufacturer_ca_files = {dir_ / "manufacturer.pem"};
    service_ = Must(server::Service::Create(options), "creating the service");
    Must(service_->Start(), "starting the service");
    service_ca_ = Must(ReadFile(options.data_dir / "service-ca.pem"), "service CA");
    auto token = Must(ReadFile(options.data_dir / "operator-token"), "operator token");
    const std::string operator_token = token.substr(0, token.find('\n'));

    auto tenant = Call("POST", "/v1/tenants", operator_token, {{"name", "Bench " + name}});
    tenant_id_ = tenant["tenant"]["id"];
    token_ = tenant["admin_token"]["token"];
    auto product = Call("POST", "/v1/tenants/" + tenant_id_ + "/products", token_, {{"name", "Thermostat"}});
    const std::string group = product["device_groups"][0]["id"];
    for (int i = 0; i < kMaxThreads; ++i) devices_.push_back(Enroll(ca_key, ca, group, i));
  }

  ~Fleet() {
    service_->Stop();
    service_->Wait();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // A batch: report i is bug (i % 10 == 9 ? a new one : one of the known).
  std::string Batch(int thread, bool seed) {
    protocol::ReportBatch batch;
    const std::string now = FormatRfc3339(Clock::now());
    for (std::size_t i = 0; i < kBatch; ++i) {
      const std::uint64_t n = next_.fetch_add(1);
      std::uint64_t bug = n % kKnownBugs;
      if (!seed && i % 10 == 9) bug = kKnownBugs + n;  // 10 %: a bug never seen
      protocol::FailureReport report;
      char id[40];
      (void)std::snprintf(id, sizeof id, "%08x%024llx", static_cast<unsigned>(thread),
                          static_cast<unsigned long long>(n));
      report.report_id = id;
      report.failure_class = "app-crash";
      report.occurred_at = now;
      report.last_occurred_at = now;
      report.component_id = kApp;
      report.component_version = "1.0.0";
      report.os_version = "1.0.0";
      report.runtime_version = "0.1.0";
      report.error_code = "SIGSEGV";
      report.message = "crashy was killed by SIGSEGV (address 0x0)";
      protocol::CrashDetails crash;
      crash.signal = 11;
      crash.registers = {{"rip", 0x55d0c0e01139}, {"rsp", 0x7ffc0000}, {"rbp", 0x7ffc0040}};
      crash.frames = {{"crashy", "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11", 0x1000 + bug * 0x10},
                      {"crashy", "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11", 0x9000},
                      {"libc.so.6", "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22", 0x29d90}};
      report.crash = crash;
      batch.reports.push_back(std::move(report));
    }
    return Compress(protocol::ReportBatchToJson(batch).dump());
  }

  // POSTs one batch on the thread's device; false on any failure.
  bool Upload(int thread, const std::string& body) {
    auto response = devices_[static_cast<std::size_t>(thread)].client->Send(
        "POST", "/v1/device/reports", body, {{"Content-Type", "application/json"}, {"Content-Encoding", "zstd"}});
    return response && response->status == 200;
  }

  // Total count over every issue, and the number of issues.
  std::pair<std::int64_t, std::int64_t> Totals() {
    std::int64_t count = 0;
    std::int64_t issues = 0;
    std::string after;
    for (int page = 0; page < 10'000; ++page) {
      Json list = Call(
          "GET", "/v1/tenants/" + tenant_id_ + "/issues?limit=1000" + (after.empty() ? "" : "&after=" + after), token_);
      for (const auto& issue : list["issues"]) {
        count += issue["count"].get<std::int64_t>();
        ++issues;
      }
      if (!list["next"].is_string()) break;
      after = list["next"].get<std::string>();
    }
    return {count, issues};
  }

  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<http::Client> NewClient(std::optional<http::TlsIdentity> identity = std::nullopt) {
    http::ClientOptions options;
    options.base_url = "https://127.0.0.1:" + std::to_string(service_->port());
    options.ca_certificate_pem = service_ca_;
    options.client_identity = std::move(identity);
    return Must(http::Client::Create(options), "client");
  }

  Json Call(const std::string& method, const std::string& path, const std::string& token, const Json& body = nullptr) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("Content-Type", "application/json");
      text = body.dump();
    }
    auto response = Must(NewClient()->Send(method, path, text, headers), method + " " + path);
    if (response.status >= 300)
      Fail(method + " " + path + ": " + std::to_string(response.status) + " " + response.body);
    return Must(ParseJsonStrict(response.body), "parsing " + path);
  }

  Json Attest(Device& device) {
    auto challenge = Must(
        protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", Json::object()).dump()), "challenge");
    auto csr = Must(crypto::CertificateRequest::Create(device.rot->TlsClientKey(), device.id), "CSR");
    auto evidence = Must(protocol::CreateSignedEvidence(*device.rot, challenge.nonce, csr.Pem()), "evidence");
    auto response = Must(NewClient()->Send("POST", "/v1/attestation", evidence, {{"Content-Type", "application/json"}}),
                         "attestation");
    return Must(ParseJsonStrict(response.body), "attestation reply");
  }

  Device Enroll(const crypto::PrivateKey& ca_key, const crypto::Certificate& ca, const std::string& group, int index) {
    Device device;
    device.rot = Must(rot::SoftwareRootOfTrust::Open(dir_ / ("device-" + std::to_string(index))), "device RoT");
    device.id = device.rot->DeviceId();
    crypto::CertificateSpec spec;
    spec.common_name = device.id;
    auto leaf = Must(crypto::IssueCertificate(spec, device.rot->IdentityPublicKey(), &ca, ca_key), "device cert");
    Must(device.rot->StoreManufacturerChain({leaf, ca}), "storing the chain");
    Must(device.rot->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")}), "extend");
    Must(device.rot->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime")}), "extend");
    (void)Attest(device);
    Call("POST", "/v1/tenants/" + tenant_id_ + "/devices/" + device.id + "/claim", token_,
         {{"device_group_id", group}});
    Json accepted = Attest(device);
    if (accepted.value("verdict", "") != "accepted") Fail("device not accepted: " + accepted.dump());
    device.chain_pem = accepted["certificate"].get<std::string>() + accepted["chain"][0].get<std::string>();
    device.client = NewClient(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    return device;
  }

  std::string name_;
  fs::path dir_;
  std::unique_ptr<server::Service> service_;
  std::string service_ca_;
  std::string tenant_id_;
  std::string token_;
  std::vector<Device> devices_;
  std::atomic<std::uint64_t> next_{0};
};

std::mutex fleets_mutex;
std::vector<std::unique_ptr<Fleet>> fleets;

void IngestReports(benchmark::State& state, Fleet* fleet) {
  const int thread = state.thread_index();
  std::int64_t failed = 0;
  for (auto _ : state) {
    if (!fleet->Upload(thread, fleet->Batch(thread, /*seed=*/false))) ++failed;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
  state.counters["failed_batches"] = benchmark::Counter(static_cast<double>(failed), benchmark::Counter::kAvgThreads);
}

}  // namespace

int main(int argc, char** argv) {
  log::Init("bench", log::Level::kError);
  benchmark::Initialize(&argc, argv);
  std::vector<std::pair<std::string, std::string>> backends = {{"sqlite", ""}};
  if (const char* url = std::getenv("CITADEL_BENCH_POSTGRES_URL"); url != nullptr && *url != '\0') {
    backends.emplace_back("postgresql", url);
  } else {
    std::cerr << "CITADEL_BENCH_POSTGRES_URL is not set: PostgreSQL is skipped\n";
  }
  for (const auto& [name, database] : backends) {
    auto fleet = std::make_unique<Fleet>(database, name);
    // The known bugs: every one of them is an issue before timing starts.
    for (int i = 0; i < kKnownBugs / static_cast<int>(kBatch) + 1; ++i) {
      if (!fleet->Upload(0, fleet->Batch(0, /*seed=*/true))) Fail("seeding the issues");
    }
    Fleet* raw = fleet.get();
    for (int threads : {1, kMaxThreads}) {
      benchmark::RegisterBenchmark(("ingest/" + name).c_str(), IngestReports, raw)
          ->Threads(threads)
          ->UseRealTime()
          ->MinTime(5.0)
          ->Unit(benchmark::kMillisecond);
    }
    std::lock_guard lock(fleets_mutex);
    fleets.push_back(std::move(fleet));
  }
  benchmark::RunSpecifiedBenchmarks();
  for (const auto& fleet : fleets) {
    const auto [count, issues] = fleet->Totals();
    std::cout << fleet->name() << ": " << issues << " issues, total count " << count << "\n";
  }
  fleets.clear();
  benchmark::Shutdown();
  return 0;
}
