// Test harness: a forked child that loads the app filter and reports what
// its syscalls returned, answered by a Supervisor in the test process.
//
// Order matters: Start() forks while the test process is single-threaded
// (no Supervisor or server thread yet), so the child may use malloc and
// libseccomp. The child loads the filter, sends the listener over a
// socketpair and waits for Go() before running the body, so that no
// notified syscall happens before the Supervisor watches the listener.
// Every wait has a deadline; a child that overruns is killed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "app/policy.hpp"
#include "common/unique_fd.hpp"

namespace citadel::seccomp::testing {

// Lines "key value" the child writes to the parent.
class Reporter {
 public:
  explicit Reporter(int fd) : fd_(fd) {}
  void Report(const std::string& key, const std::string& value) const;
  // errno of a call that returned -1, or "0" when it succeeded.
  void ReportResult(const std::string& key, long result) const;

 private:
  int fd_;
};

struct ChildOptions {
  bool new_network_namespace = false;  // unshare(CLONE_NEWNET) before the filter (needs root)
};

class SupervisedChild {
 public:
  using Body = std::function<void(const Reporter&)>;
  static SupervisedChild Start(const app::Policy& policy, const Body& body, ChildOptions options = {});
  SupervisedChild(SupervisedChild&&) = default;
  ~SupervisedChild();

  pid_t pid() const { return pid_; }
  // The child's listener fd (empty if the child failed before sending it).
  UniqueFd TakeListener();
  void Go();
  // Reads reports until key arrives; its value, or nullopt at EOF/deadline.
  std::optional<std::string> WaitFor(const std::string& key,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Reads all reports until the child exits (killing it at the deadline);
  // returns them. exit_status() is then valid.
  std::map<std::string, std::string> Finish(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  int exit_status() const { return exit_status_; }

 private:
  SupervisedChild() = default;
  bool ReadSomeReports(std::chrono::steady_clock::time_point deadline);

  pid_t pid_ = -1;
  UniqueFd control_;  // socketpair: listener in, go byte out
  UniqueFd reports_;  // pipe read end
  std::string buffer_;
  std::map<std::string, std::string> values_;
  int exit_status_ = -1;
};

}  // namespace citadel::seccomp::testing
