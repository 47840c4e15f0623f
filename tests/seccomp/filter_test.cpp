// The filter in a real child: denied syscalls fail with the contract's errno
// and are reported; what a program needs (including exec) still works.
// Every probe is chosen so that, without the filter, it would return
// something else (success or EINVAL/ENOENT), and so that it is harmless
// even then: nothing here can mount, reboot or change the clock.
#include <linux/if_ether.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <vector>

#include "seccomp/supervisor.hpp"
#include "supervised_child.hpp"

namespace citadel::seccomp {
namespace {

using testing::Reporter;
using testing::SupervisedChild;

class ViolationLog {
 public:
  ViolationSink Sink() {
    return [this](const Violation& violation) {
      std::lock_guard lock(mutex_);
      violations_.push_back(violation);
    };
  }
  std::vector<Violation> Take() {
    std::lock_guard lock(mutex_);
    return violations_;
  }

 private:
  std::mutex mutex_;
  std::vector<Violation> violations_;
};

app::Policy NoNetworkPolicy() {
  app::Policy policy;
  policy.component_id = "11111111-1111-1111-1111-111111111111";
  return policy;
}

// Maps and unmaps; 0 when the mapping was made, errno otherwise.
long MapResult(int prot) {
  void* memory = ::mmap(nullptr, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return -1;
  ::munmap(memory, 4096);
  return 0;
}

void DeniedProbes(const Reporter& report) {
  report.ReportResult("mmap_rw", MapResult(PROT_READ | PROT_WRITE));
  report.ReportResult("mmap_rx", MapResult(PROT_READ | PROT_EXEC));
  report.ReportResult("mmap_wx", MapResult(PROT_READ | PROT_WRITE | PROT_EXEC));
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  report.ReportResult("mprotect_rx", ::mprotect(page, 4096, PROT_READ | PROT_EXEC));
  report.ReportResult("mprotect_wx", ::mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));

  report.ReportResult("socket_packet", ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  report.ReportResult("socket_raw", ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  report.ReportResult("socket_inet", ::socket(AF_INET, SOCK_STREAM, 0));
  report.ReportResult("socket_inet6_dgram", ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  report.ReportResult("socket_unix", ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));

  report.ReportResult("ptrace", ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
  report.ReportResult("mount", ::syscall(SYS_mount, "none", "/nonexistent-citadel-target", "tmpfs", 0, nullptr));
  report.ReportResult("setuid", ::syscall(SYS_setuid, 0));
  report.ReportResult("setresgid", ::syscall(SYS_setresgid, 0, 0, 0));
  report.ReportResult("memfd_create", ::syscall(SYS_memfd_create, "x", 0));
  report.ReportResult("unshare", ::unshare(CLONE_NEWNS));
  report.ReportResult("clone_newnet", ::syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, nullptr, nullptr, nullptr, 0));
  report.ReportResult("bpf", ::syscall(SYS_bpf, -1, nullptr, 0));
  report.ReportResult("reboot", ::syscall(SYS_reboot, 0, 0, 0, nullptr));  // bad magic: EINVAL unfiltered
  timespec now{};
  report.ReportResult("clock_settime", ::syscall(SYS_clock_settime, CLOCK_MONOTONIC, &now));  // EINVAL unfiltered
  report.ReportResult("io_uring_setup", ::syscall(SYS_io_uring_setup, 0, nullptr));
  report.ReportResult("personality_query", ::personality(0xffffffff) == -1 ? -1 : 0);
  report.ReportResult("personality_linux32", ::personality(PER_LINUX32) == -1 ? -1 : 0);
  // Not listed anywhere: ENOSYS, unreported.
  report.ReportResult("acct", ::syscall(SYS_acct, nullptr));
  report.ReportResult("clone3", ::syscall(SYS_clone3, nullptr, 0));

  // What a program needs: fork, exec of a dynamically linked binary, wait.
  pid_t pid = ::fork();
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>("true"), nullptr};
    ::execv("/usr/bin/true", argv);
    ::_exit(127);
  }
  int status = -1;
  ::waitpid(pid, &status, 0);
  report.Report("fork_exec_status", std::to_string(pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  // A shell pipeline: fork, pipes, exec of several dynamically linked tools.
  pid = ::fork();
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                          const_cast<char*>("ls / | sort | grep -q usr && date > /dev/null"), nullptr};
    ::execv("/bin/sh", argv);
    ::_exit(127);
  }
  status = -1;
  ::waitpid(pid, &status, 0);
  report.Report("shell_status", std::to_string(pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1));
}

TEST(SeccompFilter, DeniedSyscallsFailWithContractErrnoAndAreReported) {
  SupervisedChild child = SupervisedChild::Start(NoNetworkPolicy(), DeniedProbes);
  ViolationLog log;
  Supervisor supervisor(log.Sink());
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid()) << "the child could not load the filter";
  ASSERT_TRUE(supervisor.Add(NoNetworkPolicy().component_id, child.pid(), std::move(listener), {}).has_value());
  child.Go();
  auto results = child.Finish();
  supervisor.Remove(NoNetworkPolicy().component_id);
  ASSERT_EQ(results["done"], "1") << "child status " << child.exit_status();

