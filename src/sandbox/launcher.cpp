#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/fd_passing.hpp"
#include "sandbox/app_filter.hpp"
#include "sandbox/cgroups.hpp"
#include "sandbox/helper.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/spec_json.hpp"

namespace citadel::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kLaunchTimeout = std::chrono::seconds(15);
constexpr auto kReapTimeout = std::chrono::seconds(3);
// Descriptors handed to the child are first copied at or above this number
// so the dup2 calls onto 0..4 cannot overwrite each other's sources.
constexpr int kHighFd = 16;

std::string ErrnoText(int error) { return std::strerror(error); }

int MillisecondsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

Expected<UniqueFd> DupHigh(int fd, std::string_view what) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, kHighFd);
  if (copy < 0)
    return MakeError(ErrorCode::kIo, "launch: duplicating the " + std::string(what) + ": " + ErrnoText(errno));
  return UniqueFd(copy);
}

UniqueFd PidfdOpen(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

// The app's seccomp listener, copied out of the app process ("ready <fd>").
Expected<UniqueFd> TakeListener(const UniqueFd& app_pidfd, std::string_view fd_text) {
  int fd_number = -1;
  auto [end, error] = std::from_chars(fd_text.data(), fd_text.data() + fd_text.size(), fd_number);
  if (error != std::errc() || end != fd_text.data() + fd_text.size() || fd_number < 0 || !app_pidfd) {
    return MakeError(ErrorCode::kInternal, "launch: a malformed \"ready\" status from the sandbox");
  }
  UniqueFd listener(CopyFdFromProcess(app_pidfd.get(), fd_number));
  if (!listener) {
    return MakeError(ErrorCode::kIo, "launch: taking the seccomp listener from the app (pidfd_getfd): " +
                                         ErrnoText(errno) + "; citadeld needs CAP_SYS_PTRACE over its apps");
  }
  return listener;
}

// Kills (when asked) and reaps a child of ours, waiting at most until
// deadline. Returns how it ended, for messages.
std::string KillAndReap(pid_t pid, const UniqueFd& pidfd, bool kill_first, Clock::time_point deadline) {
  if (pid <= 0) return "";
  if (kill_first) {
    if (pidfd) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    } else {
      (void)::kill(pid, SIGKILL);
    }
  }
  if (pidfd) {
    pollfd wait{pidfd.get(), POLLIN, 0};
    if (::poll(&wait, 1, MillisecondsLeft(deadline)) <= 0) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      (void)::poll(&wait, 1, MillisecondsLeft(Clock::now() + kReapTimeout));
    }
  }
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | (pidfd ? WNOHANG : 0)) != 0 || info.si_pid == 0) {
    return "still running";
  }
  if (info.si_code == CLD_EXITED) return "exit status " + std::to_string(info.si_status);
  return "killed by signal " + std::to_string(info.si_status);
}

Expected<void> WriteAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    pollfd wait{fd, POLLOUT, 0};
    int ready = ::poll(&wait, 1, MillisecondsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return MakeError(ErrorCode::kUnavailable, "launch: citadel-sandbox did not read its spec in time");
    ssize_t written = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // citadel-sandbox is gone; its exit status (below) tells why.
    if (written < 0 && (errno == EPIPE || errno == ECONNRESET)) return kOk;
    if (written < 0) return MakeError(ErrorCode::kIo, "launch: sending the spec: " + ErrnoText(errno));
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return kOk;
}

struct StatusMessage {
  std::string text;
  UniqueFd fd;
  pid_t sender = 0;  // from SCM_CREDENTIALS: the kernel's word, in our pid namespace
  bool eof = false;
};

