// Downloader on Boost.Beast. As in client.cpp, every network step is an
// asynchronous operation run to completion on a private io_context, because
// beast::tcp_stream deadlines only apply to asynchronous operations. The body
// is read with one async_read_some at a time into a fixed buffer
// (buffer_body), so that every read gets its own deadline and every chunk
// reaches the sink before the next read.
#include "http/fetch.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/log.hpp"
#include "http/tls.hpp"

namespace citadel::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kMaxResponseHeaderBytes = 64 * 1024;
// Raw bytes read ahead of the parser; the header limit plus one read.
constexpr std::size_t kMaxReadAheadBytes = 256 * 1024;
constexpr std::size_t kMaxChunkBytes = 16 * 1024 * 1024;
// Resolution of the speed window (see SpeedMeter).
constexpr int kSpeedBucketsPerWindow = 32;

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), text.begin(), [](char p, char t) {
           return p == static_cast<char>(std::tolower(static_cast<unsigned char>(t)));
         });
}

// RFC 9110 token characters for a header name; no CR, LF or NUL in a value
// (they would split the request).
bool IsValidHeader(std::string_view name, std::string_view value) {
  constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";
  bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || kTokenPunctuation.find(c) != std::string_view::npos;
  });
  return name_ok && value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

bool IsReservedHeader(std::string_view name) {
  for (std::string_view reserved : {"host", "range", "content-length", "transfer-encoding", "connection"}) {
    if (name.size() == reserved.size() && StartsWithIgnoreCase(name, reserved)) return true;
  }
  return false;
}

std::optional<std::uint64_t> ParseNumber(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Content-Range of a 206 ("bytes first-last/total" or ".../*") or of a 416
// ("bytes */total").
struct ContentRange {
  std::optional<std::uint64_t> first;  // empty for "*"
  std::uint64_t last = 0;
  std::optional<std::uint64_t> total;  // empty for "*"
};

std::optional<ContentRange> ParseContentRange(std::string_view value) {
  constexpr std::string_view kUnit = "bytes ";
  if (!StartsWithIgnoreCase(value, kUnit)) return std::nullopt;
  value.remove_prefix(kUnit.size());
  std::size_t slash = value.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view range = value.substr(0, slash);
  std::string_view total = value.substr(slash + 1);
  ContentRange parsed;
  if (total != "*") {
    parsed.total = ParseNumber(total);
    if (!parsed.total) return std::nullopt;
  }
  if (range == "*") return parsed;
  std::size_t dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  parsed.first = ParseNumber(range.substr(0, dash));
  auto last = ParseNumber(range.substr(dash + 1));
  if (!parsed.first || !last || *last < *parsed.first) return std::nullopt;
  parsed.last = *last;
  if (parsed.total && parsed.last >= *parsed.total) return std::nullopt;
  return parsed;
}

// "1", "1.5", "0.25" (seconds), for messages.
std::string FormatSeconds(std::chrono::milliseconds duration) {
  auto milliseconds = static_cast<std::uint64_t>(duration.count());
  std::string text = std::to_string(milliseconds / 1000);
  if (std::uint64_t fraction = milliseconds % 1000; fraction != 0) {
    std::string digits = std::to_string(fraction + 1000).substr(1);
    digits.erase(digits.find_last_not_of('0') + 1);
    text += "." + digits;
  }
  return text;
}

// The slow-retrieval guard: the body bytes of the last `window`, in buckets
// of window/32. A bucket counts while its newest byte is inside the window,
// so the measured speed errs high by at most one bucket: the guard is never
// stricter than the stated minimum. Nothing is judged before the response
// has run for a whole window.
class SpeedMeter {
 public:
  SpeedMeter(Clock::time_point start, std::uint64_t minimum_bytes_per_second, std::chrono::milliseconds window)
      : start_(start),
        window_(window),
        bucket_width_(window / kSpeedBucketsPerWindow),
        minimum_bytes_per_second_(minimum_bytes_per_second) {
    auto window_ms = static_cast<std::uint64_t>(window.count());
    required_bytes_ =
        minimum_bytes_per_second > std::numeric_limits<std::uint64_t>::max() / std::max<std::uint64_t>(window_ms, 1)
            ? std::numeric_limits<std::uint64_t>::max()
            : minimum_bytes_per_second * window_ms / 1000;
  }

  void Add(Clock::time_point now, std::uint64_t bytes) {
    if (!buckets_.empty() && now - buckets_.back().first < bucket_width_) {
      buckets_.back().last = now;
      buckets_.back().bytes += bytes;
    } else {
      buckets_.push_back({now, now, bytes});
    }
    while (!buckets_.empty() && buckets_.front().last <= now - window_) buckets_.pop_front();
  }

  bool TooSlow(Clock::time_point now) const {
    return required_bytes_ > 0 && now - start_ >= window_ && BytesInWindow(now) < required_bytes_;
  }

  // When the transfer will be too slow if no further byte arrives; the
  // deadline for the next read. time_point::max() when the guard is off.
  Clock::time_point Deadline() const {
    if (required_bytes_ == 0) return Clock::time_point::max();
    Clock::time_point judged_from = start_ + window_;
    std::uint64_t remaining = 0;
    for (const Bucket& bucket : buckets_) remaining += bucket.bytes;
    for (const Bucket& bucket : buckets_) {
      if (remaining < required_bytes_) break;
      remaining -= bucket.bytes;
      if (remaining < required_bytes_) return std::max(judged_from, bucket.last + window_);
    }
    return judged_from;
  }

  std::string Describe(Clock::time_point now) const {
    auto window_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(window_.count(), 1));
    return "too slow: " + std::to_string(BytesInWindow(now) * 1000 / window_ms) + " bytes/s for " +
           FormatSeconds(window_) + " s (minimum " + std::to_string(minimum_bytes_per_second_) + ")";
  }

 private:
  struct Bucket {
    Clock::time_point first;
    Clock::time_point last;
    std::uint64_t bytes = 0;
  };

  std::uint64_t BytesInWindow(Clock::time_point now) const {
    std::uint64_t sum = 0;
    for (const Bucket& bucket : buckets_) {
      if (bucket.last > now - window_) sum += bucket.bytes;
    }
    return sum;
  }

  const Clock::time_point start_;
  const std::chrono::milliseconds window_;
  const Clock::duration bucket_width_;
  const std::uint64_t minimum_bytes_per_second_;
  std::uint64_t required_bytes_ = 0;
  std::deque<Bucket> buckets_;  // oldest first; at most kSpeedBucketsPerWindow + 1
};

