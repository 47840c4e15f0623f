#include "apps/dev_server.hpp"

#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "common/log.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

constexpr int kListenBacklog = 16;
constexpr auto kRefusalTimeout = std::chrono::seconds(1);

std::string Errno(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

Expected<sockaddr_un> UnixAddress(const fs::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string& text = path.native();
  if (text.size() >= sizeof address.sun_path) {
    return MakeError(ErrorCode::kInvalidArgument, "socket path " + text + " is longer than " +
                                                      std::to_string(sizeof address.sun_path - 1) +
                                                      " bytes; use a shorter state directory");
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

// True when a server answers on path (a live citadeld).
bool SomeoneListens(const fs::path& path) {
  auto address = UnixAddress(path);
  if (!address) return false;
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address) == 0;
}

// Binds a listening socket at `path`, 0600, without a window in which it
// exists with another mode: bound inside a fresh 0700 directory, then
// renamed into place (which also replaces a stale socket atomically).
Expected<UniqueFd> ListenPrivately(const fs::path& path) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec))) {
    if (SomeoneListens(path)) {
      return MakeError(
          ErrorCode::kAlreadyExists,
          path.string() + " is in use by another citadeld; stop it first (one runtime per state directory)");
    }
    if (!fs::is_socket(fs::symlink_status(path, ec))) {
      return MakeError(ErrorCode::kAlreadyExists, path.string() + " exists and is not a socket; move it away");
    }
  }
  std::string pattern = (path.parent_path() / ".dev-sock-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return MakeError(ErrorCode::kIo, Errno("mkdtemp " + pattern));
  fs::path private_dir = pattern;
  fs::path temporary = private_dir / "s";
  auto cleanup = [&] {
    (void)::unlink(temporary.c_str());
    (void)::rmdir(private_dir.c_str());
  };
  auto address = UnixAddress(temporary);
  if (!address) {
    cleanup();
    return std::unexpected(address.error());
  }
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener) {
    cleanup();
    return MakeError(ErrorCode::kIo, Errno("socket"));
  }
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address) != 0 ||
      ::chmod(temporary.c_str(), 0600) != 0 || ::listen(listener.get(), kListenBacklog) != 0 ||
      ::rename(temporary.c_str(), path.c_str()) != 0) {
    auto error = MakeError(ErrorCode::kIo, Errno("creating " + path.string()));
    cleanup();
    return error;
  }
  cleanup();
  return listener;
}

Json TimeJson(TimePoint time) { return FormatRfc3339(time); }

}  // namespace

// ---- DevServer --------------------------------------------------------------

DevServer::DevServer(DevServerOptions options, DevHandler handler, UniqueFd listener, UniqueFd stop_event)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      listener_(std::move(listener)),
      stop_event_(std::move(stop_event)) {}

Expected<std::unique_ptr<DevServer>> DevServer::Start(DevServerOptions options, DevHandler handler) {
  CITADEL_TRY(auto listener, ListenPrivately(options.socket_path));
  UniqueFd stop_event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_event) return MakeError(ErrorCode::kIo, Errno("eventfd"));
  std::unique_ptr<DevServer> server(
      new DevServer(std::move(options), std::move(handler), std::move(listener), std::move(stop_event)));
  server->accept_thread_ = std::thread([raw = server.get()] { raw->AcceptLoop(); });
  log::Info("development interface listening", {{"socket", server->options_.socket_path.string()}});
  return server;
}

DevServer::~DevServer() { Stop(); }

void DevServer::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  std::uint64_t one = 1;
  (void)!::write(stop_event_.get(), &one, sizeof one);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::lock_guard lock(mutex_);
  // Abort requests in flight: their reads and writes fail at once.
  for (auto& connection : connections_) (void)::shutdown(connection.fd.get(), SHUT_RDWR);
  for (auto& connection : connections_) {
    if (connection.thread.joinable()) connection.thread.join();
  }
  connections_.clear();
  (void)::unlink(options_.socket_path.c_str());
}

