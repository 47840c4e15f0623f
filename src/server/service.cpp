#include "server/service.hpp"

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "server/api.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::server {

namespace {

// The caller's X-Request-Id when it is a plain token (a balancer's unique
// id), else a fresh one; echoed in the response and the access log.
std::string RequestId(const http::Request& request) {
  std::string given = request.Header("x-request-id");
  if (!given.empty() && given.size() <= 64 &&
      given.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:") ==
          std::string::npos) {
    return given;
  }
  return HexEncode(crypto::RandomBytes(8));
}

// Every request: route, metrics, the access log line, X-Request-Id.
http::Response Serve(const http::Router& router, Metrics& metrics, bool access_log, const http::Request& request) {
  const auto started = std::chrono::steady_clock::now();
  std::string route;
  http::Response response = router.Dispatch(request, &route);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double queued = std::chrono::duration<double>(request.queued).count();
  metrics.Request(request.method, route, response.status, seconds, queued);
  std::string id = RequestId(request);
  if (access_log) {
    const std::string status = std::to_string(response.status);
    const std::string handler_ms = std::to_string(seconds * 1000);
    const std::string queued_ms = std::to_string(queued * 1000);
    log::Info("request", {{"method", request.method},
                          {"path", request.path},
                          {"route", route},
                          {"status", status},
                          {"ms", handler_ms},
                          {"queued_ms", queued_ms},
                          {"remote", request.remote_address},
                          {"request_id", id}});
  }
  response.headers.emplace_back("X-Request-Id", std::move(id));
  return response;
}

}  // namespace

Expected<std::unique_ptr<Service>> Service::Create(const ServiceOptions& options) {
  std::unique_ptr<Service> service(new Service());
  service->options_ = options;

  CITADEL_TRY(auto data_dir, DataDirectory::Open(options.data_dir));
  service->data_dir_ = std::make_unique<DataDirectory>(std::move(data_dir));
  auto master_key = service->data_dir_->LoadOrCreateMasterKey();
  if (!master_key) return WrapError(master_key.error(), "master key");
  service->master_key_ = std::move(*master_key);

  if (options.tls_certificate_file.empty() != options.tls_key_file.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--tls-certificate and --tls-key go together");
  }
  auto identity = options.tls_certificate_file.empty()
                      ? service->data_dir_->LoadOrCreateServiceIdentity(options.host_names)
                      : DataDirectory::LoadConfiguredIdentity(options.tls_certificate_file, options.tls_key_file);
  if (!identity) return WrapError(identity.error(), "service TLS identity");
  service->identity_ = std::make_unique<ServiceIdentity>(std::move(*identity));

  std::string location = options.database.empty() ? service->data_dir_->DatabasePath().string() : options.database;
  auto store = store::OpenStore(location);
  if (!store) return WrapError(store.error(), "opening the store");
  service->store_ = std::move(*store);
  if (auto migrated = service->store_->Migrate(); !migrated) {
    return WrapError(migrated.error(), "migrating the store schema");
  }
  CITADEL_TRY_VOID(service->data_dir_->EnsureOperatorToken(*service->store_));

  auto manufacturer_cas = service->data_dir_->LoadManufacturerCas("manufacturer-cas", options.manufacturer_ca_files);
  if (!manufacturer_cas) return std::unexpected(manufacturer_cas.error());
  auto tpm_manufacturer_cas =
      service->data_dir_->LoadManufacturerCas("tpm-manufacturer-cas", options.tpm_manufacturer_ca_files);
  if (!tpm_manufacturer_cas) return std::unexpected(tpm_manufacturer_cas.error());
  if (manufacturer_cas->empty() && tpm_manufacturer_cas->empty()) {
    log::Warn("no manufacturer CA is trusted: every device will be refused as not genuine",
              {{"dir", (options.data_dir / "manufacturer-cas").string()}});
  }

  service->authorities_ = std::make_unique<TenantCaCache>(*service->store_, service->master_key_);
  AttestorOptions attestor_options;
  attestor_options.manufacturer_cas = std::move(*manufacturer_cas);
  attestor_options.tpm_manufacturer_cas = std::move(*tpm_manufacturer_cas);
  attestor_options.certificate_lifetime = options.certificate_lifetime;
  attestor_options.unclaimed_retry = options.unclaimed_retry;
  service->attestor_ = std::make_unique<Attestor>(*service->store_, *service->authorities_, attestor_options);

  service->repository_ = std::make_unique<Repository>(*service->store_, service->master_key_);
  // Uploaded images and deltas; shared by replicas (see blob_store.hpp).
  auto blobs = BlobStore::Open(options.data_dir / "blobs");
  if (!blobs) return WrapError(blobs.error(), "blob store");
  service->blobs_ = std::move(*blobs);

  ApiOptions api_options;
  api_options.check_in_interval = options.check_in_interval;
  if (!options.metrics_token_file.empty()) {
    auto token = ReadFile(options.metrics_token_file, 4096);
    if (!token) return WrapError(token.error(), "--metrics-token-file");
    std::string_view text = *token;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    if (text.size() < 16 || text.size() > 500) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--metrics-token-file: the token must be 16 to 500 characters (e.g. openssl rand -hex 32)");
    }
    api_options.metrics_token_hash = HashApiToken(text);
  }
  service->metrics_ = std::make_unique<Metrics>();
  service->store_->SetCallObserver(
      [metrics = service->metrics_.get(), backend = std::string(service->store_->Backend())](double seconds) {
        metrics->StoreCall(backend, seconds);
      });
  service->load_ = std::make_unique<LoadControl>(options.load, *service->authorities_, *service->metrics_);
  service->check_in_memo_ = std::make_unique<CheckInMemo>();
  service->api_context_ = std::make_unique<ApiContext>(ApiContext{
      *service->store_, *service->authorities_, *service->attestor_, service->master_key_, *service->repository_,
      *service->blobs_, *service->load_, *service->metrics_, *service->check_in_memo_, api_options});
  service->router_ = std::make_unique<http::Router>();
  RegisterRoutes(*service->router_, *service->api_context_);

  http::ServerOptions http_options;
  http_options.address = options.listen_address;
  http_options.port = options.port;
  http_options.identity = {service->identity_->server_chain_pem, &service->identity_->server_key};
  http_options.threads = options.threads;
  http_options.max_connections = options.max_connections;
  http_options.admission = options.admission;
  LoadControl* load = service->load_.get();
  Metrics* metrics = service->metrics_.get();
  const bool access_log = options.access_log;
  http_options.fairness_key = [load](const http::Request& request) { return load->Classify(request); };
  http_options.on_shed = [metrics, access_log](const http::Request& request, http::ShedReason reason) {
    metrics->Shed(reason);
    if (access_log) {
      log::Info("request shed", {{"method", request.method},
                                 {"path", request.path},
                                 {"status", "503"},
                                 {"reason", http::ShedReasonName(reason)},
                                 {"remote", request.remote_address}});
    }
  };
  // Symbol files are the one upload bigger than the 1 MiB every other
  // request is held to (images arrive in chunks).
  http_options.max_large_body_bytes = symbols::kMaxSymbolFileBytes;
  http_options.allows_large_body = [](std::string_view method, std::string_view target) {
    return method == "POST" && IsSymbolUploadTarget(target);
  };
  const http::Router* router = service->router_.get();
  auto http = http::Server::Create(http_options, [router, metrics, access_log](const http::Request& request) {
    return Serve(*router, *metrics, access_log, request);
  });
  if (!http) return WrapError(http.error(), "HTTP server");
  service->http_ = std::move(*http);
  http::Server* server = service->http_.get();
  metrics->SetAdmissionSource([server] { return server->admission_stats(); });
  return service;
}