  const std::string kOk = "0", kEperm = std::to_string(EPERM), kEacces = std::to_string(EACCES),
                    kEnosys = std::to_string(ENOSYS);
  EXPECT_EQ(results["mmap_rw"], kOk);
  EXPECT_EQ(results["mmap_rx"], kOk);
  EXPECT_EQ(results["mmap_wx"], kEacces);
  EXPECT_EQ(results["mprotect_rx"], kOk);
  EXPECT_EQ(results["mprotect_wx"], kEacces);
  EXPECT_EQ(results["socket_packet"], kEacces);
  EXPECT_EQ(results["socket_raw"], kEacces);
  EXPECT_EQ(results["socket_inet"], kEacces);
  EXPECT_EQ(results["socket_inet6_dgram"], kEacces);
  EXPECT_EQ(results["socket_unix"], kOk);
  for (const char* privileged : {"ptrace", "mount", "setuid", "setresgid", "memfd_create", "unshare", "clone_newnet",
                                 "bpf", "reboot", "clock_settime", "io_uring_setup", "personality_linux32"}) {
    EXPECT_EQ(results[privileged], kEperm) << privileged;
  }
  EXPECT_EQ(results["personality_query"], kEperm) << "only personality(0) is allowed";
  EXPECT_EQ(results["acct"], kEnosys);
  EXPECT_EQ(results["clone3"], kEnosys);
  EXPECT_EQ(results["fork_exec_status"], "0");
  EXPECT_EQ(results["shell_status"], "0");

  std::multiset<std::string> reported;
  for (const Violation& violation : log.Take()) {
    EXPECT_EQ(violation.component_id, NoNetworkPolicy().component_id);
    EXPECT_FALSE(violation.detail.empty());
    reported.insert(violation.syscall);
  }
  EXPECT_EQ(reported.count("mmap"), 1U);
  EXPECT_EQ(reported.count("mprotect"), 1U);
  EXPECT_EQ(reported.count("socket"), 4U);
  EXPECT_EQ(reported.count("personality"), 2U);
  for (const char* syscall : {"ptrace", "mount", "setuid", "setresgid", "memfd_create", "unshare", "clone", "bpf",
                              "reboot", "clock_settime", "io_uring_setup"}) {
    EXPECT_EQ(reported.count(syscall), 1U) << syscall;
  }
  EXPECT_EQ(reported.count("acct"), 0U);
  EXPECT_EQ(reported.count("clone3"), 0U);
  EXPECT_EQ(reported.size(), 19U);
}

TEST(SeccompFilter, ReportedSyscallsBlockUntilSupervisedAndFailClosedWithoutSupervisor) {
  // A listener nobody answers and then closes: the kernel fails the
  // notified syscall instead of letting it through.
  SupervisedChild child = SupervisedChild::Start(NoNetworkPolicy(), [](const Reporter& report) {
    report.ReportResult("mount", ::syscall(SYS_mount, "none", "/nonexistent-citadel-target", "tmpfs", 0, nullptr));
  });
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid());
  child.Go();
  listener.Reset();
  auto results = child.Finish();
  EXPECT_EQ(results["mount"], std::to_string(ENOSYS));
}

}  // namespace
}  // namespace citadel::seccomp
