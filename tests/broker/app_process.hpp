// Test apps for the broker tests: each "app" is a forked child that sets
// CITADEL_BROKER_FD to a channel from Broker::AddApp, runs a body (usually
// calls into libapplibs) and reports "ok" or what failed on a pipe. Children
// cannot use gtest assertions; they use CHILD_CHECK and return its text.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "broker/protocol.hpp"
#include "common/unique_fd.hpp"

namespace citadel::broker::testing {

inline constexpr auto kChildTimeout = std::chrono::seconds(30);

// Failure text for a child's check (children cannot use gtest assertions).
#define CHILD_CHECK(condition)                                                                                     \
  do {                                                                                                             \
    if (!(condition)) {                                                                                            \
      return std::string("line ") + std::to_string(__LINE__) + ": " #condition " (errno " + std::strerror(errno) + \
             ")";                                                                                                  \
    }                                                                                                              \
  } while (false)

struct RunningApp {
  pid_t pid = -1;
  UniqueFd report;
};

// Forks an app: the child sets CITADEL_BROKER_FD=channel, runs body and
// reports its result ("ok" or what failed) on a pipe.
inline RunningApp StartApp(int channel, const std::function<std::string()>& body) {
  std::array<int, 2> fds{-1, -1};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) std::abort();
  pid_t pid = ::fork();
  if (pid == 0) {
    (void)::close(fds[0]);
    std::string result;
    if (channel >= 0) {
      (void)::setenv(protocol::kBrokerFdEnv, std::to_string(channel).c_str(), 1);
    } else {
      (void)::unsetenv(protocol::kBrokerFdEnv);
    }
    try {
      result = body();
    } catch (...) {
      result = "exception in the app";
    }
    std::size_t written = 0;
    while (written < result.size()) {
      ssize_t n = ::write(fds[1], result.data() + written, result.size() - written);
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  (void)::close(fds[1]);
  return RunningApp{pid, UniqueFd(fds[0])};
}

inline std::string WaitApp(RunningApp& app) {
  std::string result;
  auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
  bool timed_out = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd poll_fd{app.report.get(), POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    std::array<char, 4096> buffer{};
    ssize_t n = ::read(app.report.get(), buffer.data(), buffer.size());
    if (n <= 0) break;
    result.append(buffer.data(), static_cast<std::size_t>(n));
  }
  if (timed_out) (void)::kill(app.pid, SIGKILL);
  int status = 0;
  while (::waitpid(app.pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return "app timed out";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "app crashed: " + result;
  return result;
}

inline std::string RunApp(int channel, const std::function<std::string()>& body) {
  RunningApp app = StartApp(channel, body);
  return WaitApp(app);
}

}  // namespace citadel::broker::testing