Service::~Service() {
  Stop();
  Wait();
}

Expected<void> Service::Start() {
  auto started = http_->Start();
  if (!started) {
    return WrapError(started.error(), "listening on " + options_.listen_address + ":" + std::to_string(options_.port));
  }
  maintenance_ = std::thread([this] { RunMaintenance(); });
  log::Info("citadel-server listening", {{"address", options_.listen_address},
                                         {"port", std::to_string(http_->port())},
                                         {"store", store_->Backend()},
                                         {"data", options_.data_dir.string()}});
  return kOk;
}

std::uint16_t Service::port() const { return http_->port(); }

void Service::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (http_) http_->Stop();
}

void Service::Wait() {
  if (http_) http_->Wait();
  if (maintenance_.joinable()) maintenance_.join();
}

// Purges expired nonces once a minute, and failure reports and telemetry
// past their retention (90 days; docs/ARCHITECTURE.md, "Retention"); sleeps
// on a condition variable so a stop wakes it at once.
void Service::RunMaintenance() {
  constexpr std::int64_t kRetentionSeconds = 90LL * 24 * 60 * 60;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    const std::int64_t now = ToUnixSeconds(Clock::now());
    auto purged = store_->PurgeExpiredNonces(now);
    if (!purged) log::Warn("nonce purge failed", {{"error", purged.error().message()}});
    if (auto reports = store_->PruneFailureReports(now - kRetentionSeconds); !reports) {
      log::Warn("failure report prune failed", {{"error", reports.error().message()}});
    }
    if (auto telemetry = store_->PruneTelemetry(now - kRetentionSeconds); !telemetry) {
      log::Warn("telemetry prune failed", {{"error", telemetry.error().message()}});
    }
    lock.lock();
    wake_.wait_for(lock, std::chrono::minutes(1), [this] { return stopping_; });
  }
}

}  // namespace citadel::server
