#include "applibs/channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "broker/protocol.hpp"
#include "common/fd_passing.hpp"
#include "common/unique_fd.hpp"

namespace citadel::applibs {

namespace {

// Long enough for a root-of-trust signature on a slow TPM; a broker that
// does not answer within it is treated as gone.
constexpr int kResponseTimeoutMs = 60'000;
constexpr int kMaxErrno = 4095;

std::atomic<std::uint64_t> g_next_id{1};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the crash handler takes ids in a signal handler");

struct Exchanger {
  std::mutex mutex;
  std::string buffer = std::string(broker::protocol::kMaxMessageBytes + 1, '\0');
};

Exchanger& ChannelExchanger() {
  static Exchanger exchanger;
  return exchanger;
}

Exchanger& HandleExchanger() {
  static Exchanger exchanger;
  return exchanger;
}

bool IsSeqPacketSocket(int fd) {
  int type = 0;
  socklen_t length = sizeof(type);
  return fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_SEQPACKET;
}

bool Exchange(Exchanger& exchanger, int fd, Json& request, Json* response, int* fd_out) {
  std::lock_guard lock(exchanger.mutex);
  std::uint64_t id = NextRequestId();
  request["id"] = id;
  std::string text = request.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > broker::protocol::kMaxMessageBytes) {
    errno = EINVAL;
    return false;
  }
  ssize_t sent = -1;
  do {
    sent = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    int error_number = errno;
    errno = (error_number == EPIPE || error_number == ECONNRESET) ? ENOTCONN : error_number;
    return false;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kResponseTimeoutMs);
  while (true) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd poll_fd{fd, POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, static_cast<int>(remaining.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return false;
    if (ready == 0) continue;  // re-checks the deadline
    // At most one descriptor is ever meant; any other is closed.
    auto received = ReceiveWithFds(fd, exchanger.buffer, MSG_DONTWAIT, 1);
    if (!received && (received.error() == EAGAIN || received.error() == EWOULDBLOCK)) continue;
    if (!received) {
      errno = received.error();
      return false;
    }
    if (received->end_of_stream) {
      errno = ENOTCONN;
      return false;
    }
    UniqueFd received_fd;
    if (!received->fds.empty()) received_fd = std::move(received->fds.front());
    Json parsed = Json::parse(std::string_view(exchanger.buffer.data(), received->size), nullptr, false);
    auto id_field = parsed.is_object() ? parsed.find("id") : parsed.end();
    if (!parsed.is_object() || id_field == parsed.end() || !id_field->is_number_unsigned() ||
        id_field->get<std::uint64_t>() != id) {
      continue;  // a response to an earlier, timed-out request, or noise: skip it
    }
    auto ok = parsed.find("ok");
    if (ok == parsed.end() || !ok->is_boolean() || !ok->get<bool>()) {
      received_fd.Reset();  // before errno is set: nothing may overwrite it
      auto error_number = parsed.find("errno");
      int value = EIO;
      if (error_number != parsed.end() && error_number->is_number_integer()) {
        auto number = error_number->get<std::int64_t>();
        if (number > 0 && number <= kMaxErrno) value = static_cast<int>(number);
      }
      errno = value;
      return false;
    }
    auto has_fd = parsed.find("fd");
    bool expects_fd = has_fd != parsed.end() && has_fd->is_boolean() && has_fd->get<bool>();
    if (expects_fd && !received_fd) {
      errno = EIO;
      return false;
    }
    if (fd_out != nullptr) *fd_out = received_fd.Release();
    *response = std::move(parsed);
    return true;
  }
}

}  // namespace

std::uint64_t NextRequestId() { return g_next_id.fetch_add(1); }

int BrokerChannel() {
  static const int channel = [] {
    const char* text = std::getenv(broker::protocol::kBrokerFdEnv);  // NOLINT(concurrency-mt-unsafe)
    if (text == nullptr || *text == '\0') return -1;
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (end == nullptr || *end != '\0' || value < 0 || value > INT_MAX) return -1;
    int fd = static_cast<int>(value);
    return IsSeqPacketSocket(fd) ? fd : -1;
  }();
  if (channel < 0) errno = ENOTCONN;
  return channel;
}

bool CallBroker(Json request, Json* response, int* fd_out) {
  int channel = BrokerChannel();
  if (channel < 0) return false;
  if (fd_out != nullptr) *fd_out = -1;
  return Exchange(ChannelExchanger(), channel, request, response, fd_out);
}

bool CallHandle(int handle_fd, Json request, Json* response) {
  if (!IsSeqPacketSocket(handle_fd) || handle_fd == BrokerChannel()) {
    errno = EBADF;
    return false;
  }
  return Exchange(HandleExchanger(), handle_fd, request, response, nullptr);
}

std::string HexEncode(const std::uint8_t* data, std::size_t length) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (std::size_t i = 0; i < length; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0x0F]);
  }
  return out;
}

bool HexDecode(const std::string& text, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (text.size() % 2 != 0) return false;
  out->clear();
  out->reserve(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    int high = value(text[i]);
    int low = value(text[i + 1]);
    if (high < 0 || low < 0) return false;
    out->push_back(static_cast<char>((high << 4) | low));
  }
  return true;
}

}  // namespace citadel::applibs
