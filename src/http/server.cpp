// HTTPS server on Boost.Beast. One strand per connection; the handler runs
// synchronously on the connection's strand (so it may block that I/O
// thread, never another connection's state).
//
// Connection life: accept -> TLS handshake (handshake_timeout) -> wait for
// the first byte of a request (read_timeout for the first request,
// idle_timeout between keep-alive requests) -> read the request
// (read_timeout, header/body limits; "100 Continue" when asked) -> handler
// -> write -> repeat or close.
// Protocol errors answer 400/413/431 and then close with a bounded
// "lingering close" so the client can read the answer before the reset.
//
// File responses (Response::file) are streamed from the file with pread in
// kFileChunkBytes pieces, so serving a 1 GiB image costs one chunk of
// memory per connection. The byte-range helpers (SelectByteRange,
// FileResponse) live here beside the code that serves what they select.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/optional.hpp>

#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "http/http.hpp"
#include "http/tls.hpp"

namespace citadel::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

// How long Stop() lets in-flight requests finish before closing them.
constexpr auto kStopGracePeriod = std::chrono::seconds(5);
// After the grace period, how long to wait for force-closed connections.
constexpr auto kStopForceCloseWait = std::chrono::seconds(1);
// Lingering close after an error response: discard at most this much input
// for at most this long so the client gets to read the answer.
constexpr std::size_t kMaxLingerBytes = 4 * 1024 * 1024;
constexpr auto kMaxLingerTime = std::chrono::seconds(2);
// Back-off after a failed accept (e.g. EMFILE) so the loop does not spin.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);

// Memory a file response uses per connection while it is written.
constexpr std::size_t kFileChunkBytes = 64 * 1024;

// A Beast body (BodyWriter side only: responses) that streams bytes
// [offset, offset + length) of an open file with pread. A file that ends
// early fails the write, which closes the connection: the client sees a
// body shorter than its Content-Length, never other bytes.
// The lower-case member names are Beast's Body concept.
struct FileRangeBody {
  struct value_type {  // NOLINT(readability-identifier-naming)
    UniqueFd fd;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };

  static std::uint64_t size(const value_type& body) { return body.length; }

  class writer {  // NOLINT(readability-identifier-naming)
   public:
    using const_buffers_type = asio::const_buffer;

    template <bool kIsRequest, class Fields>
    writer(const bhttp::header<kIsRequest, Fields>& /*header*/, const value_type& body) : body_(body) {}

    void init(beast::error_code& ec) { ec = {}; }

    boost::optional<std::pair<const_buffers_type, bool>> get(beast::error_code& ec) {
      ec = {};
      if (done_ >= body_.length) return boost::none;
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), body_.length - done_));
      ssize_t got = -1;
      do {
        got = ::pread(body_.fd.get(), buffer_.data(), want, static_cast<off_t>(body_.offset + done_));
      } while (got < 0 && errno == EINTR);
      if (got <= 0) {
        ec = got == 0 ? make_error_code(boost::system::errc::no_message_available)
                      : beast::error_code(errno, boost::system::system_category());
        return boost::none;
      }
      done_ += static_cast<std::uint64_t>(got);
      return std::make_pair(asio::const_buffer(buffer_.data(), static_cast<std::size_t>(got)), done_ < body_.length);
    }

   private:
    const value_type& body_;
    std::uint64_t done_ = 0;
    std::vector<char> buffer_ = std::vector<char>(kFileChunkBytes);
  };
};

