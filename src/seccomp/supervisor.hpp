// The Supervisor answers the seccomp user notifications of every running
// app (seccomp_filter.hpp): it refuses and reports the denied syscalls, and
// performs the network operations an app is allowed to make.
//
// connect()/bind() on an AF_INET/AF_INET6 socket: the Supervisor copies the
// socket address out of the app (process_vm_readv), re-checks that the
// notification is still alive (so the pid was not reused), decides with
// CheckConnect/CheckBind, then creates its OWN socket of the same family,
// type and protocol in citadeld's network namespace, connects or binds it,
// and installs it over the app's descriptor number
// (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SETFD), then answers
// the syscall with 0 (or EINPROGRESS for a non-blocking socket whose
// connect is still under way). The app's netns has no route out, so this is
// the only way out.
//
// SECURITY:
//   - Time of check/time of use: the app may rewrite the socket address
//     after the Supervisor read it; that changes nothing, because the
//     Supervisor connects with its own copy and the app's syscall is never
//     resumed for AF_INET/AF_INET6 (no SECCOMP_USER_NOTIF_FLAG_CONTINUE).
//   - ADDFD is not combined with SECCOMP_ADDFD_FLAG_SEND: SEND would make
//     connect()/bind() return the descriptor number instead of 0.
//   - AF_UNIX (and NETLINK_ROUTE) connect/bind, and sendto() with an
//     address on AF_UNIX sockets, are resumed with CONTINUE: they are
//     confined by the mount namespace, the app's own netns and Landlock.
//     Known limit: CONTINUE lets the kernel re-read the descriptor and
//     address, so a racing thread of an app that already holds a proxied
//     UDP socket could swap it in (dup2) and redirect it. A proxied UDP
//     socket can likewise be aimed elsewhere with sendmsg(msg_name). Only
//     apps granted network access can hold one; closing this needs a
//     per-app cgroup BPF connect/sendmsg hook (not done here).
//   - Denials answer EACCES (network, W+X memory) or EPERM (privilege) and
//     are reported to the ViolationSink before the app's syscall returns.
//
// Threading: one thread owns epoll over all listener fds; Add and Remove are
// safe from any thread. A blocking connect is waited for on that same
// thread with non-blocking I/O (at most kConnectTimeout), so one slow peer
// does not stall other apps. The ViolationSink runs on the Supervisor
// thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "seccomp/network_rules.hpp"
#include "seccomp/seccomp_filter.hpp"
#include "seccomp/violation.hpp"

namespace citadel::seccomp {

inline constexpr std::chrono::seconds kConnectTimeout{10};

class Supervisor {
 public:
  // Starts the thread. If the kernel refuses epoll/eventfd, every Add fails
  // with that error (fail closed: the app cannot start unsupervised).
  explicit Supervisor(ViolationSink sink);
  ~Supervisor();  // stops the thread; every listener fd is closed
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts answering the notifications of an app. pid is the app's main
  // process (for logs); notifications from its children are answered too.
  // Fails on a duplicate component_id.
  [[nodiscard]] Expected<void> Add(std::string component_id, int pid, UniqueFd notify_fd, NetworkRules rules);
  // Stops answering; the listener fd is closed once no proxied connect of
  // that app is in flight (at most kConnectTimeout later). Unknown ids are
  // ignored.
  void Remove(std::string_view component_id);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace citadel::seccomp
