#include "sim/connection.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "http/tls.hpp"

namespace citadel::sim {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using RateStream = beast::basic_stream<tcp, asio::any_io_executor, beast::simple_rate_policy>;
using TlsStream = beast::ssl_stream<RateStream>;

constexpr std::uint32_t kMaxResponseHeaderBytes = 64 * 1024;

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

struct Connection::State {
  State(asio::any_io_executor executor, asio::ssl::context& tls) : stream(std::move(executor), tls) {}
  TlsStream stream;
  beast::flat_buffer buffer;
};

std::string HttpReply::Header(const std::string& lower_name) const {
  auto found = headers.find(lower_name);
  return found == headers.end() ? std::string() : found->second;
}

Expected<std::shared_ptr<asio::ssl::context>> MakeTlsContext(std::string_view ca_pem) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  CITADEL_TRY_VOID(http::internal::ApplyBaseSettings(context->native_handle()));
  CITADEL_TRY_VOID(http::internal::PinCertificateAuthorities(context->native_handle(), ca_pem));
  SSL_CTX_set_mode(context->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  return context;
}

namespace {

// Installs the device's chain and key on one connection (the shared
// context has none).
Expected<void> UseClientIdentity(SSL* ssl, const ClientIdentity& identity) {
  if (identity.chain.empty() || identity.key == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "a client identity needs a certificate and a key");
  }
  if (SSL_use_certificate(ssl, identity.chain.front().x509()) != 1) {
    return MakeError(ErrorCode::kCrypto, "cannot use the device certificate: " + http::internal::TakeOpenSslErrors());
  }
  for (std::size_t i = 1; i < identity.chain.size(); ++i) {
    if (SSL_add1_chain_cert(ssl, identity.chain[i].x509()) != 1) {
      return MakeError(ErrorCode::kCrypto, "cannot add a CA certificate: " + http::internal::TakeOpenSslErrors());
    }
  }
  if (SSL_use_PrivateKey(ssl, identity.key->evp()) != 1 || SSL_check_private_key(ssl) != 1) {
    return MakeError(ErrorCode::kCrypto,
                     "the TLS key does not match the device certificate: " + http::internal::TakeOpenSslErrors());
  }
  return kOk;
}

}  // namespace

Connection::Connection(asio::any_io_executor executor, std::shared_ptr<asio::ssl::context> tls,
                       ConnectionSettings settings, std::optional<ClientIdentity> identity)
    : executor_(std::move(executor)),
      tls_(std::move(tls)),
      settings_(std::move(settings)),
      identity_(std::move(identity)) {
  const bool is_ipv6 = settings_.host.find(':') != std::string::npos;
  host_header_ = is_ipv6 ? "[" + settings_.host + "]" : settings_.host;
  if (settings_.port != 443) host_header_ += ":" + std::to_string(settings_.port);
}

Connection::~Connection() { Close(); }

void Connection::Close() {
  if (!state_) return;
  beast::error_code ignored;
  auto& lowest = beast::get_lowest_layer(state_->stream);
  lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest.close();
  state_.reset();
}

void Connection::Cancel() {
  if (!state_) return;
  beast::error_code ignored;
  beast::get_lowest_layer(state_->stream).socket().cancel(ignored);
}

asio::awaitable<Expected<void>> Connection::Connect() {
  Close();
  beast::error_code ec;
  tcp::resolver resolver(executor_);
  auto endpoints = co_await resolver.async_resolve(settings_.host, std::to_string(settings_.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, "resolving " + settings_.host + ": " + ec.message());
  // Published at once so Cancel() reaches a connection being set up; every
  // failure below closes it again.
  state_ = std::make_unique<State>(executor_, *tls_);
  State* state = state_.get();
  if (auto ready = http::internal::ExpectServerIdentity(state->stream.native_handle(), settings_.host); !ready) {
    Close();
    co_return std::unexpected(ready.error());
  }
  if (identity_) {
    if (auto used = UseClientIdentity(state->stream.native_handle(), *identity_); !used) {
      Close();
      co_return std::unexpected(used.error());
    }
  }
  auto& lowest = beast::get_lowest_layer(state->stream);
  if (settings_.bytes_per_second > 0) {
    const auto limit = static_cast<std::size_t>(settings_.bytes_per_second);
    lowest.rate_policy().read_limit(limit);
    lowest.rate_policy().write_limit(limit);
  }
  lowest.expires_after(settings_.timeout);
  co_await lowest.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    Close();
    co_return MakeError(ErrorCode::kUnavailable, "connecting to " + host_header_ + ": " + ec.message());
  }
  lowest.socket().set_option(tcp::no_delay(true), ec);
  lowest.expires_after(settings_.timeout);
  co_await state->stream.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    std::string why = http::internal::VerifyFailure(state->stream.native_handle());
    ERR_clear_error();
    Close();
    co_return MakeError(ErrorCode::kUnavailable,
                        "TLS handshake with " + host_header_ + ": " + (why.empty() ? ec.message() : why));
  }
  ++connects_;
  co_return kOk;
}

