// The seccomp filter every app runs under, built from its Policy with
// libseccomp, and the table of what it denies.
//
// Three outcomes per syscall:
//   - allowed: the allow-list below (what glibc, libstdc++, OpenSSL and
//     libmosquitto programs need);
//   - reported: USER_NOTIF to the Supervisor, which answers with the errno of
//     kDeniedSyscalls (EPERM for privilege operations, EACCES for network
//     and W+X memory) and reports a Violation; connect()/bind()/sendto()
//     with an address are also notified and decided by the Supervisor
//     (supervisor.hpp);
//   - anything else: ERRNO(ENOSYS), unreported (clone3 among them, so that
//     glibc falls back to clone, whose flags the filter can inspect).
//
// SECURITY: the listener fd returned by LoadAppFilter answers for the app.
// The app must never hold it: the caller sends it to citadeld and closes it
// before exec. Until the Supervisor reads the fd, every reported syscall of
// the app blocks, so the caller must not make one between LoadAppFilter and
// handing the fd over (execve, send, read and close are allowed; sendmsg
// may not be, see DeniedFeature::kAddressedSends).
// Argument checks compare full 64-bit registers; a value the kernel would
// truncate (e.g. a socket family with high bits set) matches no allow rule
// and is refused.
//
// Threading: LoadAppFilter filters the calling thread only; call it in the
// single-threaded sandbox child after setresuid and no_new_privs, as the
// last step before execve (execve stays allowed).
#pragma once

#include <cerrno>

#include <array>
#include <optional>
#include <string_view>

#include "app/policy.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace citadel::seccomp {

// When a denied syscall is denied: always, or only for some arguments.
enum class DenyWhen {
  kAlways,
  kWriteAndExecute,    // prot (arg 2) has PROT_WRITE and PROT_EXEC
  kNewNamespace,       // clone flags (arg 0) contain a CLONE_NEW* flag
  kPersonalityChange,  // persona (arg 0) is not 0 (PER_LINUX)
  kFastOpen,           // flags contain MSG_FASTOPEN (an implicit connect)
};

struct DeniedSyscall {
  std::string_view name;
  int error;  // errno the app sees
  DenyWhen when;
  std::string_view reason;
};

