#include "seccomp/seccomp_filter.hpp"

#include <linux/filter.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace citadel::seccomp {
namespace {

// What a normal glibc/libstdc++/OpenSSL/libmosquitto program needs. Names
// libseccomp does not know on this architecture are skipped (they stay
// ENOSYS). Syscalls allowed only for some arguments are not here: see
// AddConditionalRules.
constexpr std::string_view kAllowedSyscalls[] = {
    // Files (Landlock and the read-only mounts decide which).
    "read",
    "write",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "creat",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "umask",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "fadvise64",
    "readahead",
    "flock",
    "fcntl",
    "ioctl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    // Memory (mmap/mprotect: see AddConditionalRules).
    "munmap",
    "brk",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "membarrier",
    "mseal",
    "map_shadow_stack",
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    // Processes and threads (clone: see AddConditionalRules; clone3 stays ENOSYS).
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tkill",
    "tgkill",
    "getpid",
    "gettid",
    "getppid",
    "getpgrp",
    "getpgid",
    "setpgid",
    "getsid",
    "setsid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "capget",
    "prctl",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_waitv",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_getattr",
    "sched_setattr",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "getcpu",
    "pidfd_open",
    "pidfd_send_signal",
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "restart_syscall",
    // Signals.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "pause",
    "signalfd",
    "signalfd4",
    // Time (reading and sleeping only).
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    // Waiting and events.
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    // Sockets that need no decision (socket/connect/bind/sendto/sendmsg/
    // sendmmsg: see AddNetworkRules).
    "accept",
    "accept4",
    "listen",
    "shutdown",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    // System V IPC in the app's own IPC namespace.
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    // Randomness.
    "getrandom",
};

constexpr std::uint64_t kProtWriteExecute = PROT_WRITE | PROT_EXEC;
// CLONE_NEWTIME is left out: its bit is part of CSIGNAL for clone(), and
// clone() cannot create a time namespace anyway.
constexpr std::uint64_t kCloneNewFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                            CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
constexpr std::uint64_t kSocketTypeMask = 0xf;     // SOCK_NONBLOCK/SOCK_CLOEXEC live above it
constexpr std::uint64_t kAddressFamilyCount = 46;  // AF_MAX in Linux 6.x

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

// libseccomp wrapper that turns failures into errors naming the rule.
class FilterBuilder {
 public:
  Expected<void> Init() {
    ctx_.reset(seccomp_init(SCMP_ACT_ERRNO(ENOSYS)));
    if (!ctx_) return MakeError(ErrorCode::kInternal, "seccomp_init failed (out of memory?)");
    return kOk;
  }

  // Adds one rule; the comparisons are ANDed. Unknown syscall names are
  // skipped: the default action (ENOSYS) covers them.
  Expected<void> Add(std::uint32_t action, std::string_view name, std::initializer_list<scmp_arg_cmp> args = {}) {
    std::string name_z(name);
    int nr = seccomp_syscall_resolve_name(name_z.c_str());
    if (nr == __NR_SCMP_ERROR) return kOk;
    std::vector<scmp_arg_cmp> comparisons(args);
    int rc = seccomp_rule_add_array(ctx_.get(), action, nr, static_cast<unsigned>(comparisons.size()),
                                    comparisons.empty() ? nullptr : comparisons.data());
    if (rc != 0) {
      return MakeError(ErrorCode::kInternal, "seccomp rule for " + name_z + " (" + std::to_string(args.size()) +
                                                 " argument checks) rejected: error " + std::to_string(-rc));
    }
    return kOk;
  }

  scmp_filter_ctx get() const { return ctx_.get(); }

 private:
  std::unique_ptr<void, ContextDeleter> ctx_;
};

constexpr scmp_arg_cmp Arg(unsigned index, scmp_compare op, std::uint64_t a, std::uint64_t b = 0) {
  return scmp_arg_cmp{index, op, a, b};
}

Expected<void> AddAllowList(FilterBuilder& filter) {
  for (std::string_view name : kAllowedSyscalls) CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, name));
  return kOk;
}

