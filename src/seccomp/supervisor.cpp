#include "seccomp/supervisor.hpp"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <seccomp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/fd_passing.hpp"
#include "common/log.hpp"

namespace citadel::seccomp {
namespace {

using Clock = std::chrono::steady_clock;

// Internal results carry the errno the app's syscall should fail with.
template <typename T>
using ErrnoOr = std::expected<T, int>;

constexpr std::uint64_t kWakeKey = 0;
constexpr std::uint64_t kPendingConnectBit = std::uint64_t{1} << 63;
// pidfd_open(tid, PIDFD_THREAD) (Linux 6.9) accepts a thread id; glibc
// 2.36's headers predate it.
constexpr unsigned kPidfdThread = O_EXCL;

// Raw syscalls: glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++.
int PidfdOpen(int pid, unsigned flags) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)); }

struct AppEntry {
  std::string component_id;
  int pid = -1;
  UniqueFd notify_fd;
  NetworkRules rules;
  std::atomic<bool> removed{false};

  // Whether a connect() or bind() can give the app a UDP socket in the
  // device's network (its filter then refuses addressed sends, see
  // DeniedFeature::kAddressedSends).
  bool MayHoldDeviceDatagramSockets() const {
    return !rules.allowed_addresses.empty() || !rules.udp_server_ports.empty();
  }
};

// The app's socket, seen through a duplicate of its descriptor.
struct TargetSocket {
  UniqueFd fd;  // same open file description as the app's
  int domain = 0, type = 0, protocol = 0;
  bool nonblocking = false;
  bool cloexec = false;
};

// A proxied blocking connect waiting for the handshake, on the Supervisor
// thread's epoll.
struct PendingConnect {
  std::shared_ptr<AppEntry> app;
  std::uint64_t notification_id = 0;
  int target_fd = -1;
  UniqueFd socket;
  bool cloexec = false;
  Clock::time_point deadline;
};

std::string SyscallName(const seccomp_data& data) {
  char* name = seccomp_syscall_resolve_num_arch(data.arch, data.nr);
  if (name == nullptr) return "syscall " + std::to_string(data.nr);
  std::string result(name);
  std::free(name);  // NOLINT(cppcoreguidelines-no-malloc): libseccomp allocates with malloc
  return result;
}

std::string FamilyName(std::uint64_t family) {
  switch (family) {
    case AF_UNIX:
      return "AF_UNIX";
    case AF_INET:
      return "AF_INET";
    case AF_INET6:
      return "AF_INET6";
    case AF_NETLINK:
      return "AF_NETLINK";
    case AF_PACKET:
      return "AF_PACKET";
    case AF_BLUETOOTH:
      return "AF_BLUETOOTH";
    case AF_CAN:
      return "AF_CAN";
    case AF_VSOCK:
      return "AF_VSOCK";
    case AF_ALG:
      return "AF_ALG";
    default:
      return "family " + std::to_string(family);
  }
}

std::string TypeName(std::uint64_t type) {
  switch (type & 0xf) {
    case SOCK_STREAM:
      return "SOCK_STREAM";
    case SOCK_DGRAM:
      return "SOCK_DGRAM";
    case SOCK_RAW:
      return "SOCK_RAW";
    case SOCK_SEQPACKET:
      return "SOCK_SEQPACKET";
    case SOCK_PACKET:
      return "SOCK_PACKET";
    default:
      return "type " + std::to_string(type & 0xf);
  }
}

std::string ProtName(std::uint64_t prot) {
  std::string text = (prot & PROT_READ) != 0 ? "PROT_READ" : "";
  for (auto [bit, name] : {std::pair{PROT_WRITE, "PROT_WRITE"}, std::pair{PROT_EXEC, "PROT_EXEC"}}) {
    if ((prot & static_cast<std::uint64_t>(bit)) == 0) continue;
    if (!text.empty()) text += '|';
    text += name;
  }
  return text.empty() ? "PROT_NONE" : text;
}

