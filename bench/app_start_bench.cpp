// App start latency and per-app memory overhead: bubblewrap vs citadel's
// sandbox (sandbox::Launch: namespaces, mounts, Landlock, seccomp, cgroup).
//
// Start latency: from "start requested" (just before posix_spawn of bwrap,
// or just before sandbox::Launch) to the app's first instruction. The app
// (app_start_first.c, static) writes its CLOCK_MONOTONIC time as its first
// action; the difference is the latency, whenever the pipe is read. Each
// mode runs --iterations starts, bounded by --max-seconds; p50/p99/mean.
// Citadel's cgroup is created once before the loop (the AppManager also
// keeps an app's group across restarts); bwrap gets no cgroup.
//
// Memory: one idle app per mode. "Sandbox processes" are the processes
// that stay alive only because of the sandbox: for bwrap its monitor
// (the spawned bwrap, parent of everything) and its pid-1 reaper inside
// the namespace; for citadel none (the helper exits, the app is the
// caller's direct child). Their RSS/PSS come from /proc/PID/smaps_rollup.
// Kernel-side: the charge of the app's memory cgroup (memory.current or
// memory.usage_in_bytes); for bwrap the whole bwrap tree is put in a
// cgroup of the same kind for the comparison.
//
// Runs as root (cgroups, citadel's sandbox). Bounded: every wait has a
// deadline; everything it starts is killed and its cgroups removed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "app/manifest.hpp"
#include "app/policy.hpp"
#include "sandbox/cgroups.hpp"
#include "sandbox/sandbox.hpp"

extern char** environ;

namespace {

using namespace citadel;
namespace fs = std::filesystem;

constexpr int kFirstWriteTimeoutMs = 10'000;
constexpr std::string_view kCitadelComponent = "app-start-bench-citadel";
constexpr std::string_view kBwrapComponent = "app-start-bench-bwrap";
constexpr std::uint64_t kAppMemoryBytes = 64ULL * 1024 * 1024;
constexpr std::uint32_t kAppPids = 16;
constexpr uid_t kBenchAppId = sandbox::kFirstAppId + 999;

struct Options {
  int iterations = 200;
  int warmup = 5;  // unmeasured starts first, per mode (page cache, filter cache)
  int max_seconds = 60;
  int gap_ms = 100;                    // pause before each start of the "spaced" runs
  std::string favordynmods = "as-is";  // on | off | as-is: the kernel mode for the run
  fs::path sandbox_exe;
  fs::path first_app;
  std::string bwrap = "/usr/bin/bwrap";
};

struct StartResult {
  pid_t pid = -1;           // the process to reap (bwrap, or the app for citadel)
  UniqueFd output;          // read end of the app's fd 1
  double requested_ns = 0;  // CLOCK_MONOTONIC just before the start request
};

double MonotonicNs() {
  timespec now{};
  (void)clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec) * 1e9 + static_cast<double>(now.tv_nsec);
}

// The app's first-instruction timestamp, or nullopt on timeout/EOF.
std::optional<double> ReadAppTimestamp(int fd) {
  timespec stamp{};
  auto* bytes = reinterpret_cast<char*>(&stamp);
  std::size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kFirstWriteTimeoutMs);
  while (got < sizeof stamp) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&entry, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = read(fd, bytes + got, sizeof stamp - got);
    if (n <= 0) return std::nullopt;
    got += static_cast<std::size_t>(n);
  }
  return static_cast<double>(stamp.tv_sec) * 1e9 + static_cast<double>(stamp.tv_nsec);
}

void KillAndReap(pid_t pid) {
  if (pid <= 0) return;
  (void)kill(pid, SIGKILL);
  (void)waitpid(pid, nullptr, 0);
}

// ---- bwrap --------------------------------------------------------------

