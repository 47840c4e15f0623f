// Streaming, bounded, resumable HTTP(S) GET for downloads from servers we do
// not trust to behave: the update service, a mirror, a CDN, or the plain
// http://127.0.0.1 repository of the TUF conformance suite.
//
// What a hostile or broken server can and cannot do to a Get():
//   * it cannot make the sink see more than `max_length` bytes of the file
//     (counted from position 0), whatever Content-Length says and however
//     long a chunked or close-delimited body goes on: the transfer fails
//     with kTooLarge before the chunk that would cross the bound is handed
//     over, or before the body is read at all when the announced length is
//     already too large;
//   * it cannot hold the caller forever: connecting (and the TLS handshake)
//     is bounded by connect_timeout, every read by read_timeout, and the
//     whole response by a minimum average speed over a sliding window (the
//     response header counts as no bytes, so a slow header is caught too);
//   * it cannot make the client buffer the body: chunks go to the sink as
//     they arrive (at most chunk_bytes each);
//   * over https it must chain to the pinned CA (no system trust store) and
//     its certificate must name the URL's host (DNS name or IP SAN).
// It can send wrong bytes: integrity is the caller's job (TUF verifies
// length and hashes of the whole file).
//
// Redirects are not followed (a 3xx is a failure).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "http/http.hpp"

namespace citadel::http {

// Receives the body. `position` is the byte offset in the file where chunk
// starts. Positions are contiguous within one Get(), except that a transfer
// asked to resume (offset > 0) whose server sends the whole file instead
// (200) first calls the sink with (0, "") — even when the file is empty —
// so the sink truncates what it had and starts over. An error returned by
// the sink aborts the transfer and Get() returns it unchanged.
using DownloadSink = std::function<Expected<void>(std::uint64_t position, std::string_view chunk)>;

struct DownloadRequest {
  std::string url;  // http://host[:port]/path[?query] or https://...; host: name, IPv4, [IPv6]
  // Bound on the whole file, from position 0. Taken literally: 0 accepts
  // only an empty file. There is no "unbounded"; pass the largest size the
  // caller can store.
  std::uint64_t max_length = 0;
  // > 0: resume; sends "Range: bytes=<offset>-". Must not exceed max_length.
  std::uint64_t offset = 0;
};

struct DownloadResult {
  std::uint64_t bytes_received = 0;           // body bytes that arrived in this call
  bool resumed = false;                       // the server honoured offset > 0 (206)
  int status = 0;                             // the final HTTP status (200, 206, or 416 when already complete)
  std::optional<std::uint64_t> total_length;  // the file's size when the server said it
};

struct DownloaderOptions {
  // Pinned CA certificate(s), PEM, for https URLs; https is refused when
  // empty (there is no fallback to a system trust store).
  std::string ca_certificate_pem;
  // Presented on https when the server asks (mutual TLS); the key must
  // outlive the Downloader.
  std::optional<TlsIdentity> client_identity;
  // Name resolution, TCP connect and TLS handshake (each).
  std::chrono::milliseconds connect_timeout{10'000};
  // Longest silence: sending the request, waiting for the response header,
  // and between two reads of the body.
  std::chrono::milliseconds read_timeout{30'000};
  // Slow-retrieval bound: once a response has run for speed_window, fewer
  // than minimum_bytes_per_second * speed_window body bytes in the last
  // speed_window fail it with kUnavailable ("too slow: ..."). A transfer
  // that finishes within the window is never judged. 0 disables it (and
  // with it the bound on a trickling server that never goes silent).
  std::uint64_t minimum_bytes_per_second = 1024;
  std::chrono::milliseconds speed_window{10'000};
  // Largest chunk handed to the sink at once.
  std::size_t chunk_bytes = 64 * 1024;
  // Idle keep-alive connections kept for reuse, at most one per (scheme,
  // host, port); 0 closes every connection after its response.
  std::size_t max_idle_connections = 4;
  // Backpressure (docs/PROTOCOL.md, "Backpressure"): a 429 or 503 whose
  // Retry-After is at most max_retry_after is asked again after
  // RetryAfterWait (uniform in [S, 1.5 S]), up to backpressure_retries times
  // in one Get(), so a caller whose work takes several requests in a row (a
  // TUF refresh) makes progress at the rate the server allows instead of
  // starting over. A longer Retry-After, or none, fails at once.
  int backpressure_retries = 3;
  std::chrono::seconds max_retry_after{10};
  std::string user_agent = "citadel";
  // Sent with every request. Host, Range, Content-Length, Transfer-Encoding
  // and Connection are the Downloader's own and refused here.
  std::vector<std::pair<std::string, std::string>> headers;
};

// One Downloader serves any number of origins and keeps their connections
// alive between calls (a TUF refresh makes several requests to one server).
// A reused connection that turns out to be closed, or answers garbage,
// before a response header arrives is replaced once (GET is idempotent).
// Thread safety: Get() may be called from several threads; calls are
// serialized. Destroying the Downloader closes its connections.
class Downloader {
 public:
  static Expected<std::unique_ptr<Downloader>> Create(DownloaderOptions options);
  virtual ~Downloader() = default;

  // Errors: kNotFound for 403 and 404; kTooLarge when the file exceeds
  // max_length; kCrypto when an https server is not trusted; kInvalidArgument
  // for a malformed URL or request; kUnavailable for everything else the
  // server or network did (unreachable, timed out, too slow, cut off, other
  // non-2xx statuses, a 206 that does not start at offset, a 429 or 503
  // still refused after the backpressure retries, whose message then says
  // "retry after N s" when the server said so); the sink's own error as it
  // returned it.
  //
  // offset > 0: 206 continues at offset (resumed = true); 200 starts over at
  // 0 (see DownloadSink); 416 whose Content-Range says the file has exactly
  // offset bytes is success with 0 bytes; any other 416 is retried once
  // without Range, starting over at 0.
  [[nodiscard]] virtual Expected<DownloadResult> Get(const DownloadRequest& request, const DownloadSink& sink) = 0;
};

// A URL split for a request. Exposed for callers that build URLs and want
// them checked early; Get() parses with it.
struct Url {
  bool tls = false;        // https
  std::string host;        // without [] for IPv6
  std::uint16_t port = 0;  // explicit, or 80 / 443
  std::string target;      // path and query, "/" at least; the fragment dropped
};
// Refuses other schemes, user info, and targets with spaces or control
// characters.
Expected<Url> ParseUrl(std::string_view url);

}  // namespace citadel::http