// Opens the file range a handler asked for; the error says what is wrong
// (for the log, not for the client).
Expected<FileRangeBody::value_type> OpenFileRange(const FileBody& file) {
  UniqueFd fd(::open(file.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return MakeError(ErrorCode::kIo, "cannot open " + file.path.string());
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0 || !S_ISREG(status.st_mode)) {
    return MakeError(ErrorCode::kIo, file.path.string() + " is not a readable regular file");
  }
  const auto size = static_cast<std::uint64_t>(status.st_size);
  if (file.offset > size || file.length > size - file.offset) {
    return MakeError(ErrorCode::kIo, file.path.string() + " is shorter than the range to serve");
  }
  return FileRangeBody::value_type{std::move(fd), file.offset, file.length};
}

class ServerImpl;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ServerImpl& server, tcp::socket socket, std::uint64_t id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void Start();
  // Runs on the strand when the server stops: closes the connection unless
  // a request is being read, handled or answered; those finish and close.
  void Shutdown();
  // Runs on the strand when the grace period is over.
  void ForceClose() { Close(); }
  asio::any_io_executor executor() { return stream_.get_executor(); }

 private:
  enum class Phase { kHandshake, kIdle, kReading, kHandling, kWriting, kLingering, kClosed };

  tcp::socket& socket() { return beast::get_lowest_layer(stream_).socket(); }
  beast::tcp_stream& tcp_stream() { return beast::get_lowest_layer(stream_); }

  void OnHandshake(beast::error_code ec);
  void WaitForRequest();
  void ReadRequest();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnRead(beast::error_code ec);
  // What Write needs of the request once its message is gone.
  struct Exchange {
    unsigned version = 11;
    bool keep_alive = false;
    bool head = false;
  };

  void HandleRequest();
  std::string FairnessKey(const Request& request);
  void Finish(Response response, Exchange exchange);
  void Write(Response response, unsigned version, bool keep_alive, bool head);
  void OnWrite(beast::error_code ec);
  void RejectRequest(int status, std::string_view name, std::string_view title, std::string_view detail);
  void Linger();
  void Close();

  ServerImpl& server_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  const std::uint64_t id_;
  std::string remote_address_;
  std::uint16_t remote_port_ = 0;
  std::vector<crypto::Certificate> peer_chain_;
  std::optional<std::string> fairness_key_;  // when the key is per connection
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::size_t body_limit_ = 0;  // of the request being read
  bhttp::response<bhttp::string_body> response_;
  bhttp::response<FileRangeBody> file_response_;
  bhttp::response<bhttp::empty_body> continue_response_;
  Phase phase_ = Phase::kHandshake;
  bool first_request_ = true;
  bool close_after_write_ = false;
  bool linger_after_write_ = false;
  bool stop_requested_ = false;
  std::size_t lingered_bytes_ = 0;
  std::array<char, 16 * 1024> linger_buffer_{};
};

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)), admission_(options_.admission) {}
  ~ServerImpl() override {
    Stop();
    // Destroys handlers still queued (sessions) while the members they use
    // are alive; see the member order below.
    accept_retry_.reset();
    acceptor_.reset();
    work_.reset();
    io_.reset();
  }

  Expected<void> Init();
  Expected<void> Start() override;
  std::uint16_t port() const override { return port_.load(); }
  AdmissionStats admission_stats() const override { return admission_.Stats(); }
  void Stop() override;
  void Wait() override;

  const ServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  Admission& admission() { return admission_; }
  ssl::context& tls() { return tls_; }
  bool stopping() const { return stopping_.load(); }
  void Unregister(std::uint64_t id);

 private:
  void Accept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  void RunWorker();
  std::vector<std::shared_ptr<Session>> LiveSessions();
  bool WaitForSessions(std::chrono::steady_clock::duration timeout);

  const ServerOptions options_;
  const Handler handler_;
  // Stopped (queued tasks shed, running ones finished) before the I/O
  // threads are joined; its tasks only post to sessions' strands.
  Admission admission_;
  ssl::context tls_{ssl::context::tls_server};
  std::atomic<std::uint16_t> port_{0};
  std::atomic<bool> stopping_{false};

  std::mutex sessions_mutex_;
  std::condition_variable sessions_changed_;
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions_;  // guarded by sessions_mutex_
  std::uint64_t next_session_id_ = 0;                         // acceptor strand only
  std::chrono::steady_clock::time_point last_cap_warning_{};  // acceptor strand only

  std::mutex lifecycle_mutex_;
  std::condition_variable stopped_changed_;
  bool started_ = false;  // guarded by lifecycle_mutex_
  bool stopped_ = false;  // guarded by lifecycle_mutex_

  // Declared last: destroyed first, before the state sessions refer to.
  std::optional<asio::io_context> io_{std::in_place};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> accept_retry_;
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------- Session

