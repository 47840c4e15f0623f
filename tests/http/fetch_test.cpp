// The Downloader against the test file server (tests/support/file_server),
// plain and TLS, with the server's fault switches standing in for hostile
// and broken servers. Everything runs on loopback with ephemeral ports; the
// timing tests use sub-second windows.
#include "http/fetch.hpp"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "support/file_server.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace citadel::http {
namespace {

using citadel::testing::FileServer;
using citadel::testing::FileServerFault;
using citadel::testing::FileServerOptions;
using citadel::testing::GenerateTestKey;
using citadel::testing::IssueTestCa;
using citadel::testing::IssueTestLeaf;
using citadel::testing::LoopbackServerPki;
using citadel::testing::TempDir;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kFileSize = 300 * 1024;
constexpr auto kIdleWait = 10s;

using citadel::testing::Must;

std::string MakeContent(std::size_t size) {
  std::string content(size, '\0');
  std::uint32_t state = 12345;
  for (char& c : content) {
    state = state * 1'103'515'245U + 12'345U;
    c = static_cast<char>(state >> 24);
  }
  return content;
}

// A sink that keeps the file in memory the way a .part file would be kept:
// position 0 with something held means "start over".
struct Collector {
  std::string data;
  int restarts = 0;
  std::size_t largest_chunk = 0;

  DownloadSink Sink() {
    return [this](std::uint64_t position, std::string_view chunk) -> Expected<void> {
      if (position == 0 && !data.empty()) {
        ++restarts;
        data.clear();
      }
      if (position != data.size()) {
        return MakeError(ErrorCode::kInternal,
                         "chunk at " + std::to_string(position) + " after " + std::to_string(data.size()) + " bytes");
      }
      data.append(chunk);
      largest_chunk = std::max(largest_chunk, chunk.size());
      return kOk;
    };
  }
};

// Built once: a server CA with a leaf for 127.0.0.1, ::1 and localhost and
// one for another address, a client CA with a device leaf, an unrelated CA.
struct Pki {
  LoopbackServerPki server;
  crypto::Certificate other_ip_cert = IssueTestLeaf("elsewhere", server.key, server.ca, server.ca_key,
                                                    crypto::ExtendedKeyUsage::kServerAuth, {"127.0.0.2"});
  crypto::PrivateKey client_ca_key = GenerateTestKey();
  crypto::Certificate client_ca = IssueTestCa("device CA", client_ca_key);
  crypto::PrivateKey client_key = GenerateTestKey();
  crypto::Certificate client_cert =
      IssueTestLeaf("device-1", client_key, client_ca, client_ca_key, crypto::ExtendedKeyUsage::kClientAuth, {});
  crypto::PrivateKey other_ca_key = GenerateTestKey();
  crypto::Certificate other_ca = IssueTestCa("other CA", other_ca_key);
};

const Pki& GetPki() {
  static const Pki* pki = new Pki();
  return *pki;
}

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    content_ = MakeContent(kFileSize);
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "file.bin", content_).has_value());
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "empty.bin", "").has_value());
    server_ = Must(FileServer::Start(ServerOptions()));
  }

  virtual FileServerOptions ServerOptions() { return {.root = dir_.path()}; }

  static std::unique_ptr<Downloader> MakeDownloader(const std::function<void(DownloaderOptions&)>& tweak = {}) {
    DownloaderOptions options;
    options.ca_certificate_pem = GetPki().server.ca.Pem();
    options.connect_timeout = 5s;
    options.read_timeout = 5s;
    if (tweak) tweak(options);
    return Must(Downloader::Create(std::move(options)));
  }

  Expected<DownloadResult> Get(Downloader& downloader, Collector& collector, std::uint64_t offset = 0,
                               std::uint64_t max_length = kFileSize, std::string_view path = "/file.bin") {
    return downloader.Get({server_->Url(path), max_length, offset}, collector.Sink());
  }

  TempDir dir_{"fetch-test"};
  std::string content_;
  std::unique_ptr<FileServer> server_;
};