// The syscalls of kDeniedSyscalls: notified under their condition, allowed
// otherwise. Each pair of rules is disjoint, so libseccomp never has to
// choose between two actions.
Expected<void> AddDeniedRules(FilterBuilder& filter) {
  for (const DeniedSyscall& denied : kDeniedSyscalls) {
    switch (denied.when) {
      case DenyWhen::kAlways:
        CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, denied.name));
        break;
      case DenyWhen::kWriteAndExecute:
        CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, denied.name,
                                    {Arg(2, SCMP_CMP_MASKED_EQ, kProtWriteExecute, kProtWriteExecute)}));
        for (std::uint64_t allowed : {std::uint64_t{0}, std::uint64_t{PROT_WRITE}, std::uint64_t{PROT_EXEC}}) {
          CITADEL_TRY_VOID(
              filter.Add(SCMP_ACT_ALLOW, denied.name, {Arg(2, SCMP_CMP_MASKED_EQ, kProtWriteExecute, allowed)}));
        }
        break;
      case DenyWhen::kNewNamespace: {
        std::uint64_t all_new = 0;
        for (std::uint64_t flag : kCloneNewFlags) {
          all_new |= flag;
          CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, denied.name, {Arg(0, SCMP_CMP_MASKED_EQ, flag, flag)}));
        }
        CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, denied.name, {Arg(0, SCMP_CMP_MASKED_EQ, all_new, 0)}));
        break;
      }
      case DenyWhen::kPersonalityChange:
        CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, denied.name, {Arg(0, SCMP_CMP_EQ, 0)}));
        CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, denied.name, {Arg(0, SCMP_CMP_NE, 0)}));
        break;
      case DenyWhen::kFastOpen:
        break;  // part of AddNetworkRules: the flags argument differs per syscall
    }
  }
  return kOk;
}

// socket(): AF_UNIX always; NETLINK_ROUTE (getifaddrs; answers about the
// app's own namespace); AF_INET/AF_INET6 TCP and UDP only with a network
// capability. Every other family, raw and packet sockets are reported.
Expected<void> AddSocketRules(FilterBuilder& filter, bool network) {
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, "socket", {Arg(0, SCMP_CMP_EQ, AF_UNIX)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, "socketpair", {Arg(0, SCMP_CMP_EQ, AF_UNIX)}));
  CITADEL_TRY_VOID(
      filter.Add(SCMP_ACT_ALLOW, "socket", {Arg(0, SCMP_CMP_EQ, AF_NETLINK), Arg(2, SCMP_CMP_EQ, NETLINK_ROUTE)}));
  CITADEL_TRY_VOID(
      filter.Add(SCMP_ACT_NOTIFY, "socket", {Arg(0, SCMP_CMP_EQ, AF_NETLINK), Arg(2, SCMP_CMP_NE, NETLINK_ROUTE)}));
  for (std::uint64_t family = 0; family < kAddressFamilyCount; ++family) {
    if (family == AF_UNIX || family == AF_NETLINK || family == AF_INET || family == AF_INET6) continue;
    CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "socket", {Arg(0, SCMP_CMP_EQ, family)}));
  }
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "socket", {Arg(0, SCMP_CMP_GE, kAddressFamilyCount)}));

  for (std::uint64_t family : {std::uint64_t{AF_INET}, std::uint64_t{AF_INET6}}) {
    if (!network) {
      CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "socket", {Arg(0, SCMP_CMP_EQ, family)}));
      continue;
    }
    struct TypeProtocol {
      std::uint64_t type, protocol;
    };
    for (TypeProtocol allowed : {TypeProtocol{SOCK_STREAM, 0}, TypeProtocol{SOCK_STREAM, IPPROTO_TCP},
                                 TypeProtocol{SOCK_DGRAM, 0}, TypeProtocol{SOCK_DGRAM, IPPROTO_UDP}}) {
      CITADEL_TRY_VOID(
          filter.Add(SCMP_ACT_ALLOW, "socket",
                     {Arg(0, SCMP_CMP_EQ, family), Arg(1, SCMP_CMP_MASKED_EQ, kSocketTypeMask, allowed.type),
                      Arg(2, SCMP_CMP_EQ, allowed.protocol)}));
    }
    for (std::uint64_t type : {SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP, SOCK_PACKET}) {
      CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "socket",
                                  {Arg(0, SCMP_CMP_EQ, family), Arg(1, SCMP_CMP_MASKED_EQ, kSocketTypeMask, type)}));
    }
  }
  return kOk;
}

