// Delta updates (issue 4, acceptance 6): bytes a device downloads for a
// small change to a large image, delta vs full.
//
// Method: a deterministic image (default 64 MiB) laid out like a root
// filesystem: "files" of 4-256 KiB, 4 KiB aligned, of four kinds — text
// (configuration, scripts), code (instruction-like bytes with random
// immediates), incompressible (already compressed assets) and zeros (free
// blocks). The new version rewrites one 256 KiB region (a rebuilt file),
// inserts 64 KiB (which shifts everything after it) and edits a few bytes
// in scattered places (version strings, timestamps).
//
// Reported: the full image raw and compressed with zstd at the same level
// with long-distance matching (`zstd -12 --long=27`: what a full download
// costs), the delta (delta::CreateDelta), delta/full ratios, and wall time
// and peak RSS of creating and applying the delta. Each step runs in its own
// child process, so its ru_maxrss is its own; RSS counts the mapped images'
// resident pages too, not only zstd's buffers. Bounded: a step running
// longer than --max-seconds is killed and the bench fails.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "delta/delta.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;
using Data = std::vector<std::uint8_t>;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;
constexpr std::size_t kBlock = 4 * kKiB;
constexpr std::size_t kRewrittenBytes = 256 * kKiB;
constexpr std::size_t kInsertedBytes = 64 * kKiB;
constexpr int kScatteredEdits = 24;
constexpr int kFullWindowLog = 27;  // zstd --long's default window

enum class Kind { kText, kCode, kIncompressible, kZeros };
constexpr std::array<std::string_view, 4> kKindNames = {"text", "code", "incompressible", "zeros"};

// Fills `out` with `length` bytes of one kind of content.
void AppendContent(Kind kind, std::size_t length, std::mt19937_64& random, Data& out) {
  static constexpr std::array<std::string_view, 16> kWords = {
      "ExecStart=", "/usr/bin/",    "citadel", "enable ", "disable ", "# see man 5 ", "After=network.target\n",
      "Restart=",   "on-failure\n", "export ", "PATH=",   "=/lib:",   "if [ -f ",     " ]; then\n",
      "fi\n",       "version "};
  const std::size_t end = out.size() + length;
  switch (kind) {
    case Kind::kText:
      while (out.size() < end) {
        std::string_view word = kWords[random() % kWords.size()];
        if (random() % 8 == 0) {
          const std::string number = std::to_string(random() % 100000) + " ";
          out.insert(out.end(), number.begin(), number.end());
        } else {
          out.insert(out.end(), word.begin(), word.end());
        }
      }
      out.resize(end);
      break;
    case Kind::kCode: {
      // A small opcode vocabulary with random 1-4 byte immediates: about as
      // compressible as machine code (~2x).
      static constexpr std::array<std::uint8_t, 12> kOpcodes = {0x48, 0x89, 0x8b, 0xe8, 0xc3, 0x55,
                                                                0x5d, 0x31, 0xff, 0x0f, 0x85, 0x74};
      while (out.size() < end) {
        out.push_back(kOpcodes[random() % kOpcodes.size()]);
        out.push_back(kOpcodes[random() % kOpcodes.size()]);
        const std::size_t immediate = random() % 5;
        for (std::size_t i = 0; i < immediate; ++i) out.push_back(static_cast<std::uint8_t>(random()));
      }
      out.resize(end);
      break;
    }
    case Kind::kIncompressible:
      for (std::size_t i = 0; i < length; ++i) out.push_back(static_cast<std::uint8_t>(random()));
      break;
    case Kind::kZeros:
      out.resize(end, 0);
      break;
  }
}

// Weights: text 35 %, code 25 %, incompressible 30 %, zeros 10 % of files.
Kind PickKind(std::mt19937_64& random) {
  const auto roll = random() % 100;
  if (roll < 35) return Kind::kText;
  if (roll < 60) return Kind::kCode;
  if (roll < 90) return Kind::kIncompressible;
  return Kind::kZeros;
}

// `size` bytes of files of 4-256 KiB, whole 4 KiB blocks; counts bytes per kind.
Data BuildContent(std::size_t size, std::mt19937_64& random, std::array<std::size_t, 4>* kind_bytes = nullptr) {
  Data data;
  data.reserve(size);
  while (data.size() < size) {
    const Kind kind = PickKind(random);
    const std::size_t length = std::min(kBlock * (1 + random() % 64), size - data.size());
    AppendContent(kind, length, random, data);
    if (kind_bytes != nullptr) (*kind_bytes)[static_cast<std::size_t>(kind)] += length;
  }
  return data;
}

struct Change {
  std::size_t rewritten_at = 0;
  std::size_t inserted_at = 0;
};

