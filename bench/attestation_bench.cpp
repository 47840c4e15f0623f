// Attestation throughput and latency.
//
//   in-process: Attestor::Attest (parse, chain + signature checks, nonce
//               consumption, policy, certificate issuance, store writes) on
//               evidence prepared beforehand — the service's own cost.
//   end-to-end: C client threads, each with its own devices and one
//               keep-alive HTTPS connection, doing challenge + evidence
//               against a real citadel-server on loopback. Device-side
//               signing runs on the same machine and is included.
//
// Both loops are bounded by a count and by a time limit.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>

#include "common/file.hpp"
#include "common/log.hpp"
#include "latencies.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

using bench::Figures;

struct Device {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string csr;
};

std::vector<Device> MakeDevices(const fs::path& dir, std::size_t count, const crypto::PrivateKey& ca_key,
                                const crypto::Certificate& ca) {
  std::vector<Device> devices;
  for (std::size_t i = 0; i < count; ++i) {
    auto rot = rot::SoftwareRootOfTrust::Open(dir / ("device-" + std::to_string(i)));
    if (!rot) throw std::runtime_error(rot.error().message());
    auto id = (*rot)->DeviceId();
    crypto::CertificateSpec spec;
    spec.common_name = id;
    auto leaf = crypto::IssueCertificate(spec, (*rot)->IdentityPublicKey(), &ca, ca_key);
    (void)(*rot)->StoreManufacturerChain({*leaf, ca});
    (void)(*rot)->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os")});
    (void)(*rot)->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime")});
    auto csr = crypto::CertificateRequest::Create((*rot)->TlsClientKey(), id)->Pem();
    devices.push_back({std::move(*rot), csr});
  }
  return devices;
}

