// TPM 2.0 root-of-trust latency against swtpm: identity quote
// (SignWithIdentity = TPM2_Quote), TLS-key signature (TPM2_Sign through the
// OpenSSL EC_KEY_METHOD), measurement (event-log write + TPM2_PCR_Extend)
// and counter increment (TPM2_NV_Increment + read).
//
// swtpm is a software TPM: its figures are the cost of the TPM stack and
// the socket round trips, not of a discrete TPM (which signs only a few
// times per second). Without --tcti the bench manufactures and starts its
// own swtpm (scripts/swtpm-test-server) in a temporary directory.
//
// Every loop is bounded by --iterations and by --seconds.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "latencies.hpp"
#include "rot/tpm2/tpm2_rot.hpp"
#include "support/swtpm.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

using bench::Figures;

// Runs `operation` up to `iterations` times or until `limit` has passed.
Figures Measure(std::string name, std::size_t iterations, std::chrono::seconds limit,
                const std::function<bool(std::size_t)>& operation) {
  Figures figures;
  figures.name = std::move(name);
  auto deadline = SteadyClock::now() + limit;
  for (std::size_t i = 0; i < iterations && SteadyClock::now() < deadline; ++i) {
    auto start = SteadyClock::now();
    bool ok = operation(i);
    std::chrono::duration<double, std::milli> elapsed = SteadyClock::now() - start;
    if (ok) {
      figures.latencies.ms.push_back(elapsed.count());
    } else {
      ++figures.errors;
    }
  }
  return figures;
}

void Print(Figures& figures) {
  double mean = figures.latencies.Mean();
  std::printf("%-38s n=%-5zu errors=%-3zu mean=%8.3f ms  p50=%8.3f ms  p99=%8.3f ms  %8.1f ops/s\n",
              figures.name.c_str(), figures.latencies.ms.size(), figures.errors, mean,
              figures.latencies.Percentile(0.5), figures.latencies.Percentile(0.99), mean > 0 ? 1000.0 / mean : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"TPM 2.0 root of trust latency against swtpm"};
  std::string tcti;
  std::size_t iterations = 200;
  int seconds = 20;
  app.add_option("--tcti", tcti, "TCTI of a running (software) TPM; default: start a fresh swtpm");
  app.add_option("--iterations", iterations, "operations per measurement (upper bound)")->check(CLI::Range(1, 100000));
  app.add_option("--seconds", seconds, "time limit per measurement")->check(CLI::Range(1, 600));
  CLI11_PARSE(app, argc, argv);
  log::Init("tpm-bench", log::Level::kWarn);

  std::error_code ignored;
  fs::path dir = fs::temp_directory_path() / ("citadel-tpm-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir, ignored);
  fs::create_directories(dir);
  std::optional<testing::SoftwareTpm> tpm;
  if (tcti.empty()) {
    tpm.emplace(dir / "tpm", dir / "ca");
    auto started = tpm->ManufactureAndStart();
    if (!started) {
      std::cerr << "starting swtpm: " << started.error().message() << "\n";
      return 1;
    }
    tcti = *started;
  }
  int status = 0;
  {
    auto opened = rot::Tpm2RootOfTrust::Open({.tcti = tcti, .state_dir = dir / "state"});
    if (!opened) {
      std::cerr << "opening the TPM root of trust: " << opened.error().message() << "\n";
      status = 1;
    } else {
      rot::Tpm2RootOfTrust& rot = **opened;
      std::chrono::seconds limit(seconds);
      std::printf("TPM root of trust latency, tcti=%s, up to %zu operations or %d s each\n", tcti.c_str(), iterations,
                  seconds);
      std::vector<Figures> results;
      results.push_back(Measure("quote (SignWithIdentity)", iterations, limit, [&](std::size_t i) {
        return rot.SignWithIdentity(crypto::Sha256("quote " + std::to_string(i))).has_value();
      }));
      results.push_back(Measure("TLS key sign (TPM2_Sign via OpenSSL)", iterations, limit, [&](std::size_t i) {
        return rot.TlsClientKey().SignDigest(crypto::Sha256("tls " + std::to_string(i))).has_value();
      }));
      results.push_back(Measure("measure (log write + PCR extend)", iterations, limit, [&](std::size_t i) {
        rot::MeasurementEvent event;
        event.register_index = static_cast<std::uint32_t>(rot::Register::kApps);
        event.type = "app";
        event.name = "bench-" + std::to_string(i);
        event.digest = crypto::Sha256(event.name);
        return rot.Extend(event).has_value();
      }));
      results.push_back(Measure("counter increment (NV_Increment)", iterations, limit,
                                [&](std::size_t) { return rot.IncrementCounter("bench.counter").has_value(); }));
      for (auto& figures : results) {
        Print(figures);
        if (figures.errors != 0) status = 1;
      }
    }
  }
  if (tpm) (void)tpm->Stop();
  fs::remove_all(dir, ignored);
  return status;
}