// A plain or TLS connection with the bytes read ahead of the parser.
class Connection {
 public:
  Connection(asio::io_context& io, ssl::context* tls_context) {
    if (tls_context != nullptr) {
      tls_.emplace(io, *tls_context);
    } else {
      plain_.emplace(io);
    }
  }
  ~Connection() {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  beast::tcp_stream& tcp() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }
  beast::ssl_stream<beast::tcp_stream>* tls() { return tls_ ? &*tls_ : nullptr; }
  beast::tcp_stream* plain() { return plain_ ? &*plain_ : nullptr; }
  beast::flat_buffer& read_ahead() { return read_ahead_; }

 private:
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer read_ahead_{kMaxReadAheadBytes};
};

struct Origin {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const Origin&) const = default;
};

// What one request/response exchange needs besides the connection.
struct Exchange {
  const Url& url;
  const std::string& where;  // "GET http://host:port/target", for messages
  const DownloadRequest& request;
  std::uint64_t range_offset;  // sent as Range when > 0
  const DownloadSink& sink;
};

// How an exchange ended, besides its result.
struct ExchangeOutcome {
  bool before_response = false;                     // failed (not timed out) before a response header: worth one retry
  bool reusable = false;                            // the connection may serve another request
  bool restart_whole = false;                       // 416 that does not confirm the file is complete
  std::optional<std::chrono::seconds> retry_after;  // a 429 or 503 that said when to come back
};

class DownloaderImpl final : public Downloader {
 public:
  explicit DownloaderImpl(DownloaderOptions options) : options_(std::move(options)) {}

  Expected<void> Init();
  Expected<DownloadResult> Get(const DownloadRequest& request, const DownloadSink& sink) override;

 private:
  struct IdleConnection {
    Origin origin;
    std::unique_ptr<Connection> connection;
  };

