// HTTPS server and client on Boost.Beast + OpenSSL.
//
// Server: asynchronous, keep-alive, TLS 1.2+ only, optional client
// certificates (requested, not required, at the TLS layer: the handler
// decides, so one port serves users with tokens and devices with mTLS).
// Bounds: header and body sizes, read/idle timeouts, a connection cap.
// Anything malformed (garbage bytes on the TLS port, bad HTTP, oversized
// bodies) closes that connection or answers 4xx; other connections are
// never affected. Stop() is graceful: stop accepting, let in-flight
// requests finish (bounded), then close.
//
// Client: synchronous, one keep-alive connection reused across requests,
// reconnecting once if the server closed it. It pins a CA (PEM) and can
// present a client certificate whose key is a crypto::PrivateKey.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "http/admission.hpp"

namespace citadel::http {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // without the query, percent-decoding not applied
  std::string query;                           // raw, after '?'
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote_address;
  std::uint16_t remote_port = 0;
  // The client's certificate chain as presented in the TLS handshake,
  // leaf first; empty when none. NOT verified by the server: handlers
  // verify it against the right tenant CA.
  std::vector<crypto::Certificate> peer_chain;
  // Server only: how long the request waited for a worker (admission.hpp).
  std::chrono::nanoseconds queued{0};

  std::string Header(std::string_view lower_name) const;    // "" when absent
  std::string QueryParameter(std::string_view name) const;  // "" when absent
};

// A response body the server reads from a file while it writes the
// response, never holding more than a bounded chunk in memory: bytes
// [offset, offset + length) of path.
struct FileBody {
  std::filesystem::path path{};
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Server only: when set, the body is this file range instead of `body`
  // (which must be empty), and the Content-Length is file->length. The file
  // is opened when the response is written: if it cannot be opened or is
  // shorter than offset + length, the server answers 500 instead (or, when
  // the file shrinks during the write, cuts the connection so the client
  // sees a short body, never wrong bytes under a complete length).
  std::optional<FileBody> file{};
};

// Serving a file with range requests (RFC 9110 section 14), for handlers
// that return a FileBody.
//
// SelectByteRange reads a Range header value against a file of `size`
// bytes. One range is honoured: "bytes=N-", "bytes=N-M" (M past the end is
// clamped) and the suffix form "bytes=-N". An empty, malformed or
// multi-range header is ignored (status 200, the whole file), as RFC 9110
// allows; a range that starts at or beyond the end is 416.
struct ByteRange {
  int status = 200;  // 200 whole file, 206 partial, 416 not satisfiable
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
ByteRange SelectByteRange(std::string_view range_header, std::uint64_t size);

// The response for bytes of the file at path (of `size` bytes, as the
// caller knows it) under the request's Range header: 200 with the whole
// file, 206 with Content-Range "bytes first-last/size", or 416 (problem
// body) with Content-Range "bytes */size". 200 and 206 carry
// "Accept-Ranges: bytes".
Response FileResponse(const Request& request, std::filesystem::path path, std::uint64_t size,
                      std::string content_type = "application/octet-stream");

// An RFC 9457 problem response with content type application/problem+json:
// {"type":"urn:citadel:problem:<name>","title":...,"status":...,"detail":...}.
Response ProblemResponse(int status, std::string_view name, std::string_view title, std::string_view detail);

// The handler runs on one of the server's request workers (admission.hpp)
// and may block it (e.g. on the store); it is called from several threads
// at once. An exception escaping it becomes a 500 problem response and is
// logged.
using Handler = std::function<Response(const Request&)>;

// Path-pattern routing: "/v1/tenants/{tenant}/devices/{device}".
using PathParams = std::map<std::string, std::string>;
using RouteHandler = std::function<Response(const Request&, const PathParams&)>;

class Router {
 public:
  void Add(std::string method, std::string_view pattern, RouteHandler handler);
  // 404 problem+json for unknown paths, 405 with Allow for known paths with
  // another method.
  // `route`, when given, receives the pattern that matched ("" when none):
  // a label for metrics and logs that never carries ids.
  Response Dispatch(const Request& request, std::string* route = nullptr) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    RouteHandler handler;
  };
  std::vector<Route> routes_;
};