void Print(Figures& f, bool json) {
  double rate = f.seconds > 0 ? static_cast<double>(f.operations) / f.seconds : 0;
  if (json) {
    std::cout << Json{{"benchmark", f.name},
                      {"operations", f.operations},
                      {"errors", f.errors},
                      {"seconds", f.seconds},
                      {"per_second", rate},
                      {"p50_ms", f.latencies.Percentile(0.5)},
                      {"p99_ms", f.latencies.Percentile(0.99)}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("%-34s %9zu ops %6zu errors %8.2f s %9.1f /s   p50 %7.2f ms   p99 %7.2f ms\n", f.name.c_str(),
              f.operations, f.errors, f.seconds, rate, f.latencies.Percentile(0.5), f.latencies.Percentile(0.99));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Attestation benchmark: in-process appraisal+issuance and end-to-end over loopback HTTPS"};
  std::size_t devices_count = 64;
  std::size_t operations = 2000;
  double max_seconds = 20;
  int clients = 4;
  int server_threads = 0;
  std::string database;
  bool json = false;
  app.add_option("--devices", devices_count, "virtual devices")->capture_default_str();
  app.add_option("--operations", operations, "attestations per mode (upper bound)")->capture_default_str();
  app.add_option("--max-seconds", max_seconds, "time bound per mode")->capture_default_str();
  app.add_option("--clients", clients, "end-to-end client threads")->capture_default_str();
  app.add_option("--server-threads", server_threads, "service HTTP threads (0: one per core)")->capture_default_str();
  app.add_option("--database", database, "PostgreSQL URL; default SQLite in a temp dir");
  app.add_flag("--json", json, "one JSON object per line");
  CLI11_PARSE(app, argc, argv);
  log::Init("bench", log::Level::kError);

  std::random_device random;
  auto dir = fs::temp_directory_path() / ("citadel-bench-" + std::to_string(random()));
  fs::create_directories(dir);

  auto manufacturer_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec ca_spec;
  ca_spec.common_name = "Bench Manufacturer";
  ca_spec.is_ca = true;
  auto manufacturer = crypto::IssueCertificate(ca_spec, manufacturer_key->Public(), nullptr, *manufacturer_key);
  (void)WriteFileAtomic(dir / "manufacturer.pem", manufacturer->Pem());

  server::ServiceOptions options;
  options.port = 0;
  options.data_dir = dir / "server";
  options.database = database;
  options.manufacturer_ca_files = {dir / "manufacturer.pem"};
  options.threads = server_threads;
  auto service = server::Service::Create(options);
  if (!service || !(*service)->Start()) {
    std::cerr << "cannot start the service\n";
    return 1;
  }
  auto& store = (*service)->store();
  // The tenant and product are created through the public API, as a user would.
  auto service_ca = ReadFile(options.data_dir / "service-ca.pem");
  auto operator_token = ReadFile(options.data_dir / "operator-token");
  http::ClientOptions admin_options;
  admin_options.base_url = "https://127.0.0.1:" + std::to_string((*service)->port());
  admin_options.ca_certificate_pem = *service_ca;
  auto admin = http::Client::Create(admin_options);
  auto created = (*admin)->Send("POST", "/v1/tenants", R"({"name":"Bench"})",
                                {{"Authorization", "Bearer " + operator_token->substr(0, operator_token->find('\n'))},
                                 {"Content-Type", "application/json"}});
  auto created_json = ParseJsonStrict(created->body);
  std::string tenant_id = (*created_json)["tenant"]["id"];
  std::string admin_token = (*created_json)["admin_token"]["token"];
  auto product = (*admin)->Send("POST", "/v1/tenants/" + tenant_id + "/products", R"({"name":"Bench"})",
                                {{"Authorization", "Bearer " + admin_token}, {"Content-Type", "application/json"}});
  std::string group_id = (*ParseJsonStrict(product->body))["device_groups"][0]["id"];

  auto devices = MakeDevices(dir / "devices", devices_count, *manufacturer_key, *manufacturer);
  auto now = ToUnixSeconds(Clock::now());
  for (auto& device : devices) {
    auto id = device.rot->DeviceId();
    (void)store.RecordDeviceSeen(id, "software", now);
    (void)store.ClaimDevice(id, tenant_id, (*ParseJsonStrict(product->body))["product"]["id"].get<std::string>(),
                            group_id, now);
  }

  // In-process: prepare evidence (device work) outside the timed region.
  Figures in_process{"in-process appraisal+issuance", 0, 0, 0, {}};
  {
    auto& attestor = (*service)->attestor();
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(max_seconds);
    while (in_process.operations < operations && SteadyClock::now() < deadline) {
      std::size_t batch = std::min<std::size_t>(200, operations - in_process.operations);
      std::vector<std::string> evidence;
      for (std::size_t i = 0; i < batch; ++i) {
        auto& device = devices[(in_process.operations + i) % devices.size()];
        auto challenge = attestor.CreateChallenge(Clock::now());
        evidence.push_back(*protocol::CreateSignedEvidence(*device.rot, challenge->nonce, device.csr));
      }
      for (const auto& body : evidence) {
        auto start = SteadyClock::now();
        auto outcome = attestor.Attest(body, Clock::now());
        auto elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
        in_process.seconds += elapsed;
        in_process.latencies.ms.push_back(elapsed * 1000);
        if (!outcome || outcome->verdict != "accepted") ++in_process.errors;
        ++in_process.operations;
      }
    }
  }

  // End-to-end over loopback HTTPS with keep-alive.
  Figures end_to_end{"end-to-end (" + std::to_string(clients) + " clients, keep-alive)", 0, 0, 0, {}};
  {
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> errors{0};
    std::mutex mutex;
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(max_seconds);
    auto start = SteadyClock::now();
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(clients));
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        http::ClientOptions client_options;
        client_options.base_url = admin_options.base_url;
        client_options.ca_certificate_pem = *service_ca;
        auto client = http::Client::Create(client_options);
        std::vector<double> latencies;
        std::size_t mine = 0;
        while (next.fetch_add(1) < operations && SteadyClock::now() < deadline) {
          auto& device =
              devices[(static_cast<std::size_t>(c) + mine * static_cast<std::size_t>(clients)) % devices.size()];
          ++mine;
          auto t0 = SteadyClock::now();
          auto challenge =
              (*client)->Send("POST", "/v1/attestation/challenge", "{}", {{"Content-Type", "application/json"}});
          auto parsed = challenge ? protocol::ParseChallenge(challenge->body) : std::unexpected(challenge.error());
          bool ok = false;
          if (parsed) {
            auto evidence = protocol::CreateSignedEvidence(*device.rot, parsed->nonce, device.csr);
            auto response =
                (*client)->Send("POST", "/v1/attestation", *evidence, {{"Content-Type", "application/json"}});
            ok = response && response->status == 200;
          }
          latencies.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
          if (!ok) errors.fetch_add(1);
        }
        std::lock_guard lock(mutex);
        end_to_end.latencies.ms.insert(end_to_end.latencies.ms.end(), latencies.begin(), latencies.end());
      });
    }
    for (auto& t : threads) t.join();
    end_to_end.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    end_to_end.operations = end_to_end.latencies.ms.size();
    end_to_end.errors = errors.load();
  }

  if (!json) {
    std::printf("store=%s devices=%zu cores=%u\n", store.Backend().data(), devices_count,
                std::thread::hardware_concurrency());
  }
  Print(in_process, json);
  Print(end_to_end, json);
  (*service)->Stop();
  (*service)->Wait();
  service->reset();
  fs::remove_all(dir);
  return in_process.errors + end_to_end.errors == 0 ? 0 : 1;
}