Expected<StatusMessage> ReceiveStatus(int socket, Clock::time_point deadline) {
  while (true) {
    pollfd wait{socket, POLLIN, 0};
    int ready = ::poll(&wait, 1, MillisecondsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return MakeError(ErrorCode::kIo, "launch: waiting for the sandbox: " + ErrnoText(errno));
    if (ready == 0) return MakeError(ErrorCode::kUnavailable, "launch: the sandbox did not report within 15 s");
    std::array<char, 4096> buffer{};
    auto received = ReceiveWithFds(socket, buffer, 0, 1);
    if (!received && received.error() == EAGAIN) continue;
    if (!received)
      return MakeError(ErrorCode::kIo, "launch: reading the sandbox status: " + ErrnoText(received.error()));
    StatusMessage status;
    status.eof = received->end_of_stream;
    status.text.assign(buffer.data(), received->size);
    if (received->credentials) status.sender = received->credentials->pid;
    if (!received->fds.empty()) status.fd = std::move(received->fds.front());
    return status;
  }
}

// "error <code> <step>: <reason>" -> Error.
Error ParseErrorStatus(std::string_view text) {
  text.remove_prefix(std::string_view("error ").size());
  std::size_t space = text.find(' ');
  ErrorCode code = ErrorCode::kIo;
  if (space != std::string_view::npos) {
    int value = std::atoi(std::string(text.substr(0, space)).c_str());
    if (value >= 0 && value <= static_cast<int>(ErrorCode::kInternal)) code = static_cast<ErrorCode>(value);
    text.remove_prefix(space + 1);
  }
  return Error(code, "sandbox: " + std::string(text));
}

// Starts argv[0] with `moves` (from, to) applied by dup2 and nothing else
// inherited (every other descriptor of ours is close-on-exec).
Expected<pid_t> SpawnHelper(char* const* argv, char* const* envp, std::initializer_list<std::pair<int, int>> moves) {
  posix_spawn_file_actions_t actions;
  if (int error = ::posix_spawn_file_actions_init(&actions); error != 0) {
    return MakeError(ErrorCode::kIo, "launch: posix_spawn_file_actions_init: " + ErrnoText(error));
  }
  int error = 0;
  for (const auto& [from, to] : moves) {
    if (error == 0) error = ::posix_spawn_file_actions_adddup2(&actions, from, to);
  }
  pid_t pid = -1;
  if (error == 0) error = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv, envp);
  (void)::posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "launch: starting " + std::string(argv[0]) + ": " +
                                                         ErrnoText(error) + ": is citadel-sandbox installed?");
  }
  return pid;
}

Expected<void> CheckLaunchSpec(const LaunchSpec& spec) {
  if (spec.uid < kFirstAppId || spec.gid < kFirstAppId) {
    return MakeError(ErrorCode::kInvalidArgument, "launch: the app uid and gid must be >= 61000");
  }
  if (spec.log_fd < 0 || spec.broker_fd < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "launch: log_fd and broker_fd are required");
  }
  if (spec.sandbox_exe.empty() || spec.image_root.empty() || spec.cgroup.empty() || spec.policy.entry_point.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "launch: sandbox_exe, image_root, cgroup and the policy's entry point are required");
  }
  return kOk;
}

}  // namespace