struct TlsIdentity {
  std::string certificate_chain_pem;        // leaf first
  const crypto::PrivateKey* key = nullptr;  // must outlive the server/client
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: pick a free port; see Server::port()
  TlsIdentity identity;
  bool request_client_certificate = true;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  // Requests for which allows_large_body(method, target) is true may carry
  // up to max_large_body_bytes instead (a symbol file upload); decided once
  // the header is read, before any of the body is.
  std::size_t max_large_body_bytes = 0;
  std::function<bool(std::string_view method, std::string_view target)> allows_large_body;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds read_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::size_t max_connections = 10'000;
  int threads = 0;  // I/O threads; 0: one per core (at least 2)
  // Handlers run on admission.workers threads behind a fair, bounded queue
  // that sheds load with 503 + Retry-After (admission.hpp).
  AdmissionOptions admission{};
  // The fairness key of a request, computed on an I/O thread before the
  // request is queued: it must be cheap and never block. Empty function or
  // key: every request shares one key. A key that depends only on the
  // connection (its client certificate) sets per_connection, and the
  // server asks once per connection.
  struct FairnessKey {
    std::string key;
    bool per_connection = false;
  };
  std::function<FairnessKey(const Request&)> fairness_key{};
  // Called for every request admission sheds, on the thread that shed it,
  // after the 503 is on its way (metrics, access log). Must not block.
  std::function<void(const Request&, ShedReason)> on_shed{};
};

class Server {
 public:
  static Expected<std::unique_ptr<Server>> Create(ServerOptions options, Handler handler);
  virtual ~Server() = default;
  // Binds and starts serving on background threads.
  [[nodiscard]] virtual Expected<void> Start() = 0;
  virtual std::uint16_t port() const = 0;
  // The admission queue now (admission.hpp), for metrics.
  virtual AdmissionStats admission_stats() const = 0;
  // Graceful stop; safe to call from a signal-handling thread; idempotent.
  // Waits up to ~5 s for requests in flight, so it must not be called from
  // a request handler.
  virtual void Stop() = 0;
  // Blocks until the server has stopped.
  virtual void Wait() = 0;
};

struct ClientOptions {
  std::string base_url;            // "https://127.0.0.1:8443"
  std::string ca_certificate_pem;  // pinned server CA; required
  std::optional<TlsIdentity> client_identity;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{30'000};
  std::size_t max_response_bytes = 16 * 1024 * 1024;
  std::string user_agent = "citadel";
};

class Client {
 public:
  static Expected<std::unique_ptr<Client>> Create(ClientOptions options);
  virtual ~Client() = default;
  // kUnavailable when the server cannot be reached; any HTTP status is a
  // successful Response.
  virtual Expected<Response> Send(std::string_view method, std::string_view path_and_query, std::string_view body = {},
                                  const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;
};

// Splits "https://host:port" into host and port; refuses other schemes.
struct Endpoint {
  std::string host;
  std::uint16_t port = 443;
};
Expected<Endpoint> ParseBaseUrl(std::string_view url);

// Backpressure (docs/PROTOCOL.md, "Backpressure"): a 429 or 503 carries
// Retry-After: S, whole seconds. ParseRetryAfter reads delay-seconds (RFC
// 9110 section 10.2.3); an HTTP-date (the service never sends one), garbage
// or a negative value is nullopt (the client backs off as for any failure);
// values above kMaxRetryAfter read as kMaxRetryAfter.
inline constexpr std::chrono::seconds kMaxRetryAfter{3600};
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value);
// How long a client waits when told S: uniform in [S, 1.5 S], so a fleet
// told the same S does not come back at once. `uniform` is a draw in [0, 1).
std::chrono::milliseconds RetryAfterWait(std::chrono::seconds retry_after, double uniform);

}  // namespace citadel::http
