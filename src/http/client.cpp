// Synchronous HTTPS client on Boost.Beast. Every network step is an
// asynchronous operation run to completion on a private io_context, because
// beast::tcp_stream timeouts only apply to asynchronous operations.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/log.hpp"
#include "http/http.hpp"
#include "http/tls.hpp"

namespace citadel::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

constexpr std::uint32_t kMaxResponseHeaderBytes = 64 * 1024;

bool IsToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool HasLineBreakOrNul(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

class ClientImpl final : public Client {
 public:
  ClientImpl(ClientOptions options, Endpoint endpoint) : options_(std::move(options)), endpoint_(std::move(endpoint)) {
    bool is_ipv6 = endpoint_.host.find(':') != std::string::npos;
    host_header_ = is_ipv6 ? "[" + endpoint_.host + "]" : endpoint_.host;
    if (endpoint_.port != 443) host_header_ += ":" + std::to_string(endpoint_.port);
  }
  ~ClientImpl() override { Disconnect(); }

  Expected<void> Init();
  Expected<Response> Send(std::string_view method, std::string_view path_and_query, std::string_view body,
                          const std::vector<std::pair<std::string, std::string>>& headers) override;

 private:
  using Stream = beast::ssl_stream<beast::tcp_stream>;

  // Starts an asynchronous operation through start(handler) and runs the
  // io_context until it completes; the stream's expiry bounds it.
  template <typename Start>
  beast::error_code Run(Start&& start) {
    beast::error_code result = asio::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  Expected<void> Connect();
  void Disconnect();
  bool PeerHasClosed();
  // nullopt response with retryable=true: the connection was found closed
  // before any response byte arrived.
  Expected<Response> Exchange(bhttp::request<bhttp::string_body>& request, bool& retryable);
  std::string Where() const { return "https://" + host_header_; }

  const ClientOptions options_;
  const Endpoint endpoint_;
  std::string host_header_;
  std::mutex mutex_;  // serializes Send(); everything below is guarded by it
  asio::io_context io_{1};
  ssl::context tls_{ssl::context::tls_client};
  std::optional<Stream> stream_;
  beast::flat_buffer buffer_;
};

Expected<void> ClientImpl::Init() {
  SSL_CTX* context = tls_.native_handle();
  CITADEL_TRY_VOID(internal::ApplyBaseSettings(context));
  CITADEL_TRY_VOID(internal::PinCertificateAuthorities(context, options_.ca_certificate_pem));
  if (options_.client_identity) {
    CITADEL_TRY_VOID(internal::UseIdentity(context, *options_.client_identity));
  }
  return kOk;
}

void ClientImpl::Disconnect() {
  if (!stream_) return;
  beast::error_code ignored;
  beast::get_lowest_layer(*stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(*stream_).close();
  stream_.reset();
  buffer_.clear();
}

// A kept-alive connection the server has since closed (idle timeout,
// restart) shows EOF or a reset on the socket. Checking before sending
// avoids sending a request into a dead connection at all. Readable bytes
// alone prove nothing (TLS 1.3 session tickets arrive after the handshake),
// so only EOF and errors count; a close_notify still waiting is caught by
// the retry in Send().
bool ClientImpl::PeerHasClosed() {
  int fd = beast::get_lowest_layer(*stream_).socket().native_handle();
  pollfd descriptor{};
  descriptor.fd = fd;
  descriptor.events = POLLIN;
  if (::poll(&descriptor, 1, 0) <= 0) return false;
  if ((descriptor.revents & (POLLERR | POLLHUP)) != 0) return true;
  char byte = 0;
  ssize_t peeked = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return peeked == 0 || (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

Expected<void> ClientImpl::Connect() {
  Disconnect();
  beast::error_code ec;
  // Name resolution (getaddrinfo) is not bounded by connect_timeout; IP
  // literals resolve at once.
  tcp::resolver resolver(io_);
  tcp::resolver::results_type endpoints;
  ec = Run([&](auto handler) {
    resolver.async_resolve(
        endpoint_.host, std::to_string(endpoint_.port),
        [&endpoints, handler](beast::error_code resolve_ec, tcp::resolver::results_type results) mutable {
          endpoints = std::move(results);
          handler(resolve_ec);
        });
  });
  if (ec) {
    return MakeError(ErrorCode::kUnavailable, "resolving " + endpoint_.host + ": " + ec.message());
  }

  stream_.emplace(io_, tls_);
  auto ssl_ready = internal::ExpectServerIdentity(stream_->native_handle(), endpoint_.host);
  if (!ssl_ready) {
    stream_.reset();
    return std::unexpected(ssl_ready.error());
  }
  auto& tcp_stream = beast::get_lowest_layer(*stream_);
  tcp_stream.expires_after(options_.connect_timeout);
  ec = Run([&](auto handler) {
    tcp_stream.async_connect(
        endpoints, [handler](beast::error_code connect_ec, const tcp::endpoint&) mutable { handler(connect_ec); });
  });
  if (ec) {
    stream_.reset();
    return MakeError(ErrorCode::kUnavailable, "connecting to " + Where() + ": " + ec.message());
  }
  tcp_stream.socket().set_option(tcp::no_delay(true), ec);
  tcp_stream.expires_after(options_.connect_timeout);
  ec = Run([&](auto handler) { stream_->async_handshake(ssl::stream_base::client, handler); });
  if (ec) {
    std::string verify_failure = internal::VerifyFailure(stream_->native_handle());
    ERR_clear_error();
    Disconnect();
    if (!verify_failure.empty()) {
      return MakeError(ErrorCode::kCrypto, "the server at " + Where() +
                                               " is not trusted (its certificate does not chain to the "
                                               "pinned CA or does not name " +
                                               endpoint_.host + "): " + verify_failure);
    }
    return MakeError(ErrorCode::kUnavailable, "TLS handshake with " + Where() + ": " + ec.message());
  }
  return kOk;
}

Expected<Response> ClientImpl::Exchange(bhttp::request<bhttp::string_body>& request, bool& retryable) {
  retryable = false;
  auto& tcp_stream = beast::get_lowest_layer(*stream_);
  auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  tcp_stream.expires_at(deadline);
  beast::error_code ec = Run([&](auto handler) { bhttp::async_write(*stream_, request, handler); });
  if (ec) {
    retryable = internal::IsConnectionClosed(ec);
    Disconnect();
    if (ec == beast::error::timeout) {
      return MakeError(ErrorCode::kUnavailable, "sending a request to " + Where() + ": timed out");
    }
    return MakeError(ErrorCode::kUnavailable, "sending a request to " + Where() + ": " + ec.message());
  }

  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(kMaxResponseHeaderBytes);
  parser.body_limit(options_.max_response_bytes);
  tcp_stream.expires_at(deadline);
  ec = Run([&](auto handler) { bhttp::async_read(*stream_, buffer_, parser, handler); });
  if (ec) {
    retryable = !parser.got_some() && internal::IsConnectionClosed(ec);
    Disconnect();
    if (ec == bhttp::error::body_limit) {
      return MakeError(ErrorCode::kTooLarge, "the response from " + Where() + " exceeds " +
                                                 std::to_string(options_.max_response_bytes) + " bytes");
    }
    if (ec == beast::error::timeout) {
      return MakeError(ErrorCode::kUnavailable, "waiting for a response from " + Where() + ": timed out");
    }
    return MakeError(ErrorCode::kUnavailable, "reading the response from " + Where() + ": " + ec.message());
  }
  tcp_stream.expires_never();

  bhttp::response<bhttp::string_body> message = parser.release();
  Response response;
  response.status = static_cast<int>(message.result_int());
  response.content_type = std::string(message[bhttp::field::content_type]);
  for (const auto& field : message) {
    response.headers.emplace_back(Lower(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(message.body());
  if (!message.keep_alive()) Disconnect();
  return response;
}

Expected<Response> ClientImpl::Send(std::string_view method, std::string_view path_and_query, std::string_view body,
                                    const std::vector<std::pair<std::string, std::string>>& headers) {
  if (!IsToken(method)) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid HTTP method \"" + std::string(method) + "\"");
  }
  if (path_and_query.empty() || path_and_query.front() != '/' ||
      path_and_query.find_first_of(std::string_view(" \r\n\0", 4)) != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid request target \"" + std::string(path_and_query) + "\"");
  }
  bhttp::request<bhttp::string_body> request;
  request.version(11);
  bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) {
    request.method_string(method);
  } else {
    request.method(verb);
  }
  request.target(path_and_query);
  request.set(bhttp::field::host, host_header_);
  request.set(bhttp::field::user_agent, options_.user_agent);
  for (const auto& [name, value] : headers) {
    if (!IsToken(name) || HasLineBreakOrNul(value)) {
      return MakeError(ErrorCode::kInvalidArgument, "invalid HTTP header \"" + name + "\"");
    }
    request.set(name, value);
  }
  request.body() = std::string(body);
  request.prepare_payload();

  std::lock_guard lock(mutex_);
  try {
    for (int attempt = 0;; ++attempt) {
      bool reused = stream_.has_value();
      if (reused && PeerHasClosed()) {
        Disconnect();
        reused = false;
      }
      if (!stream_) CITADEL_TRY_VOID(Connect());
      bool retryable = false;
      auto response = Exchange(request, retryable);
      // Retry once, and only when a kept-alive connection turned out to be
      // closed before the server answered anything: the server closed an
      // idle connection as the request went out, so it never read it.
      if (!response && reused && retryable && attempt == 0) {
        log::Debug("kept-alive connection was closed; reconnecting", {{"server", Where()}});
        continue;
      }
      return response;
    }
  } catch (const std::exception& e) {
    Disconnect();
    return MakeError(ErrorCode::kInternal, "HTTPS request to " + Where() + ": " + e.what());
  }
}

}  // namespace

Expected<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  CITADEL_TRY(Endpoint endpoint, ParseBaseUrl(options.base_url));
  if (options.ca_certificate_pem.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a pinned server CA certificate is required");
  }
  try {
    auto client = std::make_unique<ClientImpl>(std::move(options), std::move(endpoint));
    CITADEL_TRY_VOID(client->Init());
    return std::unique_ptr<Client>(std::move(client));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("creating the HTTPS client: ") + e.what());
  }
}

}  // namespace citadel::http