void DevServer::JoinFinishedLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->finished.load()) {
      if (it->thread.joinable()) it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void DevServer::AcceptLoop() {
  while (true) {
    std::array<pollfd, 2> fds{pollfd{listener_.get(), POLLIN, 0}, pollfd{stop_event_.get(), POLLIN, 0}};
    int ready = ::poll(fds.data(), fds.size(), -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      log::Error("development interface: poll failed; it stops serving", {{"error", std::strerror(errno)}});
      return;
    }
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) continue;  // the peer gave up, or a transient error (EMFILE): the next round retries

    ucred peer{};
    socklen_t length = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
        (peer.uid != 0 && peer.uid != ::geteuid())) {
      log::Warn("development interface: refused a connection from another user",
                {{"uid", std::to_string(peer.uid)}, {"pid", std::to_string(peer.pid)}});
      continue;
    }
    std::lock_guard lock(mutex_);
    JoinFinishedLocked();
    auto busy = static_cast<std::size_t>(
        std::count_if(connections_.begin(), connections_.end(), [](const Connection& c) { return !c.done.load(); }));
    // Threads still writing an answer count too, up to twice the limit.
    if (busy >= options_.max_connections || connections_.size() >= 2 * options_.max_connections) {
      auto deadline = std::chrono::steady_clock::now() + kRefusalTimeout;
      (void)WriteFrame(
          fd.get(),
          DevErrorResponse(Error(ErrorCode::kUnavailable, "the device is busy with " + std::to_string(busy) +
                                                              " other development requests; try again"))
              .dump(),
          deadline);
      continue;
    }
    auto& connection = connections_.emplace_back();
    connection.fd = std::move(fd);
    connection.thread = std::thread([this, &connection] {
      Serve(connection);
      connection.finished.store(true);
    });
  }
}

void DevServer::Serve(Connection& connection) {
  int fd = connection.fd.get();
  auto respond = [&](const Json& document) {
    // The request is handled: the slot is free for the client's next
    // request, which may arrive before this answer's last byte is written.
    connection.done.store(true);
    auto deadline = std::chrono::steady_clock::now() + options_.header_timeout;
    (void)WriteFrame(fd, document.dump(-1, ' ', false, Json::error_handler_t::replace), deadline);
    (void)::shutdown(fd, SHUT_RDWR);
  };
  auto refuse = [&](const Error& error) {
    log::Warn("development interface: bad request", {{"reason", error.message()}});
    respond(DevErrorResponse(error));
  };

  auto header_deadline = std::chrono::steady_clock::now() + options_.header_timeout;
  auto header_text = ReadFrame(fd, options_.max_header_bytes, header_deadline);
  if (!header_text) return refuse(header_text.error().Wrap("request header"));
  auto header = ParseJsonStrict(*header_text);
  if (!header) return refuse(header.error().Wrap("request header is not valid JSON"));
  auto op = header->is_object() ? header->find("op") : header->end();
  if (!header->is_object() || op == header->end() || !op->is_string()) {
    return refuse(Error(ErrorCode::kParse, "request header must be a JSON object with a string \"op\""));
  }

  Bytes body;
  if (DevOpHasBody(op->get<std::string>())) {
    std::array<std::uint8_t, 8> prefix{};
    if (auto read = ReadExact(fd, prefix, header_deadline); !read) return refuse(read.error().Wrap("body length"));
    std::uint64_t length = 0;
    for (auto byte : prefix) length = (length << 8) | byte;
    if (length > options_.max_body_bytes) {
      return refuse(Error(ErrorCode::kTooLarge, "body of " + std::to_string(length) + " bytes exceeds the limit of " +
                                                    std::to_string(options_.max_body_bytes) + " bytes"));
    }
    body.resize(static_cast<std::size_t>(length));
    auto body_deadline = std::chrono::steady_clock::now() + options_.body_timeout;
    if (auto read = ReadExact(fd, body, body_deadline); !read) return refuse(read.error().Wrap("body"));
  }
  respond(handler_(*header, body));
}

// ---- DevApi -----------------------------------------------------------------

