// Blocking I/O, one thread per connection: the simplest shape in which a
// response can be paused, cut or made endless at any byte. Stop() unblocks
// every thread by shutting its socket down (and the listening socket, which
// wakes accept() on Linux); sockets are closed only after their thread has
// been joined, so a descriptor is never shut down after it was reused.
#include "support/file_server.hpp"

#include <sys/socket.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http/tls.hpp"

namespace citadel::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;
using tcp = boost::asio::ip::tcp;
using Request = bhttp::request<bhttp::empty_body>;

constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr std::uint32_t kMaxRequestHeaderBytes = 16 * 1024;
constexpr std::size_t kMaxConnections = 64;
constexpr int kMaxRequestsPerConnection = 10'000;
constexpr auto kEndlessMaxTime = std::chrono::seconds(60);
constexpr std::uint64_t kEndlessMaxBytes = 4ULL << 30;

struct Counters {
  std::uint64_t requests = 0;
  std::uint64_t body_bytes = 0;
};

std::optional<std::string> PercentDecode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || hex(text[i + 1]) < 0 || hex(text[i + 2]) < 0) return std::nullopt;
    out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
    i += 2;
  }
  if (out.find('\0') != std::string::npos) return std::nullopt;
  return out;
}

std::optional<std::uint64_t> ParseNumber(std::string_view text) {
  if (text.empty() || text.size() > 19 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoull(std::string(text));
}

enum class RangeKind { kNone, kSatisfiable, kUnsatisfiable };

// One range of "bytes=N-", "bytes=N-M" or "bytes=-N" (inclusive bounds in
// first/last). Anything else (absent, malformed, several ranges) is kNone:
// the whole file is served, as RFC 9110 allows.
RangeKind ParseRange(std::string_view header, std::uint64_t size, std::uint64_t& first, std::uint64_t& last) {
  constexpr std::string_view kUnit = "bytes=";
  if (!header.starts_with(kUnit)) return RangeKind::kNone;
  header.remove_prefix(kUnit.size());
  std::size_t dash = header.find('-');
  if (dash == std::string_view::npos || header.find(',') != std::string_view::npos) return RangeKind::kNone;
  std::string_view from = header.substr(0, dash);
  std::string_view to = header.substr(dash + 1);
  if (from.empty()) {  // the last N bytes
    auto suffix = ParseNumber(to);
    if (!suffix) return RangeKind::kNone;
    if (*suffix == 0 || size == 0) return RangeKind::kUnsatisfiable;
    first = size - std::min(*suffix, size);
    last = size - 1;
    return RangeKind::kSatisfiable;
  }
  auto start = ParseNumber(from);
  auto end = to.empty() ? std::optional<std::uint64_t>(size == 0 ? 0 : size - 1) : ParseNumber(to);
  if (!start || !end || (!to.empty() && *end < *start)) return RangeKind::kNone;
  if (*start >= size) return RangeKind::kUnsatisfiable;
  first = *start;
  last = std::min(*end, size - 1);
  return RangeKind::kSatisfiable;
}

std::string StatusLine(int status) {
  auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason.empty() ? "Status" : reason) + "\r\n";
}

template <typename Stream>
bool WriteAll(Stream& stream, std::string_view bytes) {
  beast::error_code ec;
  asio::write(stream, asio::buffer(bytes.data(), bytes.size()), ec);
  return !ec;
}

}  // namespace

struct FileServer::State {
  struct Connection {
    explicit Connection(tcp::socket accepted) : socket(std::move(accepted)) {}
    tcp::socket socket;
    std::thread thread;
    // Guarded by State::mutex.
    bool answering = false;  // between reading a request and the end of its answer
    bool closed = false;     // CloseIdleConnections() shut it down
    bool done = false;       // the thread has finished
  };

  FileServerOptions options;
  fs::path root;  // canonical
  bool ipv6 = false;
  asio::io_context io{1};  // owns the sockets; never run (all I/O is blocking)
  std::optional<asio::ssl::context> tls;
  tcp::acceptor acceptor{io};
  std::uint16_t port = 0;
  std::thread accept_thread;
  std::atomic<bool> stopping{false};

  mutable std::mutex mutex;  // guards everything below
  mutable std::condition_variable changed;
  bool stopped = false;  // Stop() has begun
  std::list<std::unique_ptr<Connection>> connections;
  std::map<std::string, FileServerFault, std::less<>> faults;
  std::optional<FileServerFault> global_fault;
  std::map<std::string, Counters, std::less<>> counters;
  std::uint64_t connection_count = 0;
  int requests_in_flight = 0;