TEST(ParseUrlTest, SplitsSchemeHostPortAndTarget) {
  Url url = Must(ParseUrl("http://127.0.0.1/a/b.json?x=1#frag"));
  EXPECT_FALSE(url.tls);
  EXPECT_EQ(url.host, "127.0.0.1");
  EXPECT_EQ(url.port, 80);
  EXPECT_EQ(url.target, "/a/b.json?x=1");

  url = Must(ParseUrl("HTTPS://localhost"));
  EXPECT_TRUE(url.tls);
  EXPECT_EQ(url.host, "localhost");
  EXPECT_EQ(url.port, 443);
  EXPECT_EQ(url.target, "/");

  url = Must(ParseUrl("https://[::1]:8443/targets/x"));
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 8443);
  EXPECT_EQ(url.target, "/targets/x");

  url = Must(ParseUrl("http://[::1]?q"));
  EXPECT_EQ(url.port, 80);
  EXPECT_EQ(url.target, "/?q");

  url = Must(ParseUrl("http://mirror.example:8080"));
  EXPECT_EQ(url.port, 8080);
}

TEST(ParseUrlTest, RefusesWhatItCannotFetch) {
  for (std::string_view bad : {"ftp://127.0.0.1/x", "127.0.0.1/x", "http://", "http:///x", "http://user@127.0.0.1/x",
                               "http://127.0.0.1:0/x", "http://127.0.0.1:70000/x", "http://::1/x",
                               "http://127.0.0.1/a b", "http://127.0.0.1/a\r\nX: y", "http://bad_host/x"}) {
    auto url = ParseUrl(bad);
    ASSERT_FALSE(url.has_value()) << bad;
    EXPECT_EQ(url.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(DownloaderCreateTest, RefusesHeadersItOwnsOrThatAreMalformed) {
  for (const auto& header : std::vector<std::pair<std::string, std::string>>{
           {"Range", "bytes=0-"}, {"host", "x"}, {"Content-Length", "1"}, {"bad name", "x"}, {"X-Ok", "a\r\nB: c"}}) {
    DownloaderOptions options;
    options.headers = {header};
    auto downloader = Downloader::Create(options);
    ASSERT_FALSE(downloader.has_value()) << header.first;
    EXPECT_EQ(downloader.error().code(), ErrorCode::kInvalidArgument);
  }
  DownloaderOptions options;
  options.headers = {{"Authorization", "Bearer t"}, {"X-Device", "d1"}};
  EXPECT_TRUE(Downloader::Create(options).has_value());
}

TEST_F(FetchTest, DownloadsTheWholeFileInBoundedChunks) {
  auto downloader = MakeDownloader([](DownloaderOptions& options) { options.chunk_bytes = 16 * 1024; });
  Collector collector;
  DownloadResult result = Must(Get(*downloader, collector));  // max_length == the size: allowed
  EXPECT_EQ(collector.data, content_);
  EXPECT_EQ(result.bytes_received, kFileSize);
  EXPECT_EQ(result.status, 200);
  EXPECT_FALSE(result.resumed);
  EXPECT_EQ(result.total_length, kFileSize);
  EXPECT_LE(collector.largest_chunk, 16U * 1024U);

  Collector empty;
  result = Must(Get(*downloader, empty, 0, 0, "/empty.bin"));
  EXPECT_EQ(result.bytes_received, 0U);
  EXPECT_TRUE(empty.data.empty());
}

TEST_F(FetchTest, ResumesFromAnOffset) {
  constexpr std::size_t kHave = 100'000;
  auto downloader = MakeDownloader();
  Collector collector;
  collector.data = content_.substr(0, kHave);
  DownloadResult result = Must(Get(*downloader, collector, kHave));
  EXPECT_EQ(collector.data, content_);
  EXPECT_EQ(collector.restarts, 0);
  EXPECT_TRUE(result.resumed);
  EXPECT_EQ(result.status, 206);
  EXPECT_EQ(result.bytes_received, kFileSize - kHave);
  EXPECT_EQ(result.total_length, kFileSize);
  ASSERT_TRUE(server_->WaitUntilIdle(kIdleWait));
  EXPECT_EQ(server_->BodyBytesSent("/file.bin"), kFileSize - kHave);
}

TEST_F(FetchTest, ServerIgnoringRangeMakesTheSinkStartOver) {
  constexpr std::size_t kHave = 1000;
  server_->SetFault("/file.bin", FileServerFault::IgnoreRange());
  auto downloader = MakeDownloader();
  Collector collector;
  collector.data = std::string(kHave, '?');  // stale bytes: must be dropped
  DownloadResult result = Must(Get(*downloader, collector, kHave));
  EXPECT_EQ(collector.restarts, 1);
  EXPECT_EQ(collector.data, content_);
  EXPECT_FALSE(result.resumed);
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.bytes_received, kFileSize);
}

TEST_F(FetchTest, CutMidBodyThenResumeCompletes) {
  constexpr std::uint64_t kCut = 123'456;
  server_->SetFault("/file.bin", FileServerFault::CutAfter(kCut, /*times=*/1));
  auto downloader = MakeDownloader();
  Collector collector;
  auto cut = Get(*downloader, collector);
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().code(), ErrorCode::kUnavailable) << cut.error().message();
  // Every byte that arrived reached the sink, so the resume starts right after.
  ASSERT_EQ(collector.data.size(), kCut);

  DownloadResult result = Must(Get(*downloader, collector, collector.data.size()));
  EXPECT_TRUE(result.resumed);
  EXPECT_EQ(result.bytes_received, kFileSize - kCut);
  EXPECT_EQ(collector.data, content_);
  EXPECT_EQ(server_->RequestCount("/file.bin"), 2U);
}

TEST_F(FetchTest, OffsetAtTheEndIsCompleteWithNoBytes) {
  auto downloader = MakeDownloader();
  Collector collector;
  collector.data = content_;
  DownloadResult result = Must(Get(*downloader, collector, kFileSize));
  EXPECT_EQ(result.status, 416);
  EXPECT_EQ(result.bytes_received, 0U);
  EXPECT_EQ(result.total_length, kFileSize);
  EXPECT_EQ(collector.data, content_);
}

TEST_F(FetchTest, OffsetBeyondTheFileStartsOver) {
  auto downloader = MakeDownloader();
  Collector collector;
  collector.data = content_ + "stale tail";
  DownloadResult result = Must(Get(*downloader, collector, collector.data.size(), kFileSize + 100));
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(collector.restarts, 1);
  EXPECT_EQ(collector.data, content_);
  EXPECT_EQ(server_->RequestCount("/file.bin"), 2U);  // the 416, then the whole file
}

TEST_F(FetchTest, RefusesAnAnnouncedLengthAboveMaxLengthBeforeTheBody) {
  auto downloader = MakeDownloader();
  Collector collector;
  auto result = Get(*downloader, collector, 0, kFileSize - 1);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_TRUE(collector.data.empty());

  // The same through a Range answer: the file's total length counts.
  collector.data = content_.substr(0, 10);
  result = Get(*downloader, collector, 10, kFileSize - 1);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_EQ(collector.data.size(), 10U);

  // An offset beyond max_length is the caller's mistake.
  result = Get(*downloader, collector, 11, 10);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(FetchTest, AbortsAnEndlessBodyAtMaxLength) {
  constexpr std::uint64_t kLimit = 1'000'000;
  server_->SetFault("/file.bin", FileServerFault::Endless());
  auto downloader = MakeDownloader();
  Collector collector;
  auto result = Get(*downloader, collector, 0, kLimit);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_LE(collector.data.size(), kLimit);
  EXPECT_GT(collector.data.size(), kLimit - 64 * 1024);
  // The client hung up, so the server stops too.
  EXPECT_TRUE(server_->WaitUntilIdle(kIdleWait));
}

TEST_F(FetchTest, TrickleTripsTheMinimumSpeed) {
  server_->SetFault("/file.bin", FileServerFault::Slow(200ms));
  auto downloader = MakeDownloader([](DownloaderOptions& options) {
    options.minimum_bytes_per_second = 1024;
    options.speed_window = 1s;
  });
  Collector collector;
  auto started = Clock::now();
  auto result = Get(*downloader, collector);
  auto elapsed = Clock::now() - started;
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("too slow: "), std::string::npos) << result.error().message();
  EXPECT_NE(result.error().message().find("bytes/s for 1 s (minimum 1024)"), std::string::npos)
      << result.error().message();
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_LT(collector.data.size(), 100U);
}

TEST_F(FetchTest, SlowHeaderTripsTheMinimumSpeedToo) {
  // A server that accepts but never answers: the response header counts as
  // no bytes, so the speed window ends the wait, not the read timeout.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  auto downloader = MakeDownloader([](DownloaderOptions& options) {
    options.read_timeout = 30s;
    options.speed_window = 500ms;
  });
  Collector collector;
  auto started = Clock::now();
  auto result = downloader->Get({"http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/x", 10, 0},
                                collector.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().message().find("too slow"), std::string::npos) << result.error().message();
  EXPECT_LT(Clock::now() - started, 3s);
}

