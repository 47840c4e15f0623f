#include "sim/simulator.hpp"

#include <sys/resource.h>

#include <csignal>

#include <atomic>
#include <random>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/file.hpp"
#include "common/log.hpp"
#include "sim/device.hpp"
#include "sim/fleet.hpp"

namespace citadel::sim {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Descriptors per device: the attestation connection and the device's
// mutual-TLS connection may overlap for a moment; plus room for the rest.
constexpr std::uint64_t kDescriptorsPerDevice = 2;
constexpr std::uint64_t kSpareDescriptors = 256;

}  // namespace

std::uint64_t RaiseOpenFileLimit(std::uint64_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur >= wanted) return limit.rlim_cur;
  rlimit raised = limit;
  raised.rlim_cur = wanted;
  if (raised.rlim_max < wanted) raised.rlim_max = wanted;  // root may raise the hard limit (up to fs.nr_open)
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    raised.rlim_max = limit.rlim_max;
    raised.rlim_cur = std::min<rlim_t>(wanted, limit.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) return limit.rlim_cur;
  }
  return raised.rlim_cur;
}

Expected<SimulationResult> RunSimulation(const SimOptions& options, const ProgressCallback& progress,
                                         bool stop_on_signals) {
  CITADEL_TRY_VOID(ValidateOptions(options));
  auto endpoint = http::ParseBaseUrl(options.server_url);
  if (!endpoint) return WrapError(endpoint.error(), "--server");
  auto ca_pem = ReadFile(options.server_ca);
  if (!ca_pem) return WrapError(ca_pem.error(), "--server-ca");

  const std::uint64_t wanted = options.devices * kDescriptorsPerDevice + kSpareDescriptors;
  const std::uint64_t limit = RaiseOpenFileLimit(wanted);
  if (limit < wanted) {
    log::Warn("the open-file limit is below what the fleet needs; connections may fail",
              {{"limit", std::to_string(limit)}, {"wanted", std::to_string(wanted)}});
  }

  FleetSpec spec;
  spec.devices = options.devices;
  spec.manufacturer_dir = options.manufacturer_dir;
  spec.fleet_file = options.fleet_file;
  spec.os_name = options.os_name;
  spec.os_version = options.os_version;
  CITADEL_TRY(Fleet fleet, PrepareFleet(spec));

  FleetStats stats;
  DeviceEnvironment environment;
  environment.options = &options;
  environment.connection.host = endpoint->host;
  environment.connection.port = endpoint->port;
  environment.connection.timeout = options.request_timeout;
  environment.connection.bytes_per_second = options.slow_link;
  CITADEL_TRY(environment.server_tls, MakeTlsContext(*ca_pem));
  environment.fleet_size = fleet.devices.size();
  environment.device_connection = environment.connection;
  environment.device_tls = environment.server_tls;
  if (!options.check_in_server.empty()) {
    auto other = http::ParseBaseUrl(options.check_in_server);
    if (!other) return WrapError(other.error(), "--check-in-server");
    environment.device_connection.host = other->host;
    environment.device_connection.port = other->port;
    if (!options.check_in_server_ca.empty()) {
      auto other_ca = ReadFile(options.check_in_server_ca);
      if (!other_ca) return WrapError(other_ca.error(), "--check-in-server-ca");
      CITADEL_TRY(environment.device_tls, MakeTlsContext(*other_ca));
    }
  }
  environment.stats = &stats;
  environment.backoff.max_retries = options.max_retries;

  std::uint64_t seed = options.seed;
  if (seed == 0) seed = (static_cast<std::uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
  std::mt19937_64 seeds(seed);

  asio::io_context io(options.threads);
  std::vector<std::unique_ptr<VirtualDevice>> devices;
  devices.reserve(fleet.devices.size());
  for (auto& rot : fleet.devices) {
    devices.push_back(std::make_unique<VirtualDevice>(environment, *rot, asio::make_strand(io), seeds()));
  }

  const auto start = SteadyClock::now();
  if (options.duration.count() > 0) environment.deadline = start + options.duration;
  std::atomic<std::size_t> running{0};
  std::atomic<std::size_t> started{0};
  std::atomic<bool> launched{false};

  // Interrupts: every device is told to stop; the signal wait ends with the
  // last device, so io.run() returns.
  auto signal_strand = asio::make_strand(io);
  asio::signal_set signals(signal_strand);
  if (stop_on_signals) {
    signals.add(SIGINT);
    signals.add(SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      environment.stopping.store(true);
      for (auto& device : devices) device->Stop();
    });
  }
  auto finish_if_done = [&] {
    if (launched.load() && running.load() == 0) asio::post(signal_strand, [&signals] { signals.cancel(); });
  };

  // The launcher paces device starts at the connect rate.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(io);
        const auto period = std::chrono::duration<double>(1.0 / options.connect_rate);
        for (std::size_t i = 0; i < devices.size(); ++i) {
          if (SteadyClock::now() >= environment.deadline || environment.stopping.load()) break;
          const auto due = start + std::chrono::duration_cast<SteadyClock::duration>(period * static_cast<double>(i));
          if (due > SteadyClock::now()) {
            timer.expires_at(due);
            boost::system::error_code ignored;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
          }
          running.fetch_add(1);
          started.fetch_add(1);
          auto* device = devices[i].get();
          asio::co_spawn(
              device->executor(), [device]() { return device->Run(); },
              [&running, &finish_if_done, device](const std::exception_ptr& failure) {
                if (failure) {
                  try {
                    std::rethrow_exception(failure);
                  } catch (const std::exception& e) {
                    log::Error("a virtual device stopped on an exception",
                               {{"device_id", device->id()}, {"error", e.what()}});
                  }
                }
                running.fetch_sub(1);
                finish_if_done();
              });
        }
        launched.store(true);
        finish_if_done();
      },
      asio::detached);

  if (progress) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer timer(io);
          while (!launched.load() || running.load() > 0) {
            timer.expires_after(std::chrono::seconds(1));
            boost::system::error_code ignored;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
            progress(stats, running.load(), started.load());
          }
        },
        asio::detached);
  }

  std::vector<std::thread> threads;
  for (int i = 1; i < options.threads; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& thread : threads) thread.join();

  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  SimulationResult result;
  result.summary = stats.Summarize(devices.size(), seconds);
  result.reused_devices = fleet.reused;
  for (const auto& device : devices) result.devices.emplace_back(device->id(), device->os_version());
  devices.clear();
  return result;
}

}  // namespace citadel::sim
