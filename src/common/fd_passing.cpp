#include "common/fd_passing.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace citadel {

ssize_t SendWithFd(int socket, std::string_view bytes, int fd_to_pass, int flags) {
  if (fd_to_pass < 0) {
    // send(2), not sendmsg(2): an app's seccomp filter may refuse sendmsg,
    // and the sandbox helper reports its last steps under that filter.
    while (true) {
      ssize_t sent = ::send(socket, bytes.data(), bytes.size(), flags);
      if (sent >= 0 || errno != EINTR) return sent;
    }
  }
  iovec data{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (fd_to_pass >= 0) {
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd_to_pass, sizeof(int));
  }
  while (true) {
    ssize_t sent = ::sendmsg(socket, &message, flags);
    if (sent >= 0 || errno != EINTR) return sent;
  }
}

int CopyFdFromProcess(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

}  // namespace citadel