Session::Session(ServerImpl& server, tcp::socket socket, std::uint64_t id)
    : server_(server), stream_(std::move(socket), server.tls()), id_(id) {
  beast::error_code ec;
  tcp::endpoint remote = this->socket().remote_endpoint(ec);
  if (!ec) {
    asio::ip::address address = remote.address();
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    }
    remote_address_ = address.to_string();
    remote_port_ = remote.port();
  }
}

Session::~Session() { server_.Unregister(id_); }

void Session::Start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    if (self->server_.stopping()) {
      self->Close();
      return;
    }
    self->phase_ = Phase::kHandshake;
    self->tcp_stream().expires_after(self->server_.options().handshake_timeout);
    self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) { self->OnHandshake(ec); });
  });
}

void Session::Shutdown() {
  stop_requested_ = true;
  if (phase_ == Phase::kHandshake || phase_ == Phase::kIdle) Close();
}

void Session::OnHandshake(beast::error_code ec) {
  if (ec) {
    log::Debug("TLS handshake failed", {{"remote", remote_address_}, {"error", ec.message()}});
    Close();
    return;
  }
  peer_chain_ = internal::PeerChain(stream_.native_handle());
  WaitForRequest();
}

// Waits for the first byte of the next request with its own (idle) timeout,
// so a slow request body is bounded by read_timeout and an idle keep-alive
// connection by idle_timeout.
void Session::WaitForRequest() {
  if (stop_requested_ || server_.stopping()) {
    Close();
    return;
  }
  if (buffer_.size() > 0) {  // pipelined bytes already here
    ReadRequest();
    return;
  }
  phase_ = Phase::kIdle;
  const ServerOptions& options = server_.options();
  tcp_stream().expires_after(first_request_ ? options.read_timeout : options.idle_timeout);
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
    self->buffer_.commit(bytes);
    if (ec) {
      self->Close();  // idle timeout, client closed, or Stop()
      return;
    }
    self->ReadRequest();
  });
}

void Session::ReadRequest() {
  phase_ = Phase::kReading;
  const ServerOptions& options = server_.options();
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  // The largest limit any route has: an over-limit Content-Length fails the
  // header read. OnHeader lowers it to the limit of this request's route.
  body_limit_ = std::max(options.max_body_bytes, options.max_large_body_bytes);
  parser_->body_limit(body_limit_);
  tcp_stream().expires_after(options.read_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnHeader(ec); });
}

// A client that sent "Expect: 100-continue" waits for a 100 before sending
// the body (RFC 9110 section 10.1.1). An over-limit Content-Length has
// already failed the header read, so it is answered 413 without a 100.
void Session::OnHeader(beast::error_code ec) {
  if (ec) {
    OnRead(ec);
    return;
  }
  const auto& header = parser_->get();
  const ServerOptions& options = server_.options();
  const bool large =
      options.max_large_body_bytes > options.max_body_bytes && options.allows_large_body &&
      options.allows_large_body(std::string_view(header.method_string()), std::string_view(header.target()));
  body_limit_ = large ? options.max_large_body_bytes : options.max_body_bytes;
  if (auto length = parser_->content_length(); length && *length > body_limit_) {
    OnRead(bhttp::error::body_limit);
    return;
  }
  parser_->body_limit(body_limit_);
  auto expect = header[bhttp::field::expect];
  bool wants_continue =
      !parser_->is_done() && expect.size() == 12 && beast::iequals(expect, "100-continue") && header.version() >= 11;
  if (!wants_continue) {
    ReadBody();
    return;
  }
  continue_response_ = {};
  continue_response_.version(header.version());
  continue_response_.result(bhttp::status::continue_);
  continue_response_.set(bhttp::field::server, "citadel");
  bhttp::async_write(stream_, continue_response_, [self = shared_from_this()](beast::error_code write_ec, std::size_t) {
    if (write_ec) {
      self->Close();
      return;
    }
    self->ReadBody();
  });
}

void Session::ReadBody() {
  // The read_timeout set in ReadRequest() still bounds the whole request.
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
}