TEST_F(FetchTest, SilenceTripsTheReadTimeout) {
  server_->SetFault("/file.bin", FileServerFault::Slow(10s));
  auto downloader = MakeDownloader([](DownloaderOptions& options) {
    options.minimum_bytes_per_second = 0;
    options.read_timeout = 300ms;
  });
  Collector collector;
  auto started = Clock::now();
  auto result = Get(*downloader, collector);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("timed out"), std::string::npos) << result.error().message();
  EXPECT_LT(Clock::now() - started, 2s);
  EXPECT_EQ(collector.data.size(), 1U);  // the first byte came at once
}

TEST_F(FetchTest, MissingAndForbiddenAreNotFound) {
  auto downloader = MakeDownloader();
  Collector collector;
  auto missing = Get(*downloader, collector, 0, kFileSize, "/missing.json");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound) << missing.error().message();

  auto traversal = Get(*downloader, collector, 0, kFileSize, "/../file.bin");
  ASSERT_FALSE(traversal.has_value());
  EXPECT_EQ(traversal.error().code(), ErrorCode::kNotFound) << traversal.error().message();
  EXPECT_NE(traversal.error().message().find("HTTP 403"), std::string::npos);

  server_->SetFault("/file.bin", FileServerFault::NotFound(1));
  auto faulted = Get(*downloader, collector);
  ASSERT_FALSE(faulted.has_value());
  EXPECT_EQ(faulted.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(collector.data.empty());
  EXPECT_TRUE(Get(*downloader, collector).has_value());  // the fault was for one request
}

