#include "common/fd_passing.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.hpp"

namespace citadel {
namespace {

struct SocketPair {
  UniqueFd sender;
  UniqueFd receiver;
};

SocketPair MakeSocketPair(int type) {
  std::array<int, 2> fds{-1, -1};
  EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds.data()), 0) << std::strerror(errno);
  return SocketPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

Pipe MakePipe() {
  std::array<int, 2> fds{-1, -1};
  EXPECT_EQ(::pipe2(fds.data(), O_CLOEXEC), 0) << std::strerror(errno);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Pipes whose write ends are sent; the read ends stay here to tell, by
// end of file, which write ends are still open anywhere in this process.
std::vector<Pipe> MakePipes(std::size_t count) {
  std::vector<Pipe> pipes;
  pipes.reserve(count);
  for (std::size_t i = 0; i < count; ++i) pipes.push_back(MakePipe());
  return pipes;
}

std::vector<int> WriteEnds(const std::vector<Pipe>& pipes) {
  std::vector<int> fds;
  fds.reserve(pipes.size());
  for (const Pipe& pipe : pipes) fds.push_back(pipe.write_end.get());
  return fds;
}

void CloseWriteEnds(std::vector<Pipe>& pipes) {
  for (Pipe& pipe : pipes) pipe.write_end.Reset();
}

// True when every write end of the pipe is closed: the read end reports
// POLLHUP at once.
bool WriteEndClosed(const Pipe& pipe) {
  pollfd wait{pipe.read_end.get(), POLLIN, 0};
  return ::poll(&wait, 1, 0) == 1 && (wait.revents & POLLHUP) != 0;
}

std::size_t OpenFdCount() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

TEST(ReceiveWithFdsTest, OneDescriptorArrivesOwnedAndCloseOnExec) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  Pipe pipe = MakePipe();
  ASSERT_EQ(SendWithFd(pair.sender.get(), "hello", pipe.write_end.get(), 0), 5);
  pipe.write_end.Reset();

  std::array<char, 64> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(received) << std::strerror(received.error());
  EXPECT_EQ(std::string_view(buffer.data(), received->size), "hello");
  EXPECT_FALSE(received->end_of_stream);
  EXPECT_FALSE(received->truncated);
  EXPECT_FALSE(received->control_truncated);
  EXPECT_EQ(received->fds_discarded, 0U);
  EXPECT_FALSE(received->credentials.has_value());
  EXPECT_TRUE(received->CarriedFds());
  ASSERT_EQ(received->fds.size(), 1U);

  const int fd = received->fds[0].get();
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  // The same pipe: what is written through it comes out of the read end.
  ASSERT_EQ(::write(fd, "x", 1), 1);
  char byte = 0;
  ASSERT_EQ(::read(pipe.read_end.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_FALSE(WriteEndClosed(pipe));

  // Owned: dropping the result closes it.
  received->fds.clear();
  EXPECT_TRUE(WriteEndClosed(pipe));
}

TEST(ReceiveWithFdsTest, DescriptorsBeyondMaxFdsAreClosedAndCounted) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::vector<Pipe> pipes = MakePipes(3);
  std::vector<int> fds = WriteEnds(pipes);
  ASSERT_EQ(SendWithFds(pair.sender.get(), "three", fds, 0), 5);
  CloseWriteEnds(pipes);
  const std::size_t open_before = OpenFdCount();

  std::array<char, 64> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(received) << std::strerror(received.error());
  ASSERT_EQ(received->fds.size(), 1U);
  EXPECT_EQ(received->fds_discarded, 2U);
  EXPECT_FALSE(received->control_truncated);
  EXPECT_EQ(OpenFdCount(), open_before + 1);
  // The first descriptor is kept, the other two are gone.
  EXPECT_FALSE(WriteEndClosed(pipes[0]));
  EXPECT_TRUE(WriteEndClosed(pipes[1]));
  EXPECT_TRUE(WriteEndClosed(pipes[2]));
}

TEST(ReceiveWithFdsTest, MaxFdsZeroClosesEveryDescriptorButReportsThem) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::vector<Pipe> pipes = MakePipes(1);
  ASSERT_EQ(SendWithFd(pair.sender.get(), "{}", pipes[0].write_end.get(), 0), 2);
  CloseWriteEnds(pipes);
  const std::size_t open_before = OpenFdCount();

  std::array<char, 64> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 0);
  ASSERT_TRUE(received) << std::strerror(received.error());
  EXPECT_TRUE(received->fds.empty());
  EXPECT_EQ(received->fds_discarded, 1U);
  EXPECT_TRUE(received->CarriedFds());
  EXPECT_EQ(OpenFdCount(), open_before);
  EXPECT_TRUE(WriteEndClosed(pipes[0]));
}

