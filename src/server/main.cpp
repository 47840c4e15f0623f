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
  app.add_option("--threads", options.threads, "HTTP worker threads (0: one per core)")->capture_default_str();
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