// clang-format off
inline constexpr std::array kDeniedSyscalls = {
    // Another process's memory or execution.
    DeniedSyscall{"ptrace",            EPERM, DenyWhen::kAlways, "tracing other processes"},
    DeniedSyscall{"process_vm_readv",  EPERM,  DenyWhen::kAlways, "reading another process's memory"},
    DeniedSyscall{"process_vm_writev", EPERM,  DenyWhen::kAlways, "writing another process's memory"},
    // The file system layout is the sandbox's.
    DeniedSyscall{"mount",         EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"umount2",       EPERM, DenyWhen::kAlways, "unmounting"},
    DeniedSyscall{"pivot_root",    EPERM, DenyWhen::kAlways, "changing the root"},
    DeniedSyscall{"chroot",        EPERM, DenyWhen::kAlways, "changing the root"},
    DeniedSyscall{"move_mount",    EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"fsopen",        EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"fsconfig",      EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"fsmount",       EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"fspick",        EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"open_tree",     EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"mount_setattr", EPERM, DenyWhen::kAlways, "mounting"},
    DeniedSyscall{"open_by_handle_at", EPERM, DenyWhen::kAlways, "opening files by handle, bypassing the mount tree"},
    // Credentials are fixed at launch.
    DeniedSyscall{"setuid",    EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setgid",    EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setreuid",  EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setregid",  EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setresuid", EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setresgid", EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setgroups", EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setfsuid",  EPERM, DenyWhen::kAlways, "changing credentials"},
    DeniedSyscall{"setfsgid",  EPERM, DenyWhen::kAlways, "changing credentials"},
    // The kernel itself.
    DeniedSyscall{"init_module",     EPERM, DenyWhen::kAlways, "loading kernel modules"},
    DeniedSyscall{"finit_module",    EPERM, DenyWhen::kAlways, "loading kernel modules"},
    DeniedSyscall{"delete_module",   EPERM, DenyWhen::kAlways, "unloading kernel modules"},
    DeniedSyscall{"kexec_load",      EPERM, DenyWhen::kAlways, "replacing the kernel"},
    DeniedSyscall{"kexec_file_load", EPERM, DenyWhen::kAlways, "replacing the kernel"},
    DeniedSyscall{"bpf",             EPERM, DenyWhen::kAlways, "loading BPF programs"},
    DeniedSyscall{"perf_event_open", EPERM, DenyWhen::kAlways, "performance monitoring"},
    DeniedSyscall{"userfaultfd",     EPERM, DenyWhen::kAlways, "user fault handling (exploit primitive)"},
    DeniedSyscall{"io_uring_setup",    EPERM, DenyWhen::kAlways, "io_uring (bypasses syscall filtering)"},
    DeniedSyscall{"io_uring_enter",    EPERM, DenyWhen::kAlways, "io_uring (bypasses syscall filtering)"},
    DeniedSyscall{"io_uring_register", EPERM, DenyWhen::kAlways, "io_uring (bypasses syscall filtering)"},
    DeniedSyscall{"keyctl",      EPERM, DenyWhen::kAlways, "kernel keyrings"},
    DeniedSyscall{"add_key",     EPERM, DenyWhen::kAlways, "kernel keyrings"},
    DeniedSyscall{"request_key", EPERM, DenyWhen::kAlways, "kernel keyrings"},
    DeniedSyscall{"swapon",  EPERM, DenyWhen::kAlways, "swap configuration"},
    DeniedSyscall{"swapoff", EPERM, DenyWhen::kAlways, "swap configuration"},
    DeniedSyscall{"iopl",    EPERM, DenyWhen::kAlways, "raw I/O port access"},
    DeniedSyscall{"ioperm",  EPERM, DenyWhen::kAlways, "raw I/O port access"},
    DeniedSyscall{"syslog",  EPERM, DenyWhen::kAlways, "reading the kernel log"},
    DeniedSyscall{"sethostname",   EPERM, DenyWhen::kAlways, "changing the host name"},
    DeniedSyscall{"setdomainname", EPERM, DenyWhen::kAlways, "changing the domain name"},
    // Namespaces are the sandbox's.
    DeniedSyscall{"unshare", EPERM, DenyWhen::kAlways,       "creating namespaces"},
    DeniedSyscall{"setns",   EPERM, DenyWhen::kAlways,       "entering namespaces"},
    DeniedSyscall{"clone",   EPERM, DenyWhen::kNewNamespace, "creating namespaces"},
    // Power and time go through the broker (PowerControls, SystemTime).
    DeniedSyscall{"reboot",        EPERM, DenyWhen::kAlways, "rebooting (use PowerManagement_* through applibs)"},
    DeniedSyscall{"settimeofday",  EPERM, DenyWhen::kAlways, "setting the clock (use the applibs time API)"},
    DeniedSyscall{"clock_settime", EPERM, DenyWhen::kAlways, "setting the clock (use the applibs time API)"},
    DeniedSyscall{"adjtimex",      EPERM, DenyWhen::kAlways, "adjusting the clock (use the applibs time API)"},
    DeniedSyscall{"clock_adjtime", EPERM, DenyWhen::kAlways, "adjusting the clock (use the applibs time API)"},
    DeniedSyscall{"personality",   EPERM, DenyWhen::kPersonalityChange, "changing the execution domain"},
    // Code injection: no writable+executable memory, no anonymous executables.
    DeniedSyscall{"mmap",          EACCES, DenyWhen::kWriteAndExecute, "writable and executable memory"},
    DeniedSyscall{"mprotect",      EACCES, DenyWhen::kWriteAndExecute, "writable and executable memory"},
    DeniedSyscall{"pkey_mprotect", EACCES, DenyWhen::kWriteAndExecute, "writable and executable memory"},
    DeniedSyscall{"memfd_create",  EPERM,  DenyWhen::kAlways, "anonymous files (executable without a file system path)"},
    DeniedSyscall{"memfd_secret",  EPERM,  DenyWhen::kAlways, "anonymous files (executable without a file system path)"},
    // TCP Fast Open connects without connect(); apps call connect().
    DeniedSyscall{"sendto",   EACCES, DenyWhen::kFastOpen, "TCP Fast Open (connect() first)"},
    DeniedSyscall{"sendmsg",  EACCES, DenyWhen::kFastOpen, "TCP Fast Open (connect() first)"},
    DeniedSyscall{"sendmmsg", EACCES, DenyWhen::kFastOpen, "TCP Fast Open (connect() first)"},
};
// clang-format on

// The table entry for a syscall name, if it is denied under some arguments.
std::optional<DeniedSyscall> FindDeniedSyscall(std::string_view name);

// The filter for policy as a classic BPF program (an array of struct
// sock_filter, as bytes), built with libseccomp. Built once per distinct
// filter and cached (the filter depends on a few grants only), so that an
// app start costs no compilation: Launch() hands the bytes to
// citadel-sandbox. Thread-safe.
[[nodiscard]] Expected<std::string> BuildAppFilterProgram(const app::Policy& policy);

// Loads a program from BuildAppFilterProgram on the calling thread with a
// new user-notification listener (sets no_new_privs first). Uses no
// libseccomp, so citadel-sandbox does not load it. Fails (and loads
// nothing) on a malformed program or a kernel refusal: the caller must then
// exit without running app code. (seccomp_program_loader.cpp)
[[nodiscard]] Expected<UniqueFd> LoadFilterProgram(std::string_view program);

// BuildAppFilterProgram + LoadFilterProgram.
[[nodiscard]] Expected<UniqueFd> LoadAppFilter(const app::Policy& policy);

}  // namespace citadel::seccomp