  // Starts an asynchronous operation through start(handler) and runs the
  // io_context until it completes; the stream's deadline bounds it.
  template <typename Start>
  beast::error_code Run(Start&& start) {
    beast::error_code result = asio::error::would_block;
    std::forward<Start>(start)([&result](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  Expected<std::unique_ptr<Connection>> Connect(const Url& url, const std::string& where);
  Expected<DownloadResult> Transfer(const Exchange& exchange, ExchangeOutcome& outcome);
  template <typename Stream>
  Expected<DownloadResult> Perform(Stream& stream, Connection& connection, const Exchange& exchange,
                                   ExchangeOutcome& outcome);
  std::unique_ptr<Connection> TakeIdle(const Origin& origin);
  void KeepIdle(const Origin& origin, std::unique_ptr<Connection> connection);

  const DownloaderOptions options_;
  std::mutex mutex_;  // serializes Get(); everything below is guarded by it
  asio::io_context io_{1};
  std::optional<ssl::context> tls_;  // present when a CA is pinned
  // Declared after io_ and tls_: connections must go before them.
  std::vector<IdleConnection> idle_;                 // oldest first
  std::minstd_rand random_{std::random_device{}()};  // Retry-After jitter
};

Expected<void> DownloaderImpl::Init() {
  if (options_.ca_certificate_pem.empty()) return kOk;
  tls_.emplace(ssl::context::tls_client);
  SSL_CTX* context = tls_->native_handle();
  CITADEL_TRY_VOID(internal::ApplyBaseSettings(context));
  CITADEL_TRY_VOID(internal::PinCertificateAuthorities(context, options_.ca_certificate_pem));
  if (options_.client_identity) CITADEL_TRY_VOID(internal::UseIdentity(context, *options_.client_identity));
  return kOk;
}

std::unique_ptr<Connection> DownloaderImpl::TakeIdle(const Origin& origin) {
  auto found =
      std::find_if(idle_.begin(), idle_.end(), [&](const IdleConnection& idle) { return idle.origin == origin; });
  if (found == idle_.end()) return nullptr;
  std::unique_ptr<Connection> connection = std::move(found->connection);
  idle_.erase(found);
  return connection;
}

void DownloaderImpl::KeepIdle(const Origin& origin, std::unique_ptr<Connection> connection) {
  if (options_.max_idle_connections == 0) return;
  if (idle_.size() >= options_.max_idle_connections) idle_.erase(idle_.begin());
  idle_.push_back({origin, std::move(connection)});
}

Expected<std::unique_ptr<Connection>> DownloaderImpl::Connect(const Url& url, const std::string& where) {
  // Name resolution (getaddrinfo) is not bounded by connect_timeout; IP
  // literals resolve at once.
  tcp::resolver resolver(io_);
  tcp::resolver::results_type endpoints;
  beast::error_code ec = Run([&](auto handler) {
    resolver.async_resolve(
        url.host, std::to_string(url.port),
        [&endpoints, handler](beast::error_code resolve_ec, tcp::resolver::results_type results) mutable {
          endpoints = std::move(results);
          handler(resolve_ec);
        });
  });
  if (ec) return MakeError(ErrorCode::kUnavailable, where + ": resolving " + url.host + ": " + ec.message());

  auto connection = std::make_unique<Connection>(io_, url.tls ? &*tls_ : nullptr);
  if (url.tls) CITADEL_TRY_VOID(internal::ExpectServerIdentity(connection->tls()->native_handle(), url.host));
  beast::tcp_stream& stream = connection->tcp();
  stream.expires_after(options_.connect_timeout);
  ec = Run([&](auto handler) {
    stream.async_connect(
        endpoints, [handler](beast::error_code connect_ec, const tcp::endpoint&) mutable { handler(connect_ec); });
  });
  if (ec) {
    return MakeError(ErrorCode::kUnavailable,
                     where + ": connecting: " + (ec == beast::error::timeout ? "timed out" : ec.message()));
  }
  stream.socket().set_option(tcp::no_delay(true), ec);
  if (!url.tls) return connection;

  stream.expires_after(options_.connect_timeout);
  ec = Run([&](auto handler) { connection->tls()->async_handshake(ssl::stream_base::client, handler); });
  if (ec) {
    std::string verify_failure = internal::VerifyFailure(connection->tls()->native_handle());
    ERR_clear_error();
    if (!verify_failure.empty()) {
      return MakeError(ErrorCode::kCrypto, where + ": the server is not trusted (its certificate does not chain to " +
                                               "the pinned CA or does not name " + url.host + "): " + verify_failure);
    }
    return MakeError(ErrorCode::kUnavailable,
                     where + ": TLS handshake: " + (ec == beast::error::timeout ? "timed out" : ec.message()));
  }
  return connection;
}

template <typename Stream>
Expected<DownloadResult> DownloaderImpl::Perform(Stream& stream, Connection& connection, const Exchange& exchange,
                                                 ExchangeOutcome& outcome) {
  const Url& url = exchange.url;
  const std::string& where = exchange.where;
  const std::uint64_t max_length = exchange.request.max_length;
  beast::tcp_stream& tcp_stream = connection.tcp();

  bhttp::request<bhttp::empty_body> request{bhttp::verb::get, url.target, 11};
  bool default_port = url.port == (url.tls ? 443 : 80);
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  request.set(bhttp::field::host, default_port ? host : host + ":" + std::to_string(url.port));
  request.set(bhttp::field::user_agent, options_.user_agent);
  for (const auto& [name, value] : options_.headers) request.set(name, value);
  if (exchange.range_offset > 0) {
    request.set(bhttp::field::range, "bytes=" + std::to_string(exchange.range_offset) + "-");
  }

  tcp_stream.expires_after(options_.read_timeout);
  beast::error_code ec = Run([&](auto handler) { bhttp::async_write(stream, request, handler); });
  if (ec) {
    outcome.before_response = ec != beast::error::timeout;
    return MakeError(ErrorCode::kUnavailable,
                     where + ": sending the request: " + (ec == beast::error::timeout ? "timed out" : ec.message()));
  }

  SpeedMeter meter(Clock::now(), options_.minimum_bytes_per_second, options_.speed_window);
  // A timed-out read is "too slow" when the speed guard set its deadline.
  auto read_failure = [&](const beast::error_code& error, std::string_view doing) {
    Clock::time_point now = Clock::now();
    if (error == beast::error::timeout && meter.TooSlow(now)) {
      return MakeError(ErrorCode::kUnavailable, where + ": " + meter.Describe(now));
    }
    return MakeError(ErrorCode::kUnavailable, where + ": " + std::string(doing) + ": " +
                                                  (error == beast::error::timeout ? "timed out" : error.message()));
  };

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.header_limit(kMaxResponseHeaderBytes);
  // max_length is enforced below, per chunk. Not boost::none: Beast 1.74
  // compares a Content-Length against the optional and refuses every body.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  tcp_stream.expires_at(std::min(Clock::now() + options_.read_timeout, meter.Deadline()));
  ec = Run([&](auto handler) { bhttp::async_read_header(stream, connection.read_ahead(), parser, handler); });
  if (ec) {
    outcome.before_response = ec != beast::error::timeout;
    return read_failure(ec, "waiting for the response");
  }

  DownloadResult result;
  const auto& header = parser.get();
  result.status = static_cast<int>(header.result_int());
  const std::string status_text = "HTTP " + std::to_string(result.status);
  const boost::optional<std::uint64_t> content_length = parser.content_length();
  const std::string content_range(header[bhttp::field::content_range]);
  std::uint64_t position = 0;

  if (result.status == 403 || result.status == 404) {
    return MakeError(ErrorCode::kNotFound, where + ": " + status_text);
  }
  if (result.status == 416 && exchange.range_offset > 0) {
    auto range = ParseContentRange(content_range);
    if (range && !range->first && range->total == exchange.range_offset) {
      result.total_length = range->total;
      return result;  // the caller already has the whole file
    }
    outcome.restart_whole = true;
    return result;
  }
  if (result.status == 206) {
    auto range = ParseContentRange(content_range);
    if (exchange.range_offset == 0 || !range || range->first != exchange.range_offset ||
        (range->total && range->last + 1 != *range->total)) {
      return MakeError(ErrorCode::kUnavailable,
                       where + ": the server answered \"Range: bytes=" + std::to_string(exchange.range_offset) +
                           "-\" with \"Content-Range: " + content_range + "\"");
    }
    result.total_length = range->total;
    result.resumed = true;
    position = exchange.range_offset;
  } else if (result.status >= 200 && result.status < 300) {
    if (content_length) result.total_length = *content_length;
  } else if (result.status == 429 || result.status == 503) {
    outcome.retry_after = ParseRetryAfter(header[bhttp::field::retry_after]);
    return MakeError(ErrorCode::kUnavailable,
                     where + ": " + status_text +
                         (outcome.retry_after ? ", retry after " + std::to_string(outcome.retry_after->count()) + " s"
                                              : std::string()));
  } else {
    return MakeError(ErrorCode::kUnavailable, where + ": " + status_text);
  }
  std::string too_large;
  if (result.total_length && *result.total_length > max_length) {
    too_large = "a file of " + std::to_string(*result.total_length) + " bytes";
  } else if (content_length && *content_length > max_length - position) {
    too_large = std::to_string(*content_length) + " bytes from position " + std::to_string(position);
  }
  if (!too_large.empty()) {
    return MakeError(ErrorCode::kTooLarge, where + ": the server announces " + too_large + ", more than the limit of " +
                                               std::to_string(max_length) + " bytes");
  }

  // Whatever the sink holds from an earlier call is not the start of this body.
  if (!result.resumed && exchange.request.offset > 0) CITADEL_TRY_VOID(exchange.sink(0, {}));

  std::vector<char> chunk(options_.chunk_bytes);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    tcp_stream.expires_at(std::min(Clock::now() + options_.read_timeout, meter.Deadline()));
    ec = Run([&](auto handler) { bhttp::async_read_some(stream, connection.read_ahead(), parser, handler); });
    if (ec == bhttp::error::need_buffer) ec = {};
    std::size_t received = chunk.size() - parser.get().body().size;
    Clock::time_point now = Clock::now();
    // Bytes that arrived before a failure still go to the sink, so that a
    // resume continues after them.
    if (received > 0) {
      if (received > max_length - position) {
        return MakeError(ErrorCode::kTooLarge,
                         where + ": the body exceeds the limit of " + std::to_string(max_length) + " bytes");
      }
      CITADEL_TRY_VOID(exchange.sink(position, std::string_view(chunk.data(), received)));
      position += received;
      result.bytes_received += received;
      meter.Add(now, received);
    }
    if (ec) return read_failure(ec, "reading the body after " + std::to_string(result.bytes_received) + " bytes");
    if (!parser.is_done() && meter.TooSlow(now)) {
      return MakeError(ErrorCode::kUnavailable, where + ": " + meter.Describe(now));
    }
  }
  tcp_stream.expires_never();
  // Bytes beyond the response would be read as the next response: such a
  // connection is not reused.
  outcome.reusable = parser.get().keep_alive() && connection.read_ahead().size() == 0;
  return result;
}

Expected<DownloadResult> DownloaderImpl::Transfer(const Exchange& exchange, ExchangeOutcome& outcome) {
  Origin origin{exchange.url.tls, exchange.url.host, exchange.url.port};
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> connection = TakeIdle(origin);
    bool reused = connection != nullptr;
    if (!reused) {
      CITADEL_TRY(connection, Connect(exchange.url, exchange.where));
    }
    outcome = {};
    auto result = connection->tls() != nullptr ? Perform(*connection->tls(), *connection, exchange, outcome)
                                               : Perform(*connection->plain(), *connection, exchange, outcome);
    if (result && outcome.reusable) KeepIdle(origin, std::move(connection));
    // A kept-alive connection the server has closed (or filled with stray
    // bytes) fails before a response arrives; GET is idempotent, so one
    // retry on a fresh connection is safe.
    if (!result && reused && outcome.before_response && attempt == 0) {
      log::Debug("kept-alive connection failed; reconnecting", {{"request", exchange.where}});
      continue;
    }
    return result;
  }
  return MakeError(ErrorCode::kInternal, exchange.where + ": retry loop ended without a result");
}

Expected<DownloadResult> DownloaderImpl::Get(const DownloadRequest& request, const DownloadSink& sink) {
  CITADEL_TRY(Url url, ParseUrl(request.url));
  std::string where = "GET " + std::string(url.tls ? "https://" : "http://") +
                      (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
                      std::to_string(url.port) + url.target;
  if (url.tls && !tls_) {
    return MakeError(ErrorCode::kInvalidArgument, where + ": https needs a pinned CA certificate (none configured)");
  }
  if (request.offset > request.max_length) {
    return MakeError(ErrorCode::kInvalidArgument, where + ": offset " + std::to_string(request.offset) +
                                                      " is beyond the limit of " + std::to_string(request.max_length));
  }
  if (!sink) return MakeError(ErrorCode::kInvalidArgument, where + ": no sink");

  std::lock_guard lock(mutex_);
  try {
    for (int retry = 0;; ++retry) {
      ExchangeOutcome outcome;
      auto result = Transfer({url, where, request, request.offset, sink}, outcome);
      if (result && outcome.restart_whole) {
        log::Debug("the server cannot serve the rest from the offset; downloading the whole file",
                   {{"request", where}, {"offset", std::to_string(request.offset)}});
        result = Transfer({url, where, request, 0, sink}, outcome);
      }
      if (result || !outcome.retry_after || *outcome.retry_after > options_.max_retry_after ||
          retry >= options_.backpressure_retries) {
        return result;
      }
      std::uniform_real_distribution<double> draw(0.0, 1.0);
      auto wait = RetryAfterWait(*outcome.retry_after, draw(random_));
      log::Info("the server asked to come back later; waiting",
                {{"request", where}, {"wait_ms", std::to_string(wait.count())}});
      std::this_thread::sleep_for(wait);
    }
  } catch (const std::exception& e) {
    idle_.clear();
    return MakeError(ErrorCode::kInternal, where + ": " + e.what());
  }
}

}  // namespace

Expected<Url> ParseUrl(std::string_view url) {
  auto invalid = [url](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, "URL \"" + std::string(url) + "\": " + std::string(why) +
                                                      " (expected http[s]://host[:port]/path)");
  };
  Url parsed;
  std::string_view rest;
  if (StartsWithIgnoreCase(url, "https://")) {
    parsed.tls = true;
    rest = url.substr(8);
  } else if (StartsWithIgnoreCase(url, "http://")) {
    rest = url.substr(7);
  } else {
    return invalid("only http and https are supported");
  }
  std::size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view target = authority_end == std::string_view::npos ? "" : rest.substr(authority_end);
  target = target.substr(0, target.find('#'));
  if (authority.find('@') != std::string_view::npos) return invalid("user information is not allowed");
  if (std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == '\x7f'; })) {
    return invalid("spaces and control characters must be percent-encoded");
  }
  // Host and port syntax (names, IPv4, [IPv6], port range) is the one of
  // ParseBaseUrl, which assumes https and 443 when there is no port.
  auto endpoint = ParseBaseUrl("https://" + std::string(authority));
  if (!endpoint) return invalid("invalid host or port \"" + std::string(authority) + "\"");
  std::size_t host_end = authority.rfind(']');
  bool explicit_port = authority.find(':', host_end == std::string_view::npos ? 0 : host_end) != std::string_view::npos;
  parsed.host = std::move(endpoint->host);
  parsed.port = explicit_port ? endpoint->port : static_cast<std::uint16_t>(parsed.tls ? 443 : 80);
  parsed.target = target.empty() || target.front() != '/' ? "/" + std::string(target) : std::string(target);
  return parsed;
}

