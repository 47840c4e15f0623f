// citadel-server: the Citadel security service.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/log.hpp"
#include "server/service.hpp"

namespace {

citadel::Expected<std::pair<std::string, std::uint16_t>> ParseListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return citadel::MakeError(citadel::ErrorCode::kInvalidArgument, "--listen takes ADDRESS:PORT, e.g. 127.0.0.1:8443");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return citadel::MakeError(citadel::ErrorCode::kInvalidArgument, "--listen port must be 0..65535");
  }
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"citadel-server: the Citadel security service (attestation, device certificates, fleet registry)"};
  app.footer(
      "Example:\n"
      "  citadel-server --listen 127.0.0.1:8443 --data ./var/server\n"
      "  citadel-server --data ./var/server --database postgresql://citadel@127.0.0.1/citadel\n\n"
      "On first start the server creates DATA/service-ca.pem (pin it in devices and the CLI)\n"
      "and DATA/operator-token (the platform operator's API token).");
  citadel::server::ServiceOptions options;
  std::string listen = "127.0.0.1:8443";
  std::string log_level = "info";
  bool log_json = false;
  std::vector<std::string> manufacturer_cas;
  std::vector<std::string> tpm_manufacturer_cas;
  long certificate_lifetime = 24 * 60 * 60;
  long check_in_interval = 300;
  long unclaimed_retry = 30;
  app.add_option("--listen", listen, "ADDRESS:PORT to serve HTTPS on")->capture_default_str();
  app.add_option("--data", options.data_dir, "data directory (keys, certificates, SQLite store)")
      ->capture_default_str();
  app.add_option("--database", options.database, "PostgreSQL URL (postgresql://...); default: SQLite in --data");
  app.add_option("--trust-manufacturer-ca", manufacturer_cas,
                 "PEM file of a manufacturer CA to trust (repeatable; DATA/manufacturer-cas/*.pem are trusted too)");
  app.add_option("--trust-tpm-manufacturer-ca", tpm_manufacturer_cas,
                 "PEM file of a TPM vendor's CA that certifies endorsement keys (repeatable; "
                 "DATA/tpm-manufacturer-cas/*.pem are trusted too)");
  app.add_option("--tls-certificate", options.tls_certificate_file,
                 "PEM chain (leaf first) from your PKI for the HTTPS server; default: made from DATA/service-ca.pem");
  app.add_option("--tls-key", options.tls_key_file, "PEM private key of --tls-certificate");
  app.add_option("--hostname", options.host_names, "extra DNS name or IP for the TLS server certificate (repeatable)");
  app.add_option("--device-certificate-lifetime", certificate_lifetime, "seconds a device certificate is valid")
      ->capture_default_str()
      ->check(CLI::Range(60L, 7L * 24 * 60 * 60));
  app.add_option("--check-in-interval", check_in_interval, "seconds between device check-ins")
      ->capture_default_str()
      ->check(CLI::Range(1L, 24L * 60 * 60));
  app.add_option("--unclaimed-retry", unclaimed_retry, "seconds an unclaimed device waits before attesting again")
      ->capture_default_str()
      ->check(CLI::Range(1L, 24L * 60 * 60));
  app.add_option("--threads", options.threads, "HTTPS I/O threads (0: one per core)")->capture_default_str();
  // Load: workers, the admission queue, rate limits (docs/ARCHITECTURE.md, "Backpressure").
  long queue_delay_ms = options.admission.max_queue_delay.count();
  auto* load = "Load and backpressure";
  app.add_option("--workers", options.admission.workers,
                 "threads running request handlers (0: 2 per core, at least 4; they wait on the store)")
      ->group(load)
      ->capture_default_str();
  app.add_option("--max-queued-requests", options.admission.max_queued,
                 "requests waiting for a worker before the service answers 503 + Retry-After")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::Range(static_cast<std::size_t>(1), static_cast<std::size_t>(1'000'000)));
  app.add_option("--max-queue-delay-ms", queue_delay_ms,
                 "a request that waited longer than this for a worker is answered 503 + Retry-After")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::Range(1L, 600'000L));
  app.add_option("--max-connections", options.max_connections, "open connections; more are refused")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::Range(static_cast<std::size_t>(1), static_cast<std::size_t>(10'000'000)));
  app.add_option("--device-rate", options.load.device.per_second,
                 "requests per second each device may make, per replica (0: no limit); 429 + Retry-After beyond")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device-burst", options.load.device.burst, "requests a device may make at once")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e9));
  app.add_option("--tenant-rate", options.load.tenant.per_second,
                 "requests per second a tenant's tokens and devices may make together, per replica (0: no limit)")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tenant-burst", options.load.tenant.burst, "requests a tenant may make at once")
      ->group(load)
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e9));
  auto* observe = "Observability";
  app.add_option("--metrics-token-file", options.metrics_token_file,
                 "file holding the bearer token Prometheus sends to GET /metrics (the operator token works too)")
      ->group(observe);
  bool no_access_log = false;
  app.add_flag("--no-access-log", no_access_log, "do not log one line per request")->group(observe);
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  app.add_flag("--log-json", log_json, "log JSON lines");
  CLI11_PARSE(app, argc, argv);
  // A write to a peer that went away must be an error, not a signal.
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return 1;

  auto level = citadel::log::ParseLevel(log_level);
  if (!level) {
    std::cerr << "error: " << level.error() << "\n";
    return 2;
  }
  citadel::log::Init("citadel-server", *level, log_json);
  auto endpoint = ParseListen(listen);
  if (!endpoint) {
    std::cerr << "error: " << endpoint.error().message() << "\n";
    return 2;
  }
  options.listen_address = endpoint->first;
  options.port = endpoint->second;
  for (const auto& file : manufacturer_cas) options.manufacturer_ca_files.emplace_back(file);
  for (const auto& file : tpm_manufacturer_cas) options.tpm_manufacturer_ca_files.emplace_back(file);
  options.certificate_lifetime = std::chrono::seconds(certificate_lifetime);
  options.check_in_interval = std::chrono::seconds(check_in_interval);
  options.unclaimed_retry = std::chrono::seconds(unclaimed_retry);
  options.admission.max_queue_delay = std::chrono::milliseconds(queue_delay_ms);
  options.access_log = !no_access_log;

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // wakes the signal thread when the process ends on its own
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto service = citadel::server::Service::Create(options);
  if (!service) {
    std::cerr << "error: " << service.error().message() << "\n";
    return 1;
  }
  if (auto started = (*service)->Start(); !started) {
    std::cerr << "error: " << started.error().message() << "\n";
    return 1;
  }
  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal == SIGUSR1) return;  // the service stopped on its own
    citadel::log::Info("stopping", {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"}});
    (*service)->Stop();
  });
  (*service)->Wait();
  // Wake the signal thread if the server stopped on its own.
  if (signal_waiter.joinable()) {
    pthread_kill(signal_waiter.native_handle(), SIGUSR1);
    signal_waiter.join();
  }
  citadel::log::Info("stopped");
  return 0;
}
