// citadel-server: wires the data directory, the store, the tenant CAs, the
// attestor and the HTTP API together, and runs them until Stop().
//
// Lifecycle: Create() opens everything and fails fast with a message that
// says what to fix; Start() binds; Stop() drains in-flight requests; Wait()
// blocks until stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "http/http.hpp"
#include "server/api.hpp"
#include "server/attestation.hpp"
#include "server/blob_store.hpp"
#include "server/data_dir.hpp"
#include "server/load_control.hpp"
#include "server/metrics.hpp"
#include "server/repository.hpp"
#include "server/tenant_ca.hpp"
#include "store/store.hpp"

namespace citadel::server {

struct ServiceOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8443;
  std::filesystem::path data_dir = "var/server";
  std::string database;  // "postgresql://..." or empty for DATA/citadel.db
  std::vector<std::filesystem::path> manufacturer_ca_files;
  std::vector<std::filesystem::path> tpm_manufacturer_ca_files;  // CAs of TPM vendors (EK certificates)
  std::vector<std::string> host_names;
  // A certificate chain (PEM, leaf first) and key from the operator's PKI;
  // when empty the service uses the one it made from its own service CA.
  std::filesystem::path tls_certificate_file;
  std::filesystem::path tls_key_file;
  std::chrono::seconds certificate_lifetime{24 * 60 * 60};
  std::chrono::seconds check_in_interval{300};
  std::chrono::seconds unclaimed_retry{30};
  int threads = 0;  // I/O threads; 0: one per core
  std::size_t max_connections = 10'000;
  // Request workers and the admission queue (http/admission.hpp).
  http::AdmissionOptions admission{};
  // Per-device and per-tenant rate limits (server/load_control.hpp).
  LoadOptions load{};
  // One structured line per answered request (docs/ARCHITECTURE.md, "Metrics").
  bool access_log = true;
  // A file holding the token Prometheus sends to GET /metrics; empty: only
  // the operator token may read metrics.
  std::filesystem::path metrics_token_file;
};

class Service {
 public:
  static Expected<std::unique_ptr<Service>> Create(const ServiceOptions& options);
  ~Service();

  [[nodiscard]] Expected<void> Start();
  std::uint16_t port() const;
  void Stop();
  void Wait();

  store::Store& store() { return *store_; }
  Attestor& attestor() { return *attestor_; }
  Repository& repository() { return *repository_; }
  BlobStore& blobs() { return *blobs_; }
  Metrics& metrics() { return *metrics_; }

 private:
  Service() = default;
  void RunMaintenance();

  ServiceOptions options_;
  std::unique_ptr<DataDirectory> data_dir_;
  crypto::SecretBytes master_key_;
  std::unique_ptr<ServiceIdentity> identity_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<TenantCaCache> authorities_;
  std::unique_ptr<Attestor> attestor_;
  std::unique_ptr<Repository> repository_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<LoadControl> load_;
  std::unique_ptr<CheckInMemo> check_in_memo_;
  std::unique_ptr<ApiContext> api_context_;
  std::unique_ptr<http::Router> router_;
  std::unique_ptr<http::Server> http_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread maintenance_;
};

}  // namespace citadel::server
