#include "common/subprocess.hpp"

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
#include <filesystem>
#include <string_view>
#include <thread>

#include "common/unique_fd.hpp"

namespace citadel {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadBytes = 64 * 1024;
// Without a pidfd (kernels before 5.3) the exit is polled this often.
constexpr auto kExitPollInterval = std::chrono::milliseconds(10);

Error SystemError(std::string_view what) {
  return Error(ErrorCode::kIo, std::string(what) + ": " + std::strerror(errno));
}

int MillisecondsUntil(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60 * 60 * 1000));
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Expected<Pipe> MakePipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) return std::unexpected(SystemError("pipe"));
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Waits for the child and returns its exit code, -1 for a signal.
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

// True once the child has exited (it is then still to be reaped), false
// when the deadline came first.
bool WaitForExit(pid_t pid, const UniqueFd& pidfd, Clock::time_point deadline) {
  if (pidfd) {
    pollfd exited{pidfd.get(), POLLIN, 0};
    for (;;) {
      const int ready = ::poll(&exited, 1, std::max(MillisecondsUntil(deadline), 1));
      if (ready > 0) return true;
      if (ready == 0 || errno != EINTR || Clock::now() >= deadline) return false;
    }
  }
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
      return true;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kExitPollInterval);
  }
}

// One output stream of the child.
struct OutputStream {
  UniqueFd fd;
  std::string* sink = nullptr;
  std::size_t keep = 0;  // bytes kept; the rest is read and dropped
  bool* truncated = nullptr;
};

// Reads what is available; closes the stream at end of file or on error.
void Drain(OutputStream& stream) {
  std::array<char, kReadBytes> buffer{};
  const ssize_t got = ::read(stream.fd.get(), buffer.data(), buffer.size());
  if (got < 0) {
    if (errno != EINTR && errno != EAGAIN) stream.fd.Reset();
    return;
  }
  if (got == 0) {
    stream.fd.Reset();
    return;
  }
  const auto count = static_cast<std::size_t>(got);
  const std::size_t room = stream.keep - std::min(stream.keep, stream.sink->size());
  stream.sink->append(buffer.data(), std::min(room, count));
  if (count > room) *stream.truncated = true;
}

// The program's stdin, fed from the caller's bytes.
struct InputStream {
  UniqueFd fd;  // non-blocking write end
  std::string_view rest;
};

// Writes what the pipe takes; closes the stream when all is written or the
// program closed its end. SIGPIPE is blocked in this thread around the
// write, and one it raised is consumed, so the caller's process never sees
// it (a SIGPIPE from a write is sent to the writing thread).
void Feed(InputStream& stream) {
  sigset_t pipe_signal{};
  sigset_t previous{};
  (void)::sigemptyset(&pipe_signal);
  (void)::sigaddset(&pipe_signal, SIGPIPE);
  (void)::pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
  sigset_t pending{};
  const bool already_pending = ::sigpending(&pending) == 0 && ::sigismember(&pending, SIGPIPE) == 1;
  const ssize_t written = ::write(stream.fd.get(), stream.rest.data(), stream.rest.size());
  const int write_error = errno;
  if (written < 0 && write_error == EPIPE && !already_pending) {
    const timespec no_wait{};
    while (::sigtimedwait(&pipe_signal, nullptr, &no_wait) < 0 && errno == EINTR) {
    }
  }
  (void)::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (written < 0) {
    if (write_error != EINTR && write_error != EAGAIN) stream.fd.Reset();
    return;
  }
  stream.rest.remove_prefix(static_cast<std::size_t>(written));
  if (stream.rest.empty()) stream.fd.Reset();
}

}  // namespace

std::string DescribeCommand(const std::vector<std::string>& argv) {
  std::string line = argv.empty() ? std::string() : std::filesystem::path(argv.front()).filename().string();
  for (std::size_t i = 1; i < argv.size(); ++i) line += " " + argv[i];
  return line;
}