asio::awaitable<Expected<HttpReply>> Connection::Send(const HttpRequest& request, SendOptions options) {
  // A kept-alive connection may have been closed by the service since the
  // last request; then the request is sent once more on a new connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = state_ != nullptr;
    if (!state_) {
      auto connected = co_await Connect();
      if (!connected) co_return std::unexpected(connected.error());
    }
    bool closed_before_reply = false;
    auto reply = co_await Exchange(request, options, closed_before_reply);
    if (reply || !reused || !closed_before_reply) co_return reply;
    Close();
  }
  co_return MakeError(ErrorCode::kUnavailable, "the service closed the connection twice");
}

asio::awaitable<Expected<HttpReply>> Connection::Exchange(const HttpRequest& request, const SendOptions& options,
                                                          bool& closed_before_reply) {
  beast::error_code ec;
  bhttp::request<bhttp::string_body> message{bhttp::string_to_verb(request.method), request.target, 11};
  message.set(bhttp::field::host, host_header_);
  message.set(bhttp::field::user_agent, "citadel-sim");
  for (const auto& [name, value] : request.headers) message.set(name, value);
  message.body() = request.body;
  message.prepare_payload();
  message.keep_alive(true);

  auto& lowest = beast::get_lowest_layer(state_->stream);
  lowest.expires_after(settings_.timeout);
  if (options.drop_mid_request) {
    std::ostringstream text;
    text << message;
    const std::string whole = text.str();
    // Half of it: the service sees a request that never completes.
    co_await asio::async_write(state_->stream, asio::buffer(whole.data(), whole.size() / 2),
                               asio::redirect_error(asio::use_awaitable, ec));
    Close();
    co_return MakeError(ErrorCode::kUnavailable, "connection dropped mid-request (chaos)");
  }
  co_await bhttp::async_write(state_->stream, message, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    closed_before_reply = http::internal::IsConnectionClosed(ec);
    Close();
    co_return MakeError(ErrorCode::kUnavailable, "sending to " + host_header_ + ": " + ec.message());
  }

  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(kMaxResponseHeaderBytes);
  parser.body_limit(settings_.max_response_bytes);
  co_await bhttp::async_read_header(state_->stream, state_->buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    closed_before_reply = http::internal::IsConnectionClosed(ec);
    Close();
    co_return MakeError(ErrorCode::kUnavailable, "reading the reply from " + host_header_ + ": " + ec.message());
  }
  bool cut = false;
  if (options.cut_response_after) {
    while (!parser.is_done()) {
      co_await bhttp::async_read_some(state_->stream, state_->buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      if (parser.get().body().size() >= *options.cut_response_after) {
        cut = !parser.is_done();
        break;
      }
    }
  } else {
    co_await bhttp::async_read(state_->stream, state_->buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    Close();
    co_return MakeError(ErrorCode::kUnavailable, "reading the reply from " + host_header_ + ": " + ec.message());
  }
  auto response = parser.release();
  HttpReply reply;
  reply.status = static_cast<int>(response.result_int());
  for (const auto& field : response) reply.headers[Lower(field.name_string())] = std::string(field.value());
  reply.body = std::move(response.body());
  reply.cut = cut;
  if (cut || !response.keep_alive()) Close();
  co_return reply;
}

}  // namespace citadel::sim