TEST_F(FetchTest, OtherFailuresAreUnavailable) {
  auto downloader = MakeDownloader();
  Collector collector;
  server_->SetGlobalFault(FileServerFault::Status(503));
  auto unavailable = Get(*downloader, collector);
  ASSERT_FALSE(unavailable.has_value());
  EXPECT_EQ(unavailable.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(unavailable.error().message().find("HTTP 503"), std::string::npos);
  server_->ClearFaults();

  std::string url = server_->Url("/file.bin");
  server_->Stop();
  auto refused = downloader->Get({url, kFileSize, 0}, collector.Sink());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable) << refused.error().message();
}

TEST_F(FetchTest, SinkErrorsAreReturnedAsIs) {
  auto downloader = MakeDownloader();
  int calls = 0;
  auto result = downloader->Get({server_->Url("/file.bin"), kFileSize, 0},
                                [&calls](std::uint64_t, std::string_view) -> Expected<void> {
                                  ++calls;
                                  return MakeError(ErrorCode::kIo, "disk full");
                                });
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kIo);
  EXPECT_EQ(result.error().message(), "disk full");
  EXPECT_EQ(calls, 1);
}

TEST_F(FetchTest, ReusesOneKeptAliveConnection) {
  auto downloader = MakeDownloader();
  for (int i = 0; i < 3; ++i) {
    Collector collector;
    ASSERT_TRUE(Get(*downloader, collector).has_value());
    collector.data = content_.substr(0, 5);
    ASSERT_TRUE(Get(*downloader, collector, 5).has_value());
    EXPECT_EQ(collector.data, content_);
  }
  EXPECT_EQ(server_->ConnectionCount(), 1U);

  auto no_reuse = MakeDownloader([](DownloaderOptions& options) { options.max_idle_connections = 0; });
  Collector first;
  Collector second;
  ASSERT_TRUE(Get(*no_reuse, first).has_value());
  ASSERT_TRUE(Get(*no_reuse, second).has_value());
  EXPECT_EQ(server_->ConnectionCount(), 3U);
}