Data ApplyChange(Data image, std::uint64_t seed, Change& change) {
  std::mt19937_64 random(seed ^ 0x9e3779b97f4a7c15ULL);
  change.rewritten_at = (image.size() * 2 / 5) / kBlock * kBlock;
  const Data rebuilt = BuildContent(kRewrittenBytes, random);
  std::copy(rebuilt.begin(), rebuilt.end(), image.begin() + static_cast<std::ptrdiff_t>(change.rewritten_at));
  for (int i = 0; i < kScatteredEdits; ++i) {
    const std::size_t at = (image.size() / kScatteredEdits) * static_cast<std::size_t>(i) + random() % 4096;
    const std::size_t count = 1 + random() % 8;
    for (std::size_t j = 0; j < count && at + j < image.size(); ++j)
      image[at + j] = static_cast<std::uint8_t>(random());
  }
  change.inserted_at = (image.size() / 4) / kBlock * kBlock;
  const Data inserted = BuildContent(kInsertedBytes, random);
  image.insert(image.begin() + static_cast<std::ptrdiff_t>(change.inserted_at), inserted.begin(), inserted.end());
  return image;
}

bool WriteData(const fs::path& path, const Data& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return out.good();
}

Data ReadData(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct StepResult {
  bool ok = false;
  double seconds = 0;
  double peak_rss_mib = 0;
};

// Runs `step` in a child process; its exit status is the step's success.
StepResult RunStep(std::string_view name, int max_seconds, const std::function<bool()>& step) {
  StepResult result;
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    return result;
  }
  if (pid == 0) _exit(step() ? 0 : 1);
  const auto deadline = start + std::chrono::seconds(max_seconds);
  int status = 0;
  rusage usage{};
  for (;;) {
    const pid_t done = ::wait4(pid, &status, WNOHANG, &usage);
    if (done == pid) break;
    if (done < 0) {
      std::perror("wait4");
      return result;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      (void)::kill(pid, SIGKILL);
      (void)::wait4(pid, &status, 0, &usage);
      (void)std::fprintf(stderr, "delta_bench: %.*s took longer than %d s; killed\n", static_cast<int>(name.size()),
                         name.data(), max_seconds);
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.peak_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
  result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!result.ok) {
    (void)std::fprintf(stderr, "delta_bench: %.*s failed\n", static_cast<int>(name.size()), name.data());
  }
  return result;
}

// The full download: the target compressed on its own, `zstd -LEVEL --long=27`.
bool CompressFull(const fs::path& target, const fs::path& output, int level) {
  const Data data = ReadData(target);
  ZSTD_CCtx* context = ZSTD_createCCtx();
  if (context == nullptr) return false;
  const int window_log =
      std::min(kFullWindowLog, std::max(delta::kMinWindowLog, static_cast<int>(std::bit_width(data.size()))));
  bool ok = ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)) == 0 &&
            ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_enableLongDistanceMatching, 1)) == 0 &&
            ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_windowLog, window_log)) == 0;
  Data compressed(ZSTD_compressBound(data.size()));
  const std::size_t size =
      ok ? ZSTD_compress2(context, compressed.data(), compressed.size(), data.data(), data.size()) : 0;
  ZSTD_freeCCtx(context);
  if (!ok || ZSTD_isError(size) != 0) {
    (void)std::fprintf(stderr, "delta_bench: zstd compression of the full image failed\n");
    return false;
  }
  compressed.resize(size);
  return WriteData(output, compressed);
}