void Session::OnRead(beast::error_code ec) {
  if (!ec) {
    HandleRequest();
    return;
  }
  if (ec == bhttp::error::body_limit) {
    RejectRequest(413, "payload-too-large", "Payload Too Large",
                  "the request body exceeds " + std::to_string(body_limit_) + " bytes");
    return;
  }
  if (ec == bhttp::error::header_limit) {
    RejectRequest(431, "request-header-too-large", "Request Header Fields Too Large",
                  "the request header exceeds " + std::to_string(server_.options().max_header_bytes) + " bytes");
    return;
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
      ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
    RejectRequest(400, "bad-request", "Bad Request", "malformed HTTP request: " + ec.message());
    return;
  }
  log::Debug("closing connection while reading a request", {{"remote", remote_address_}, {"error", ec.message()}});
  Close();
}

void Session::HandleRequest() {
  phase_ = Phase::kHandling;
  tcp_stream().expires_never();
  bhttp::request<bhttp::string_body> message = parser_->release();
  parser_.reset();

  auto request = std::make_shared<Request>();
  request->method = std::string(message.method_string());
  std::string_view target = message.target();
  std::size_t question = target.find('?');
  request->path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request->query = std::string(target.substr(question + 1));
  for (const auto& field : message) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto [it, inserted] = request->headers.try_emplace(name, std::string(field.value()));
    if (!inserted) {  // repeated header: RFC 9110 section 5.3 list form
      it->second += ", ";
      it->second += std::string(field.value());
    }
  }
  request->body = std::move(message.body());
  request->remote_address = remote_address_;
  request->remote_port = remote_port_;
  request->peer_chain = peer_chain_;

  const Exchange exchange{message.version(), message.keep_alive(), message.method() == bhttp::verb::head};
  std::string key = FairnessKey(*request);
  AdmissionTask task;
  task.run = [self = shared_from_this(), request, exchange](std::chrono::nanoseconds waited) {
    request->queued = waited;
    Response response;
    try {
      response = self->server_.handler()(*request);
    } catch (const std::exception& e) {
      log::Error("request handler threw", {{"method", request->method}, {"path", request->path}, {"error", e.what()}});
      response = ProblemResponse(500, "internal", "Internal Server Error", "the server failed to handle the request");
    } catch (...) {
      log::Error("request handler threw a non-exception", {{"method", request->method}, {"path", request->path}});
      response = ProblemResponse(500, "internal", "Internal Server Error", "the server failed to handle the request");
    }
    self->Finish(std::move(response), exchange);
  };
  task.shed = [self = shared_from_this(), request, exchange](ShedReason reason, std::chrono::seconds retry_after) {
    Response response =
        ProblemResponse(503, "overloaded", "Service Unavailable",
                        "the service is overloaded; retry after " + std::to_string(retry_after.count()) + " s");
    response.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
    self->Finish(std::move(response), exchange);
    if (const auto& on_shed = self->server_.options().on_shed) on_shed(*request, reason);
  };
  server_.admission().Submit(std::move(key), std::move(task));
}

std::string Session::FairnessKey(const Request& request) {
  if (fairness_key_) return *fairness_key_;
  const auto& classify = server_.options().fairness_key;
  if (!classify) return {};
  ServerOptions::FairnessKey key = classify(request);
  if (key.per_connection) fairness_key_ = key.key;
  return std::move(key.key);
}

// Called on a worker; the response is written on the session's strand.
void Session::Finish(Response response, Exchange exchange) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), response = std::move(response), exchange]() mutable {
    self->first_request_ = false;
    bool keep_alive = exchange.keep_alive && !self->stop_requested_ && !self->server_.stopping();
    self->Write(std::move(response), exchange.version, keep_alive, exchange.head);
  });
}

void Session::RejectRequest(int status, std::string_view name, std::string_view title, std::string_view detail) {
  log::Debug("rejecting request", {{"remote", remote_address_}, {"detail", detail}});
  parser_.reset();
  linger_after_write_ = true;
  Write(ProblemResponse(status, name, title, detail), 11, /*keep_alive=*/false, /*head=*/false);
}

