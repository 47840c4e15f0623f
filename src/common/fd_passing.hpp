// Sending one message with (optionally) one file descriptor over a unix
// socket (SCM_RIGHTS): the sandbox helper's status channel, the broker's
// replies to apps. One implementation, so the control-message layout is
// written once.
//
// Threading: a free function; safe from any thread.
#pragma once

#include <sys/types.h>

#include <string_view>

namespace citadel {

// sendmsg(socket, bytes [+ fd_to_pass when >= 0], flags), retried on EINTR.
// Returns what sendmsg returned (-1 with errno on failure).
ssize_t SendWithFd(int socket, std::string_view bytes, int fd_to_pass, int flags);

}  // namespace citadel
