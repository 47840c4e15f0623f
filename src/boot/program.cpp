#include "boot/program.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "common/unique_fd.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxErrorBytes = 4096;
constexpr std::size_t kMaxMessageBytes = 300;

std::string ErrnoText(int error) { return std::strerror(error); }

int MillisecondsUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60 * 60 * 1000));
}

std::string JoinPath(const std::vector<fs::path>& directories) {
  std::string joined;
  for (const fs::path& directory : directories) {
    if (!joined.empty()) joined += ':';
    joined += directory.string();
  }
  return joined;
}

std::string CommandLine(const fs::path& tool, const std::vector<std::string>& args) {
  std::string line = tool.filename().string();
  for (const std::string& arg : args) line += " " + arg;
  return line;
}

// Reaps the child; it has been killed or has closed its outputs.
int Reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void KillAndReap(pid_t pid) {
  (void)::kill(pid, SIGKILL);
  (void)Reap(pid);
}

// One output stream of the child.
struct Stream {
  UniqueFd fd;
  std::string* sink = nullptr;
  std::size_t keep = 0;  // bytes kept; the rest is read and dropped
  bool open = true;
};

// Reads what is available; marks the stream closed at end of file.
void Drain(Stream& stream) {
  std::array<char, 4096> buffer{};
  ssize_t got = ::read(stream.fd.get(), buffer.data(), buffer.size());
  if (got < 0) {
    if (errno != EINTR && errno != EAGAIN) stream.open = false;
    return;
  }
  if (got == 0) {
    stream.open = false;
    return;
  }
  // One byte past `keep` is kept, so the caller can tell "exactly full"
  // from "more came".
  if (stream.sink->size() > stream.keep) return;
  std::size_t room = stream.keep + 1 - stream.sink->size();
  stream.sink->append(buffer.data(), std::min(room, static_cast<std::size_t>(got)));
}

}  // namespace

Expected<fs::path> FindTool(std::string_view name, std::string_view package, const std::vector<fs::path>& directories) {
  for (const fs::path& directory : directories) {
    fs::path candidate = directory / name;
    std::error_code error;
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate, error)) return candidate;
  }
  return MakeError(ErrorCode::kFailedPrecondition,
                   std::string(name) + " not found in " + JoinPath(directories) + ": install " + std::string(package));
}

