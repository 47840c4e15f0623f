// One virtual device's HTTPS connection to the service: asynchronous
// (Boost.Asio C++20 coroutines on the caller's executor), keep-alive, TLS
// 1.2+ pinned to the service CA, optionally presenting the device's
// certificate chain (mutual TLS). Reconnects by itself when the service
// closed the kept-alive connection (idle timeout) before the request went
// out; that is not a failure of the request.
//
// Chaos hooks (SendOptions): cut the connection after writing part of the
// request, or after reading part of the response body; throttle both
// directions (beast::simple_rate_policy).
//
// Threading: a Connection is used by one coroutine at a time (its device's);
// all its operations run on the executor it was made with.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "http/http.hpp"

namespace citadel::sim {

namespace asio = boost::asio;

// The client TLS context every connection shares: pinned to ca_pem, TLS
// 1.2+, idle connections' buffers released (SSL_MODE_RELEASE_BUFFERS: a
// fleet of kept-alive connections mostly waits).
Expected<std::shared_ptr<asio::ssl::context>> MakeTlsContext(std::string_view ca_pem);

// A device's certificate chain (leaf first) and TLS key, presented by its
// connection for mutual TLS. Set per connection, so a fleet of 100,000
// devices shares one TLS context. The key must outlive the connection.
struct ClientIdentity {
  std::vector<crypto::Certificate> chain;
  const crypto::PrivateKey* key = nullptr;
};

struct ConnectionSettings {
  std::string host;  // an IP literal or a name
  std::uint16_t port = 443;
  std::chrono::milliseconds timeout{30'000};  // connect, and each request
  std::uint64_t bytes_per_second = 0;         // 0: unlimited
  std::size_t max_response_bytes = 64u << 20;
};

struct HttpRequest {
  std::string method = "GET";
  std::string target;  // path and query
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  bool cut = false;                            // SendOptions::cut_response_after ended it early

  std::string Header(const std::string& lower_name) const;
};

struct SendOptions {
  // Write only part of the request, then close: the service never sees a
  // whole request. The send fails (kUnavailable, "dropped").
  bool drop_mid_request = false;
  // Close once this many body bytes arrived; the reply is returned with
  // cut = true and the body so far.
  std::optional<std::uint64_t> cut_response_after{};
};

class Connection {
 public:
  // identity: presented in every handshake (mutual TLS); nullopt: none.
  Connection(asio::any_io_executor executor, std::shared_ptr<asio::ssl::context> tls, ConnectionSettings settings,
             std::optional<ClientIdentity> identity = std::nullopt);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // kUnavailable when the service cannot be reached or the exchange broke;
  // any HTTP status is a successful reply.
  asio::awaitable<Expected<HttpReply>> Send(const HttpRequest& request, SendOptions options = {});
  // Drops the connection (the next Send connects again).
  void Close();
  // Cancels what is in flight (it fails with kUnavailable); the connection
  // is closed by the failing Send. Call on the connection's executor.
  void Cancel();
  // Connections made so far (the first one included).
  std::uint64_t connects() const { return connects_; }

 private:
  struct State;
  asio::awaitable<Expected<void>> Connect();
  asio::awaitable<Expected<HttpReply>> Exchange(const HttpRequest& request, const SendOptions& options,
                                                bool& closed_before_reply);

  asio::any_io_executor executor_;
  std::shared_ptr<asio::ssl::context> tls_;
  ConnectionSettings settings_;
  std::optional<ClientIdentity> identity_;
  std::string host_header_;
  std::unique_ptr<State> state_;
  std::uint64_t connects_ = 0;
};

}  // namespace citadel::sim
