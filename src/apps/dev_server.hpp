// The local development interface: a unix stream socket (STATE/dev.sock,
// mode 0600, root only) over which `citadel device ...` sideloads, installs
// and manages apps and applies a development capability. Wire format:
// dev_protocol.hpp. DevServer does the socket, framing and bounds; DevApi
// maps the operations onto the AppManager and the TrustSource.
//
// Security contract: the socket is bound in a private 0700 directory,
// chmod'ed 0600 and renamed into place, so at no moment can another user
// connect; peers whose uid is neither root nor citadeld's are refused
// (SO_PEERCRED). A stale socket is replaced only when nothing answers on
// it. Sideloads are refused unless a valid development capability is
// stored (AppStore). Headers, bodies, the number of connections and the
// time each may take are bounded; a malformed or oversized request gets an
// error answer, its connection is closed, and the server keeps serving.
//
// Threading: one accept thread plus one thread per connection (at most
// max_connections). The handler is called from connection threads
// concurrently. Stop() (and the destructor) removes the socket, aborts
// connections and joins every thread.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "apps/app_manager.hpp"
#include "apps/dev_protocol.hpp"
#include "apps/trust.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "image/image.hpp"

namespace citadel::apps {

struct DevServerOptions {
  std::filesystem::path socket_path;  // STATE/dev.sock
  std::size_t max_connections = 4;
  std::chrono::milliseconds header_timeout = std::chrono::seconds(10);  // header, and writing the answer
  std::chrono::milliseconds body_timeout = std::chrono::seconds(120);   // image upload
  std::size_t max_header_bytes = kMaxDevHeaderBytes;
  std::uint64_t max_body_bytes = image::kMaxImageBytes;
};

// Answers one request with a DevOkResponse or DevErrorResponse document.
using DevHandler = std::function<Json(const Json& header, std::span<const std::uint8_t> body)>;

class DevServer {
 public:
  static Expected<std::unique_ptr<DevServer>> Start(DevServerOptions options, DevHandler handler);
  ~DevServer();
  DevServer(const DevServer&) = delete;
  DevServer& operator=(const DevServer&) = delete;

  void Stop();
  const std::filesystem::path& socket_path() const { return options_.socket_path; }

 private:
  struct Connection {
    UniqueFd fd;
    std::thread thread;
    std::atomic<bool> done{false};      // the request is answered (or being answered)
    std::atomic<bool> finished{false};  // the thread has returned: joinable at once
  };
  DevServer(DevServerOptions options, DevHandler handler, UniqueFd listener, UniqueFd stop_event);
  void AcceptLoop();
  void Serve(Connection& connection);
  void JoinFinishedLocked();

  DevServerOptions options_;
  DevHandler handler_;
  UniqueFd listener_;
  UniqueFd stop_event_;
  std::thread accept_thread_;
  std::mutex mutex_;
  std::list<Connection> connections_;
  bool stopped_ = false;
};

// The operations of the development interface over the app subsystem.
class DevApi {
 public:
  DevApi(AppManager& manager, TrustSource& trust) : manager_(manager), trust_(trust) {}
  Json Handle(const Json& header, std::span<const std::uint8_t> body);

 private:
  Expected<Json> Dispatch(const Json& header, std::span<const std::uint8_t> body);
  AppManager& manager_;
  TrustSource& trust_;
};

// JSON form of an app's status, as the dev interface returns it.
Json AppStatusJson(const AppStatus& status);

}  // namespace citadel::apps