TEST_F(FetchTest, ReconnectsWhenTheServerClosedAKeptAliveConnection) {
  auto downloader = MakeDownloader();
  Collector first;
  ASSERT_TRUE(Get(*downloader, first).has_value());
  ASSERT_TRUE(server_->WaitUntilIdle(kIdleWait));
  server_->CloseIdleConnections();
  Collector second;
  DownloadResult result = Must(Get(*downloader, second));
  EXPECT_EQ(second.data, content_);
  EXPECT_EQ(result.bytes_received, kFileSize);
  EXPECT_EQ(server_->ConnectionCount(), 2U);
  EXPECT_EQ(server_->RequestCount("/file.bin"), 2U);  // the dead connection carried nothing
}

TEST_F(FetchTest, ShortContentLengthLieDoesNotPoisonTheNextRequest) {
  server_->SetFault("/file.bin", FileServerFault::WrongContentLength(1000, 1));
  auto downloader = MakeDownloader();
  Collector short_read;
  DownloadResult result = Must(Get(*downloader, short_read));
  // The wrong bytes are the caller's to catch (TUF checks length and hashes).
  EXPECT_EQ(result.bytes_received, 1000U);
  EXPECT_EQ(short_read.data, content_.substr(0, 1000));

  Collector collector;
  ASSERT_TRUE(Get(*downloader, collector).has_value());
  EXPECT_EQ(collector.data, content_);
}

TEST_F(FetchTest, LongContentLengthLieFailsAfterTheRealBytes) {
  auto downloader = MakeDownloader();
  server_->SetFault("/file.bin", FileServerFault::WrongContentLength(kFileSize + 1000));
  Collector collector;
  auto result = Get(*downloader, collector, 0, kFileSize + 1000);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable) << result.error().message();
  EXPECT_EQ(collector.data, content_);

  auto too_large = Get(*downloader, collector, 0, kFileSize);
  ASSERT_FALSE(too_large.has_value());
  EXPECT_EQ(too_large.error().code(), ErrorCode::kTooLarge);
}

TEST_F(FetchTest, ReachesLocalhostByName) {
  auto downloader = MakeDownloader();
  Collector collector;
  std::string url = "http://localhost:" + std::to_string(server_->port()) + "/file.bin";
  ASSERT_TRUE(downloader->Get({url, kFileSize, 0}, collector.Sink()).has_value());
  EXPECT_EQ(collector.data, content_);
}