// Why socket() was notified, in words.
std::string SocketDetail(const seccomp_data& data) {
  std::uint64_t family = data.args[0], type = data.args[1] & 0xf;
  std::string call = fmt::format("socket({}, {}, {})", FamilyName(family), TypeName(type), data.args[2]);
  if (family == AF_PACKET || type == SOCK_RAW || type == SOCK_PACKET)
    return call + ": raw and packet sockets are not allowed";
  if ((family == AF_INET || family == AF_INET6) && (type == SOCK_STREAM || type == SOCK_DGRAM)) {
    return call +
           ": the app has no network capability (AllowedConnections, AllowedTcpServerPorts, "
           "AllowedUdpServerPorts)";
  }
  return call + ": this kind of socket is not allowed";
}

std::string DeniedDetail(const DeniedSyscall& denied, const seccomp_data& data) {
  switch (denied.when) {
    case DenyWhen::kWriteAndExecute:
      return fmt::format("{}(prot={}): {}", denied.name, ProtName(data.args[2]), denied.reason);
    case DenyWhen::kNewNamespace:
      return fmt::format("{}(flags={:#x}): {}", denied.name, data.args[0], denied.reason);
    case DenyWhen::kPersonalityChange:
      return fmt::format("{}({:#x}): {}", denied.name, data.args[0], denied.reason);
    case DenyWhen::kAlways:
    case DenyWhen::kFastOpen:
      break;
  }
  return fmt::format("{}: {}", denied.name, denied.reason);
}

// Whether the app's descriptor is close-on-exec: only /proc shows the
// descriptor flags of another process ("flags:" in octal, O_CLOEXEC bit).
bool ReadCloexec(int tid, int fd) {
  std::ifstream fdinfo(fmt::format("/proc/{}/fdinfo/{}", tid, fd));
  std::string key;
  std::string value;
  while (fdinfo >> key >> value) {
    if (key == "flags:") return (std::strtoul(value.c_str(), nullptr, 8) & O_CLOEXEC) != 0;
  }
  return true;  // unknown: not leaking a network socket into an exec'd program is the safe side
}

int GetIntOption(int fd, int level, int name) {
  int value = 0;
  socklen_t length = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &length) != 0) return -1;
  return value;
}

void ClearNonBlocking(int fd) {
  int status = ::fcntl(fd, F_GETFL);
  if (status >= 0) (void)::fcntl(fd, F_SETFL, status & ~O_NONBLOCK);
}

// Options an app commonly sets before connect()/bind() that its socket
// would lose when replaced. SO_REUSEPORT is not copied: every proxied socket
// belongs to citadeld, so it would let apps share each other's ports.
void CopySocketOptions(const TargetSocket& from, int to) {
  struct Option {
    int level, name;
    bool applies;
  };
  const Option options[] = {
      {SOL_SOCKET, SO_KEEPALIVE, true},
      {SOL_SOCKET, SO_BROADCAST, from.type == SOCK_DGRAM},
      {IPPROTO_TCP, TCP_NODELAY, from.type == SOCK_STREAM},
      {IPPROTO_IPV6, IPV6_V6ONLY, from.domain == AF_INET6},
  };
  for (const Option& option : options) {
    if (!option.applies) continue;
    int value = GetIntOption(from.fd.get(), option.level, option.name);
    if (value >= 0) (void)::setsockopt(to, option.level, option.name, &value, sizeof(value));
  }
}

}  // namespace

struct Supervisor::State {
  explicit State(ViolationSink violation_sink) : sink(std::move(violation_sink)) {}

  ViolationSink sink;
  std::optional<Error> init_error;
  UniqueFd epoll;
  UniqueFd wake;  // eventfd: stop, or an app was removed
  std::atomic<bool> stop{false};

  std::mutex mutex;  // guards apps and next_key
  std::map<std::uint64_t, std::shared_ptr<AppEntry>> apps;
  std::uint64_t next_key = 1;

  // Owned by the thread.
  std::map<std::uint64_t, PendingConnect> pending;
  std::uint64_t next_pending = 1;
  std::vector<std::byte> request_buffer, response_buffer;
  std::thread thread;

