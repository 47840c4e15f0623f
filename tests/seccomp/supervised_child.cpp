#include "supervised_child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common/fd_passing.hpp"
#include "seccomp/seccomp_filter.hpp"

namespace citadel::seccomp::testing {
namespace {

using Clock = std::chrono::steady_clock;

void WriteAll(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

[[noreturn]] void RunChild(const app::Policy& policy, const SupervisedChild::Body& body, ChildOptions options,
                           int control, int reports) {
  Reporter reporter(reports);
  if (options.new_network_namespace) {
    if (::unshare(CLONE_NEWNET) != 0) {
      reporter.ReportResult("setup_unshare", -1);
      ::_exit(2);
    }
    reporter.Report("in_new_netns", "1");
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(3);
  auto listener = LoadAppFilter(policy);
  if (!listener) {
    reporter.Report("setup_error", "LoadAppFilter");
    ::_exit(4);
  }
  // As citadel-sandbox does: the parent copies the listener out of this
  // process (the filter may refuse sendmsg), then says go.
  std::string number = std::to_string(listener->get());
  if (::send(control, number.data(), number.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(number.size())) ::_exit(5);
  char go = 0;
  if (::read(control, &go, 1) != 1) ::_exit(6);
  listener->Reset();  // the app must never hold its own listener
  body(reporter);
  reporter.Report("done", "1");
  ::_exit(0);
}

}  // namespace

void Reporter::Report(const std::string& key, const std::string& value) const {
  WriteAll(fd_, key + " " + value + "\n");
}

void Reporter::ReportResult(const std::string& key, long result) const {
  Report(key, result == -1 ? std::to_string(errno) : "0");
}

SupervisedChild SupervisedChild::Start(const app::Policy& policy, const Body& body, ChildOptions options) {
  SupervisedChild child;
  std::array<int, 2> control{-1, -1};
  std::array<int, 2> reports{-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control.data()) != 0 ||
      ::pipe2(reports.data(), O_CLOEXEC) != 0) {
    return child;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(control[0]);
    ::close(reports[0]);
    RunChild(policy, body, options, control[1], reports[1]);
  }
  ::close(control[1]);
  ::close(reports[1]);
  child.pid_ = pid;
  child.control_.Reset(control[0]);
  child.reports_.Reset(reports[0]);
  return child;
}

SupervisedChild::~SupervisedChild() {
  if (pid_ > 0 && exit_status_ == -1) {
    ::kill(pid_, SIGKILL);
    (void)::waitpid(pid_, nullptr, 0);
  }
}

UniqueFd SupervisedChild::TakeListener() {
  pollfd waiting{control_.get(), POLLIN, 0};
  if (::poll(&waiting, 1, 20000) != 1) return {};
  std::array<char, 16> number{};
  ssize_t got = ::recv(control_.get(), number.data(), number.size() - 1, 0);
  if (got <= 0) return {};
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd) return {};
  return UniqueFd(CopyFdFromProcess(pidfd.get(), std::atoi(number.data())));
}

void SupervisedChild::Go() {
  char go = 'G';
  (void)!::write(control_.get(), &go, 1);
}

bool SupervisedChild::ReadSomeReports(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd waiting{reports_.get(), POLLIN, 0};
  if (::poll(&waiting, 1, static_cast<int>(left)) != 1) return false;
  std::array<char, 4096> chunk{};
  ssize_t n = ::read(reports_.get(), chunk.data(), chunk.size());
  if (n <= 0) return false;
  buffer_.append(chunk.data(), static_cast<std::size_t>(n));
  for (std::size_t end = buffer_.find('\n'); end != std::string::npos; end = buffer_.find('\n')) {
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 1);
    std::size_t space = line.find(' ');
    if (space != std::string::npos) values_[line.substr(0, space)] = line.substr(space + 1);
  }
  return true;
}

std::optional<std::string> SupervisedChild::WaitFor(const std::string& key, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!values_.contains(key)) {
    if (!ReadSomeReports(deadline)) return std::nullopt;
  }
  return values_[key];
}

std::map<std::string, std::string> SupervisedChild::Finish(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (ReadSomeReports(deadline)) {
  }
  int status = 0;
  for (;;) {
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) break;
    if (done < 0 || Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      (void)::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  exit_status_ = status;
  return values_;
}

}  // namespace citadel::seccomp::testing
