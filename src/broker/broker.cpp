#include "broker/broker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/peripheral_backend.hpp"
#include "broker/protocol.hpp"
#include "broker/request.hpp"
#include "common/fd_passing.hpp"
#include "common/log.hpp"

namespace citadel::broker {

namespace {

constexpr std::uint64_t kWakeToken = 0;
constexpr int kMaxEvents = 64;
constexpr std::size_t kMaxComponentIdBytes = 64;
// UART relay: bytes the broker holds in each direction for a side that does
// not take them, and the most it reads per event (bounded work per event).
constexpr std::size_t kUartBufferBytes = 64 * 1024;
constexpr std::size_t kUartChunkBytes = 4096;

std::string ErrnoText(int error_number) { return std::strerror(error_number); }  // NOLINT(concurrency-mt-unsafe)

// The applibs function an open request stands for, for violation reports.
std::string OpenCallName(app::PeripheralKind kind, bool gpio_output) {
  switch (kind) {
    case app::PeripheralKind::kGpio:
      return gpio_output ? "GPIO_OpenAsOutput" : "GPIO_OpenAsInput";
    case app::PeripheralKind::kUart:
      return "UART_Open";
    case app::PeripheralKind::kI2cMaster:
      return "I2CMaster_Open";
    case app::PeripheralKind::kSpiMaster:
      return "SPIMaster_Open";
    case app::PeripheralKind::kPwm:
      return "PWM_Open";
    case app::PeripheralKind::kAdc:
      return "ADC_Open";
  }
  return "open";
}

std::optional<app::PeripheralKind> KindFromName(std::string_view name) {
  for (auto kind : {app::PeripheralKind::kGpio, app::PeripheralKind::kUart, app::PeripheralKind::kI2cMaster,
                    app::PeripheralKind::kSpiMaster, app::PeripheralKind::kPwm, app::PeripheralKind::kAdc}) {
    if (app::PeripheralKindName(kind) == name) return kind;
  }
  return std::nullopt;
}

bool SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

struct SocketPair {
  UniqueFd broker_end;
  UniqueFd app_end;
};

Checked<SocketPair> MakeSocketPair(int type) {
  std::array<int, 2> fds{-1, -1};
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds.data()) != 0) {
    return Fail(EIO, "socketpair failed: " + ErrnoText(errno));
  }
  SocketPair pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
  if (!SetNonBlocking(pair.broker_end.get())) return Fail(EIO, "fcntl O_NONBLOCK failed: " + ErrnoText(errno));
  return pair;
}

// Sends one message (and optionally one descriptor) without blocking.
bool SendMessage(int fd, std::string_view text, int pass_fd) {
  ssize_t sent = SendWithFd(fd, text, pass_fd, MSG_DONTWAIT | MSG_NOSIGNAL);
  return sent >= 0 && static_cast<std::size_t>(sent) == text.size();
}

struct Success {
  Json results = Json::object();
  UniqueFd fd;
};

// One step of the UART relay on one descriptor.
enum class RelayStep { kMoved, kIdle, kEnd, kFailed };

bool TransientErrno(int error_number) {
  return error_number == EAGAIN || error_number == EWOULDBLOCK || error_number == EINTR;
}

// Reads at most one chunk from fd into buffer, never past kUartBufferBytes.
RelayStep ReadChunk(int fd, std::string& buffer) {
  if (buffer.size() >= kUartBufferBytes) return RelayStep::kIdle;
  std::array<char, kUartChunkBytes> chunk{};
  const std::size_t room = std::min(chunk.size(), kUartBufferBytes - buffer.size());
  ssize_t got = ::read(fd, chunk.data(), room);
  if (got > 0) {
    buffer.append(chunk.data(), static_cast<std::size_t>(got));
    return RelayStep::kMoved;
  }
  if (got == 0) return RelayStep::kEnd;
  return TransientErrno(errno) ? RelayStep::kIdle : RelayStep::kFailed;
}

// Writes what fd takes of buffer without blocking; *moved counts the bytes.
RelayStep WriteSome(int fd, std::string& buffer, bool socket, std::size_t* moved = nullptr) {
  if (buffer.empty()) return RelayStep::kIdle;
  ssize_t put = socket ? ::send(fd, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                       : ::write(fd, buffer.data(), buffer.size());
  if (put > 0) {
    buffer.erase(0, static_cast<std::size_t>(put));
    if (moved != nullptr) *moved = static_cast<std::size_t>(put);
    return RelayStep::kMoved;
  }
  if (put == 0 || TransientErrno(errno)) return RelayStep::kIdle;
  return RelayStep::kFailed;
}

bool Ended(RelayStep step) { return step == RelayStep::kEnd || step == RelayStep::kFailed; }

}  // namespace

class Broker::Impl {
 public:
  explicit Impl(BrokerOptions options)
      : options_(std::move(options)),
        backend_(CreatePeripheralBackend(options_.board, options_.linux_board)),
        simulated_(dynamic_cast<SimulatedBoard*>(backend_.get())) {}