void Session::Write(Response response, unsigned version, bool keep_alive, bool head) {
  if (response.status < 100 || response.status > 599) {
    log::Error("request handler returned an invalid status", {{"status", std::to_string(response.status)}});
    response = ProblemResponse(500, "internal", "Internal Server Error", "the server failed to handle the request");
  }
  std::optional<FileRangeBody::value_type> file;
  if (response.file) {
    auto opened = OpenFileRange(*response.file);
    if (!opened) {
      log::Error("cannot serve a file response", {{"error", opened.error().message()}});
      response = ProblemResponse(500, "internal", "Internal Server Error", "the server failed to read the file");
    } else {
      file = std::move(*opened);
    }
  }
  response_ = {};
  response_.version(version);
  response_.result(static_cast<unsigned>(response.status));
  response_.set(bhttp::field::server, "citadel");
  if (!response.content_type.empty() && (!response.body.empty() || file || response.status != 204)) {
    response_.set(bhttp::field::content_type, response.content_type);
  }
  for (const auto& [name, value] : response.headers) {
    // Header injection guard: a CR or LF would let a value start a new header.
    bool unsafe = name.empty() || name.find_first_of("\r\n:\0 ", 0, 5) != std::string::npos ||
                  value.find_first_of("\r\n\0", 0, 3) != std::string::npos;
    if (unsafe) {
      log::Error("request handler returned an unsafe header; dropped", {{"header", name}});
      continue;
    }
    response_.insert(name, value);
  }
  close_after_write_ = !keep_alive;
  phase_ = Phase::kWriting;
  tcp_stream().expires_after(server_.options().read_timeout);
  auto on_write = [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnWrite(ec); };
  if (file && !head) {
    // The header built above moves into the file response.
    file_response_ = bhttp::response<FileRangeBody>(std::move(response_.base()));
    file_response_.body() = std::move(*file);
    file_response_.keep_alive(keep_alive);
    file_response_.prepare_payload();
    response_ = {};
    bhttp::async_write(stream_, file_response_, std::move(on_write));
    return;
  }
  const std::uint64_t body_size = file ? file->length : response.body.size();
  response_.body() = std::move(response.body);
  response_.keep_alive(keep_alive);
  response_.prepare_payload();
  if (head) {  // HEAD: the headers of the GET answer, no body
    response_.body().clear();
    response_.content_length(body_size);
  }
  bhttp::async_write(stream_, response_, std::move(on_write));
}

void Session::OnWrite(beast::error_code ec) {
  response_ = {};
  file_response_ = {};
  if (ec) {
    log::Debug("writing a response failed", {{"remote", remote_address_}, {"error", ec.message()}});
    Close();
    return;
  }
  if (linger_after_write_) {
    Linger();
    return;
  }
  if (close_after_write_) {
    Close();
    return;
  }
  WaitForRequest();
}

// Half-closes and discards input until the client closes (bounded), so a
// client still sending an oversized body reads our error response instead
// of a connection reset.
void Session::Linger() {
  if (phase_ != Phase::kLingering) {
    phase_ = Phase::kLingering;
    beast::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_send, ignored);
    tcp_stream().expires_after(
        std::min<std::chrono::steady_clock::duration>(kMaxLingerTime, server_.options().read_timeout));
  }
  tcp_stream().async_read_some(asio::buffer(linger_buffer_),
                               [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                                 self->lingered_bytes_ += bytes;
                                 if (ec || self->lingered_bytes_ > kMaxLingerBytes) {
                                   self->Close();
                                   return;
                                 }
                                 self->Linger();
                               });
}

void Session::Close() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  beast::error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp_stream().close();
}

// ---------------------------------------------------------------- Server

Expected<void> ServerImpl::Init() {
  if (options_.max_connections == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "max_connections must be at least 1");
  }
  if (!handler_) return MakeError(ErrorCode::kInvalidArgument, "no request handler");
  SSL_CTX* context = tls_.native_handle();
  CITADEL_TRY_VOID(internal::ApplyBaseSettings(context));
  CITADEL_TRY_VOID(internal::UseIdentity(context, options_.identity));
  if (options_.request_client_certificate) internal::RequestUnverifiedClientCertificates(context);
  return kOk;
}

