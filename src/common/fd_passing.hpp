// Moving file descriptors between processes: one message with (optionally)
// one descriptor over a unix socket (SCM_RIGHTS) for the broker's replies to
// apps and the sandbox helper's status channel, and pidfd_getfd for taking a
// descriptor out of a process. One implementation each.
//
// Threading: a free function; safe from any thread.
#pragma once

#include <sys/types.h>

#include <string_view>

namespace citadel {

// sendmsg(socket, bytes + fd_to_pass, flags), or send(socket, bytes, flags)
// when fd_to_pass < 0; retried on EINTR.
// Returns what sendmsg returned (-1 with errno on failure).
ssize_t SendWithFd(int socket, std::string_view bytes, int fd_to_pass, int flags);

// A new descriptor (close-on-exec) for the open file behind descriptor `fd`
// of the process `pidfd` refers to: pidfd_getfd(2). -1 with errno on
// failure. Needs ptrace-attach rights over that process (citadeld has them
// over its apps). How an app's seccomp listener reaches citadeld: the app
// may no longer call sendmsg(2) once its filter is loaded.
int CopyFdFromProcess(int pidfd, int fd);

}  // namespace citadel