// Starts bwrap with the flags from the issue. `cgroup_procs`: files to
// write the child's pid into before exec (empty: none).
Expected<StartResult> StartBwrap(const Options& options, const fs::path& app_dir, bool idle,
                                 const std::vector<fs::path>& cgroup_procs) {
  std::array<int, 2> pipe_fds{};
  if (pipe2(pipe_fds.data(), O_CLOEXEC) != 0) return MakeError(ErrorCode::kIo, "pipe2 failed");
  std::vector<std::string> args = {options.bwrap, "--unshare-all",  "--die-with-parent",
                                   "--ro-bind",   "/usr",           "/usr",
                                   "--symlink",   "usr/lib",        "/lib",
                                   "--symlink",   "usr/lib64",      "/lib64",
                                   "--symlink",   "usr/bin",        "/bin",
                                   "--proc",      "/proc",          "--dev",
                                   "/dev",        "--tmpfs",        "/tmp",
                                   "--ro-bind",   app_dir.string(), "/app",
                                   "/app/first"};
  if (idle) args.emplace_back("idle");
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  StartResult result;
  result.requested_ns = MonotonicNs();
  pid_t child = fork();
  if (child < 0) {
    (void)close(pipe_fds[0]);
    (void)close(pipe_fds[1]);
    return MakeError(ErrorCode::kIo, "fork failed");
  }
  if (child == 0) {
    // This benchmark is single-threaded, so the child may write files.
    for (const auto& procs : cgroup_procs) {
      int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) _exit(125);
      (void)close(fd);
    }
    if (dup2(pipe_fds[1], STDOUT_FILENO) < 0) _exit(126);
    execve(options.bwrap.c_str(), argv.data(), environ);
    _exit(127);
  }
  (void)close(pipe_fds[1]);
  result.pid = child;
  result.output = UniqueFd(pipe_fds[0]);
  return result;
}

// ---- citadel ------------------------------------------------------------

// The policy the runtime would build for a manifest asking for nothing.
Expected<app::Policy> BenchPolicy(bool idle) {
  std::string manifest_json = R"({"SchemaVersion":1,"Name":"app-start-bench",)"
                              R"("ComponentId":"7b0f6a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b","EntryPoint":"/first",)"
                              R"("CmdArgs":[],"ApplicationType":"Default","Capabilities":{}})";
  CITADEL_TRY(app::Manifest manifest, app::ParseManifest(manifest_json));
  app::BoardDefinition board;
  board.name = "citadel-simulated";
  CITADEL_TRY(app::Policy policy, app::BuildPolicy(manifest, board, app::DevicePolicy{}));
  policy.component_id = std::string(kCitadelComponent);
  policy.memory_limit_bytes = kAppMemoryBytes;
  policy.pids_limit = kAppPids;
  if (idle) policy.cmd_args = {"idle"};
  return policy;
}

// The one call into sandbox::Launch: adapt here if its signature changes.
Expected<StartResult> StartCitadel(const Options& options, const fs::path& app_dir, const std::string& cgroup,
                                   bool idle) {
  CITADEL_TRY(app::Policy policy, BenchPolicy(idle));
  std::array<int, 2> log_pipe{};
  if (pipe2(log_pipe.data(), O_CLOEXEC) != 0) return MakeError(ErrorCode::kIo, "pipe2 failed");
  UniqueFd log_read(log_pipe[0]);
  UniqueFd log_write(log_pipe[1]);
  std::array<int, 2> broker{};
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, broker.data()) != 0)
    return MakeError(ErrorCode::kIo, "socketpair failed");
  UniqueFd broker_ours(broker[0]);
  UniqueFd broker_app(broker[1]);

  sandbox::LaunchSpec spec;
  spec.policy = std::move(policy);
  spec.image_root = app_dir;
  spec.hosts_file = "127.0.0.1 localhost\n";
  spec.uid = kBenchAppId;
  spec.gid = kBenchAppId;
  spec.cgroup = cgroup;
  spec.broker_fd = broker_app.get();
  spec.log_fd = log_write.get();
  spec.sandbox_exe = options.sandbox_exe;

  StartResult result;
  result.requested_ns = MonotonicNs();
  CITADEL_TRY(sandbox::LaunchedApp launched, sandbox::Launch(spec));
  result.pid = launched.pid;
  result.output = std::move(log_read);
  // Nothing this app does is reported by the filter; no Supervisor needed.
  return result;
}

// ---- measurements -------------------------------------------------------

