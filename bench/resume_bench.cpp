// Download resume after a cut (issue 4, acceptance 6): bytes fetched twice
// when the connection drops during a download, resuming with Range vs
// starting over from zero.
//
// Method: a seeded pseudo-random image (default 64 MiB, incompressible, as
// an OS image after compression) is served over plain HTTP on 127.0.0.1 by
// the test file server (tests/support/file_server), which closes the
// connection after a given number of body bytes. http::Downloader fetches
// it into memory, in one run, with two strategies:
//   resume   the next request asks for "Range: bytes=<held>-" (what
//            tuf::Updater::DownloadTarget does with its ".part" file);
//   restart  the next request starts again at byte 0 (a client without
//            resume).
// A scenario is a list of cut points, as positions in the file: the
// connection drops when the download reaches each of them in turn (for
// restart, the k-th attempt runs from 0 to the k-th point). Positions, not
// moments, keep the two strategies comparable; a link that fails every T
// seconds would cost restart more still.
//
// Reported per scenario and strategy: the image's bytes, the requests, the
// body bytes the server sent (its own count: what crossed the wire),
// bytes fetched twice (sent - image) and the ratio of the bytes sent to
// restart's; the result's SHA-256 is checked against the image's. Bounded:
// at most one request per cut plus two per download, each bounded by the
// Downloader's timeouts, and the whole run by --max-seconds.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/log.hpp"
#include "crypto/crypto.hpp"
#include "http/fetch.hpp"
#include "support/file_server.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;
using citadel::testing::FileServer;
using citadel::testing::FileServerFault;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::string_view kImagePath = "/image.bin";
constexpr auto kIdleWait = std::chrono::seconds(5);

struct Scenario {
  std::string name;
  std::vector<double> cuts;  // fractions of the image, increasing, in (0, 1)
};

enum class Strategy { kResume, kRestart };

struct Figures {
  std::uint64_t requests = 0;
  std::uint64_t sent = 0;  // body bytes the server wrote
  double seconds = 0;
  bool verified = false;  // the result's SHA-256 is the image's
};

std::string Image(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string image(size, '\0');
  for (std::size_t at = 0; at < size; at += sizeof(std::uint64_t)) {
    const std::uint64_t value = random();
    std::memcpy(image.data() + at, &value, std::min(sizeof value, size - at));
  }
  return image;
}

// One download of the image under `cuts` (byte positions), with `strategy`
// after each cut. Fails when a request fails other than by a cut, when the
// cuts are used up and it still fails, or past the deadline.
Expected<Figures> Download(FileServer& server, const std::string& image, const crypto::Sha256Digest& digest,
                           const std::vector<std::uint64_t>& cuts, Strategy strategy,
                           SteadyClock::time_point deadline) {
  http::DownloaderOptions options;
  options.read_timeout = std::chrono::seconds(10);
  CITADEL_TRY(auto downloader, http::Downloader::Create(std::move(options)));
  server.ClearFaults();
  server.ResetCounters();
  std::string received(image.size(), '\0');
  std::uint64_t held = 0;  // contiguous bytes from position 0
  const http::DownloadSink sink = [&](std::uint64_t position, std::string_view chunk) -> Expected<void> {
    if (position != held && position != 0) return MakeError(ErrorCode::kIo, "bytes delivered out of order");
    if (chunk.size() > received.size() - position) return MakeError(ErrorCode::kTooLarge, "longer than the image");
    std::memcpy(received.data() + position, chunk.data(), chunk.size());
    held = position + chunk.size();
    return kOk;
  };

  Figures figures;
  const auto start = SteadyClock::now();
  std::size_t next_cut = 0;
  const std::size_t max_requests = cuts.size() + 2;
  bool complete = false;
  while (!complete && figures.requests < max_requests) {
    if (SteadyClock::now() > deadline) return MakeError(ErrorCode::kUnavailable, "--max-seconds passed");
    if (strategy == Strategy::kRestart) held = 0;
    if (next_cut < cuts.size() && cuts[next_cut] > held) {
      server.SetFault(std::string(kImagePath), FileServerFault::CutAfter(cuts[next_cut] - held, /*times=*/1));
    }
    ++next_cut;
    ++figures.requests;
    auto got = downloader->Get({.url = server.Url(kImagePath), .max_length = image.size(), .offset = held}, sink);
    if (got) {
      complete = held == image.size();
    } else if (got.error().code() != ErrorCode::kUnavailable || next_cut > cuts.size()) {
      return WrapError(got.error(), "request " + std::to_string(figures.requests));
    }
  }
  figures.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!complete)
    return MakeError(ErrorCode::kInternal, "not complete after " + std::to_string(max_requests) + " requests");
  if (!server.WaitUntilIdle(kIdleWait)) return MakeError(ErrorCode::kUnavailable, "the server did not go idle");
  figures.sent = server.BodyBytesSent(kImagePath);
  figures.verified = crypto::Sha256(received) == digest;
  return figures;
}

std::string CutText(const std::vector<double>& cuts) {
  std::string text;
  for (double cut : cuts) text += (text.empty() ? "" : ",") + std::to_string(std::lround(cut * 100)) + "%";
  return text.empty() ? "-" : text;
}

// Bytes sent beyond the image; a complete download sent at least the image.
std::uint64_t FetchedTwice(const Figures& figures, std::uint64_t image_bytes) {
  return figures.sent > image_bytes ? figures.sent - image_bytes : 0;
}