  ~Impl() {
    if (thread_.joinable()) {
      stopping_.store(true);
      std::uint64_t one = 1;
      if (::write(wake_.get(), &one, sizeof(one)) != sizeof(one)) log::Error("broker: cannot wake the event loop");
      thread_.join();
    }
    // Close every handle the way the loop would, so the backend releases
    // its peripherals and no tty close waits for its output to drain.
    std::lock_guard lock(mutex_);
    while (!endpoints_.empty()) CloseEndpoint(endpoints_.begin()->first);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Expected<void> Start() {
    epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return MakeError(ErrorCode::kIo, "broker: epoll_create1 failed: " + ErrnoText(errno));
    wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) return MakeError(ErrorCode::kIo, "broker: eventfd failed: " + ErrnoText(errno));
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeToken;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event) != 0) {
      return MakeError(ErrorCode::kIo, "broker: epoll_ctl failed: " + ErrnoText(errno));
    }
    log::Info("broker: serving the board's peripherals",
              {{"board", options_.board.name}, {"backend", backend_->name()}});
    thread_ = std::thread([this] { Run(); });
    return kOk;
  }

  Expected<UniqueFd> AddApp(const app::Policy& policy) {
    if (policy.component_id.empty() || policy.component_id.size() > kMaxComponentIdBytes) {
      return MakeError(ErrorCode::kInvalidArgument, "broker: the policy has no valid component id");
    }
    std::lock_guard lock(mutex_);
    if (apps_.contains(policy.component_id)) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "broker: app " + policy.component_id + " is already registered; remove it first");
    }
    auto pair = MakeSocketPair(SOCK_SEQPACKET);
    if (!pair) return MakeError(ErrorCode::kIo, "broker: creating the app channel: " + pair.error().message);
    AppState& state = apps_[policy.component_id];
    state.policy = policy;
    auto token = Register(EndpointType::kAppChannel, policy.component_id, std::move(pair->broker_end), EPOLLIN);
    if (!token) {
      apps_.erase(policy.component_id);
      return MakeError(ErrorCode::kIo, "broker: registering the app channel: " + token.error().message);
    }
    return std::move(pair->app_end);
  }

  void RemoveApp(std::string_view component_id) {
    std::lock_guard lock(mutex_);
    auto it = apps_.find(component_id);
    if (it == apps_.end()) return;
    for (std::uint64_t token : std::set<std::uint64_t>(it->second.tokens)) CloseEndpoint(token);
    apps_.erase(it);
  }

  SimulatedBoard& simulated() {
    if (simulated_ == nullptr) {
      log::Error("broker: simulated() called for a board whose backend is not simulated",
                 {{"board", options_.board.name}, {"backend", backend_->name()}});
      std::abort();
    }
    return *simulated_;
  }

 private:
  enum class EndpointType { kAppChannel, kPeripheral, kUart };

  struct Endpoint {
    EndpointType type = EndpointType::kAppChannel;
    std::string component_id;
    UniqueFd fd;
    std::uint32_t events = 0;
    app::Peripheral peripheral;  // kPeripheral, kUart
    bool gpio_output = false;
    bool backend_open = false;  // the backend holds `peripheral` for this endpoint until it closes
    // kUart: the device its bytes are relayed to and from (none: loopback),
    // registered under device_token, and the bytes in flight each way. In a
    // loopback the app's bytes wait in to_app.
    UniqueFd uart_device;
    std::uint64_t device_token = 0;
    std::uint32_t device_events = 0;
    std::string to_app;
    std::string to_device;
    // The app closed its UART descriptor while bytes it wrote were still on
    // their way: its socket is out of the event loop and the device's
    // writability drives the rest out (app_eof: nothing left to read).
    bool draining = false;
    bool app_eof = false;
  };

  struct AppState {
    app::Policy policy;
    std::set<std::uint64_t> tokens;
    std::map<std::string, std::uint64_t> open_resources;  // ResourceKey -> endpoint token
    // Incoming app connections: the broker writes into broker_end; the app
    // gets app_end from app.listen (until then the connections wait in it).
    UniqueFd incoming_broker_end;
    UniqueFd incoming_app_end;
  };

  struct Received {
    std::size_t size = 0;
    bool truncated = false;
    bool carried_fds = false;
    bool end_of_stream = false;
  };

  // ---- endpoints -------------------------------------------------------

  Checked<std::uint64_t> Register(EndpointType type, const std::string& component_id, UniqueFd fd,
                                  std::uint32_t events) {
    std::uint64_t token = next_token_++;
    epoll_event event{};
    event.events = events | EPOLLRDHUP;
    event.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &event) != 0) {
      return Fail(EIO, "epoll_ctl failed: " + ErrnoText(errno));
    }
    Endpoint& endpoint = endpoints_[token];
    endpoint.type = type;
    endpoint.component_id = component_id;
    endpoint.fd = std::move(fd);
    endpoint.events = event.events;
    apps_[component_id].tokens.insert(token);
    return token;
  }

  // Registers a UART endpoint's device descriptor with the event loop.
  Checked<void> RegisterUartDevice(std::uint64_t token, Endpoint& endpoint, UniqueFd device) {
    std::uint64_t device_token = next_token_++;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = device_token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, device.get(), &event) != 0) {
      return Fail(EIO, "epoll_ctl failed: " + ErrnoText(errno));
    }
    endpoint.uart_device = std::move(device);
    endpoint.device_token = device_token;
    endpoint.device_events = event.events;
    device_tokens_[device_token] = token;
    return {};
  }

  void CloseEndpoint(std::uint64_t token) {
    auto it = endpoints_.find(token);
    if (it == endpoints_.end()) return;
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
    if (it->second.uart_device) {
      (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.uart_device.get(), nullptr);
      device_tokens_.erase(it->second.device_token);
      // Not the tty's last close (the backend keeps its own descriptor), so
      // it neither blocks this thread until the port drains nor discards
      // what the port still has to send.
      it->second.uart_device.Reset();
    }
    // Tell the backend last, once nothing of the handle is left open.
    if (it->second.backend_open) backend_->Close(it->second.peripheral);
    auto app = apps_.find(it->second.component_id);
    if (app != apps_.end()) {
      app->second.tokens.erase(token);
      auto resource = app->second.open_resources.find(it->second.peripheral.ResourceKey());
      if (resource != app->second.open_resources.end() && resource->second == token) {
        app->second.open_resources.erase(resource);
      }
    }
    endpoints_.erase(it);
  }

  void UpdateEvents(std::uint64_t token, int fd, std::uint32_t& current, std::uint32_t events) {
    if (events == current) return;
    epoll_event event{};
    event.events = events;
    event.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) == 0) current = events;
  }

  // ---- event loop ------------------------------------------------------

  void Run() {
    std::array<epoll_event, kMaxEvents> events{};
    while (!stopping_.load()) {
      int count = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, -1);
      if (count < 0) {
        if (errno == EINTR) continue;
        log::Error("broker: epoll_wait failed; apps lose their runtime", {{"error", ErrnoText(errno)}});
        return;
      }
      // Level-triggered epoll reports ready descriptors round-robin; serving
      // one message per descriptor per round keeps a flooding app from
      // starving the others.
      for (int i = 0; i < count; ++i) {
        if (events[static_cast<std::size_t>(i)].data.u64 == kWakeToken) {
          std::uint64_t value = 0;
          (void)::read(wake_.get(), &value, sizeof(value));
          continue;
        }
        std::lock_guard lock(mutex_);
        Serve(events[static_cast<std::size_t>(i)].data.u64, events[static_cast<std::size_t>(i)].events);
      }
    }
  }

  void Serve(std::uint64_t token, std::uint32_t events) {
    if (auto device = device_tokens_.find(token); device != device_tokens_.end()) {
      auto it = endpoints_.find(device->second);
      if (it != endpoints_.end()) ServeUart(device->second, it->second, events, /*device_side=*/true);
      return;
    }
    auto it = endpoints_.find(token);
    if (it == endpoints_.end()) return;  // closed earlier in this round
    Endpoint& endpoint = it->second;
    if (endpoint.type == EndpointType::kUart) {
      ServeUart(token, endpoint, events, /*device_side=*/false);
      return;
    }
    bool hung_up = (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0;
    if ((events & EPOLLIN) != 0) {
      if (!ServeOneMessage(token, endpoint, hung_up)) return;
    }
    if (hung_up) CloseEndpoint(token);
  }

  // Returns false when the endpoint was closed.
  bool ServeOneMessage(std::uint64_t token, Endpoint& endpoint, bool hung_up) {
    auto received = Receive(endpoint.fd.get(), hung_up);
    if (!received) return true;
    if (received->end_of_stream) {
      CloseEndpoint(token);
      return false;
    }
    std::optional<std::uint64_t> id;
    Checked<Success> result = [&]() -> Checked<Success> {
      if (received->truncated) return Fail(EMSGSIZE, "request exceeds the message size limit");
      auto request = ParseRequest(std::string_view(buffer_.data(), received->size), &id);
      if (received->carried_fds) return Fail(EINVAL, "requests may not carry descriptors");
      if (!request) return std::unexpected(request.error());
      if (endpoint.type == EndpointType::kAppChannel) return HandleChannelRequest(endpoint.component_id, *request);
      return HandleHandleRequest(endpoint, *request);
    }();
    bool sent = false;
    if (result) {
      int fd = result->fd.get();
      sent = SendMessage(endpoint.fd.get(), OkResponse(id, std::move(result->results), fd >= 0), fd);
    } else {
      sent = SendMessage(endpoint.fd.get(), ErrorResponse(id, result.error()), -1);
    }
    if (!sent) {
      // The app does not read its responses (or is gone): drop, never block.
      log::Debug("broker: response dropped", {{"component_id", endpoint.component_id}});
    }
    return true;
  }

  std::optional<Received> Receive(int fd, bool hung_up) {
    // max_fds 0: any descriptor an app attached is closed at once.
    auto message = ReceiveWithFds(fd, buffer_, MSG_DONTWAIT, 0);
    Received received;
    if (!message) {
      if (message.error() == EAGAIN || message.error() == EWOULDBLOCK) return std::nullopt;
      received.end_of_stream = true;
      return received;
    }
    received.carried_fds = message->CarriedFds();
    // A SOCK_SEQPACKET read of 0 bytes is either an empty message or the
    // peer's close; the hang-up flag tells which.
    if (message->end_of_stream && hung_up) {
      received.end_of_stream = true;
      return received;
    }
    received.size = message->size;
    received.truncated = message->truncated || received.size > protocol::kMaxMessageBytes;
    return received;
  }

  // One UART event, on the app's socket or (device_side) on the device.
  // Each call moves at most one chunk in from the side that is ready and
  // forwards what the other side takes without blocking; interest follows
  // the buffers, so a side that does not read stops the other being read
  // once kUartBufferBytes wait (backpressure, never unbounded memory).
  // Bytes still in flight when either side goes away are dropped.
  void ServeUart(std::uint64_t token, Endpoint& endpoint, std::uint32_t events, bool device_side) {
    const bool readable = (events & EPOLLIN) != 0;
    const bool writable = (events & EPOLLOUT) != 0;
    const bool hung_up = (events & (EPOLLHUP | EPOLLERR)) != 0;
    const int app = endpoint.fd.get();
    bool closed = false;
    if (!endpoint.uart_device) {
      // Loopback (the simulated board): the app's bytes come straight back.
      if (readable) closed = Ended(ReadChunk(app, endpoint.to_app));
      std::size_t moved = 0;
      if (!closed) closed = WriteSome(app, endpoint.to_app, true, &moved) == RelayStep::kFailed;
      if (moved > 0 && simulated_ != nullptr) simulated_->AddUartBytesLooped(endpoint.peripheral.name, moved);
      closed = closed || (hung_up && !readable);
    } else if (endpoint.draining) {
      ServeUartDrain(token, endpoint, hung_up);
      return;
    } else if (!device_side) {
      const int device = endpoint.uart_device.get();
      const RelayStep from_app = readable ? ReadChunk(app, endpoint.to_device) : RelayStep::kIdle;
      bool app_gone = Ended(from_app) || (hung_up && !readable);
      if (writable && !app_gone && WriteSome(app, endpoint.to_app, true) == RelayStep::kFailed) app_gone = true;
      // Forward at once, also the last bytes of an app that just closed.
      if (WriteSome(device, endpoint.to_device, false) == RelayStep::kFailed) {
        const int error_number = errno;
        LogUartFailure(endpoint, "writing the device: " + ErrnoText(error_number));
        closed = true;
      }
      if (!closed && app_gone) {
        StartUartDrain(token, endpoint, Ended(from_app));
        return;
      }
    } else {
      const int device = endpoint.uart_device.get();
      std::string failure;
      if (readable) {
        const RelayStep step = ReadChunk(device, endpoint.to_app);
        const int error_number = errno;
        if (step == RelayStep::kEnd) failure = "the device reported end of file";
        if (step == RelayStep::kFailed) failure = "reading the device: " + ErrnoText(error_number);
      }
      if (failure.empty() && writable && WriteSome(device, endpoint.to_device, false) == RelayStep::kFailed) {
        const int error_number = errno;
        failure = "writing the device: " + ErrnoText(error_number);
      }
      if (failure.empty() && hung_up) failure = "the device hung up";
      // What was read still reaches the app, even when the device failed.
      const bool app_gone = WriteSome(app, endpoint.to_app, true) == RelayStep::kFailed;
      if (!failure.empty()) {
        LogUartFailure(endpoint, failure);
        closed = true;
      } else if (app_gone) {
        StartUartDrain(token, endpoint, false);
        return;
      }
    }
    if (closed) {
      CloseEndpoint(token);
      return;
    }
    if (!endpoint.uart_device) {
      const std::uint32_t wanted =
          (endpoint.to_app.size() < kUartBufferBytes ? EPOLLIN : 0U) | (endpoint.to_app.empty() ? 0U : EPOLLOUT);
      UpdateEvents(token, app, endpoint.events, wanted | EPOLLRDHUP);
      return;
    }
    const std::uint32_t app_wanted =
        (endpoint.to_device.size() < kUartBufferBytes ? EPOLLIN : 0U) | (endpoint.to_app.empty() ? 0U : EPOLLOUT);
    const std::uint32_t device_wanted =
        (endpoint.to_app.size() < kUartBufferBytes ? EPOLLIN : 0U) | (endpoint.to_device.empty() ? 0U : EPOLLOUT);
    UpdateEvents(token, app, endpoint.events, app_wanted | EPOLLRDHUP);
    UpdateEvents(endpoint.device_token, endpoint.uart_device.get(), endpoint.device_events, device_wanted);
  }

  // The app closed its UART descriptor (or can no longer be written to).
  // What it wrote before still goes to the device; the handle closes once
  // that is done, when the device fails, or when the app opens the UART
  // again or is removed (both drop what is left).
  void StartUartDrain(std::uint64_t token, Endpoint& endpoint, bool app_eof) {
    if (app_eof && endpoint.to_device.empty()) {
      CloseEndpoint(token);
      return;
    }
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, endpoint.fd.get(), nullptr);
    endpoint.events = 0;
    endpoint.draining = true;
    endpoint.app_eof = app_eof;
    endpoint.to_app.clear();  // nobody left to read it
    UpdateEvents(endpoint.device_token, endpoint.uart_device.get(), endpoint.device_events, EPOLLOUT);
  }

  // A device event while draining: move what the device takes, then refill
  // from the app's socket (data it wrote before closing, then end of file).
  void ServeUartDrain(std::uint64_t token, Endpoint& endpoint, bool hung_up) {
    const int device = endpoint.uart_device.get();
    std::string failure;
    if (WriteSome(device, endpoint.to_device, false) == RelayStep::kFailed) {
      const int error_number = errno;
      failure = "writing the device: " + ErrnoText(error_number);
    }
    if (failure.empty() && !endpoint.app_eof && endpoint.to_device.size() < kUartBufferBytes) {
      const RelayStep step = ReadChunk(endpoint.fd.get(), endpoint.to_device);
      // A closed peer's socket has data or end of file; "nothing yet" with
      // nothing buffered would only spin, so it ends the drain as well.
      if (Ended(step) || (step == RelayStep::kIdle && endpoint.to_device.empty())) endpoint.app_eof = true;
      if (WriteSome(device, endpoint.to_device, false) == RelayStep::kFailed) {
        const int error_number = errno;
        failure = "writing the device: " + ErrnoText(error_number);
      }
    }
    if (failure.empty() && hung_up) failure = "the device hung up";
    if (!failure.empty()) LogUartFailure(endpoint, failure);
    if (!failure.empty() || (endpoint.app_eof && endpoint.to_device.empty())) {
      CloseEndpoint(token);
      return;
    }
    UpdateEvents(endpoint.device_token, device, endpoint.device_events, EPOLLOUT);
  }

  // The device side of a UART failed: the app's handle is closed (it reads
  // end-of-file) and the operator learns why.
  static void LogUartFailure(const Endpoint& endpoint, const std::string& failure) {
    log::Warn(
        "broker: UART failed; closing the app's handle",
        {{"component_id", endpoint.component_id}, {"peripheral", endpoint.peripheral.Describe()}, {"error", failure}});
  }

  // ---- policy ----------------------------------------------------------

  std::unexpected<Failure> Deny(const std::string& component_id, std::string call, std::string detail) {
    log::Warn("broker: policy violation", {{"component_id", component_id}, {"call", call}, {"detail", detail}});
    if (options_.violations) {
      options_.violations(ViolationReport{component_id, std::move(call), detail});
    }
    return Fail(EACCES, std::move(detail));
  }

  // ---- app channel -----------------------------------------------------

  Checked<Success> HandleChannelRequest(const std::string& component_id, const Request& request) {
    auto app = apps_.find(component_id);
    if (app == apps_.end()) return Fail(EIO, "the app is not registered");
    AppState& state = app->second;
    const std::string& op = request.op;
    if (op == protocol::kOpOpen) return Open(state, request.body);
    if (op == protocol::kOpNetworkReady) {
      bool ready = options_.network_ready && options_.network_ready() && state.policy.HasNetworkAccess();
      Success success;
      success.results["ready"] = ready;
      return success;
    }
    if (op == protocol::kOpAuthChain || op == protocol::kOpAuthSign) return DeviceAuth(state, request);
    if (op == protocol::kOpAppConnect) return Connect(state, request.body);
    if (op == protocol::kOpAppListen) return Listen(state);
    if (op == protocol::kOpPowerReboot) {
      if (!state.policy.power_controls) {
        return Deny(component_id, "PowerManagement_ForceSystemReboot",
                    "reboot refused: the app manifest does not grant PowerControls");
      }
      log::Info("broker: reboot requested by app", {{"component_id", component_id}});
      if (simulated_ != nullptr) simulated_->RecordReboot();
      if (options_.reboot_requested) options_.reboot_requested();
      return Success{};
    }
    if (op == protocol::kOpTimeSet) return SetTime(state, request.body);
    if (op == protocol::kOpCrash) return Crash(state, request.body);
    return Fail(EINVAL, "unknown operation \"" + op + "\"");
  }

  Checked<Success> Open(AppState& state, const Json& body) {
    auto kind_name = StringField(body, "kind", 16);
    if (!kind_name) return std::unexpected(kind_name.error());
    auto kind = KindFromName(*kind_name);
    if (!kind) return Fail(EINVAL, "field \"kind\" names no peripheral kind");
    auto name = StringField(body, "name", app::kMaxPeripheralNameBytes);
    if (!name) return std::unexpected(name.error());
    bool gpio_output = false;
    int initial_value = 0;
    if (*kind == app::PeripheralKind::kGpio) {
      auto direction = StringField(body, "direction", 8);
      if (!direction) return std::unexpected(direction.error());
      if (*direction != "input" && *direction != "output") {
        return Fail(EINVAL, "field \"direction\" must be \"input\" or \"output\"");
      }
      gpio_output = *direction == "output";
      if (gpio_output) {
        auto value = UnsignedField(body, "value", 1);
        if (!value) return std::unexpected(value.error());
        initial_value = static_cast<int>(*value);
      }
    }
    const app::Peripheral* peripheral = options_.board.Find(*kind, *name);
    if (peripheral == nullptr) {
      return Fail(ENOENT, std::string(app::PeripheralKindName(*kind)) + " " + *name + " is not on this board");
    }
    bool granted = false;
    for (const app::Peripheral& listed : state.policy.peripherals) {
      if (listed.kind == peripheral->kind && listed.name == peripheral->name) granted = true;
    }
    if (!granted) {
      return Deny(state.policy.component_id, OpenCallName(*kind, gpio_output),
                  peripheral->Describe() + " is not listed in the app manifest (Capabilities." +
                      std::string(app::PeripheralKindName(*kind)) + ")");
    }
    std::string resource = peripheral->ResourceKey();
    if (auto held = state.open_resources.find(resource); held != state.open_resources.end()) {
      // The app may have just closed the old handle; its hang-up may still
      // be queued behind this request.
      auto endpoint = endpoints_.find(held->second);
      pollfd poll_fd{endpoint == endpoints_.end() ? -1 : endpoint->second.fd.get(), POLLIN, 0};
      if (endpoint != endpoints_.end() && ::poll(&poll_fd, 1, 0) == 1 && (poll_fd.revents & POLLHUP) != 0) {
        CloseEndpoint(held->second);
      } else if (endpoint != endpoints_.end()) {
        return Fail(EBUSY, peripheral->Describe() + " is already open in this app");
      }
    }
    bool uart = *kind == app::PeripheralKind::kUart;
    UniqueFd uart_device;
    if (uart) {
      auto device = backend_->OpenUart(*peripheral);
      if (!device) return OpenFailed(state.policy.component_id, *peripheral, device.error());
      uart_device = std::move(*device);
    } else {
      OpenRequest request;
      request.gpio_output = gpio_output;
      request.gpio_initial_value = initial_value;
      request.consumer = "citadel:" + state.policy.component_id;
      auto opened = backend_->Open(*peripheral, request);
      if (!opened) return OpenFailed(state.policy.component_id, *peripheral, opened.error());
    }
    // The backend holds the peripheral now: every way out below releases it.
    auto pair = MakeSocketPair(uart ? SOCK_STREAM : SOCK_SEQPACKET);
    if (!pair) {
      backend_->Close(*peripheral);
      return std::unexpected(pair.error());
    }
    auto token = Register(uart ? EndpointType::kUart : EndpointType::kPeripheral, state.policy.component_id,
                          std::move(pair->broker_end), EPOLLIN);
    if (!token) {
      backend_->Close(*peripheral);
      return std::unexpected(token.error());
    }
    Endpoint& endpoint = endpoints_[*token];
    endpoint.peripheral = *peripheral;
    endpoint.gpio_output = gpio_output;
    endpoint.backend_open = true;
    if (uart_device) {
      auto registered = RegisterUartDevice(*token, endpoint, std::move(uart_device));
      if (!registered) {
        CloseEndpoint(*token);
        return std::unexpected(registered.error());
      }
    }
    state.open_resources[resource] = *token;
    Success success;
    success.fd = std::move(pair->app_end);
    return success;
  }

  // The backend could not open a peripheral the policy grants: the app gets
  // the reason (EIO, EBUSY...), the operator a log line naming the app.
  static std::unexpected<Failure> OpenFailed(const std::string& component_id, const app::Peripheral& peripheral,
                                             const Error& error) {
    log::Warn("broker: a peripheral could not be opened",
              {{"component_id", component_id}, {"peripheral", peripheral.Describe()}, {"error", error.message()}});
    return Fail(ErrnoForBackendError(error), error.message());
  }

  Checked<Success> DeviceAuth(AppState& state, const Request& request) {
    bool sign = request.op == protocol::kOpAuthSign;
    std::string call = sign ? "DeviceAuth_SignDigest" : "DeviceAuth_GetCertificateChainPem";
    if (!state.policy.device_authentication) {
      return Deny(state.policy.component_id, call,
                  "device certificate refused: the app manifest does not grant DeviceAuthentication");
    }
    if (options_.device_auth == nullptr) {
      return Fail(EAGAIN, "the device has no certificate yet; retry after it is provisioned");
    }
    std::string tenant = options_.device_auth->TenantId();
    if (tenant != state.policy.device_authentication_tenant) {
      return Deny(state.policy.component_id, call,
                  "device certificate refused: the manifest names tenant \"" +
                      state.policy.device_authentication_tenant + "\" but the device belongs to \"" + tenant + "\"");
    }
    Success success;
    if (!sign) {
      auto chain = options_.device_auth->CertificateChainPem();
      if (!chain) return Fail(EIO, "reading the device certificate: " + chain.error().message());
      success.results["pem"] = std::move(*chain);
      return success;
    }
    auto digest_bytes = HexField(request.body, "digest", crypto::Sha256Digest{}.size());
    if (!digest_bytes) return std::unexpected(digest_bytes.error());
    crypto::Sha256Digest digest{};
    if (digest_bytes->size() != digest.size()) return Fail(EINVAL, "field \"digest\" must be 32 bytes");
    std::copy(digest_bytes->begin(), digest_bytes->end(), digest.begin());
    auto signature = options_.device_auth->SignDigest(digest);
    if (!signature) return Fail(EIO, "signing with the device key: " + signature.error().message());
    success.results["signature"] = HexEncode(*signature);
    return success;
  }

  // Creates the app's incoming-connection socket if it has none.
  Checked<void> EnsureIncoming(AppState& state) {
    if (state.incoming_broker_end) return {};
    auto pair = MakeSocketPair(SOCK_SEQPACKET);
    if (!pair) return std::unexpected(pair.error());
    int bytes = protocol::kIncomingQueueBytes;
    (void)::setsockopt(pair->broker_end.get(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    state.incoming_broker_end = std::move(pair->broker_end);
    state.incoming_app_end = std::move(pair->app_end);
    return {};
  }

  Checked<Success> Listen(AppState& state) {
    if (state.incoming_broker_end && !state.incoming_app_end) {
      // Asked again (the app closed or lost its socket): start over.
      state.incoming_broker_end.Reset();
    }
    auto ensured = EnsureIncoming(state);
    if (!ensured) return std::unexpected(ensured.error());
    Success success;
    success.fd = std::move(state.incoming_app_end);
    return success;
  }

  Checked<Success> Connect(AppState& state, const Json& body) {
    auto target = StringField(body, "target", kMaxComponentIdBytes);
    if (!target) return std::unexpected(target.error());
    const std::string& caller = state.policy.component_id;
    auto lists = [](const app::Policy& policy, std::string_view id) {
      return std::find(policy.app_connections.begin(), policy.app_connections.end(), id) !=
             policy.app_connections.end();
    };
    if (!lists(state.policy, *target)) {
      return Deny(caller, "Application_Connect",
                  "connection to " + *target + " refused: not listed in AllowedApplicationConnections");
    }
    auto peer = apps_.find(*target);
    if (peer == apps_.end()) return Fail(ECONNREFUSED, "app " + *target + " is not running");
    if (!lists(peer->second.policy, caller)) {
      return Deny(caller, "Application_Connect",
                  "connection to " + *target + " refused: its manifest does not list " + caller +
                      " in AllowedApplicationConnections");
    }
    std::array<int, 2> fds{-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0) {
      return Fail(EIO, "socketpair failed: " + ErrnoText(errno));
    }
    UniqueFd ours(fds[0]);
    UniqueFd theirs(fds[1]);
    std::string announce = Json{{"op", protocol::kIncoming}, {"from", caller}}.dump();
    // Two attempts: when the peer closed the incoming socket it was given
    // (e.g. an earlier process of it exited), the connection waits in a
    // fresh one for its next Application_Accept.
    for (int attempt = 0;; ++attempt) {
      auto ensured = EnsureIncoming(peer->second);
      if (!ensured) return std::unexpected(ensured.error());
      if (SendMessage(peer->second.incoming_broker_end.get(), announce, theirs.get())) break;
      int error_number = errno;
      if (error_number == EAGAIN || error_number == EWOULDBLOCK) {
        return Fail(EAGAIN, "app " + *target + " has too many connections waiting to be accepted");
      }
      peer->second.incoming_broker_end.Reset();
      peer->second.incoming_app_end.Reset();
      if (attempt == 1) return Fail(ECONNREFUSED, "app " + *target + " does not accept connections");
    }
    Success success;
    success.fd = std::move(ours);
    return success;
  }

  // The app's crash handler reports what it collected. Malformed: EINVAL
  // and nothing recorded. The channel decides whose crash it is.
  Checked<Success> Crash(AppState& state, const Json& body) {
    auto notice = ParseCrashNotice(body);
    if (!notice) {
      log::Warn("broker: malformed crash request",
                {{"component_id", state.policy.component_id}, {"error", notice.error().message}});
      return std::unexpected(notice.error());
    }
    notice->component_id = state.policy.component_id;
    log::Info("broker: crash reported by app", {{"component_id", notice->component_id},
                                                {"signal", std::to_string(notice->signal)},
                                                {"frames", std::to_string(notice->pcs.size())}});
    if (options_.crashes) options_.crashes(*notice);
    return Success{};
  }

  Checked<Success> SetTime(AppState& state, const Json& body) {
    if (!state.policy.system_time) {
      return Deny(state.policy.component_id, "Clock_SetSystemTime",
                  "setting the time refused: the app manifest does not grant SystemTime");
    }
    auto seconds = IntegerField(body, "seconds");
    if (!seconds) return std::unexpected(seconds.error());
    auto nanoseconds = UnsignedField(body, "nanoseconds", 999'999'999);
    if (!nanoseconds) return std::unexpected(nanoseconds.error());
    // Bound so the nanosecond arithmetic below cannot overflow.
    constexpr std::int64_t kMaxSeconds = std::int64_t{1} << 33;
    if (*seconds < 0 || *seconds > kMaxSeconds) return Fail(EINVAL, "field \"seconds\" is out of range");
    std::chrono::system_clock::time_point requested(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(*seconds) + std::chrono::nanoseconds(*nanoseconds)));
    if (auto set = backend_->SetSystemTime(requested); !set) {
      return Fail(set.error().code() == ErrorCode::kPermissionDenied ? EPERM : EIO, set.error().message());
    }
    log::Info("broker: system time set by app",
              {{"component_id", state.policy.component_id}, {"backend", std::string(backend_->name())}});
    return Success{};
  }

  // ---- peripheral handles ----------------------------------------------

  // A backend error as the app sees it; the message names the peripheral.
  static std::unexpected<Failure> BackendFailed(const Error& error) {
    return Fail(ErrnoForBackendError(error), error.message());
  }

  Checked<Success> HandleHandleRequest(const Endpoint& endpoint, const Request& request) {
    const app::Peripheral& peripheral = endpoint.peripheral;
    const std::string& op = request.op;
    const Json& body = request.body;
    Success success;
    switch (peripheral.kind) {
      case app::PeripheralKind::kGpio:
        if (op == protocol::kOpGpioSet) {
          if (!endpoint.gpio_output) return Fail(EPERM, peripheral.name + " was opened as an input");
          auto value = UnsignedField(body, "value", 1);
          if (!value) return std::unexpected(value.error());
          auto written = backend_->WriteGpio(peripheral, static_cast<int>(*value));
          if (!written) return BackendFailed(written.error());
          return success;
        }
        if (op == protocol::kOpGpioGet) {
          auto level = backend_->ReadGpio(peripheral);
          if (!level) return BackendFailed(level.error());
          success.results["value"] = *level;
          return success;
        }
        break;
      case app::PeripheralKind::kI2cMaster:
        if (op == protocol::kOpI2cTransfer) {
          auto address = UnsignedField(body, "address", 0x7F);
          if (!address) return std::unexpected(address.error());
          auto write = HexField(body, "write", protocol::kMaxTransferBytes, true);
          if (!write) return std::unexpected(write.error());
          auto read_length = UnsignedField(body, "read_length", protocol::kMaxTransferBytes);
          if (!read_length) return std::unexpected(read_length.error());
          auto data = backend_->TransferI2c(peripheral, static_cast<std::uint16_t>(*address), *write,
                                            static_cast<std::size_t>(*read_length));
          if (!data) return BackendFailed(data.error());
          success.results["data"] = HexEncode(*data);
          return success;
        }
        break;
      case app::PeripheralKind::kSpiMaster:
        if (op == protocol::kOpSpiTransfer) {
          auto length = UnsignedField(body, "length", protocol::kMaxTransferBytes);
          if (!length) return std::unexpected(length.error());
          auto tx = HexField(body, "tx", protocol::kMaxTransferBytes, true);
          if (!tx) return std::unexpected(tx.error());
          if (tx->empty()) tx->assign(static_cast<std::size_t>(*length), 0);  // no tx: the bus clocks out zeros
          if (tx->size() != *length) return Fail(EINVAL, "field \"tx\" does not have \"length\" bytes");
          auto data = backend_->TransferSpi(peripheral, *tx);
          if (!data) return BackendFailed(data.error());
          success.results["data"] = HexEncode(*data);
          return success;
        }
        break;
      case app::PeripheralKind::kPwm:
        if (op == protocol::kOpPwmApply) {
          auto period = UnsignedField(body, "period_ns", UINT32_MAX);
          if (!period) return std::unexpected(period.error());
          auto duty = UnsignedField(body, "duty_ns", UINT32_MAX);
          if (!duty) return std::unexpected(duty.error());
          auto enabled = BoolField(body, "enabled");
          if (!enabled) return std::unexpected(enabled.error());
          if (*duty > *period) return Fail(EINVAL, "the duty cycle exceeds the period");
          if (*enabled && *period == 0) return Fail(EINVAL, "an enabled PWM needs a period");
          auto applied = backend_->ConfigurePwm(
              peripheral, PwmState{static_cast<std::uint32_t>(*period), static_cast<std::uint32_t>(*duty), *enabled});
          if (!applied) return BackendFailed(applied.error());
          return success;
        }
        break;
      case app::PeripheralKind::kAdc:
        if (op == protocol::kOpAdcSample) {
          auto sample = backend_->ReadAdc(peripheral);
          if (!sample) return BackendFailed(sample.error());
          success.results["value"] = *sample;
          return success;
        }
        if (op == protocol::kOpAdcBits) {
          auto bits = backend_->AdcBits(peripheral);
          if (!bits) return BackendFailed(bits.error());
          success.results["bits"] = *bits;
          return success;
        }
        break;
      case app::PeripheralKind::kUart:
        break;
    }
    return Fail(EINVAL, "operation \"" + op + "\" is not valid on a " +
                            std::string(app::PeripheralKindName(peripheral.kind)) + " handle");
  }

  BrokerOptions options_;
  // Declared before the endpoints so it outlives them; simulated_ is
  // backend_ when the board is simulated, else null.
  std::unique_ptr<PeripheralBackend> backend_;
  SimulatedBoard* simulated_ = nullptr;
  UniqueFd epoll_;
  UniqueFd wake_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  std::mutex mutex_;  // guards everything below
  std::map<std::string, AppState, std::less<>> apps_;
  std::unordered_map<std::uint64_t, Endpoint> endpoints_;
  std::unordered_map<std::uint64_t, std::uint64_t> device_tokens_;  // UART device token -> endpoint token
  std::uint64_t next_token_ = kWakeToken + 1;
  // Receive buffer; one extra byte so an oversized message is detectable
  // even where MSG_TRUNC is not reported. Only the loop thread uses it.
  std::vector<char> buffer_ = std::vector<char>(protocol::kMaxMessageBytes + 1);
};

Expected<std::unique_ptr<Broker>> Broker::Create(BrokerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  CITADEL_TRY_VOID(impl->Start());
  return std::unique_ptr<Broker>(new Broker(std::move(impl)));
}

Broker::Broker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Broker::~Broker() = default;

Expected<UniqueFd> Broker::AddApp(const app::Policy& policy) { return impl_->AddApp(policy); }
void Broker::RemoveApp(std::string_view component_id) { impl_->RemoveApp(component_id); }
SimulatedBoard& Broker::simulated() { return impl_->simulated(); }

}  // namespace citadel::broker