Expected<SubprocessResult> RunSubprocess(const SubprocessOptions& options) {
  if (options.argv.empty()) return MakeError(ErrorCode::kInvalidArgument, "no program to run: argv is empty");
  if (options.argv.front().find('/') == std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "program \"" + options.argv.front() + "\" is not a path (programs are not looked up in PATH)");
  }
  const std::string command = DescribeCommand(options.argv);
  const auto deadline = Clock::now() + options.timeout;

  // Everything the child needs is built before fork: between fork and exec
  // only async-signal-safe calls are allowed.
  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> environment;
  char** envp = ::environ;
  if (options.environment) {
    environment.reserve(options.environment->size() + 1);
    for (const std::string& entry : *options.environment) environment.push_back(const_cast<char*>(entry.c_str()));
    environment.push_back(nullptr);
    envp = environment.data();
  }
  static constexpr char kExecFailed[] = "exec failed\n";

  UniqueFd null_fd;
  std::optional<Pipe> in_pipe;
  if (options.stdin_data) {
    CITADEL_TRY(in_pipe, MakePipe());
    const int flags = ::fcntl(in_pipe->write.get(), F_GETFL);
    if (flags < 0 || ::fcntl(in_pipe->write.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
      return std::unexpected(SystemError("making the stdin pipe non-blocking"));
    }
  } else {
    null_fd.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_fd) return std::unexpected(SystemError("opening /dev/null"));
  }
  CITADEL_TRY(Pipe out_pipe, MakePipe());
  std::optional<Pipe> err_pipe;
  if (!options.merge_stderr_into_stdout) {
    CITADEL_TRY(err_pipe, MakePipe());
  }
  const int child_in = in_pipe ? in_pipe->read.get() : null_fd.get();
  const int child_out = out_pipe.write.get();
  const int child_err = err_pipe ? err_pipe->write.get() : child_out;

  const pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(SystemError("fork for " + command));
  if (pid == 0) {
    // The pipes may sit on 0-2 when the caller had those closed: move them
    // out of the way first, so no dup2 below overwrites another's source.
    const std::array<int, 3> sources{::fcntl(child_in, F_DUPFD, 3), ::fcntl(child_out, F_DUPFD, 3),
                                     ::fcntl(child_err, F_DUPFD, 3)};
    for (int target = 0; target < 3; ++target) {
      const int source = sources[static_cast<std::size_t>(target)];
      if (source < 0 || ::dup2(source, target) < 0) ::_exit(126);
    }
    (void)::close_range(3, ~0U, 0);
    ::execve(argv[0], argv.data(), envp);
    (void)!::write(2, kExecFailed, sizeof kExecFailed - 1);
    ::_exit(127);
  }
  // The parent keeps only its own ends; the child's copies of the others
  // must close for end of file to arrive.
  null_fd.Reset();
  if (in_pipe) in_pipe->read.Reset();
  out_pipe.write.Reset();
  if (err_pipe) err_pipe->write.Reset();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  SubprocessResult result;
  InputStream input;
  if (in_pipe) input = InputStream{std::move(in_pipe->write), *options.stdin_data};
  if (input.fd && input.rest.empty()) input.fd.Reset();
  std::array<OutputStream, 2> outputs{
      OutputStream{std::move(out_pipe.read), &result.out, options.max_stdout_bytes, &result.out_truncated},
      OutputStream{err_pipe ? std::move(err_pipe->read) : UniqueFd(), &result.err, options.max_stderr_bytes,
                   &result.err_truncated}};
  auto busy = [&] { return input.fd || outputs[0].fd || outputs[1].fd; };
  while (busy() && Clock::now() < deadline) {
    std::array<pollfd, 3> wait{};
    std::array<OutputStream*, 3> readers{};
    nfds_t count = 0;
    if (input.fd) wait[count++] = pollfd{input.fd.get(), POLLOUT, 0};
    for (OutputStream& output : outputs) {
      if (!output.fd) continue;
      readers[count] = &output;
      wait[count++] = pollfd{output.fd.get(), POLLIN, 0};
    }
    const int ready = ::poll(wait.data(), count, std::max(MillisecondsUntil(deadline), 1));
    if (ready < 0 && errno != EINTR) {
      const Error error = SystemError("waiting for " + command);
      KillAndReap(pid);
      return std::unexpected(error);
    }
    for (nfds_t i = 0; ready > 0 && i < count; ++i) {
      if (wait[i].revents == 0) continue;
      if (readers[i] != nullptr) {
        Drain(*readers[i]);
      } else {
        Feed(input);
      }
    }
    if (result.out_truncated && options.stdout_overflow_is_error) {
      KillAndReap(pid);
      return MakeError(ErrorCode::kTooLarge,
                       command + " printed more than " + std::to_string(options.max_stdout_bytes) + " bytes");
    }
  }
  if (busy()) {
    KillAndReap(pid);
    return MakeError(ErrorCode::kUnavailable, command + " did not finish within " +
                                                  std::to_string(options.timeout.count()) + " ms and was killed");
  }
  // The outputs closed: the program exited, or closed them and lingers.
  if (!WaitForExit(pid, pidfd, deadline)) {
    KillAndReap(pid);
    return MakeError(ErrorCode::kUnavailable, command + " did not exit within " +
                                                  std::to_string(options.timeout.count()) + " ms and was killed");
  }
  result.exit_code = Reap(pid);
  return result;
}

}  // namespace citadel