struct Latencies {
  std::vector<double> ms;
  int errors = 0;
  std::string first_error;

  double Percentile(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    auto index = static_cast<std::size_t>(std::lround(p * static_cast<double>(sorted.size() - 1)));
    return sorted[std::min(index, sorted.size() - 1)];
  }
  double Mean() const {
    if (ms.empty()) return 0;
    double sum = 0;
    for (double value : ms) sum += value;
    return sum / static_cast<double>(ms.size());
  }
};

// gap_ms: the pause before each start. Back to back (0) a cgroup move can
// reuse the kernel state of the previous one; spaced like real starts and
// restarts it cannot (see sandbox::MoveToCgroup).
template <typename StartFunction>
Latencies MeasureStarts(const Options& options, int gap_ms, StartFunction start) {
  Latencies latencies;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.max_seconds);
  for (int i = 0; i < options.warmup + options.iterations && std::chrono::steady_clock::now() < deadline; ++i) {
    const bool measured = i >= options.warmup;
    if (gap_ms > 0) usleep(static_cast<useconds_t>(gap_ms) * 1000);
    auto started = start();
    if (!started) {
      if (latencies.errors++ == 0) latencies.first_error = started.error().message();
      continue;
    }
    auto stamp = ReadAppTimestamp(started->output.get());
    if (stamp) {
      if (measured) latencies.ms.push_back((*stamp - started->requested_ns) / 1e6);
      // The app exits right after its write; reap it (bounded by the kill).
      int status = 0;
      for (int wait_ms = 0; wait_ms < 5000; wait_ms += 1) {
        if (waitpid(started->pid, &status, WNOHANG) == started->pid) {
          started->pid = -1;
          break;
        }
        usleep(1000);
      }
      KillAndReap(started->pid);
    } else {
      if (latencies.errors++ == 0) latencies.first_error = "the app wrote nothing within 10 s";
      KillAndReap(started->pid);
    }
  }
  return latencies;
}

struct MemoryFigures {
  int sandbox_processes = 0;
  std::uint64_t sandbox_rss_kib = 0;
  std::uint64_t sandbox_pss_kib = 0;
  std::uint64_t app_pss_kib = 0;
  std::uint64_t cgroup_kib = 0;
  std::string error;
};

struct Rollup {
  std::uint64_t rss_kib = 0;
  std::uint64_t pss_kib = 0;
};

Rollup ReadRollup(pid_t pid) {
  Rollup rollup;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t value = 0;
    if (!(fields >> key >> value)) continue;  // the "[rollup]" header line
    if (key == "Rss:") rollup.rss_kib = value;
    if (key == "Pss:") rollup.pss_kib = value;
  }
  return rollup;
}

struct ProcessInfo {
  pid_t pid;
  pid_t parent;
  std::string comm;
};

std::vector<ProcessInfo> ListProcesses() {
  std::vector<ProcessInfo> processes;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto open = stat.find('(');
    auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 >= stat.size()) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    long parent = 0;
    rest >> state >> parent;
    processes.push_back(
        {static_cast<pid_t>(std::stol(name)), static_cast<pid_t>(parent), stat.substr(open + 1, close - open - 1)});
  }
  return processes;
}

// `root` and every process below it.
std::vector<ProcessInfo> Tree(pid_t root) {
  auto all = ListProcesses();
  std::vector<ProcessInfo> tree;
  for (const auto& process : all)
    if (process.pid == root) tree.push_back(process);
  for (std::size_t i = 0; i < tree.size(); ++i)
    for (const auto& process : all)
      if (process.parent == tree[i].pid) tree.push_back(process);
  return tree;
}

std::uint64_t CgroupKib(sandbox::Cgroups& cgroups, std::string_view component) {
  auto stats = cgroups.Read(component);
  return stats ? stats->memory_bytes / 1024 : 0;
}