TEST(ReceiveWithFdsTest, MoreDescriptorsThanRoomAreDroppedByTheKernelAndFlagged) {
  constexpr std::size_t kSent = kMaxReceivedFdsPerMessage * 3;
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::vector<Pipe> pipes = MakePipes(kSent);
  std::vector<int> fds = WriteEnds(pipes);
  ASSERT_EQ(SendWithFds(pair.sender.get(), "many", fds, 0), 4);
  CloseWriteEnds(pipes);
  const std::size_t open_before = OpenFdCount();

  std::array<char, 64> buffer{};
  // Asking for more than the cap keeps only the cap.
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, kSent);
  ASSERT_TRUE(received) << std::strerror(received.error());
  EXPECT_EQ(received->fds.size(), kMaxReceivedFdsPerMessage);
  EXPECT_TRUE(received->control_truncated);
  EXPECT_TRUE(received->CarriedFds());
  EXPECT_EQ(OpenFdCount(), open_before + kMaxReceivedFdsPerMessage);
  for (std::size_t i = 0; i < kSent; ++i) {
    EXPECT_EQ(WriteEndClosed(pipes[i]), i >= kMaxReceivedFdsPerMessage) << "pipe " << i;
  }
}

TEST(ReceiveWithFdsTest, MessageWithoutDescriptorsCarriesNone) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_EQ(SendWithFd(pair.sender.get(), "plain", -1, 0), 5);
  std::array<char, 64> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(received) << std::strerror(received.error());
  EXPECT_EQ(std::string_view(buffer.data(), received->size), "plain");
  EXPECT_FALSE(received->CarriedFds());
}

TEST(ReceiveWithFdsTest, CredentialsArriveOnlyWithPassCred) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::array<char, 64> buffer{};
  ASSERT_EQ(SendWithFd(pair.sender.get(), "a", -1, 0), 1);
  auto without = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(without) << std::strerror(without.error());
  EXPECT_FALSE(without->credentials.has_value());

  int on = 1;
  ASSERT_EQ(::setsockopt(pair.receiver.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
  Pipe pipe = MakePipe();
  ASSERT_EQ(SendWithFd(pair.sender.get(), "b", pipe.write_end.get(), 0), 1);
  auto with = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(with) << std::strerror(with.error());
  ASSERT_TRUE(with->credentials.has_value());
  EXPECT_EQ(with->credentials->pid, ::getpid());
  EXPECT_EQ(with->credentials->uid, ::getuid());
  EXPECT_EQ(with->credentials->gid, ::getgid());
  // Credentials and a descriptor in one message: both are read.
  EXPECT_EQ(with->fds.size(), 1U);
  EXPECT_FALSE(with->control_truncated);
}

TEST(ReceiveWithFdsTest, LongerMessageThanBufferIsFlaggedTruncated) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  ASSERT_EQ(SendWithFd(pair.sender.get(), "0123456789", -1, 0), 10);
  std::array<char, 4> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
  ASSERT_TRUE(received) << std::strerror(received.error());
  EXPECT_TRUE(received->truncated);
  EXPECT_EQ(std::string_view(buffer.data(), received->size), "0123");

  // Even asked for the real length, size never exceeds the buffer.
  ASSERT_EQ(SendWithFd(pair.sender.get(), "0123456789", -1, 0), 10);
  auto real_length = ReceiveWithFds(pair.receiver.get(), buffer, MSG_TRUNC, 1);
  ASSERT_TRUE(real_length) << std::strerror(real_length.error());
  EXPECT_TRUE(real_length->truncated);
  EXPECT_EQ(real_length->size, buffer.size());
}

TEST(ReceiveWithFdsTest, PeerCloseIsEndOfStream) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    SocketPair pair = MakeSocketPair(type);
    pair.sender.Reset();
    std::array<char, 64> buffer{};
    auto received = ReceiveWithFds(pair.receiver.get(), buffer, 0, 1);
    ASSERT_TRUE(received) << std::strerror(received.error());
    EXPECT_TRUE(received->end_of_stream) << "type " << type;
    EXPECT_EQ(received->size, 0U);
    EXPECT_FALSE(received->CarriedFds());
  }
}

TEST(ReceiveWithFdsTest, NothingWaitingIsEagainWithDontWait) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::array<char, 64> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, MSG_DONTWAIT, 1);
  ASSERT_FALSE(received);
  EXPECT_EQ(received.error(), EAGAIN);
}

TEST(SendWithFdsTest, RefusesMoreDescriptorsThanTheKernelTakes) {
  SocketPair pair = MakeSocketPair(SOCK_SEQPACKET);
  std::vector<int> fds(kMaxSentFdsPerMessage + 1, pair.sender.get());
  errno = 0;
  EXPECT_EQ(SendWithFds(pair.sender.get(), "x", fds, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  std::array<char, 8> buffer{};
  auto received = ReceiveWithFds(pair.receiver.get(), buffer, MSG_DONTWAIT, 1);
  ASSERT_FALSE(received);
  EXPECT_EQ(received.error(), EAGAIN);
}

}  // namespace
}  // namespace citadel