Json AppStatusJson(const AppStatus& status) {
  Json json{{"component_id", status.app.component_id},
            {"name", status.app.name},
            {"version", status.app.version},
            {"security_version", status.app.security_version},
            {"on_trial", status.on_trial},
            {"state", RunStateName(status.state)},
            {"desired", DesiredStateName(status.app.desired)},
            {"digest", status.app.digest},
            {"image_signer", status.app.image_signer},
            {"sideloaded", status.app.sideloaded},
            {"slot", status.app.slot},
            {"uid", AppUid(status.app.slot)},
            {"installed_at", status.app.installed_at},
            {"restarts", status.restarts},
            {"last_exit", status.last_exit},
            {"violations", status.violations},
            {"problem", status.problem}};
  json["pid"] = status.pid > 0 ? Json(status.pid) : Json(nullptr);
  json["started_at"] = status.started_at ? TimeJson(*status.started_at) : Json(nullptr);
  json["next_restart_ms"] = status.state == RunState::kBackoff ? Json(status.next_restart_in.count()) : Json(nullptr);
  return json;
}

Json DevApi::Handle(const Json& header, std::span<const std::uint8_t> body) {
  try {
    auto result = Dispatch(header, body);
    if (!result) return DevErrorResponse(result.error());
    return DevOkResponse(std::move(*result));
  } catch (const Json::exception& error) {
    // A field of the wrong type (e.g. "lines": "ten").
    return DevErrorResponse(Error(ErrorCode::kInvalidArgument, std::string("malformed request: ") + error.what()));
  }
}

Expected<Json> DevApi::Dispatch(const Json& header, std::span<const std::uint8_t> body) {
  const std::string op = header.at("op").get<std::string>();
  auto app_argument = [&]() -> Expected<std::string> {
    auto it = header.find("app");
    if (it == header.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
      return MakeError(ErrorCode::kInvalidArgument, op + " needs \"app\": the app's name or component id");
    }
    return it->get<std::string>();
  };

  if (op == "app-list") {
    Json apps = Json::array();
    for (const auto& status : manager_.List()) apps.push_back(AppStatusJson(status));
    return Json{{"apps", std::move(apps)}};
  }
  if (op == "app-start" || op == "app-stop") {
    CITADEL_TRY(auto app, app_argument());
    CITADEL_TRY(auto status, op == "app-start" ? manager_.Start(app) : manager_.Stop(app));
    return AppStatusJson(status);
  }
  if (op == "app-remove") {
    CITADEL_TRY(auto app, app_argument());
    CITADEL_TRY(auto status, manager_.Status(app));
    CITADEL_TRY_VOID(manager_.Remove(app));
    return Json{{"removed", status.app.component_id}, {"name", status.app.name}};
  }
  if (op == "app-logs") {
    CITADEL_TRY(auto app, app_argument());
    std::size_t count = header.value("lines", std::size_t{50});
    count = std::min(count, kMaxLogLinesPerRequest);
    CITADEL_TRY(auto status, manager_.Status(app));
    CITADEL_TRY(auto lines, manager_.Logs(app, count));
    CITADEL_TRY(auto violations, manager_.Violations(app));
    Json json_lines = Json::array();
    for (const auto& line : lines) json_lines.push_back({{"time", TimeJson(line.time)}, {"text", line.text}});
    Json json_violations = Json::array();
    for (const auto& violation : violations) {
      json_violations.push_back(
          {{"time", TimeJson(violation.time)}, {"syscall", violation.syscall}, {"detail", violation.detail}});
    }
    return Json{
        {"app", AppStatusJson(status)}, {"lines", std::move(json_lines)}, {"violations", std::move(json_violations)}};
  }
  if (op == "sideload" || op == "app-install") {
    auto source = op == "sideload" ? InstallSource::kSideload : InstallSource::kTenant;
    CITADEL_TRY(auto installed, manager_.Install(body, op == "sideload" ? "sideloaded image" : "image", source));
    if (header.value("start", true)) CITADEL_TRY_VOID(manager_.Start(installed.component_id));
    CITADEL_TRY(auto status, manager_.Status(installed.component_id));
    return AppStatusJson(status);
  }
  if (op == "apply-capability") {
    CITADEL_TRY(auto grant, trust_.ApplyDevelopmentCapability(AsText(body)));
    return Json{{"capability_id", grant.capability_id},
                {"device_id", grant.device_id},
                {"tenant_id", grant.tenant_id},
                {"issued_at", grant.issued_at},
                {"developer_keys", grant.developer_keys.size()}};
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown op \"" + op +
                       "\"; known: sideload, app-install, apply-capability, app-list, app-start, app-stop, "
                       "app-remove, app-logs");
}

}  // namespace citadel::apps