Expected<LaunchedApp> Launch(const LaunchSpec& spec) {
  CITADEL_TRY_VOID(CheckLaunchSpec(spec));
  // The filter is compiled here, once per distinct filter, not by the
  // helper at every start.
  LaunchSpec sent_spec = spec;
  CITADEL_TRY(sent_spec.seccomp_program, AppFilterProgram(spec.policy));
  CITADEL_TRY(std::string spec_text, LaunchSpecToJson(sent_spec));
  auto deadline = Clock::now() + kLaunchTimeout;

  // A stream socket rather than a pipe: send(MSG_NOSIGNAL) cannot raise
  // SIGPIPE in the caller when citadel-sandbox dies early.
  std::array<int, 2> spec_pipe{};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, spec_pipe.data()) != 0) {
    return MakeError(ErrorCode::kIo, "launch: socketpair: " + ErrnoText(errno));
  }
  UniqueFd spec_read(spec_pipe[0]);
  UniqueFd spec_write(spec_pipe[1]);
  std::array<int, 2> status_pair{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, status_pair.data()) != 0) {
    return MakeError(ErrorCode::kIo, "launch: socketpair: " + ErrnoText(errno));
  }
  UniqueFd status_ours(status_pair[0]);
  UniqueFd status_theirs(status_pair[1]);
  // Every message then carries its sender's pid, so the app process is
  // known (and can be killed and reaped) even if citadel-sandbox dies
  // before it reports the pid itself.
  int pass_credentials = 1;
  if (::setsockopt(status_ours.get(), SOL_SOCKET, SO_PASSCRED, &pass_credentials, sizeof pass_credentials) != 0) {
    return MakeError(ErrorCode::kIo, "launch: SO_PASSCRED: " + ErrnoText(errno));
  }
  CITADEL_TRY(UniqueFd spec_high, DupHigh(spec_read.get(), "spec pipe"));
  CITADEL_TRY(UniqueFd log_high, DupHigh(spec.log_fd, "log fd"));
  CITADEL_TRY(UniqueFd broker_high, DupHigh(spec.broker_fd, "broker fd"));
  CITADEL_TRY(UniqueFd status_high, DupHigh(status_theirs.get(), "status socket"));

  std::string exe = spec.sandbox_exe.string();
  std::array<char*, 2> argv{exe.data(), nullptr};
  // An empty environment; a build without seccomp forwards its test switch.
  std::string test_switch = std::string(kWithoutSeccompVariable) + "=1";
  std::array<char*, 2> envp{nullptr, nullptr};
  if (TestModeWithoutSeccomp()) envp[0] = test_switch.data();

  // posix_spawn (a vfork-style clone in glibc): safe in a multi-threaded
  // caller, and it copies no page tables of a large citadeld.
  CITADEL_TRY(pid_t helper, SpawnHelper(argv.data(), envp.data(),
                                        {{spec_high.get(), kSpecFd},
                                         {log_high.get(), kLogFd},
                                         {log_high.get(), 2},
                                         {broker_high.get(), kBrokerFd},
                                         {status_high.get(), kStatusFd}}));
  UniqueFd helper_pidfd = PidfdOpen(helper);
  spec_read.Reset();
  status_theirs.Reset();
  spec_high.Reset();
  log_high.Reset();
  broker_high.Reset();
  status_high.Reset();

  LaunchedApp launched;
  pid_t app_pid = 0;       // the sender of the app's messages
  pid_t reported_pid = 0;  // what citadel-sandbox said it cloned
  std::optional<Error> failure;
  bool ready = false;
  // The app's groups first (the helper checks), while the helper execs.
  bool move_failed = false;
  if (auto moved = MoveToCgroup(spec.cgroup.string(), helper); !moved) {
    failure = moved.error().Wrap("launch: moving citadel-sandbox into the app's cgroup");
    move_failed = true;
  } else if (auto sent = WriteAll(spec_write.get(), spec_text, deadline); !sent) {
    failure = sent.error();
  }
  spec_write.Reset();
  // Read until EOF (every writer, citadel-sandbox and the app at execve,
  // has closed its end), also after an error: the app's messages name the
  // process that must then be killed and reaped.
  for (int messages = 0; messages < 8; ++messages) {
    auto status = ReceiveStatus(status_ours.get(), deadline);
    if (!status) {
      if (!failure) failure = status.error();
      break;
    }
    if (status->eof) break;
    std::string_view text = status->text;
    if (status->sender > 0 && status->sender != helper && app_pid == 0) {
      app_pid = status->sender;
      launched.pidfd = PidfdOpen(app_pid);
    }
    if (text.starts_with("pid ")) {
      reported_pid = static_cast<pid_t>(std::atoi(std::string(text.substr(4)).c_str()));
    } else if (text == "ready") {
      ready = true;  // a test build without seccomp
    } else if (text.starts_with("ready ") && !failure) {
      auto listener = TakeListener(launched.pidfd, text.substr(6));
      if (!listener) {
        failure = listener.error();
      } else {
        launched.notify_fd = std::move(*listener);
        ready = true;
        // The app waits for this byte before it closes its listener and execs.
        if (::send(status_ours.get(), "1", 1, MSG_NOSIGNAL) != 1) {
          failure = Error(ErrorCode::kIo, "launch: answering the sandbox: " + ErrnoText(errno));
        }
      }
    } else if (text.starts_with("error ")) {
      if (!failure) failure = ParseErrorStatus(text);
    } else if (!failure) {
      failure = Error(ErrorCode::kInternal, "launch: unexpected status \"" + std::string(text.substr(0, 64)) + "\"");
    }
  }

  std::string helper_end = KillAndReap(helper, helper_pidfd, failure.has_value(), Clock::now() + kReapTimeout);
  // A helper that could not start at all often dies before the move.
  if (move_failed) failure = Error(failure->code(), failure->message() + " (citadel-sandbox: " + helper_end + ")");
  if (app_pid == 0 && reported_pid > 0) {
    // The app died before it said anything; it is still ours to reap.
    app_pid = reported_pid;
    launched.pidfd = PidfdOpen(app_pid);
  }
  launched.pid = app_pid > 0 ? app_pid : -1;
  if (!failure && reported_pid != app_pid) {
    failure = Error(ErrorCode::kInternal, "sandbox: the app's pid does not match what citadel-sandbox reported");
  }
  if (!failure && (!ready || launched.pid <= 0 || !launched.pidfd)) {
    failure = Error(ErrorCode::kIo, launched.pid <= 0 ? "sandbox: " + exe + " ended (" + helper_end +
                                                            ") without starting the app: is it installed?"
                                                      : "sandbox: the app exited before it was ready");
  }
  if (!failure && !launched.notify_fd && SeccompFilterBuiltIn()) {
    failure = Error(ErrorCode::kInternal, "sandbox: no seccomp listener came back");
  }
  if (failure) {
    (void)KillAndReap(launched.pid, launched.pidfd, true, Clock::now() + kReapTimeout);
    return std::unexpected(*failure);
  }
  return launched;
}

}  // namespace citadel::sandbox
