#include "common/fd_passing.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace citadel {

ssize_t SendWithFds(int socket, std::string_view bytes, std::span<const int> fds_to_pass, int flags) {
  if (fds_to_pass.empty()) {
    // send(2), not sendmsg(2): an app's seccomp filter may refuse sendmsg,
    // and the sandbox helper reports its last steps under that filter.
    while (true) {
      ssize_t sent = ::send(socket, bytes.data(), bytes.size(), flags);
      if (sent >= 0 || errno != EINTR) return sent;
    }
  }
  if (fds_to_pass.size() > kMaxSentFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  iovec data{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxSentFdsPerMessage)> control{};
  message.msg_control = control.data();
  message.msg_controllen = CMSG_SPACE(fds_to_pass.size_bytes());
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(fds_to_pass.size_bytes());
  std::memcpy(CMSG_DATA(header), fds_to_pass.data(), fds_to_pass.size_bytes());
  while (true) {
    ssize_t sent = ::sendmsg(socket, &message, flags);
    if (sent >= 0 || errno != EINTR) return sent;
  }
}

ssize_t SendWithFd(int socket, std::string_view bytes, int fd_to_pass, int flags) {
  if (fd_to_pass < 0) return SendWithFds(socket, bytes, {}, flags);
  return SendWithFds(socket, bytes, std::span<const int>(&fd_to_pass, 1), flags);
}

std::expected<ReceivedMessage, int> ReceiveWithFds(int socket, std::span<char> buffer, int flags, std::size_t max_fds) {
  iovec data{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * kMaxReceivedFdsPerMessage)>
      control{};
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  ssize_t size = -1;
  do {
    size = ::recvmsg(socket, &message, flags | MSG_CMSG_CLOEXEC);
  } while (size < 0 && errno == EINTR);
  if (size < 0) return std::unexpected(errno);

  ReceivedMessage received;
  // Whatever the flags say, the kernel has installed every descriptor it
  // wrote into `control`: each is taken into a UniqueFd or closed below.
  const std::size_t keep = std::min(max_fds, kMaxReceivedFdsPerMessage);
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET) continue;
    if (header->cmsg_type == SCM_CREDENTIALS && header->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred credentials{};
      std::memcpy(&credentials, CMSG_DATA(header), sizeof credentials);
      received.credentials = credentials;
      continue;
    }
    if (header->cmsg_type != SCM_RIGHTS || header->cmsg_len < CMSG_LEN(0)) continue;
    const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      if (fd < 0) continue;
      if (received.fds.size() < keep) {
        received.fds.emplace_back(fd);
      } else {
        (void)::close(fd);
        ++received.fds_discarded;
      }
    }
  }
  // Never more than the buffer holds, even if the caller asked for the
  // real length with MSG_TRUNC.
  received.size = std::min(static_cast<std::size_t>(size), buffer.size());
  received.end_of_stream = size == 0;
  received.truncated = (message.msg_flags & MSG_TRUNC) != 0;
  received.control_truncated = (message.msg_flags & MSG_CTRUNC) != 0;
  return received;
}

int CopyFdFromProcess(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

}  // namespace citadel