double Percent(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

// The command line.
struct BenchOptions {
  std::size_t size_mib = 64;
  std::uint64_t seed = 1;
  int max_seconds = 300;
  bool json = false;
  fs::path work_parent = fs::temp_directory_path();
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Download resume after a cut: bytes fetched twice, Range resume vs restart from zero"};
  BenchOptions options;
  cli.add_option("--size-mib", options.size_mib, "Image size in MiB")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
      ->capture_default_str();
  cli.add_option("--seed", options.seed, "Seed of the generated image")->capture_default_str();
  cli.add_option("--max-seconds", options.max_seconds, "Time limit for the whole run")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cli.add_flag("--json", options.json, "One JSON object per scenario and line instead of the table");
  cli.add_option("--work-dir", options.work_parent, "Where the served image is written (a temporary directory inside)")
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  log::Init("resume-bench", log::Level::kError);
  const auto deadline = SteadyClock::now() + std::chrono::seconds(options.max_seconds);

  const std::vector<Scenario> scenarios = {{"no cut", {}},
                                           {"cut at 10%", {0.10}},
                                           {"cut at 50%", {0.50}},
                                           {"cut at 90%", {0.90}},
                                           {"3 cuts in one download", {0.25, 0.50, 0.75}}};

  std::string work_template = (options.work_parent / "citadel-resume-bench.XXXXXX").string();
  if (::mkdtemp(work_template.data()) == nullptr) {
    std::perror("resume_bench: mkdtemp");
    return 1;
  }
  const fs::path work = work_template;
  auto fail = [&](const std::string& why) {
    (void)std::fprintf(stderr, "resume_bench: %s\n", why.c_str());
    fs::remove_all(work);
    return 1;
  };
  const std::string image = Image(options.size_mib * kMiB, options.seed);
  const crypto::Sha256Digest digest = crypto::Sha256(image);
  {
    std::ofstream out(work / kImagePath.substr(1), std::ios::binary | std::ios::trunc);
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
    if (!out.good()) return fail("cannot write the image to " + work.string());
  }
  auto server = FileServer::Start({.root = work});
  if (!server) return fail(server.error().message());

  if (!options.json) {
    std::string command;
    for (int i = 0; i < argc; ++i) command += (i == 0 ? "" : " ") + std::string(argv[i]);
    std::printf("resume bench: %s\n", command.c_str());
    std::printf(
        "image %zu bytes (seed %llu, SHA-256 %s), served by the test file server on 127.0.0.1;\n"
        "a cut closes the connection when the download reaches that point of the file\n\n",
        image.size(), static_cast<unsigned long long>(options.seed), HexEncode(digest).c_str());
    std::printf("%-24s %-12s %-8s %10s %9s %11s %11s %9s %8s %9s\n", "scenario", "cuts", "strategy", "image",
                "requests", "sent", "twice", "twice %", "sent vs", "seconds");
    std::printf("%-24s %-12s %-8s %10s %9s %11s %11s %9s %8s %9s\n", "", "", "", "bytes", "", "bytes", "bytes",
                "of image", "restart", "");
  }
  bool all_verified = true;
  for (const Scenario& scenario : scenarios) {
    std::vector<std::uint64_t> cuts;
    cuts.reserve(scenario.cuts.size());
    for (double cut : scenario.cuts)
      cuts.push_back(static_cast<std::uint64_t>(cut * static_cast<double>(image.size())));
    auto resume = Download(**server, image, digest, cuts, Strategy::kResume, deadline);
    if (!resume) return fail(scenario.name + ", resume: " + resume.error().message());
    auto restart = Download(**server, image, digest, cuts, Strategy::kRestart, deadline);
    if (!restart) return fail(scenario.name + ", restart: " + restart.error().message());
    all_verified = all_verified && resume->verified && restart->verified;

    const std::uint64_t size = image.size();
    if (options.json) {
      auto figures = [&](const Figures& f) {
        return Json{{"requests", f.requests},
                    {"bytes_sent", f.sent},
                    {"bytes_fetched_twice", FetchedTwice(f, size)},
                    {"seconds", f.seconds},
                    {"sha256_verified", f.verified}};
      };
      std::cout << Json{{"benchmark", "download resume"},
                        {"scenario", scenario.name},
                        {"cut_offsets", cuts},
                        {"image_bytes", size},
                        {"resume", figures(*resume)},
                        {"restart", figures(*restart)},
                        {"sent_resume_vs_restart",
                         static_cast<double>(resume->sent) / static_cast<double>(restart->sent)}}
                       .dump()
                << "\n";
      continue;
    }
    auto row = [&](std::string_view name, std::string_view cut_text, std::string_view strategy, const Figures& f) {
      std::printf("%-24.*s %-12.*s %-8.*s %10llu %9llu %11llu %11llu %8.1f%% %7.1f%% %9.2f%s\n",
                  static_cast<int>(name.size()), name.data(), static_cast<int>(cut_text.size()), cut_text.data(),
                  static_cast<int>(strategy.size()), strategy.data(), static_cast<unsigned long long>(size),
                  static_cast<unsigned long long>(f.requests), static_cast<unsigned long long>(f.sent),
                  static_cast<unsigned long long>(FetchedTwice(f, size)), Percent(FetchedTwice(f, size), size),
                  Percent(f.sent, restart->sent), f.seconds, f.verified ? "" : "  SHA-256 MISMATCH");
    };
    row(scenario.name, CutText(scenario.cuts), "resume", *resume);
    row("", "", "restart", *restart);
  }
  (*server)->Stop();
  fs::remove_all(work);
  if (!all_verified) {
    (void)std::fprintf(stderr, "resume_bench: a downloaded image differs from the served one\n");
    return 1;
  }
  return 0;
}
