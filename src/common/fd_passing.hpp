// Moving file descriptors between processes: one message with (optionally)
// descriptors over a unix socket (SCM_RIGHTS) for the broker's replies to
// apps and the sandbox helper's status channel, the receiving side of such
// messages (also SCM_CREDENTIALS), and pidfd_getfd for taking a descriptor
// out of a process. One implementation each.
//
// libapplibs.so compiles fd_passing.cpp in (it links no citadel library), so
// this file needs nothing but libc and the standard library.
//
// Threading: free functions; safe from any thread.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <expected>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/unique_fd.hpp"

namespace citadel {

// The kernel's SCM_MAX_FD (not exported to user space): the most
// descriptors one message may carry.
inline constexpr std::size_t kMaxSentFdsPerMessage = 253;

// sendmsg(socket, bytes + fds_to_pass, flags) in one SCM_RIGHTS header, or
// send(socket, bytes, flags) when there are none; retried on EINTR. The
// descriptors stay open (and owned by the caller) here.
// Returns what sendmsg returned (-1 with errno on failure; EINVAL for more
// than kMaxSentFdsPerMessage descriptors).
ssize_t SendWithFds(int socket, std::string_view bytes, std::span<const int> fds_to_pass, int flags);

// SendWithFds with one descriptor, or none when fd_to_pass < 0.
ssize_t SendWithFd(int socket, std::string_view bytes, int fd_to_pass, int flags);

// The most descriptors ReceiveWithFds makes room for in one message; the
// kernel closes any beyond that itself and reports MSG_CTRUNC.
inline constexpr std::size_t kMaxReceivedFdsPerMessage = 8;

// One message as ReceiveWithFds read it.
struct ReceivedMessage {
  // Bytes placed at the start of the caller's buffer.
  std::size_t size = 0;
  // recvmsg returned 0. On SOCK_STREAM the peer has closed; on
  // SOCK_SEQPACKET an empty message reads the same, and only the socket's
  // hang-up (POLLHUP) tells the two apart.
  bool end_of_stream = false;
  // MSG_TRUNC: the message was longer than the buffer; the rest is lost.
  bool truncated = false;
  // MSG_CTRUNC: control data did not fit, so the kernel dropped (closed)
  // descriptors or credentials the sender attached.
  bool control_truncated = false;
  // The first max_fds descriptors the message carried, in order, owned and
  // close-on-exec.
  std::vector<UniqueFd> fds;
  // Descriptors that arrived beyond max_fds and were closed here.
  std::size_t fds_discarded = 0;
  // SCM_CREDENTIALS: the sender's pid/uid/gid as the kernel saw them (in
  // the receiver's namespaces); only on a socket with SO_PASSCRED.
  std::optional<ucred> credentials;

  // Whether the sender attached any descriptor, kept or not.
  bool CarriedFds() const { return !fds.empty() || fds_discarded > 0 || control_truncated; }
};

// recvmsg(socket, buffer, flags | MSG_CMSG_CLOEXEC), retried on EINTR.
// Every descriptor the message carried is owned by the result or already
// closed, so none can leak whatever the caller does: at most max_fds (capped
// at kMaxReceivedFdsPerMessage) are kept, the rest closed and counted.
// Returns the errno value of a failed recvmsg (EAGAIN included) as the error.
[[nodiscard]] std::expected<ReceivedMessage, int> ReceiveWithFds(int socket, std::span<char> buffer, int flags,
                                                                 std::size_t max_fds);

// A new descriptor (close-on-exec) for the open file behind descriptor `fd`
// of the process `pidfd` refers to: pidfd_getfd(2). -1 with errno on
// failure. Needs ptrace-attach rights over that process (citadeld has them
// over its apps). How an app's seccomp listener reaches citadeld: the app
// may no longer call sendmsg(2) once its filter is loaded.
int CopyFdFromProcess(int pidfd, int fd);

}  // namespace citadel