Expected<void> ServerImpl::Start() {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_ || stopped_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the server was already started");
  }
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(options_.address, ec);
  if (ec) {
    return MakeError(ErrorCode::kInvalidArgument, "listen address \"" + options_.address + "\" is not an IP address");
  }
  tcp::endpoint endpoint(address, options_.port);
  std::string where = options_.address + ":" + std::to_string(options_.port);
  acceptor_.emplace(asio::make_strand(*io_));
  if (acceptor_->open(endpoint.protocol(), ec); ec) {
    return MakeError(ErrorCode::kIo, "opening a socket for " + where + ": " + ec.message());
  }
  if (acceptor_->set_option(asio::socket_base::reuse_address(true), ec); ec) {
    return MakeError(ErrorCode::kIo, "setting SO_REUSEADDR on " + where + ": " + ec.message());
  }
  if (acceptor_->bind(endpoint, ec); ec) {
    return MakeError(ErrorCode::kIo, "binding " + where + ": " + ec.message());
  }
  if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return MakeError(ErrorCode::kIo, "listening on " + where + ": " + ec.message());
  }
  port_ = acceptor_->local_endpoint(ec).port();
  accept_retry_.emplace(acceptor_->get_executor());
  work_.emplace(io_->get_executor());
  admission_.Start();
  Accept();

  unsigned thread_count = options_.threads > 0 ? static_cast<unsigned>(options_.threads)
                                               : std::max(2u, std::thread::hardware_concurrency());
  try {
    for (unsigned i = 0; i < thread_count; ++i) threads_.emplace_back([this] { RunWorker(); });
  } catch (const std::system_error& e) {
    // Threads already started keep serving; the caller learns of the failure.
    started_ = true;
    return MakeError(ErrorCode::kInternal, std::string("starting server threads: ") + e.what());
  }
  started_ = true;
  log::Info("HTTPS server listening", {{"address", options_.address},
                                       {"port", std::to_string(port_.load())},
                                       {"io_threads", std::to_string(thread_count)},
                                       {"workers", std::to_string(admission_.workers())}});
  return kOk;
}

void ServerImpl::RunWorker() {
  while (true) {
    try {
      io_->run();
      return;
    } catch (const std::exception& e) {
      // Handlers catch their own errors; this is a last line of defence so
      // one bad connection never takes a worker thread down.
      log::Error("uncaught exception in an HTTP server thread", {{"error", e.what()}});
    }
  }
}

void ServerImpl::Accept() {
  acceptor_->async_accept(asio::make_strand(*io_),
                          [this](beast::error_code ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
}

void ServerImpl::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (stopping_ || !acceptor_->is_open()) return;
  if (ec) {
    log::Warn("accepting a connection failed", {{"error", ec.message()}});
    accept_retry_->expires_after(kAcceptRetryDelay);
    accept_retry_->async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && !stopping_) Accept();
    });
    return;
  }
  std::uint64_t id = next_session_id_++;
  {
    std::lock_guard lock(sessions_mutex_);
    if (sessions_.size() >= options_.max_connections) {
      // At most one line a second: a connection flood must not flood the log.
      auto now = std::chrono::steady_clock::now();
      if (now - last_cap_warning_ >= std::chrono::seconds(1)) {
        last_cap_warning_ = now;
        log::Warn("connection limit reached; refusing connections",
                  {{"limit", std::to_string(options_.max_connections)}});
      }
      beast::error_code ignored;
      socket.close(ignored);
      Accept();
      return;
    }
  }
  auto session = std::make_shared<Session>(*this, std::move(socket), id);
  {
    std::lock_guard lock(sessions_mutex_);
    sessions_.emplace(id, session);
  }
  session->Start();
  Accept();
}

void ServerImpl::Unregister(std::uint64_t id) {
  {
    std::lock_guard lock(sessions_mutex_);
    sessions_.erase(id);
  }
  sessions_changed_.notify_all();
}

