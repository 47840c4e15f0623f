// citadel-sandbox, the process Launch() execs: reads the LaunchSpec, builds
// the app's world (docs/helpers/CONTRACTS.md, "The app's world") and execs
// the app. Also the wire protocol between it and Launch().
//
// Protocol. Launch() execs citadel-sandbox with
//   fd 0  a stream socket carrying LaunchSpecToJson() (then EOF)
//   fd 1, 2  the app's log
//   fd 3  the broker channel
//   fd 4  a SOCK_SEQPACKET socket, the status channel
// and an empty environment. Messages on the status channel:
//   "pid <n>"          citadel-sandbox: the app's pid in the caller's namespace
//   "ready <fd>"       the app process, just before execve: its seccomp
//                      listener is fd <fd>; it then waits for one byte back
//                      (any value) before it closes the listener and execs
//   "ready"            the same in a test build without seccomp (no wait)
//   "error <code> <step>: <reason>"  a step failed; the sender exits 127
// Launch() takes the listener out of the app with pidfd_getfd(2) and only
// then answers: once the filter is loaded the app may not call sendmsg(2)
// (an app allowed a UDP destination must not be able to name another one,
// seccomp_filter.hpp), so the listener cannot travel as SCM_RIGHTS, and
// closing it before citadeld holds a copy would leave the filter without a
// listener. The app's copy of the channel is close-on-exec, so EOF after
// "ready" means execve succeeded. Launch() reads the senders' pids from
// SCM_CREDENTIALS (SO_PASSCRED) and checks them against "pid <n>".
//
// SECURITY: every step runs before any app code; a failing step ends the
// process. Steps are ordered so that privileges go last: namespaces, mounts,
// pivot_root, hostname, Landlock, capability bounding set, groups/gid/uid,
// no_new_privs, RLIMIT_CORE, fd layout, seccomp, execve.
//
// Threading: runs in a fresh single-threaded process.
#pragma once

namespace citadel::sandbox {

inline constexpr int kSpecFd = 0;
inline constexpr int kLogFd = 1;
inline constexpr int kBrokerFd = 3;
inline constexpr int kStatusFd = 4;

// main() of citadel-sandbox. Returns only on failure before the app
// process exists (exit code 127), or 0 in the helper after the clone.
int RunSandboxHelper();

}  // namespace citadel::sandbox