Expected<std::unique_ptr<Downloader>> Downloader::Create(DownloaderOptions options) {
  if (options.connect_timeout <= std::chrono::milliseconds::zero() ||
      options.read_timeout <= std::chrono::milliseconds::zero()) {
    return MakeError(ErrorCode::kInvalidArgument, "downloader: timeouts must be positive");
  }
  if (options.minimum_bytes_per_second > 0 && options.speed_window <= std::chrono::milliseconds::zero()) {
    return MakeError(ErrorCode::kInvalidArgument, "downloader: the speed window must be positive");
  }
  if (options.backpressure_retries < 0 || options.max_retry_after < std::chrono::seconds::zero()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "downloader: backpressure retries and Retry-After bound must not be negative");
  }
  if (options.chunk_bytes == 0 || options.chunk_bytes > kMaxChunkBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "downloader: chunk_bytes must be 1 to " + std::to_string(kMaxChunkBytes));
  }
  if (!IsValidHeader("user-agent", options.user_agent)) {
    return MakeError(ErrorCode::kInvalidArgument, "downloader: invalid user agent");
  }
  for (const auto& [name, value] : options.headers) {
    if (!IsValidHeader(name, value)) {
      return MakeError(ErrorCode::kInvalidArgument, "downloader: invalid header \"" + name + "\"");
    }
    if (IsReservedHeader(name)) {
      return MakeError(ErrorCode::kInvalidArgument, "downloader: header \"" + name + "\" is set by the downloader");
    }
  }
  try {
    auto downloader = std::make_unique<DownloaderImpl>(std::move(options));
    CITADEL_TRY_VOID(downloader->Init());
    return std::unique_ptr<Downloader>(std::move(downloader));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, std::string("creating the downloader: ") + e.what());
  }
}

}  // namespace citadel::http