std::vector<std::shared_ptr<Session>> ServerImpl::LiveSessions() {
  std::vector<std::shared_ptr<Session>> live;
  std::lock_guard lock(sessions_mutex_);
  for (const auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  return live;
}

bool ServerImpl::WaitForSessions(std::chrono::steady_clock::duration timeout) {
  std::unique_lock lock(sessions_mutex_);
  return sessions_changed_.wait_for(lock, timeout, [this] { return sessions_.empty(); });
}

void ServerImpl::Stop() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (stopped_) return;
  if (!started_) {
    stopped_ = true;
    stopped_changed_.notify_all();
    return;
  }
  stopping_ = true;
  asio::post(acceptor_->get_executor(), [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
    accept_retry_->cancel();
  });
  // A session accepted after this snapshot sees stopping_ in Start().
  for (auto& session : LiveSessions()) {
    asio::post(session->executor(), [session] { session->Shutdown(); });
  }
  if (!WaitForSessions(kStopGracePeriod)) {
    std::vector<std::shared_ptr<Session>> busy = LiveSessions();
    log::Warn("closing connections still busy after the stop grace period",
              {{"connections", std::to_string(busy.size())}});
    for (auto& session : busy) {
      asio::post(session->executor(), [session] { session->ForceClose(); });
    }
    busy.clear();
    WaitForSessions(kStopForceCloseWait);
  }
  // Sheds what is still queued and waits for handlers that are running.
  admission_.Stop();
  work_.reset();
  io_->stop();
  // A handler blocked in user code keeps its thread; join waits for it.
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  stopped_ = true;
  stopped_changed_.notify_all();
  log::Info("HTTPS server stopped", {{"port", std::to_string(port_.load())}});
}

void ServerImpl::Wait() {
  std::unique_lock lock(lifecycle_mutex_);
  stopped_changed_.wait(lock, [this] { return stopped_; });
}

// "123" -> 123; nullopt for anything else (empty, signs, overflow).
std::optional<std::uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

}  // namespace

ByteRange SelectByteRange(std::string_view range_header, std::uint64_t size) {
  const ByteRange whole{200, 0, size};
  constexpr std::string_view kUnit = "bytes=";
  if (range_header.size() <= kUnit.size() || !beast::iequals(range_header.substr(0, kUnit.size()), kUnit)) {
    return whole;
  }
  std::string_view spec = range_header.substr(kUnit.size());
  while (!spec.empty() && (spec.front() == ' ' || spec.front() == '\t')) spec.remove_prefix(1);
  while (!spec.empty() && (spec.back() == ' ' || spec.back() == '\t')) spec.remove_suffix(1);
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos || spec.find(',') != std::string_view::npos) return whole;
  const std::string_view first_text = spec.substr(0, dash);
  const std::string_view last_text = spec.substr(dash + 1);
  if (first_text.empty()) {  // suffix: the last N bytes
    auto suffix = ParseDecimal(last_text);
    if (!suffix) return whole;
    if (*suffix == 0 || size == 0) return ByteRange{416, 0, 0};
    const std::uint64_t length = std::min(*suffix, size);
    return ByteRange{206, size - length, length};
  }
  auto first = ParseDecimal(first_text);
  if (!first) return whole;
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!last_text.empty()) {
    auto parsed = ParseDecimal(last_text);
    if (!parsed || *parsed < *first) return whole;  // invalid: ignored
    last = std::min(last, *parsed);
  }
  if (*first >= size) return ByteRange{416, 0, 0};
  return ByteRange{206, *first, last - *first + 1};
}

Response FileResponse(const Request& request, std::filesystem::path path, std::uint64_t size,
                      std::string content_type) {
  const ByteRange range = SelectByteRange(request.Header("range"), size);
  if (range.status == 416) {
    Response refused = ProblemResponse(
        416, "range-not-satisfiable", "Range Not Satisfiable",
        "the requested range starts at or beyond the end of the " + std::to_string(size) + "-byte file");
    refused.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
    return refused;
  }
  Response response;
  response.status = range.status;
  response.content_type = std::move(content_type);
  response.headers.emplace_back("Accept-Ranges", "bytes");
  if (range.status == 206) {
    response.headers.emplace_back("Content-Range", "bytes " + std::to_string(range.offset) + "-" +
                                                       std::to_string(range.offset + range.length - 1) + "/" +
                                                       std::to_string(size));
  }
  response.file = FileBody{std::move(path), range.offset, range.length};
  return response;
}

Expected<std::unique_ptr<Server>> Server::Create(ServerOptions options, Handler handler) {
  try {
    auto server = std::make_unique<ServerImpl>(std::move(options), std::move(handler));
    CITADEL_TRY_VOID(server->Init());
    return std::unique_ptr<Server>(std::move(server));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("creating the HTTPS server: ") + e.what());
  }
}

}  // namespace citadel::http