  Expected<void> Init();
  void Wake() const {
    std::uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof(one));
  }
  std::shared_ptr<AppEntry> FindApp(std::uint64_t key) {
    std::lock_guard lock(mutex);
    auto it = apps.find(key);
    return it == apps.end() ? nullptr : it->second;
  }

  void Run();
  void HandleNotification(const std::shared_ptr<AppEntry>& app);
  void HandleConnect(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request);
  void HandleBind(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request);
  void HandleSendtoWithAddress(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request);
  void RefuseUnixConnect(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request);
  void HandleMessageSend(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request, const std::string& name);
  void FinishPendingConnect(std::uint64_t key, bool timed_out);
  void DropPendingConnects(bool only_removed_apps);
  int NextTimeoutMs() const;

  ErrnoOr<TargetSocket> InspectTargetSocket(const AppEntry& app, const seccomp_notif& request) const;
  ErrnoOr<std::vector<std::byte>> ReadSocketAddress(const AppEntry& app, const seccomp_notif& request) const;
  void Install(const AppEntry& app, std::uint64_t id, int target_fd, const UniqueFd& socket, bool cloexec,
               int result_error);

  void Respond(const AppEntry& app, std::uint64_t id, int error, std::uint32_t flags = 0);
  void Deny(const AppEntry& app, std::uint64_t id, int error, std::string syscall, std::string detail);
};

Expected<void> Supervisor::State::Init() {
  seccomp_notif_sizes sizes{};
  if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("the kernel has no seccomp user notification ({}); Linux >= 5.0 is required",
                                 std::strerror(errno)));
  }
  request_buffer.resize(std::max<std::size_t>(sizes.seccomp_notif, sizeof(seccomp_notif)));
  response_buffer.resize(std::max<std::size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp)));
  epoll.Reset(::epoll_create1(EPOLL_CLOEXEC));
  wake.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll || !wake) {
    return MakeError(ErrorCode::kIo, fmt::format("creating the supervisor's epoll/eventfd: {}", std::strerror(errno)));
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeKey;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &event) != 0) {
    return MakeError(ErrorCode::kIo, fmt::format("watching the supervisor's eventfd: {}", std::strerror(errno)));
  }
  return kOk;
}

void Supervisor::State::Respond(const AppEntry& app, std::uint64_t id, int error, std::uint32_t flags) {
  std::ranges::fill(response_buffer, std::byte{0});
  seccomp_notif_resp response{};
  response.id = id;
  response.val = 0;
  response.error = -error;
  response.flags = flags;
  std::memcpy(response_buffer.data(), &response, sizeof(response));
  if (::ioctl(app.notify_fd.get(), SECCOMP_IOCTL_NOTIF_SEND, response_buffer.data()) != 0) {
    // ENOENT: the syscall was interrupted or the process died meanwhile.
    log::Debug("seccomp response not delivered", {{"component", app.component_id}, {"error", std::strerror(errno)}});
  }
}

void Supervisor::State::Deny(const AppEntry& app, std::uint64_t id, int error, std::string syscall,
                             std::string detail) {
  log::Warn("syscall denied", {{"component", app.component_id}, {"syscall", syscall}, {"detail", detail}});
  if (sink) sink(Violation{app.component_id, std::move(syscall), std::move(detail)});
  Respond(app, id, error);
}

ErrnoOr<TargetSocket> Supervisor::State::InspectTargetSocket(const AppEntry& app, const seccomp_notif& request) const {
  const int tid = static_cast<int>(request.pid);
  const int fd_number = static_cast<int>(request.data.args[0]);
  if (request.data.args[0] > static_cast<std::uint64_t>(INT32_MAX)) return std::unexpected(EBADF);
  UniqueFd pidfd(PidfdOpen(tid, kPidfdThread));
  if (!pidfd && errno == EINVAL) pidfd.Reset(PidfdOpen(tid, 0));
  if (!pidfd) return std::unexpected(ESRCH);
  // The pidfd names the notifying task only if the notification is still
  // pending after it was opened (the tid cannot have been reused before).
  if (::ioctl(app.notify_fd.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &request.id) != 0) return std::unexpected(ESRCH);

  TargetSocket target;
  target.fd.Reset(CopyFdFromProcess(pidfd.get(), fd_number));
  if (!target.fd) return std::unexpected(errno == EBADF ? EBADF : EPERM);
  target.domain = GetIntOption(target.fd.get(), SOL_SOCKET, SO_DOMAIN);
  target.type = GetIntOption(target.fd.get(), SOL_SOCKET, SO_TYPE);
  target.protocol = GetIntOption(target.fd.get(), SOL_SOCKET, SO_PROTOCOL);
  if (target.domain < 0 || target.type < 0 || target.protocol < 0) return std::unexpected(ENOTSOCK);
  int status = ::fcntl(target.fd.get(), F_GETFL);
  target.nonblocking = status >= 0 && (status & O_NONBLOCK) != 0;
  target.cloexec = ReadCloexec(tid, fd_number);
  return target;
}