std::string Grouped(std::uint64_t value) {
  std::string digits = std::to_string(value);
  for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3)
    digits.insert(static_cast<std::size_t>(i), ",");
  return digits;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Delta updates: bytes downloaded for a small change to a large image, delta vs full"};
  std::size_t size_mib = 64;
  int level = delta::CreateOptions{}.level;
  std::uint64_t seed = 1;
  int max_seconds = 600;
  fs::path work_parent = fs::temp_directory_path();
  // The change adds 64 KiB: the new image must stay within the delta bound.
  cli.add_option("--size-mib", size_mib, "Image size in MiB (at most 1023)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1023}))
      ->capture_default_str();
  cli.add_option("--level", level, "zstd level for the delta and the full image (1..19)")
      ->check(CLI::Range(1, 19))
      ->capture_default_str();
  cli.add_option("--seed", seed, "Seed of the generated image and change")->capture_default_str();
  cli.add_option("--max-seconds", max_seconds, "Time limit per step")
      ->check(CLI::Range(1, 7200))
      ->capture_default_str();
  cli.add_option("--work-dir", work_parent, "Where the images are written (a temporary directory inside)")
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  log::Init("delta-bench", log::Level::kError);

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i == 0 ? "" : " ") + std::string(argv[i]);
  std::printf("delta bench: %s\n", command.c_str());

  std::string work_template = (work_parent / "citadel-delta-bench.XXXXXX").string();
  if (::mkdtemp(work_template.data()) == nullptr) {
    std::perror("delta_bench: mkdtemp");
    return 1;
  }
  const fs::path work = work_template;
  const fs::path source = work / "source.img";
  const fs::path target = work / "target.img";
  const fs::path delta_file = work / "update.delta";
  const fs::path full_file = work / "target.img.zst";
  const fs::path rebuilt = work / "rebuilt.img";

  // Built in the parent and dropped before the steps fork, so that no step
  // inherits (and counts in its RSS) the generator's buffers.
  std::array<std::size_t, 4> kind_bytes{};
  Change change;
  crypto::Sha256Digest target_digest{};
  std::size_t target_size = 0;
  {
    std::mt19937_64 random(seed);
    Data image = BuildContent(size_mib * kMiB, random, &kind_bytes);
    Data updated = ApplyChange(image, seed, change);
    target_digest = crypto::Sha256(updated);
    target_size = updated.size();
    if (!WriteData(source, image) || !WriteData(target, updated)) {
      (void)std::fprintf(stderr, "delta_bench: cannot write the images to %s\n", work.c_str());
      fs::remove_all(work);
      return 1;
    }
  }
  const double total = static_cast<double>(size_mib * kMiB);
  std::printf("zstd %s, level %d; image %zu MiB:", ZSTD_versionString(), level, size_mib);
  for (std::size_t i = 0; i < kind_bytes.size(); ++i) {
    std::printf(" %s %.0f%%", kKindNames[i].data(), 100.0 * static_cast<double>(kind_bytes[i]) / total);
  }
  std::printf("\nchange: %zu KiB rewritten at offset %zu, %zu KiB inserted at offset %zu, %d edits of 1-8 bytes\n\n",
              kRewrittenBytes / kKiB, change.rewritten_at, kInsertedBytes / kKiB, change.inserted_at, kScatteredEdits);

  // Delta first: when it fails the slow full compression is not worth running.
  auto fail = [&](const char* why) {
    if (why != nullptr) (void)std::fprintf(stderr, "delta_bench: %s\n", why);
    fs::remove_all(work);
    return 1;
  };
  const StepResult create = RunStep("create delta", max_seconds, [&] {
    auto created = delta::CreateDelta(source, target, delta_file, {.level = level});
    if (!created) (void)std::fprintf(stderr, "delta_bench: %s\n", created.error().message().c_str());
    return created.has_value();
  });
  if (!create.ok) return fail(nullptr);
  const StepResult apply = RunStep("apply delta", max_seconds, [&] {
    auto applied = delta::ApplyDelta(source, delta_file, rebuilt);
    if (!applied) (void)std::fprintf(stderr, "delta_bench: %s\n", applied.error().message().c_str());
    return applied.has_value();
  });
  if (!apply.ok) return fail(nullptr);
  if (crypto::Sha256(ReadData(rebuilt)) != target_digest) return fail("the rebuilt image differs from the target");
  const StepResult full =
      RunStep("full compression", max_seconds, [&] { return CompressFull(target, full_file, level); });
  if (!full.ok) return fail(nullptr);

  const std::uint64_t full_bytes = fs::file_size(full_file);
  const std::uint64_t delta_bytes = fs::file_size(delta_file);
  std::printf("%-36s %15s\n", "", "bytes");
  std::printf("%-36s %15s\n", "full image, raw", Grouped(target_size).c_str());
  std::printf("%-36s %15s\n", ("full image, zstd -" + std::to_string(level) + " --long=27").c_str(),
              Grouped(full_bytes).c_str());
  std::printf("%-36s %15s\n", "delta (96-byte header + zstd frame)", Grouped(delta_bytes).c_str());
  std::printf("%-36s %14.2f%%\n", "delta / full zstd",
              100.0 * static_cast<double>(delta_bytes) / static_cast<double>(full_bytes));
  std::printf("%-36s %14.2f%%\n", "delta / full raw",
              100.0 * static_cast<double>(delta_bytes) / static_cast<double>(target_size));
  std::printf("\n%-36s %10s %14s\n", "", "seconds", "peak RSS MiB");
  std::printf("%-36s %10.2f %14.1f\n", "create delta (service)", create.seconds, create.peak_rss_mib);
  std::printf("%-36s %10.2f %14.1f\n", "apply delta + verify (device)", apply.seconds, apply.peak_rss_mib);
  std::printf("%-36s %10.2f %14.1f\n", "compress full image", full.seconds, full.peak_rss_mib);
  fs::remove_all(work);
  return 0;
}