MemoryFigures MeasureBwrapMemory(const Options& options, const fs::path& app_dir, sandbox::Cgroups& cgroups) {
  MemoryFigures figures;
  auto created = cgroups.Create(kBwrapComponent, kAppMemoryBytes, kAppPids);
  if (!created) {
    figures.error = created.error().message();
    return figures;
  }
  std::vector<fs::path> procs;
  for (const auto& leaf : cgroups.LeafDirectories(kBwrapComponent)) procs.push_back(leaf / "cgroup.procs");
  auto started = StartBwrap(options, app_dir, true, procs);
  if (!started) {
    figures.error = started.error().message();
    return figures;
  }
  if (!ReadAppTimestamp(started->output.get())) {
    figures.error = "the idle app under bwrap wrote nothing";
  } else {
    usleep(300'000);  // let start-up pages settle
    for (const auto& process : Tree(started->pid)) {
      Rollup rollup = ReadRollup(process.pid);
      if (process.comm == "bwrap") {
        ++figures.sandbox_processes;
        figures.sandbox_rss_kib += rollup.rss_kib;
        figures.sandbox_pss_kib += rollup.pss_kib;
      } else {
        figures.app_pss_kib += rollup.pss_kib;
      }
    }
    figures.cgroup_kib = CgroupKib(cgroups, kBwrapComponent);
  }
  KillAndReap(started->pid);
  (void)cgroups.KillAll(kBwrapComponent);
  (void)cgroups.Remove(kBwrapComponent);
  return figures;
}

MemoryFigures MeasureCitadelMemory(const Options& options, const fs::path& app_dir, sandbox::Cgroups& cgroups,
                                   const std::string& cgroup) {
  MemoryFigures figures;
  auto started = StartCitadel(options, app_dir, cgroup, true);
  if (!started) {
    figures.error = started.error().message();
    return figures;
  }
  if (!ReadAppTimestamp(started->output.get())) {
    figures.error = "the idle app under citadel wrote nothing";
  } else {
    usleep(300'000);
    // Everything left in the app's group besides the app is sandbox overhead;
    // so is any process of ours other than the app (the helper must be gone).
    for (const auto& process : Tree(getpid())) {
      if (process.pid == getpid()) continue;
      Rollup rollup = ReadRollup(process.pid);
      if (process.pid == started->pid) {
        figures.app_pss_kib += rollup.pss_kib;
      } else {
        ++figures.sandbox_processes;
        figures.sandbox_rss_kib += rollup.rss_kib;
        figures.sandbox_pss_kib += rollup.pss_kib;
      }
    }
    figures.cgroup_kib = CgroupKib(cgroups, kCitadelComponent);
  }
  KillAndReap(started->pid);
  (void)cgroups.KillAll(kCitadelComponent);
  return figures;
}

// ---- report -------------------------------------------------------------

std::string Ratio(double citadel, double bwrap) {
  if (bwrap <= 0) return "-";
  char text[32];
  (void)std::snprintf(text, sizeof text, "%.2f", citadel / bwrap);
  return text;
}

void PrintRow(const std::string& name, double bwrap, double citadel, const char* format) {
  char left[32];
  char right[32];
  (void)std::snprintf(left, sizeof left, format, bwrap);
  (void)std::snprintf(right, sizeof right, format, citadel);
  std::printf("%-34s %14s %14s %10s\n", name.c_str(), left, right, Ratio(citadel, bwrap).c_str());
}

fs::path SelfDirectory() { return fs::read_symlink("/proc/self/exe").parent_path(); }

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App cli{"App start latency and per-app memory: bwrap vs citadel's sandbox (run as root)"};
  cli.add_option("--iterations", options.iterations, "Starts per mode")->check(CLI::Range(1, 100000));
  cli.add_option("--warmup", options.warmup, "Unmeasured starts per mode before the measured ones")
      ->check(CLI::Range(0, 1000));
  cli.add_option("--max-seconds", options.max_seconds, "Time limit per mode")->check(CLI::Range(1, 3600));
  cli.add_option("--gap-ms", options.gap_ms, "Pause before each start in the spaced runs (0: skip them)")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  cli.add_option("--favordynmods", options.favordynmods,
                 "Kernel cgroup mode for the run: on, off (remounts cgroup2; restored after) or as-is")
      ->check(CLI::IsMember({"on", "off", "as-is"}))
      ->capture_default_str();
  cli.add_option("--sandbox-exe", options.sandbox_exe, "citadel-sandbox (default: next to this program)");
  cli.add_option("--first-app", options.first_app, "The measured app (default: citadel-app-start-first beside)");
  cli.add_option("--bwrap", options.bwrap, "bubblewrap binary");
  CLI11_PARSE(cli, argc, argv);
  if (options.sandbox_exe.empty()) options.sandbox_exe = SelfDirectory() / "citadel-sandbox";
  if (options.first_app.empty()) options.first_app = SelfDirectory() / "citadel-app-start-first";
  if (geteuid() != 0) {
    std::cerr << "app_start_bench: run as root (cgroups and the citadel sandbox need it)\n";
    return 1;
  }

  // The image: /first, read-only, readable by the app user.
  // Not under /tmp: citadel-sandbox assembles the app's root over /tmp.
  char work_template[] = "/var/tmp/citadel-app-start-bench.XXXXXX";
  if (mkdtemp(work_template) == nullptr) {
    std::cerr << "app_start_bench: cannot create a work directory in /var/tmp\n";
    return 1;
  }
  const fs::path work = work_template;
  const fs::path app_dir = work / "app";
  std::error_code ec;
  fs::create_directories(app_dir, ec);
  fs::copy_file(options.first_app, app_dir / "first", ec);
  if (ec) {
    std::cerr << "app_start_bench: cannot copy " << options.first_app << ": " << ec.message()
              << " (build the app_start_first target)\n";
    fs::remove_all(work, ec);
    return 1;
  }
  fs::permissions(app_dir / "first", fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                         fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(work, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);

  auto favoured_before = sandbox::FavoursDynamicModifications();
  if (!favoured_before) {
    std::cerr << "app_start_bench: " << favoured_before.error().message() << "\n";
    fs::remove_all(work, ec);
    return 1;
  }
  bool favoured = *favoured_before;
  if (options.favordynmods != "as-is" && (options.favordynmods == "on") != favoured) {
    if (auto set = sandbox::SetFavourDynamicModifications(options.favordynmods == "on"); !set) {
      std::cerr << "app_start_bench: " << set.error().message() << "\n";
      fs::remove_all(work, ec);
      return 1;
    }
    favoured = options.favordynmods == "on";
  }
  // The host's mode comes back on every way out.
  struct RestoreMode {
    bool before;
    const bool& now;
    ~RestoreMode() {
      if (now == before) return;
      if (auto restored = sandbox::SetFavourDynamicModifications(before); !restored) {
        std::cerr << "app_start_bench: restoring the cgroup mode: " << restored.error().message() << "\n";
      }
    }
  } restore_mode{*favoured_before, favoured};
  auto cgroups = sandbox::Cgroups::Detect("citadel-bench");
  if (!cgroups) {
    std::cerr << "app_start_bench: " << cgroups.error().message() << "\n";
    fs::remove_all(work, ec);
    return 1;
  }
  auto cgroup = cgroups->Create(kCitadelComponent, kAppMemoryBytes, kAppPids);
  if (!cgroup) {
    std::cerr << "app_start_bench: " << cgroup.error().message() << "\n";
    fs::remove_all(work, ec);
    return 1;
  }

  std::printf("app start: %d starts per mode after %d unmeasured, at most %d s each; app = static %s\n",
              options.iterations, options.warmup, options.max_seconds, options.first_app.filename().c_str());
  std::printf("cgroups %s; kernel favours dynamic cgroup modifications (favordynmods): %s\n",
              cgroups->version() == sandbox::Cgroups::Version::kV1 ? "v1" : "v2", favoured ? "yes" : "no");
  auto start_bwrap = [&] { return StartBwrap(options, app_dir, false, {}); };
  auto start_citadel = [&] { return StartCitadel(options, app_dir, *cgroup, false); };
  Latencies bwrap = MeasureStarts(options, 0, start_bwrap);
  Latencies citadel = MeasureStarts(options, 0, start_citadel);
  Latencies bwrap_spaced;
  Latencies citadel_spaced;
  if (options.gap_ms > 0) {
    bwrap_spaced = MeasureStarts(options, options.gap_ms, start_bwrap);
    citadel_spaced = MeasureStarts(options, options.gap_ms, start_citadel);
  }
  MemoryFigures bwrap_memory = MeasureBwrapMemory(options, app_dir, *cgroups);
  MemoryFigures citadel_memory = MeasureCitadelMemory(options, app_dir, *cgroups, *cgroup);
  (void)cgroups->KillAll(kCitadelComponent);
  auto leaves = cgroups->LeafDirectories(kCitadelComponent);
  (void)cgroups->Remove(kCitadelComponent);
  for (const auto& leaf : leaves) (void)rmdir(leaf.parent_path().c_str());  // the empty citadel-bench root
  fs::remove_all(work, ec);

  std::printf("\n%-34s %14s %14s %10s\n", "", "bwrap", "citadel", "ratio c/b");
  PrintRow("back to back: starts measured", static_cast<double>(bwrap.ms.size()),
           static_cast<double>(citadel.ms.size()), "%.0f");
  PrintRow("back to back: p50 (ms)", bwrap.Percentile(0.50), citadel.Percentile(0.50), "%.2f");
  PrintRow("back to back: p99 (ms)", bwrap.Percentile(0.99), citadel.Percentile(0.99), "%.2f");
  PrintRow("back to back: max (ms)", bwrap.Percentile(1.0), citadel.Percentile(1.0), "%.2f");
  PrintRow("back to back: mean (ms)", bwrap.Mean(), citadel.Mean(), "%.2f");
  if (options.gap_ms > 0) {
    std::string spaced = "spaced " + std::to_string(options.gap_ms) + " ms: ";
    PrintRow(spaced + "starts measured", static_cast<double>(bwrap_spaced.ms.size()),
             static_cast<double>(citadel_spaced.ms.size()), "%.0f");
    PrintRow(spaced + "p50 (ms)", bwrap_spaced.Percentile(0.50), citadel_spaced.Percentile(0.50), "%.2f");
    PrintRow(spaced + "p99 (ms)", bwrap_spaced.Percentile(0.99), citadel_spaced.Percentile(0.99), "%.2f");
    PrintRow(spaced + "max (ms)", bwrap_spaced.Percentile(1.0), citadel_spaced.Percentile(1.0), "%.2f");
    PrintRow(spaced + "mean (ms)", bwrap_spaced.Mean(), citadel_spaced.Mean(), "%.2f");
  }
  PrintRow("sandbox processes per app", bwrap_memory.sandbox_processes, citadel_memory.sandbox_processes, "%.0f");
  PrintRow("sandbox processes RSS (KiB)", static_cast<double>(bwrap_memory.sandbox_rss_kib),
           static_cast<double>(citadel_memory.sandbox_rss_kib), "%.0f");
  PrintRow("sandbox processes PSS (KiB)", static_cast<double>(bwrap_memory.sandbox_pss_kib),
           static_cast<double>(citadel_memory.sandbox_pss_kib), "%.0f");
  PrintRow("idle app PSS (KiB)", static_cast<double>(bwrap_memory.app_pss_kib),
           static_cast<double>(citadel_memory.app_pss_kib), "%.0f");
  PrintRow("idle app cgroup charge (KiB)", static_cast<double>(bwrap_memory.cgroup_kib),
           static_cast<double>(citadel_memory.cgroup_kib), "%.0f");
  int failures = 0;
  for (const auto& [name, latencies] :
       {std::pair{"bwrap", &bwrap}, std::pair{"citadel", &citadel}, std::pair{"bwrap spaced", &bwrap_spaced},
        std::pair{"citadel spaced", &citadel_spaced}}) {
    if (latencies->errors == 0) continue;
    ++failures;
    std::printf("%s: %d failed starts; first: %s\n", name, latencies->errors, latencies->first_error.c_str());
  }
  for (const auto& [name, memory] : {std::pair{"bwrap", &bwrap_memory}, std::pair{"citadel", &citadel_memory}}) {
    if (memory->error.empty()) continue;
    ++failures;
    std::printf("%s memory: %s\n", name, memory->error.c_str());
  }
  return failures == 0 ? 0 : 1;
}