  void AcceptLoop();
  void Serve(Connection& connection);
  template <typename Stream>
  void ServeRequests(Stream& stream, Connection& connection);
  // Answers one request; false when the connection must close.
  template <typename Stream>
  bool Answer(Stream& stream, const Request& request);
  template <typename Stream>
  bool SendEmpty(Stream& stream, int status, bool keep_alive, const std::string& extra_headers = "");
  template <typename Stream>
  bool SendBody(Stream& stream, const fs::path& file, std::uint64_t first, std::uint64_t count,
                const FileServerFault& fault, const std::string& key);
  template <typename Stream>
  void SendEndless(Stream& stream, bool head, const FileServerFault& fault, const std::string& key);
  // 0 with the file's real path, or 403/404.
  int Resolve(const std::string& path, fs::path& file) const;
  FileServerFault BeginRequest(const std::string& key);
  void EndRequest();
  void CountBody(const std::string& key, std::uint64_t bytes);
  // Sleeps for interval; false when the server is stopping.
  bool Pause(std::chrono::milliseconds interval);
};

void FileServer::State::AcceptLoop() {
  while (!stopping) {
    beast::error_code ec;
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (stopping) return;
    if (ec) {
      // EMFILE and the like: back off instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    std::lock_guard lock(mutex);
    for (auto it = connections.begin(); it != connections.end();) {
      if ((*it)->done) {
        (*it)->thread.join();
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
    if (connections.size() >= kMaxConnections) continue;  // the socket closes here
    ++connection_count;
    Connection* connection = connections.emplace_back(std::make_unique<Connection>(std::move(socket))).get();
    connection->thread = std::thread([this, connection] { Serve(*connection); });
  }
}

void FileServer::State::Serve(Connection& connection) {
  try {
    if (tls) {
      asio::ssl::stream<tcp::socket&> stream(connection.socket, *tls);
      beast::error_code ec;
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (!ec) ServeRequests(stream, connection);
    } else {
      ServeRequests(connection.socket, connection);
    }
  } catch (const std::exception&) {
    // A test server: whatever broke ends this connection only.
  }
  // The peer sees the end now; the descriptor is closed after the join.
  beast::error_code ignored;
  connection.socket.shutdown(tcp::socket::shutdown_both, ignored);
  std::lock_guard lock(mutex);
  connection.done = true;
}

template <typename Stream>
void FileServer::State::ServeRequests(Stream& stream, Connection& connection) {
  beast::flat_buffer buffer(2 * kMaxRequestHeaderBytes);
  for (int served = 0; served < kMaxRequestsPerConnection && !stopping; ++served) {
    bhttp::request_parser<bhttp::empty_body> parser;
    parser.header_limit(kMaxRequestHeaderBytes);
    beast::error_code ec;
    bhttp::read(stream, buffer, parser, ec);
    if (ec) return;
    {
      std::lock_guard lock(mutex);
      // Closed as idle while the request arrived: like a real server's idle
      // timeout racing a client, the request goes unanswered.
      if (connection.closed) return;
      connection.answering = true;
    }
    bool keep_open = Answer(stream, parser.get());
    {
      std::lock_guard lock(mutex);
      connection.answering = false;
    }
    if (!keep_open) return;
  }
}

template <typename Stream>
bool FileServer::State::Answer(Stream& stream, const Request& request) {
  std::string_view target = request.target();
  std::string_view raw_path = target.substr(0, target.find('?'));
  std::optional<std::string> path = PercentDecode(raw_path);
  const std::string key = path.value_or(std::string(raw_path));
  const FileServerFault fault = BeginRequest(key);
  struct InFlight {
    State& state;
    ~InFlight() { state.EndRequest(); }
  } in_flight{*this};

  const bool keep_alive = request.keep_alive();
  const bool head = request.method() == bhttp::verb::head;
  if (!head && request.method() != bhttp::verb::get) {
    return SendEmpty(stream, 405, keep_alive, "Allow: GET, HEAD\r\n");
  }
  if (!path || !path->starts_with('/')) return SendEmpty(stream, 400, keep_alive);
  if (fault.status != 0) return SendEmpty(stream, fault.status, keep_alive);
  fs::path file;
  if (int refused = Resolve(*path, file); refused != 0) return SendEmpty(stream, refused, keep_alive);
  if (fault.endless) {
    SendEndless(stream, head, fault, key);
    return false;
  }

  const std::uint64_t size = fs::file_size(file);
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  RangeKind range = fault.ignore_range ? RangeKind::kNone : ParseRange(request[bhttp::field::range], size, first, last);
  if (range == RangeKind::kUnsatisfiable) {
    return SendEmpty(stream, 416, keep_alive, "Content-Range: bytes */" + std::to_string(size) + "\r\n");
  }
  std::uint64_t length = size;
  std::string header = StatusLine(range == RangeKind::kSatisfiable ? 206 : 200);
  if (range == RangeKind::kSatisfiable) {
    length = last - first + 1;
    header += "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
              std::to_string(size) + "\r\n";
  }
  const bool close_after = !keep_alive || fault.content_length || fault.cut_after;
  header += "Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nContent-Length: " +
            std::to_string(fault.content_length.value_or(length)) + "\r\n";
  if (close_after) header += "Connection: close\r\n";
  header += "\r\n";
  if (!WriteAll(stream, header)) return false;
  if (head) return !close_after;
  std::uint64_t count = fault.cut_after ? std::min(length, *fault.cut_after) : length;
  return SendBody(stream, file, first, count, fault, key) && !close_after;
}

template <typename Stream>
bool FileServer::State::SendEmpty(Stream& stream, int status, bool keep_alive, const std::string& extra_headers) {
  std::string header = StatusLine(status) + "Content-Length: 0\r\n" + extra_headers;
  if (!keep_alive) header += "Connection: close\r\n";
  header += "\r\n";
  return WriteAll(stream, header) && keep_alive;
}

template <typename Stream>
bool FileServer::State::SendBody(Stream& stream, const fs::path& file, std::uint64_t first, std::uint64_t count,
                                 const FileServerFault& fault, const std::string& key) {
  std::ifstream in(file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(first));
  const bool slow = fault.slow_interval > std::chrono::milliseconds::zero();
  const std::size_t step = slow ? std::clamp<std::size_t>(fault.slow_bytes, 1, kChunkBytes) : kChunkBytes;
  std::vector<char> buffer(step);
  for (std::uint64_t sent = 0; sent < count;) {
    auto bytes = static_cast<std::size_t>(std::min<std::uint64_t>(step, count - sent));
    in.read(buffer.data(), static_cast<std::streamsize>(bytes));
    if (static_cast<std::size_t>(in.gcount()) != bytes) return false;  // the file shrank
    if (!WriteAll(stream, std::string_view(buffer.data(), bytes))) return false;
    sent += bytes;
    CountBody(key, bytes);
    if (slow && sent < count && !Pause(fault.slow_interval)) return false;
  }
  return true;
}

template <typename Stream>
void FileServer::State::SendEndless(Stream& stream, bool head, const FileServerFault& fault, const std::string& key) {
  std::string header = StatusLine(200) +
                       "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n";
  if (!WriteAll(stream, header) || head) return;
  char size_line[32];
  int size_length = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", kChunkBytes);
  const std::string chunk =
      std::string(size_line, static_cast<std::size_t>(size_length)) + std::string(kChunkBytes, 'x') + "\r\n";
  const auto give_up_at = std::chrono::steady_clock::now() + kEndlessMaxTime;
  for (std::uint64_t sent = 0; sent < kEndlessMaxBytes && std::chrono::steady_clock::now() < give_up_at;
       sent += kChunkBytes) {
    if (stopping || !WriteAll(stream, chunk)) return;
    CountBody(key, kChunkBytes);
    if (fault.slow_interval > std::chrono::milliseconds::zero() && !Pause(fault.slow_interval)) return;
  }
}

int FileServer::State::Resolve(const std::string& path, fs::path& file) const {
  fs::path relative;
  std::string_view rest(path);
  while (!rest.empty()) {
    std::size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (segment == "..") return 403;
    if (!segment.empty() && segment != ".") relative /= segment;
  }
  std::error_code ec;
  fs::path real = fs::canonical(root / relative, ec);
  if (ec) return 404;
  // Symbolic links must not lead out of the root either.
  auto [root_end, real_end] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
  if (root_end != root.end()) return 403;
  if (!fs::is_regular_file(real, ec)) return 404;
  file = std::move(real);
  return 0;
}

FileServerFault FileServer::State::BeginRequest(const std::string& key) {
  std::lock_guard lock(mutex);
  ++counters[key].requests;
  ++requests_in_flight;
  auto take = [](FileServerFault& fault, bool& used_up) {
    FileServerFault taken = fault;
    used_up = fault.times > 0 && --fault.times == 0;
    return taken;
  };
  bool used_up = false;
  if (auto found = faults.find(key); found != faults.end()) {
    FileServerFault fault = take(found->second, used_up);
    if (used_up) faults.erase(found);
    return fault;
  }
  if (global_fault) {
    FileServerFault fault = take(*global_fault, used_up);
    if (used_up) global_fault.reset();
    return fault;
  }
  return {};
}

void FileServer::State::EndRequest() {
  std::lock_guard lock(mutex);
  --requests_in_flight;
  changed.notify_all();
}

void FileServer::State::CountBody(const std::string& key, std::uint64_t bytes) {
  std::lock_guard lock(mutex);
  counters[key].body_bytes += bytes;
}

bool FileServer::State::Pause(std::chrono::milliseconds interval) {
  std::unique_lock lock(mutex);
  return !changed.wait_for(lock, interval, [this] { return stopping.load(); });
}

FileServer::FileServer(std::unique_ptr<State> state) : state_(std::move(state)) {}

FileServer::~FileServer() { Stop(); }

Expected<std::unique_ptr<FileServer>> FileServer::Start(FileServerOptions options) {
  auto state = std::make_unique<State>();
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(options.address, ec);
  if (ec || !address.is_loopback()) {
    return MakeError(ErrorCode::kInvalidArgument, "file server: \"" + options.address + "\" is not a loopback address");
  }
  state->ipv6 = address.is_v6();
  std::error_code fs_error;
  state->root = fs::canonical(options.root, fs_error);
  if (fs_error || !fs::is_directory(state->root)) {
    return MakeError(ErrorCode::kInvalidArgument, "file server: root " + options.root.string() + " is not a directory");
  }
  if (options.tls) {
    state->tls.emplace(asio::ssl::context::tls_server);
    SSL_CTX* context = state->tls->native_handle();
    CITADEL_TRY_VOID(http::internal::ApplyBaseSettings(context));
    CITADEL_TRY_VOID(http::internal::UseIdentity(context, *options.tls));
    if (!options.client_ca_pem.empty()) {
      CITADEL_TRY_VOID(http::internal::PinCertificateAuthorities(context, options.client_ca_pem));
      SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  } else if (!options.client_ca_pem.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "file server: client certificates need TLS");
  }

  tcp::endpoint endpoint(address, 0);
  state->acceptor.open(endpoint.protocol(), ec);
  if (!ec) state->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) state->acceptor.bind(endpoint, ec);
  if (!ec) state->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return MakeError(ErrorCode::kUnavailable, "file server: listening on " + options.address + ": " + ec.message());
  state->port = state->acceptor.local_endpoint().port();
  state->options = std::move(options);
  State* running = state.get();
  state->accept_thread = std::thread([running] { running->AcceptLoop(); });
  return std::unique_ptr<FileServer>(new FileServer(std::move(state)));
}

void FileServer::Stop() {
  State& state = *state_;
  {
    std::lock_guard lock(state.mutex);
    if (state.stopped) return;
    state.stopped = true;
    state.stopping = true;
    state.changed.notify_all();
  }
  ::shutdown(state.acceptor.native_handle(), SHUT_RDWR);
  if (state.accept_thread.joinable()) state.accept_thread.join();
  beast::error_code ignored;
  state.acceptor.close(ignored);
  std::list<std::unique_ptr<State::Connection>> connections;
  {
    std::lock_guard lock(state.mutex);
    for (const auto& connection : state.connections) ::shutdown(connection->socket.native_handle(), SHUT_RDWR);
    connections.swap(state.connections);
  }
  for (const auto& connection : connections) connection->thread.join();
}

void FileServer::CloseIdleConnections() {
  std::lock_guard lock(state_->mutex);
  for (const auto& connection : state_->connections) {
    if (connection->done || connection->answering) continue;
    connection->closed = true;
    ::shutdown(connection->socket.native_handle(), SHUT_RDWR);
  }
}

std::uint16_t FileServer::port() const { return state_->port; }

std::string FileServer::BaseUrl() const {
  std::string host = state_->ipv6 ? "[" + state_->options.address + "]" : state_->options.address;
  return (state_->tls ? "https://" : "http://") + host + ":" + std::to_string(state_->port);
}

std::string FileServer::Url(std::string_view path) const { return BaseUrl() + std::string(path); }

void FileServer::SetFault(std::string path, FileServerFault fault) {
  std::lock_guard lock(state_->mutex);
  state_->faults.insert_or_assign(std::move(path), fault);
}

void FileServer::SetGlobalFault(FileServerFault fault) {
  std::lock_guard lock(state_->mutex);
  state_->global_fault = fault;
}

void FileServer::ClearFaults() {
  std::lock_guard lock(state_->mutex);
  state_->faults.clear();
  state_->global_fault.reset();
}

std::uint64_t FileServer::RequestCount(std::string_view path) const {
  std::lock_guard lock(state_->mutex);
  auto found = state_->counters.find(path);
  return found == state_->counters.end() ? 0 : found->second.requests;
}

std::uint64_t FileServer::BodyBytesSent(std::string_view path) const {
  std::lock_guard lock(state_->mutex);
  auto found = state_->counters.find(path);
  return found == state_->counters.end() ? 0 : found->second.body_bytes;
}

std::uint64_t FileServer::ConnectionCount() const {
  std::lock_guard lock(state_->mutex);
  return state_->connection_count;
}

void FileServer::ResetCounters() {
  std::lock_guard lock(state_->mutex);
  state_->counters.clear();
  state_->connection_count = 0;
}

bool FileServer::WaitUntilIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [this] { return state_->requests_in_flight == 0; });
}

}  // namespace citadel::testing