// Copies the socket address (args[1], length args[2]) out of the app, then
// confirms the notification is still pending so the bytes came from the
// task that made the syscall.
ErrnoOr<std::vector<std::byte>> Supervisor::State::ReadSocketAddress(const AppEntry& app,
                                                                     const seccomp_notif& request) const {
  std::uint64_t length = request.data.args[2];
  if (length < sizeof(sa_family_t) || length > sizeof(sockaddr_storage)) return std::unexpected(EINVAL);
  std::vector<std::byte> bytes(length);
  iovec local{bytes.data(), bytes.size()};
  // The address is app-controlled data, only ever copied.
  iovec remote{reinterpret_cast<void*>(request.data.args[1]), bytes.size()};  // NOLINT(performance-no-int-to-ptr)
  ssize_t copied = ::process_vm_readv(static_cast<pid_t>(request.pid), &local, 1, &remote, 1, 0);
  if (copied != static_cast<ssize_t>(bytes.size())) return std::unexpected(EFAULT);
  if (::ioctl(app.notify_fd.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &request.id) != 0) return std::unexpected(ESRCH);
  return bytes;
}

// Puts our socket at the app's descriptor number, then completes the
// syscall with result_error (0 or EINPROGRESS).
void Supervisor::State::Install(const AppEntry& app, std::uint64_t id, int target_fd, const UniqueFd& socket,
                                bool cloexec, int result_error) {
  seccomp_notif_addfd addfd{};
  addfd.id = id;
  addfd.flags = SECCOMP_ADDFD_FLAG_SETFD;
  addfd.srcfd = static_cast<std::uint32_t>(socket.get());
  addfd.newfd = static_cast<std::uint32_t>(target_fd);
  addfd.newfd_flags = cloexec ? O_CLOEXEC : 0;
  if (::ioctl(app.notify_fd.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) < 0) {
    int error = errno;
    if (error == ENOENT) return;  // the syscall is gone; nothing to answer
    Respond(app, id, error);
    return;
  }
  Respond(app, id, result_error);
}

void Supervisor::State::HandleConnect(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request) {
  auto target = InspectTargetSocket(*app, request);
  if (!target) return Respond(*app, request.id, target.error());
  if (target->domain != AF_INET && target->domain != AF_INET6) {
    // Letting the call continue is safe only while no descriptor of the app
    // can be a device-network datagram socket: between this check and the
    // call a second thread may dup2() one over the number and rewrite the
    // address.
    if (!app->MayHoldDeviceDatagramSockets()) return Respond(*app, request.id, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
    return RefuseUnixConnect(app, request);
  }
  auto bytes = ReadSocketAddress(*app, request);
  if (!bytes) return Respond(*app, request.id, bytes.error());

  sa_family_t family = AF_UNSPEC;
  std::memcpy(&family, bytes->data(), sizeof(family));
  if (family == AF_UNSPEC) {
    // Dissolving an association reaches nobody: do it on the app's own
    // socket (our duplicate shares it) rather than resuming the syscall.
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    int rc = ::connect(target->fd.get(), &unspec, sizeof(unspec));
    return Respond(*app, request.id, rc == 0 ? 0 : errno);
  }
  auto address = ParseSocketAddress(*bytes);
  if (!address) return Respond(*app, request.id, EINVAL);
  if (address->family != target->domain) return Respond(*app, request.id, EAFNOSUPPORT);

  Decision decision = CheckConnect(app->rules, *address);
  if (!decision.allowed) return Deny(*app, request.id, EACCES, "connect", decision.detail);

  UniqueFd own(::socket(target->domain, target->type | SOCK_NONBLOCK | SOCK_CLOEXEC, target->protocol));
  if (!own) return Respond(*app, request.id, errno);
  CopySocketOptions(*target, own.get());
  const int target_fd = static_cast<int>(request.data.args[0]);
  if (::connect(own.get(), reinterpret_cast<const sockaddr*>(bytes->data()), static_cast<socklen_t>(bytes->size())) ==
      0) {
    if (!target->nonblocking) ClearNonBlocking(own.get());
    return Install(*app, request.id, target_fd, own, target->cloexec, 0);
  }
  if (errno != EINPROGRESS) return Respond(*app, request.id, errno);
  if (target->nonblocking) {
    // As the kernel would: hand over the socket now, the app polls for it.
    return Install(*app, request.id, target_fd, own, target->cloexec, EINPROGRESS);
  }

  const std::uint64_t key = kPendingConnectBit | next_pending++;
  epoll_event event{};
  event.events = EPOLLOUT;
  event.data.u64 = key;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, own.get(), &event) != 0) return Respond(*app, request.id, errno);
  pending.emplace(
      key, PendingConnect{app, request.id, target_fd, std::move(own), target->cloexec, Clock::now() + kConnectTimeout});
}

