#include "apps/dev_protocol.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "common/unique_fd.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

Expected<void> WaitFor(int fd, short events, Deadline deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return MakeError(ErrorCode::kUnavailable, "timed out");
    pollfd entry{fd, events, 0};
    int ready = ::poll(&entry, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60'000)));
    if (ready > 0) return kOk;
    if (ready < 0 && errno != EINTR) return MakeError(ErrorCode::kIo, std::string("poll: ") + std::strerror(errno));
  }
}

std::string_view ErrorCodeFromName(std::string_view name, ErrorCode& code) {
  for (auto candidate : {ErrorCode::kInvalidArgument, ErrorCode::kNotFound, ErrorCode::kAlreadyExists,
                         ErrorCode::kConflict, ErrorCode::kPermissionDenied, ErrorCode::kUnauthenticated,
                         ErrorCode::kFailedPrecondition, ErrorCode::kExpired, ErrorCode::kTooLarge, ErrorCode::kCrypto,
                         ErrorCode::kIo, ErrorCode::kParse, ErrorCode::kUnavailable, ErrorCode::kInternal}) {
    if (ErrorCodeName(candidate) == name) {
      code = candidate;
      return name;
    }
  }
  code = ErrorCode::kInternal;
  return name;
}

}  // namespace

bool DevOpHasBody(std::string_view op) { return op == "sideload" || op == "app-install" || op == "apply-capability"; }

fs::path ResolveDevSocket(const fs::path& dir_or_socket) {
  std::error_code ec;
  if (fs::is_directory(dir_or_socket, ec)) return dir_or_socket / kDevSocketName;
  return dir_or_socket;
}

Expected<void> WriteAll(int fd, std::span<const std::uint8_t> bytes, Deadline deadline) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto waited = WaitFor(fd, POLLOUT, deadline);
      if (!waited) return WrapError(waited.error(), "writing");
      continue;
    }
    return MakeError(ErrorCode::kIo, std::string("writing: ") + std::strerror(errno));
  }
  return kOk;
}

Expected<void> ReadExact(int fd, std::span<std::uint8_t> bytes, Deadline deadline) {
  while (!bytes.empty()) {
    ssize_t got = ::recv(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
    if (got > 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(got));
      continue;
    }
    if (got == 0) return MakeError(ErrorCode::kParse, "the peer closed the connection mid-message");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      auto waited = WaitFor(fd, POLLIN, deadline);
      if (!waited) return WrapError(waited.error(), "reading");
      continue;
    }
    return MakeError(ErrorCode::kIo, std::string("reading: ") + std::strerror(errno));
  }
  return kOk;
}

Expected<void> WriteFrame(int fd, std::string_view text, Deadline deadline) {
  if (text.size() > UINT32_MAX) return MakeError(ErrorCode::kTooLarge, "frame larger than 4 GiB");
  auto length = static_cast<std::uint32_t>(text.size());
  std::array<std::uint8_t, 4> prefix{static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
                                     static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  CITADEL_TRY_VOID(WriteAll(fd, prefix, deadline));
  return WriteAll(fd, AsBytes(text), deadline);
}

Expected<std::string> ReadFrame(int fd, std::size_t max_bytes, Deadline deadline) {
  std::array<std::uint8_t, 4> prefix{};
  CITADEL_TRY_VOID(ReadExact(fd, prefix, deadline));
  std::uint32_t length = (std::uint32_t{prefix[0]} << 24) | (std::uint32_t{prefix[1]} << 16) |
                         (std::uint32_t{prefix[2]} << 8) | std::uint32_t{prefix[3]};
  if (length == 0) return MakeError(ErrorCode::kParse, "empty frame (length 0)");
  if (length > max_bytes) {
    return MakeError(ErrorCode::kTooLarge,
                     "frame of " + std::to_string(length) + " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  std::string text(length, '\0');
  CITADEL_TRY_VOID(ReadExact(fd, {reinterpret_cast<std::uint8_t*>(text.data()), text.size()}, deadline));
  return text;
}

Json DevErrorResponse(const Error& error) {
  return Json{{"ok", false}, {"error", {{"code", ErrorCodeName(error.code())}, {"message", error.message()}}}};
}

Json DevOkResponse(Json result) { return Json{{"ok", true}, {"result", std::move(result)}}; }

Expected<Json> DevCall(const fs::path& socket_path, const Json& header, std::span<const std::uint8_t> body,
                       std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = ResolveDevSocket(socket_path).string();
  if (path.size() >= sizeof address.sun_path) {
    return MakeError(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return MakeError(ErrorCode::kIo, std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    std::string hint = error == ENOENT || error == ECONNREFUSED
                           ? "; is citadeld running with apps enabled (`citadeld run` or `citadeld apps serve`)?"
                           : (error == EACCES ? "; the socket is root-only: run as root" : "");
    return MakeError(ErrorCode::kUnavailable,
                     "cannot connect to the device at " + path + ": " + std::strerror(error) + hint);
  }
  auto op = header.value("op", std::string());
  auto sent = WriteFrame(fd.get(), header.dump(-1, ' ', false, Json::error_handler_t::replace), deadline);
  if (sent && DevOpHasBody(op)) {
    std::uint64_t length = body.size();
    std::array<std::uint8_t, 8> prefix{};
    for (std::size_t i = 0; i < 8; ++i) prefix[i] = static_cast<std::uint8_t>(length >> (56 - 8 * i));
    sent = WriteAll(fd.get(), prefix, deadline);
    if (sent) sent = WriteAll(fd.get(), body, deadline);
  }
  // The server may refuse early (busy, too large) and close while we still
  // write: its answer explains why, so read it before reporting the write.
  auto text = ReadFrame(fd.get(), kMaxDevResponseBytes, deadline);
  if (!text && !sent) return WrapError(sent.error(), "sending the request to the device");
  if (!text) return WrapError(text.error(), "reading the device's answer");
  auto response = ParseJsonStrict(*text);
  if (!response || !response->is_object() || !response->contains("ok")) {
    return MakeError(ErrorCode::kParse, "the device sent a malformed answer");
  }
  if ((*response)["ok"] == true) return response->value("result", Json::object());
  auto error = response->value("error", Json::object());
  ErrorCode code = ErrorCode::kInternal;
  ErrorCodeFromName(error.value("code", std::string()), code);
  return MakeError(code, error.value("message", std::string("the device refused the request")));
}

}  // namespace citadel::apps