Expected<ToolResult> RunTool(const fs::path& tool, const std::vector<std::string>& args,
                             const std::vector<fs::path>& path_directories, std::chrono::milliseconds timeout,
                             std::size_t max_output) {
  // Everything the child needs is built before fork: between fork and exec
  // only async-signal-safe calls are allowed.
  std::vector<std::string> argv_text;
  argv_text.push_back(tool.string());
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_text.size() + 1);
  for (std::string& arg : argv_text) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::string path_variable = "PATH=" + JoinPath(path_directories);
  std::string locale_variable = "LC_ALL=C";
  std::array<char*, 3> envp{path_variable.data(), locale_variable.data(), nullptr};
  static constexpr char kExecFailed[] = "exec failed\n";

  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return MakeError(ErrorCode::kIo, "opening /dev/null: " + ErrnoText(errno));
  std::array<int, 2> out_pipe{};
  std::array<int, 2> err_pipe{};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) return MakeError(ErrorCode::kIo, "pipe: " + ErrnoText(errno));
  UniqueFd out_read(out_pipe[0]);
  UniqueFd out_write(out_pipe[1]);
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) return MakeError(ErrorCode::kIo, "pipe: " + ErrnoText(errno));
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);

  pid_t pid = ::fork();
  if (pid < 0) return MakeError(ErrorCode::kIo, "fork for " + tool.string() + ": " + ErrnoText(errno));
  if (pid == 0) {
    if (::dup2(null_fd.get(), 0) < 0 || ::dup2(out_write.get(), 1) < 0 || ::dup2(err_write.get(), 2) < 0) {
      ::_exit(126);
    }
    (void)::close_range(3, ~0U, 0);
    ::execve(argv[0], argv.data(), envp.data());
    (void)!::write(2, kExecFailed, sizeof kExecFailed - 1);
    ::_exit(127);
  }
  out_write.Reset();
  err_write.Reset();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  ToolResult result;
  std::array<Stream, 2> streams{Stream{std::move(out_read), &result.out, max_output},
                                Stream{std::move(err_read), &result.err, kMaxErrorBytes}};
  auto deadline = Clock::now() + timeout;
  while ((streams[0].open || streams[1].open) && Clock::now() < deadline) {
    std::array<pollfd, 2> wait{};
    std::array<Stream*, 2> waiting{};
    nfds_t count = 0;
    for (Stream& stream : streams) {
      if (!stream.open) continue;
      wait[count] = pollfd{stream.fd.get(), POLLIN, 0};
      waiting[count] = &stream;
      ++count;
    }
    int ready = ::poll(wait.data(), count, std::max(MillisecondsUntil(deadline), 1));
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; ready > 0 && i < count; ++i) {
      if (wait[i].revents != 0) Drain(*waiting[i]);
    }
    if (result.out.size() > max_output) {
      KillAndReap(pid);
      return MakeError(ErrorCode::kTooLarge,
                       CommandLine(tool, args) + " printed more than " + std::to_string(max_output) + " bytes");
    }
  }
  if (streams[0].open || streams[1].open) {
    KillAndReap(pid);
    return MakeError(ErrorCode::kUnavailable, CommandLine(tool, args) + " did not finish within " +
                                                  std::to_string(timeout.count()) + " ms and was killed");
  }
  // The outputs closed: the tool exited, or closed them and lingers.
  if (pidfd) {
    pollfd exited{pidfd.get(), POLLIN, 0};
    if (::poll(&exited, 1, std::max(MillisecondsUntil(deadline), 1)) <= 0) {
      KillAndReap(pid);
      return MakeError(ErrorCode::kUnavailable, CommandLine(tool, args) + " did not exit within " +
                                                    std::to_string(timeout.count()) + " ms and was killed");
    }
  }
  result.exit_code = Reap(pid);
  if (result.err.size() > kMaxErrorBytes) result.err.resize(kMaxErrorBytes);
  return result;
}

Expected<ScratchFile> ScratchFile::Create(std::string_view label, std::string_view contents) {
  std::error_code error;
  fs::path directory = fs::temp_directory_path(error);
  if (error) return MakeError(ErrorCode::kIo, "finding the temporary directory: " + error.message());
  std::string pattern = (directory / ("citadel-" + std::string(label) + "-XXXXXX")).string();
  UniqueFd fd(::mkstemp(pattern.data()));
  if (!fd) return MakeError(ErrorCode::kIo, "creating " + pattern + ": " + ErrnoText(errno));
  ScratchFile file{fs::path(pattern)};
  std::size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(ErrorCode::kIo, "writing " + pattern + ": " + ErrnoText(errno));
    }
    written += static_cast<std::size_t>(n);
  }
  return file;
}

ScratchFile::~ScratchFile() {
  if (!path_.empty()) (void)::unlink(path_.c_str());
}

std::string DescribeFailure(const fs::path& tool, const std::vector<std::string>& args, const ToolResult& result) {
  std::string detail;
  std::size_t start = 0;
  while (start < result.err.size() && detail.empty()) {
    std::size_t end = result.err.find('\n', start);
    if (end == std::string::npos) end = result.err.size();
    detail = result.err.substr(start, std::min(end - start, kMaxMessageBytes));
    start = end + 1;
  }
  if (detail.empty()) {
    detail = result.exit_code < 0 ? "killed by a signal" : "exit code " + std::to_string(result.exit_code);
  }
  return CommandLine(tool, args) + ": " + detail;
}

}  // namespace citadel::boot