TEST_F(FetchTest, ReachesIpv6Loopback) {
  auto server = Must(FileServer::Start({.root = dir_.path(), .address = "::1"}));
  EXPECT_EQ(server->BaseUrl(), "http://[::1]:" + std::to_string(server->port()));
  auto downloader = MakeDownloader();
  Collector collector;
  ASSERT_TRUE(downloader->Get({server->Url("/file.bin"), kFileSize, 0}, collector.Sink()).has_value());
  EXPECT_EQ(collector.data, content_);
}

// Answers connections in turn with fixed responses, one each: the answers
// the file server never gives.
class CannedServer {
 public:
  explicit CannedServer(std::string response) : CannedServer(std::vector<std::string>{std::move(response)}) {}
  explicit CannedServer(std::vector<std::string> responses) : responses_(std::move(responses)) {
    acceptor_.open(boost::asio::ip::tcp::v4());
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] {
      for (const std::string& response : responses_) {
        boost::system::error_code ec;
        boost::asio::ip::tcp::socket socket(io_);
        acceptor_.accept(socket, ec);
        if (ec) return;
        std::string request;
        boost::asio::read_until(socket, boost::asio::dynamic_buffer(request), "\r\n\r\n", ec);
        ++served_;  // before the answer: the client may check as soon as it has it
        boost::asio::write(socket, boost::asio::buffer(response), ec);
        socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
      }
    });
  }
  ~CannedServer() {
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes accept() if nobody came
    thread_.join();
  }
  CannedServer(const CannedServer&) = delete;
  CannedServer& operator=(const CannedServer&) = delete;

  std::string Url() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/f"; }
  int served() const { return served_; }

 private:
  std::vector<std::string> responses_;
  std::atomic<int> served_{0};
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::thread thread_;
};

TEST(FetchCannedTest, RefusesRangeAnswersThatDoNotContinueAtTheOffset) {
  auto downloader = Must(Downloader::Create({}));
  for (const std::string& answer : {
           // starts elsewhere
           std::string("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\n\r\n"
                       "0123456789"),
           // stops short of the end
           std::string("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-7/10\r\nContent-Length: 3\r\n\r\n567"),
           // no Content-Range at all
           std::string("HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n\r\n56789"),
       }) {
    CannedServer server(answer);
    Collector collector;
    collector.data = "01234";
    auto result = downloader->Get({server.Url(), 10, 5}, collector.Sink());
    ASSERT_FALSE(result.has_value()) << answer;
    EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable) << result.error().message();
    EXPECT_EQ(collector.data, "01234");
  }
  // A 206 to a request without Range.
  CannedServer server("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/10\r\nContent-Length: 2\r\n\r\n01");
  Collector collector;
  auto result = downloader->Get({server.Url(), 10, 0}, collector.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
}

TEST(FetchCannedTest, DoesNotFollowRedirects) {
  CannedServer server("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n");
  auto downloader = Must(Downloader::Create({}));
  Collector collector;
  auto result = downloader->Get({server.Url(), 10, 0}, collector.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("HTTP 302"), std::string::npos) << result.error().message();
}