// connect()/bind() always go to the Supervisor (it proxies AF_INET/AF_INET6
// and lets AF_UNIX through). sendto() with an address goes there too;
// MSG_FASTOPEN is refused in every send call. With addressed_sends_denied
// (DeniedFeature::kAddressedSends) every sendmsg/sendmmsg goes there and is
// refused: the destination sits in the app's memory, where a second thread
// can change it after any check, so only the kernel could check it.
Expected<void> AddNetworkRules(FilterBuilder& filter, bool network, bool addressed_sends_denied) {
  CITADEL_TRY_VOID(AddSocketRules(filter, network));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "connect"));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "bind"));

  constexpr std::uint64_t kFastOpen = MSG_FASTOPEN;
  // sendto(fd, buf, len, flags, dest_addr, addrlen)
  CITADEL_TRY_VOID(
      filter.Add(SCMP_ACT_ALLOW, "sendto", {Arg(3, SCMP_CMP_MASKED_EQ, kFastOpen, 0), Arg(4, SCMP_CMP_EQ, 0)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendto",
                              {Arg(3, SCMP_CMP_MASKED_EQ, kFastOpen, kFastOpen), Arg(4, SCMP_CMP_EQ, 0)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendto", {Arg(4, SCMP_CMP_NE, 0)}));
  // sendmsg(fd, msg, flags), sendmmsg(fd, msgvec, vlen, flags)
  if (addressed_sends_denied) {
    CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendmsg"));
    CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendmmsg"));
    return kOk;
  }
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, "sendmsg", {Arg(2, SCMP_CMP_MASKED_EQ, kFastOpen, 0)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendmsg", {Arg(2, SCMP_CMP_MASKED_EQ, kFastOpen, kFastOpen)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_ALLOW, "sendmmsg", {Arg(3, SCMP_CMP_MASKED_EQ, kFastOpen, 0)}));
  CITADEL_TRY_VOID(filter.Add(SCMP_ACT_NOTIFY, "sendmmsg", {Arg(3, SCMP_CMP_MASKED_EQ, kFastOpen, kFastOpen)}));
  return kOk;
}

}  // namespace

std::optional<DeniedSyscall> FindDeniedSyscall(std::string_view name) {
  for (const DeniedSyscall& denied : kDeniedSyscalls) {
    if (denied.name == name) return denied;
  }
  return std::nullopt;
}

namespace {

// seccomp_export_bpf writes to a descriptor: a memfd, read back.
Expected<std::string> ExportProgram(const FilterBuilder& filter) {
  UniqueFd memory(::memfd_create("citadel-seccomp-program", MFD_CLOEXEC));
  if (!memory)
    return MakeError(ErrorCode::kIo, std::string("memfd_create for the seccomp program: ") + std::strerror(errno));
  if (int rc = seccomp_export_bpf(filter.get(), memory.get()); rc != 0) {
    return MakeError(ErrorCode::kInternal, "exporting the seccomp program failed (error " + std::to_string(-rc) + ")");
  }
  off_t size = ::lseek(memory.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0 || size > (1 << 20)) {
    return MakeError(ErrorCode::kInternal, "the exported seccomp program has a bad size");
  }
  std::string program(static_cast<std::size_t>(size), '\0');
  if (::pread(memory.get(), program.data(), program.size(), 0) != size) {
    return MakeError(ErrorCode::kIo, std::string("reading the exported seccomp program: ") + std::strerror(errno));
  }
  return program;
}

}  // namespace

Expected<std::string> BuildAppFilterProgram(const app::Policy& policy) {
  // Everything else in the filter is the same for every app.
  const bool network = policy.HasNetworkAccess();
  const bool addressed_sends_denied =
      policy.MayHoldDeviceDatagramSockets() || policy.denied_features.contains(app::DeniedFeature::kAddressedSends);
  const int key = (network ? 1 : 0) | (addressed_sends_denied ? 2 : 0);
  static std::mutex cache_mutex;
  static std::array<std::string, 4> cache;
  std::lock_guard lock(cache_mutex);
  std::string& cached = cache.at(static_cast<std::size_t>(key));
  if (!cached.empty()) return cached;

  FilterBuilder filter;
  CITADEL_TRY_VOID(filter.Init());
  CITADEL_TRY_VOID(AddAllowList(filter));
  CITADEL_TRY_VOID(AddDeniedRules(filter));
  CITADEL_TRY_VOID(AddNetworkRules(filter, network, addressed_sends_denied));
  CITADEL_TRY(cached, ExportProgram(filter));
  return cached;
}

Expected<UniqueFd> LoadAppFilter(const app::Policy& policy) {
  CITADEL_TRY(std::string program, BuildAppFilterProgram(policy));
  return LoadFilterProgram(program);
}

}  // namespace citadel::seccomp