void Supervisor::State::FinishPendingConnect(std::uint64_t key, bool timed_out) {
  auto it = pending.find(key);
  if (it == pending.end()) return;
  PendingConnect connect = std::move(it->second);
  pending.erase(it);
  (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, connect.socket.get(), nullptr);
  if (connect.app->removed) return;
  if (timed_out) return Respond(*connect.app, connect.notification_id, ETIMEDOUT);
  int error = GetIntOption(connect.socket.get(), SOL_SOCKET, SO_ERROR);
  if (error != 0) return Respond(*connect.app, connect.notification_id, error < 0 ? EIO : error);
  ClearNonBlocking(connect.socket.get());  // the app's socket was blocking
  Install(*connect.app, connect.notification_id, connect.target_fd, connect.socket, connect.cloexec, 0);
}

void Supervisor::State::HandleBind(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request) {
  auto target = InspectTargetSocket(*app, request);
  if (!target) return Respond(*app, request.id, target.error());
  if (target->domain != AF_INET && target->domain != AF_INET6) {
    return Respond(*app, request.id, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
  }
  auto bytes = ReadSocketAddress(*app, request);
  if (!bytes) return Respond(*app, request.id, bytes.error());
  auto address = ParseSocketAddress(*bytes);
  if (!address) return Respond(*app, request.id, EINVAL);
  if (address->family != target->domain) return Respond(*app, request.id, EAFNOSUPPORT);

  Decision decision = CheckBind(app->rules, *address, target->type);
  if (!decision.allowed) return Deny(*app, request.id, EACCES, "bind", decision.detail);

  int status = target->nonblocking ? SOCK_NONBLOCK : 0;
  UniqueFd own(::socket(target->domain, target->type | status | SOCK_CLOEXEC, target->protocol));
  if (!own) return Respond(*app, request.id, errno);
  CopySocketOptions(*target, own.get());
  if (target->type == SOCK_STREAM) {
    // A restarted server must get its port back while old connections sit
    // in TIME_WAIT. Not for UDP: there it would let two sockets share a port.
    int one = 1;
    (void)::setsockopt(own.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  if (::bind(own.get(), reinterpret_cast<const sockaddr*>(bytes->data()), static_cast<socklen_t>(bytes->size())) != 0) {
    return Respond(*app, request.id, errno);
  }
  Install(*app, request.id, static_cast<int>(request.data.args[0]), own, target->cloexec, 0);
}

void Supervisor::State::HandleSendtoWithAddress(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request) {
  auto target = InspectTargetSocket(*app, request);
  if (!target) return Respond(*app, request.id, target.error());
  // Letting the call continue is safe only while no descriptor of the app
  // can be a device-network datagram socket: between this check and the
  // call a second thread may dup2() another socket over the number.
  if (target->domain == AF_UNIX && !app->MayHoldDeviceDatagramSockets()) {
    return Respond(*app, request.id, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
  }
  if (target->domain == AF_UNIX) {
    return Deny(*app, request.id, EACCES, "sendto",
                "sendto with an address is refused to apps with AllowedConnections or AllowedUdpServerPorts, "
                "also on unix sockets (the descriptor could be swapped for a UDP socket mid-call); connect() the "
                "socket and use send()");
  }
  seccomp_notif address_request = request;  // sendto's address is args[4], length args[5]
  address_request.data.args[1] = request.data.args[4];
  address_request.data.args[2] = request.data.args[5];
  auto bytes = ReadSocketAddress(*app, address_request);
  std::string where = "an address";
  if (bytes) {
    if (auto address = ParseSocketAddress(*bytes)) where = address->ToString();
  }
  Deny(*app, request.id, EACCES, "sendto",
       fmt::format("sendto {} on an {} socket (datagrams must connect() to an allowed address first)", where,
                   FamilyName(static_cast<std::uint64_t>(target->domain))));
}

void Supervisor::State::RefuseUnixConnect(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request) {
  auto bytes = ReadSocketAddress(*app, request);
  if (!bytes) return Respond(*app, request.id, bytes.error());
  std::string path;
  if (bytes->size() > offsetof(sockaddr_un, sun_path)) {
    const auto* text = reinterpret_cast<const char*>(bytes->data()) + offsetof(sockaddr_un, sun_path);
    path.assign(text, strnlen(text, bytes->size() - offsetof(sockaddr_un, sun_path)));
  }
  if (!path.empty()) {
    // A path that does not exist in the app's view fails as it would have
    // (glibc probes the nscd socket on every name lookup): no report.
    UniqueFd root(::open(fmt::format("/proc/{}/root", request.pid).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd found(root ? static_cast<int>(::syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof how)) : -1);
    if (root && !found && errno == ENOENT) return Respond(*app, request.id, ENOENT);
  }
  Deny(*app, request.id, EACCES, "connect",
       fmt::format("connect to the unix socket {} is refused to apps with AllowedConnections or "
                   "AllowedUdpServerPorts (use Application_Connect to reach another app)",
                   path.empty() ? std::string("(abstract or unnamed)") : "\"" + path + "\""));
}

void Supervisor::State::HandleMessageSend(const std::shared_ptr<AppEntry>& app, const seccomp_notif& request,
                                          const std::string& name) {
  // The filter notifies sendmsg/sendmmsg only with MSG_FASTOPEN or when the
  // policy denies addressed sends; the flags are the last argument.
  std::uint64_t flags = request.data.args[name == "sendmsg" ? 2 : 3];
  if ((flags & MSG_FASTOPEN) != 0) {
    return Deny(*app, request.id, EACCES, name, fmt::format("{}: TCP Fast Open (connect() first)", name));
  }
  Deny(*app, request.id, EACCES, name,
       fmt::format("{} is refused to apps with AllowedConnections or AllowedUdpServerPorts: a datagram's "
                   "destination in the app's memory cannot be checked safely; use send() or write() on a socket "
                   "connected to an allowed address",
                   name));
}

void Supervisor::State::HandleNotification(const std::shared_ptr<AppEntry>& app) {
  std::ranges::fill(request_buffer, std::byte{0});
  if (::ioctl(app->notify_fd.get(), SECCOMP_IOCTL_NOTIF_RECV, request_buffer.data()) != 0) {
    return;  // ENOENT: the notifying syscall was interrupted before we read it
  }
  seccomp_notif request{};
  std::memcpy(&request, request_buffer.data(), sizeof(request));
  const std::string name = SyscallName(request.data);

  if (name == "connect") return HandleConnect(app, request);
  if (name == "bind") return HandleBind(app, request);
  if (name == "sendto" && request.data.args[4] != 0) return HandleSendtoWithAddress(app, request);
  if (name == "sendmsg" || name == "sendmmsg") return HandleMessageSend(app, request, name);
  if (name == "socket") return Deny(*app, request.id, EACCES, name, SocketDetail(request.data));
  if (auto denied = FindDeniedSyscall(name)) {
    return Deny(*app, request.id, denied->error, name, DeniedDetail(*denied, request.data));
  }
  // The filter notified something this table does not know: a bug, refused.
  log::Error("seccomp notification for a syscall without a rule",
             {{"component", app->component_id}, {"syscall", name}});
  Respond(*app, request.id, ENOSYS);
}

void Supervisor::State::DropPendingConnects(bool only_removed_apps) {
  for (auto it = pending.begin(); it != pending.end();) {
    if (only_removed_apps && !it->second.app->removed) {
      ++it;
      continue;
    }
    (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.socket.get(), nullptr);
    it = pending.erase(it);
  }
}

int Supervisor::State::NextTimeoutMs() const {
  if (pending.empty()) return -1;
  Clock::time_point earliest = Clock::time_point::max();
  for (const auto& [key, connect] : pending) earliest = std::min(earliest, connect.deadline);
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(earliest - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(wait, 0, 1000));
}

void Supervisor::State::Run() {
  constexpr int kMaxEvents = 16;
  epoll_event events[kMaxEvents];
  while (!stop) {
    int count = ::epoll_wait(epoll.get(), events, kMaxEvents, NextTimeoutMs());
    if (count < 0 && errno != EINTR) {
      log::Error("seccomp supervisor: epoll_wait failed", {{"error", std::strerror(errno)}});
      return;
    }
    for (int i = 0; i < count; ++i) {
      const epoll_event& event = events[i];
      if (event.data.u64 == kWakeKey) {
        std::uint64_t ignored = 0;
        (void)!::read(wake.get(), &ignored, sizeof(ignored));
        DropPendingConnects(/*only_removed_apps=*/true);
        continue;
      }
      if ((event.data.u64 & kPendingConnectBit) != 0) {
        FinishPendingConnect(event.data.u64, /*timed_out=*/false);
        continue;
      }
      std::shared_ptr<AppEntry> app = FindApp(event.data.u64);
      if (!app) continue;  // removed after epoll_wait returned
      if ((event.events & EPOLLIN) != 0) {
        HandleNotification(app);
      } else if ((event.events & (EPOLLHUP | EPOLLERR)) != 0) {
        // Every process of the app is gone; stop polling until Remove.
        (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, app->notify_fd.get(), nullptr);
      }
    }
    const Clock::time_point now = Clock::now();
    std::vector<std::uint64_t> expired;
    for (const auto& [key, connect] : pending) {
      if (connect.deadline <= now) expired.push_back(key);
    }
    for (std::uint64_t key : expired) FinishPendingConnect(key, /*timed_out=*/true);
  }
  DropPendingConnects(/*only_removed_apps=*/false);
}

Supervisor::Supervisor(ViolationSink sink) : state_(std::make_unique<State>(std::move(sink))) {
  if (auto ready = state_->Init(); !ready) {
    state_->init_error = ready.error();
    return;
  }
  state_->thread = std::thread([state = state_.get()] { state->Run(); });
}

Supervisor::~Supervisor() {
  state_->stop = true;
  if (state_->wake) state_->Wake();
  if (state_->thread.joinable()) state_->thread.join();
}

Expected<void> Supervisor::Add(std::string component_id, int pid, UniqueFd notify_fd, NetworkRules rules) {
  if (state_->init_error) return std::unexpected(*state_->init_error);
  if (!notify_fd) return MakeError(ErrorCode::kInvalidArgument, "no seccomp listener fd for " + component_id);
  auto app = std::make_shared<AppEntry>();
  app->component_id = std::move(component_id);
  app->pid = pid;
  app->notify_fd = std::move(notify_fd);
  app->rules = std::move(rules);

  std::lock_guard lock(state_->mutex);
  for (const auto& [key, existing] : state_->apps) {
    if (existing->component_id == app->component_id) {
      return MakeError(ErrorCode::kAlreadyExists, "app " + app->component_id + " is already supervised");
    }
  }
  const std::uint64_t key = state_->next_key++;
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = key;
  if (::epoll_ctl(state_->epoll.get(), EPOLL_CTL_ADD, app->notify_fd.get(), &event) != 0) {
    return MakeError(ErrorCode::kIo,
                     fmt::format("watching the seccomp listener of {}: {}", app->component_id, std::strerror(errno)));
  }
  log::Debug("supervising app", {{"component", app->component_id}, {"pid", std::to_string(pid)}});
  state_->apps.emplace(key, std::move(app));
  return kOk;
}

void Supervisor::Remove(std::string_view component_id) {
  std::shared_ptr<AppEntry> removed;
  {
    std::lock_guard lock(state_->mutex);
    auto it = std::ranges::find_if(state_->apps,
                                   [&](const auto& entry) { return entry.second->component_id == component_id; });
    if (it == state_->apps.end()) return;
    removed = std::move(it->second);
    state_->apps.erase(it);
  }
  removed->removed = true;
  (void)::epoll_ctl(state_->epoll.get(), EPOLL_CTL_DEL, removed->notify_fd.get(), nullptr);
  state_->Wake();  // drops its pending connects, the last references
}

}  // namespace citadel::seccomp