TEST(FetchCannedTest, BoundsABodyThatRunsUntilTheConnectionCloses) {
  CannedServer server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'x'));
  auto downloader = Must(Downloader::Create({}));
  Collector collector;
  auto result = downloader->Get({server.Url(), 1000, 0}, collector.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_LE(collector.data.size(), 1000U);

  CannedServer fits("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(1000, 'x'));
  Collector whole;
  DownloadResult complete = Must(downloader->Get({fits.Url(), 1000, 0}, whole.Sink()));
  EXPECT_EQ(complete.bytes_received, 1000U);
  EXPECT_FALSE(complete.total_length.has_value());
}

// Backpressure: a 429 or 503 that says when to come back is asked again
// after that long (and no sooner); one that says nothing, or asks for more
// than max_retry_after, fails at once with the delay in the message.
TEST(FetchCannedTest, HonoursRetryAfterThenDelivers) {
  const std::string busy = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
  const std::string shed = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n";
  CannedServer server({busy, shed, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"});
  auto downloader = Must(Downloader::Create({}));
  Collector collector;
  auto started = Clock::now();
  DownloadResult result = Must(downloader->Get({server.Url(), 10, 0}, collector.Sink()));
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(collector.data, "hello");
  EXPECT_EQ(server.served(), 3);
  EXPECT_GE(Clock::now() - started, 1s);  // waited at least the 1 s it was told
}

TEST(FetchCannedTest, GivesUpOnBackpressureItShouldNotWaitFor) {
  DownloaderOptions options;
  options.backpressure_retries = 2;
  options.max_retry_after = 5s;
  auto downloader = Must(Downloader::Create(options));
  const std::string again = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n";
  struct Case {
    std::vector<std::string> answers;
    int requests;
    std::string message;
  };
  for (const Case& test : std::vector<Case>{
           {{"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n"},
            1,
            "HTTP 503, retry after 60 s"},
           {{"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"}, 1, "HTTP 429"},
           {{again, again, again}, 3, "HTTP 429, retry after 0 s"},  // the first try and 2 retries
       }) {
    CannedServer server(test.answers);
    Collector collector;
    auto result = downloader->Get({server.Url(), 10, 0}, collector.Sink());
    ASSERT_FALSE(result.has_value()) << test.message;
    EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
    EXPECT_NE(result.error().message().find(test.message), std::string::npos) << result.error().message();
    EXPECT_EQ(server.served(), test.requests) << test.message;
  }
}

class FetchHttpsTest : public FetchTest {
 protected:
  FileServerOptions ServerOptions() override { return {.root = dir_.path(), .tls = GetPki().server.Identity()}; }
};

TEST_F(FetchHttpsTest, DownloadsFromAServerChainingToThePinnedCa) {
  ASSERT_TRUE(server_->BaseUrl().starts_with("https://127.0.0.1:"));
  auto downloader = MakeDownloader();
  Collector collector;
  DownloadResult result = Must(Get(*downloader, collector));
  EXPECT_EQ(collector.data, content_);
  collector.data.resize(1000);
  result = Must(Get(*downloader, collector, 1000));
  EXPECT_TRUE(result.resumed);
  EXPECT_EQ(collector.data, content_);
  EXPECT_EQ(server_->ConnectionCount(), 1U);

  Collector by_name;
  std::string url = "https://localhost:" + std::to_string(server_->port()) + "/file.bin";
  ASSERT_TRUE(downloader->Get({url, kFileSize, 0}, by_name.Sink()).has_value());
}

TEST_F(FetchHttpsTest, RefusesAServerOutsideThePinnedCa) {
  auto downloader =
      MakeDownloader([](DownloaderOptions& options) { options.ca_certificate_pem = GetPki().other_ca.Pem(); });
  Collector collector;
  auto result = Get(*downloader, collector);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto) << result.error().message();
  EXPECT_TRUE(collector.data.empty());
  EXPECT_EQ(server_->RequestCount("/file.bin"), 0U);

  auto no_ca = MakeDownloader([](DownloaderOptions& options) { options.ca_certificate_pem.clear(); });
  result = Get(*no_ca, collector);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(FetchHttpsTest, RefusesACertificateForAnotherAddress) {
  auto server = Must(
      FileServer::Start({.root = dir_.path(), .tls = TlsIdentity{GetPki().other_ip_cert.Pem(), &GetPki().server.key}}));
  auto downloader = MakeDownloader();
  Collector collector;
  auto result = downloader->Get({server->Url("/file.bin"), kFileSize, 0}, collector.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto) << result.error().message();
}

TEST_F(FetchHttpsTest, PresentsAClientIdentityForMutualTls) {
  auto server = Must(FileServer::Start(
      {.root = dir_.path(), .tls = GetPki().server.Identity(), .client_ca_pem = GetPki().client_ca.Pem()}));
  auto with_identity = MakeDownloader([](DownloaderOptions& options) {
    options.client_identity = TlsIdentity{GetPki().client_cert.Pem(), &GetPki().client_key};
  });
  Collector collector;
  ASSERT_TRUE(with_identity->Get({server->Url("/file.bin"), kFileSize, 0}, collector.Sink()).has_value());
  EXPECT_EQ(collector.data, content_);

  auto without_identity = MakeDownloader();
  Collector refused;
  auto result = without_identity->Get({server->Url("/file.bin"), kFileSize, 0}, refused.Sink());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable) << result.error().message();
  EXPECT_TRUE(refused.data.empty());
}

// The file server itself, through raw requests: what the Downloader never
// sends (HEAD, closed ranges, suffix ranges, other methods, encoded paths).
class FileServerTest : public FetchTest {
 protected:
  std::string Raw(const std::string& request_head) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
    boost::asio::write(socket, boost::asio::buffer(request_head + "Host: x\r\nConnection: close\r\n\r\n"));
    std::string response;
    boost::system::error_code ec;
    boost::asio::read(socket, boost::asio::dynamic_buffer(response), ec);  // until the server closes
    return response;
  }
  static std::string Body(const std::string& response) { return response.substr(response.find("\r\n\r\n") + 4); }
};

TEST_F(FileServerTest, AnswersHeadAndRanges) {
  std::string head = Raw("HEAD /file.bin HTTP/1.1\r\n");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(kFileSize)), std::string::npos);
  EXPECT_EQ(Body(head), "");

  std::string closed = Raw("GET /file.bin HTTP/1.1\r\nRange: bytes=10-19\r\n");
  EXPECT_TRUE(closed.starts_with("HTTP/1.1 206 ")) << closed;
  EXPECT_NE(closed.find("Content-Range: bytes 10-19/" + std::to_string(kFileSize)), std::string::npos);
  EXPECT_EQ(Body(closed), content_.substr(10, 10));

  EXPECT_EQ(Body(Raw("GET /file.bin HTTP/1.1\r\nRange: bytes=-5\r\n")), content_.substr(kFileSize - 5));
  EXPECT_EQ(Body(Raw("GET /file.bin HTTP/1.1\r\nRange: bytes=5-1,7-9\r\n")), content_);  // ignored

  std::string beyond = Raw("GET /file.bin HTTP/1.1\r\nRange: bytes=" + std::to_string(kFileSize) + "-\r\n");
  EXPECT_TRUE(beyond.starts_with("HTTP/1.1 416 ")) << beyond;
  EXPECT_NE(beyond.find("Content-Range: bytes */" + std::to_string(kFileSize)), std::string::npos);

  EXPECT_TRUE(Raw("POST /file.bin HTTP/1.1\r\nContent-Length: 0\r\n").starts_with("HTTP/1.1 405 "));
  EXPECT_EQ(server_->RequestCount("/file.bin"), 6U);
}

TEST_F(FileServerTest, RefusesPathsLeadingOutOfTheRoot) {
  TempDir outside("fetch-outside");
  ASSERT_TRUE(WriteFileAtomic(outside.path() / "secret", "secret").has_value());
  std::filesystem::create_symlink(outside.path() / "secret", dir_.path() / "link");
  std::string relative = "/../" + outside.path().filename().string() + "/secret";
  for (const std::string& target :
       {relative, "/%2e%2e/" + outside.path().filename().string() + "/secret", std::string("/link")}) {
    std::string response = Raw("GET " + target + " HTTP/1.1\r\n");
    EXPECT_TRUE(response.starts_with("HTTP/1.1 403 ")) << target << ": " << response;
    EXPECT_EQ(response.find("secret"), std::string::npos);
  }
  EXPECT_TRUE(Raw("GET /nothing HTTP/1.1\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(Raw("GET / HTTP/1.1\r\n").starts_with("HTTP/1.1 404 "));
}

}  // namespace
}  // namespace citadel::http
