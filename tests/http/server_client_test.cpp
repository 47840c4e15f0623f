// The HTTPS server and client against each other and against hostile raw
// connections, all on the loopback interface with ephemeral ports.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"
#include "http/http.hpp"
#include "support/must.hpp"

namespace citadel::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using citadel::testing::Must;

crypto::Certificate IssueCa(const std::string& name, const crypto::PrivateKey& key,
                            const crypto::Certificate* issuer = nullptr,
                            const crypto::PrivateKey* issuer_key = nullptr) {
  crypto::CertificateSpec spec;
  spec.common_name = name;
  spec.is_ca = true;
  return Must(crypto::IssueCertificate(spec, key.Public(), issuer, issuer_key ? *issuer_key : key));
}

crypto::Certificate IssueLeaf(const std::string& name, const crypto::PrivateKey& key, const crypto::Certificate& issuer,
                              const crypto::PrivateKey& issuer_key, crypto::ExtendedKeyUsage usage,
                              std::vector<std::string> ip_sans, std::vector<std::string> dns_sans = {}) {
  crypto::CertificateSpec spec;
  spec.common_name = name;
  spec.extended_key_usages = {usage};
  spec.ip_sans = std::move(ip_sans);
  spec.dns_sans = std::move(dns_sans);
  return Must(crypto::IssueCertificate(spec, key.Public(), &issuer, issuer_key));
}

// Test PKI, built once: a server CA with server leaves, a device CA with an
// intermediate and a client leaf, and an unrelated CA.
struct Pki {
  crypto::PrivateKey server_ca_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate server_ca = IssueCa("server CA", server_ca_key);
  crypto::PrivateKey server_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate server_cert = IssueLeaf("server", server_key, server_ca, server_ca_key,
                                              crypto::ExtendedKeyUsage::kServerAuth, {"127.0.0.1", "::1"});
  crypto::Certificate localhost_cert = IssueLeaf("localhost", server_key, server_ca, server_ca_key,
                                                 crypto::ExtendedKeyUsage::kServerAuth, {}, {"localhost"});
  crypto::Certificate other_ip_cert = IssueLeaf("elsewhere", server_key, server_ca, server_ca_key,
                                                crypto::ExtendedKeyUsage::kServerAuth, {"127.0.0.2"});

  crypto::PrivateKey device_ca_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate device_ca = IssueCa("device CA", device_ca_key);
  crypto::PrivateKey device_intermediate_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate device_intermediate =
      IssueCa("device intermediate", device_intermediate_key, &device_ca, &device_ca_key);
  crypto::PrivateKey client_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate client_cert = IssueLeaf("device-1", client_key, device_intermediate, device_intermediate_key,
                                              crypto::ExtendedKeyUsage::kClientAuth, {});

  crypto::PrivateKey other_ca_key = Must(crypto::PrivateKey::GenerateP256());
  crypto::Certificate other_ca = IssueCa("other CA", other_ca_key);

  TlsIdentity ServerIdentity(const crypto::Certificate& leaf) const {
    return {leaf.Pem() + server_ca.Pem(), &server_key};
  }
  TlsIdentity ClientIdentity() const { return {client_cert.Pem() + device_intermediate.Pem(), &client_key}; }
};

const Pki& GetPki() {
  static const Pki* pki = new Pki();
  return *pki;
}

Response JsonResponse(const nlohmann::json& body) {
  Response response;
  response.body = body.dump();
  return response;
}

std::unique_ptr<Server> StartServer(Handler handler, const std::function<void(ServerOptions&)>& tweak = {}) {
  ServerOptions options;
  options.identity = GetPki().ServerIdentity(GetPki().server_cert);
  options.threads = 2;
  if (tweak) tweak(options);
  auto server = Must(Server::Create(std::move(options), std::move(handler)));
  auto started = server->Start();
  EXPECT_TRUE(started.has_value()) << (started ? "" : started.error().message());
  EXPECT_NE(server->port(), 0);
  return server;
}

std::unique_ptr<Client> MakeClient(std::uint16_t port, std::optional<TlsIdentity> identity = std::nullopt,
                                   std::string ca_pem = GetPki().server_ca.Pem(), std::string host = "127.0.0.1") {
  ClientOptions options;
  options.base_url = "https://" + host + ":" + std::to_string(port);
  options.ca_certificate_pem = std::move(ca_pem);
  options.client_identity = std::move(identity);
  options.connect_timeout = 3s;
  options.request_timeout = 5s;
  return Must(Client::Create(std::move(options)));
}

Handler OkHandler() {
  return [](const Request&) { return JsonResponse({{"ok", true}}); };
}

void ExpectServes(Server& server) {
  auto client = MakeClient(server.port());
  auto response = client->Send("GET", "/still-serving");
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(response->status, 200);
}

std::string HeaderOf(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

// A deliberately misbehaving peer: raw TCP, optionally TLS without any
// certificate checks, every step bounded in time.
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port) : stream_(io_, tls_) {
    tls_.set_verify_mode(asio::ssl::verify_none);
    boost::system::error_code ec;
    socket().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    connected_ = !ec;
  }
  bool connected() const { return connected_; }

  bool Handshake() {
    return !Run(5s, [&](auto handler) { stream_.async_handshake(asio::ssl::stream_base::client, handler); });
  }
  bool WritePlain(const std::string& data) {
    return !Run(5s, [&](auto handler) { asio::async_write(socket(), asio::buffer(data), handler); });
  }
  bool WriteTls(const std::string& data) {
    return !Run(5s, [&](auto handler) { asio::async_write(stream_, asio::buffer(data), handler); });
  }

  struct ReadResult {
    std::string data;
    bool closed = false;  // the server closed (EOF or reset) within the limit
  };
  // Reads until data contains marker, the peer closes, or limit passes.
  std::string ReadUntil(std::string_view marker, std::chrono::milliseconds limit) {
    std::string data;
    auto deadline = Clock::now() + limit;
    char buffer[4096];
    while (data.find(marker) == std::string::npos && Clock::now() < deadline) {
      std::size_t got = 0;
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      auto ec = Run(remaining, [&](auto handler) {
        stream_.async_read_some(asio::buffer(buffer),
                                [&got, handler](boost::system::error_code read_ec, std::size_t bytes) mutable {
                                  got = bytes;
                                  handler(read_ec);
                                });
      });
      data.append(buffer, got);
      if (ec) break;
    }
    return data;
  }

  ReadResult ReadUntilClosed(std::chrono::milliseconds limit, bool tls) {
    ReadResult result;
    auto deadline = Clock::now() + limit;
    char buffer[4096];
    while (Clock::now() < deadline) {
      std::size_t got = 0;
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      auto ec = Run(remaining, [&](auto handler) {
        auto on_read = [&got, handler](boost::system::error_code read_ec, std::size_t bytes) mutable {
          got = bytes;
          handler(read_ec);
        };
        if (tls) {
          stream_.async_read_some(asio::buffer(buffer), on_read);
        } else {
          socket().async_read_some(asio::buffer(buffer), on_read);
        }
      });
      result.data.append(buffer, got);
      if (ec == asio::error::timed_out) return result;
      if (ec) {
        result.closed = true;
        return result;
      }
    }
    return result;
  }

 private:
  tcp::socket& socket() { return stream_.next_layer(); }

  // Runs one asynchronous operation for at most limit; timed_out if it did
  // not complete (the operation is cancelled and drained).
  template <typename Start>
  boost::system::error_code Run(std::chrono::milliseconds limit, Start&& start) {
    boost::system::error_code result = asio::error::would_block;
    bool done = false;
    start([&](boost::system::error_code ec, auto&&...) {
      result = ec;
      done = true;
    });
    io_.restart();
    io_.run_for(limit);
    if (!done) {
      boost::system::error_code ignored;
      socket().cancel(ignored);
      io_.restart();
      io_.run();
      return asio::error::timed_out;
    }
    return result;
  }

  asio::io_context io_;
  asio::ssl::context tls_{asio::ssl::context::tls_client};
  asio::ssl::stream<tcp::socket> stream_;
  bool connected_ = false;
};

// ------------------------------------------------------------ round trips

TEST(HttpServerClientTest, GetAndPostJsonRoundTrip) {
  auto server = StartServer([](const Request& request) {
    return JsonResponse({{"method", request.method},
                         {"path", request.path},
                         {"query", request.query},
                         {"name", request.QueryParameter("name")},
                         {"body", request.body},
                         {"content_type", request.Header("content-type")},
                         {"custom", request.Header("x-custom")},
                         {"user_agent", request.Header("user-agent")},
                         {"remote", request.remote_address}});
  });
  auto client = MakeClient(server->port());

  auto get = client->Send("GET", "/v1/things?name=a%20b&x=1");
  ASSERT_TRUE(get.has_value()) << get.error().message();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->content_type, "application/json");
  EXPECT_EQ(HeaderOf(*get, "server"), "citadel");
  auto got = nlohmann::json::parse(get->body);
  EXPECT_EQ(got["method"], "GET");
  EXPECT_EQ(got["path"], "/v1/things");
  EXPECT_EQ(got["query"], "name=a%20b&x=1");
  EXPECT_EQ(got["name"], "a b");
  EXPECT_EQ(got["body"], "");
  EXPECT_EQ(got["user_agent"], "citadel");
  EXPECT_EQ(got["remote"], "127.0.0.1");

  nlohmann::json payload = {{"device", "abc"}, {"n", 3}};
  auto post =
      client->Send("POST", "/v1/things", payload.dump(), {{"Content-Type", "application/json"}, {"X-Custom", "yes"}});
  ASSERT_TRUE(post.has_value()) << post.error().message();
  EXPECT_EQ(post->status, 200);
  auto posted = nlohmann::json::parse(post->body);
  EXPECT_EQ(posted["method"], "POST");
  EXPECT_EQ(nlohmann::json::parse(posted["body"].get<std::string>()), payload);
  EXPECT_EQ(posted["content_type"], "application/json");
  EXPECT_EQ(posted["custom"], "yes");
}

TEST(HttpServerClientTest, HandlerStatusContentTypeAndHeadersAreHonoured) {
  auto server = StartServer([](const Request&) {
    Response response = ProblemResponse(409, "conflict", "Conflict", "already claimed");
    response.headers.emplace_back("Retry-After", "7");
    response.headers.emplace_back("X-Injected", "a\r\nSet-Cookie: evil=1");
    return response;
  });
  auto client = MakeClient(server->port());
  auto response = client->Send("PUT", "/x", "{}");
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(response->status, 409);
  EXPECT_EQ(response->content_type, "application/problem+json");
  EXPECT_EQ(nlohmann::json::parse(response->body)["type"], "urn:citadel:problem:conflict");
  EXPECT_EQ(HeaderOf(*response, "retry-after"), "7");
  EXPECT_EQ(HeaderOf(*response, "x-injected"), "");
  EXPECT_EQ(HeaderOf(*response, "set-cookie"), "");
}

TEST(HttpServerClientTest, RouterBehindServer) {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/v1/tenants/{tenant}/devices/{device}", [](const Request&, const PathParams& params) {
    return JsonResponse({{"tenant", params.at("tenant")}, {"device", params.at("device")}});
  });
  auto server = StartServer([router](const Request& request) { return router->Dispatch(request); });
  auto client = MakeClient(server->port());

  auto found = client->Send("GET", "/v1/tenants/acme/devices/d1?verbose=1");
  ASSERT_TRUE(found.has_value()) << found.error().message();
  EXPECT_EQ(found->status, 200);
  EXPECT_EQ(nlohmann::json::parse(found->body), (nlohmann::json{{"tenant", "acme"}, {"device", "d1"}}));

  auto missing = client->Send("GET", "/v1/nothing");
  ASSERT_TRUE(missing.has_value()) << missing.error().message();
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->content_type, "application/problem+json");
  EXPECT_EQ(nlohmann::json::parse(missing->body)["type"], "urn:citadel:problem:not-found");

  auto wrong_method = client->Send("DELETE", "/v1/tenants/acme/devices/d1");
  ASSERT_TRUE(wrong_method.has_value()) << wrong_method.error().message();
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(HeaderOf(*wrong_method, "allow"), "GET");
  EXPECT_EQ(nlohmann::json::parse(wrong_method->body)["type"], "urn:citadel:problem:method-not-allowed");
}

// ------------------------------------------------------------ keep-alive

TEST(HttpServerClientTest, KeepAliveReusesOneConnection) {
  auto server = StartServer([](const Request& request) { return JsonResponse({{"port", request.remote_port}}); });
  auto client = MakeClient(server->port());
  std::set<int> ports;
  for (int i = 0; i < 5; ++i) {
    auto response = client->Send(i % 2 == 0 ? "GET" : "POST", "/", i % 2 == 0 ? "" : "{}");
    ASSERT_TRUE(response.has_value()) << response.error().message();
    ports.insert(nlohmann::json::parse(response->body)["port"].get<int>());
  }
  EXPECT_EQ(ports.size(), 1u);
  EXPECT_NE(*ports.begin(), 0);
}

TEST(HttpServerClientTest, ClientReconnectsAfterServerClosedIdleConnection) {
  auto server = StartServer(
      [](const Request& request) {
        return JsonResponse({{"port", request.remote_port}});
      },
      [](ServerOptions& options) { options.idle_timeout = 200ms; });
  auto client = MakeClient(server->port());
  auto first = client->Send("GET", "/");
  ASSERT_TRUE(first.has_value()) << first.error().message();
  // The idle timeout firing is what is under test, so waiting past it is the
  // condition itself.
  std::this_thread::sleep_for(600ms);
  auto second = client->Send("POST", "/", "{}");
  ASSERT_TRUE(second.has_value()) << second.error().message();
  EXPECT_EQ(second->status, 200);
  EXPECT_NE(nlohmann::json::parse(first->body)["port"], nlohmann::json::parse(second->body)["port"]);
}

// ------------------------------------------------------------ limits and hostile input

TEST(HttpServerClientTest, BodyOverLimitIs413AndServerKeepsServing) {
  std::atomic<int> handled{0};
  auto server = StartServer(
      [&](const Request&) {
        ++handled;
        return JsonResponse({{"ok", true}});
      },
      [](ServerOptions& options) { options.max_body_bytes = 1024; });
  auto client = MakeClient(server->port());

  auto at_limit = client->Send("POST", "/", std::string(1024, 'a'));
  ASSERT_TRUE(at_limit.has_value()) << at_limit.error().message();
  EXPECT_EQ(at_limit->status, 200);

  // Small and large (beyond socket buffers: the client is still writing when
  // the server answers) oversized bodies both get a readable 413.
  for (std::size_t size : {std::size_t{4096}, std::size_t{4} << 20}) {
    auto too_big = client->Send("POST", "/", std::string(size, 'b'));
    ASSERT_TRUE(too_big.has_value()) << size << ": " << too_big.error().message();
    EXPECT_EQ(too_big->status, 413);
    EXPECT_EQ(too_big->content_type, "application/problem+json");
    EXPECT_EQ(nlohmann::json::parse(too_big->body)["type"], "urn:citadel:problem:payload-too-large");
  }
  EXPECT_EQ(handled.load(), 1);

  auto after = client->Send("GET", "/");
  ASSERT_TRUE(after.has_value()) << after.error().message();
  EXPECT_EQ(after->status, 200);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, OnlyRoutesAllowedALargeBodyGetIt) {
  std::atomic<int> handled{0};
  auto server = StartServer(
      [&](const Request& request) {
        ++handled;
        return JsonResponse({{"bytes", request.body.size()}});
      },
      [](ServerOptions& options) {
        options.max_body_bytes = 1024;
        options.max_large_body_bytes = 64 * 1024;
        options.allows_large_body = [](std::string_view method, std::string_view target) {
          return method == "POST" && target == "/large";
        };
      });
  auto client = MakeClient(server->port());
  auto large = client->Send("POST", "/large", std::string(64 * 1024, 'a'));
  ASSERT_TRUE(large.has_value()) << large.error().message();
  EXPECT_EQ(large->status, 200);
  EXPECT_EQ(nlohmann::json::parse(large->body)["bytes"], 64 * 1024);
  // Beyond the large limit, the same route gets 413; another route or
  // method keeps the ordinary limit.
  for (auto [method, target, size] :
       {std::tuple{"POST", "/large", std::size_t{64 * 1024 + 1}}, std::tuple{"POST", "/other", std::size_t{2048}},
        std::tuple{"PUT", "/large", std::size_t{2048}}}) {
    auto refused = client->Send(method, target, std::string(size, 'b'));
    ASSERT_TRUE(refused.has_value()) << target << ": " << refused.error().message();
    EXPECT_EQ(refused->status, 413) << method << " " << target;
  }
  EXPECT_EQ(handled.load(), 1);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, HeaderOverLimitIs431) {
  auto server = StartServer(OkHandler(), [](ServerOptions& options) { options.max_header_bytes = 1024; });
  auto client = MakeClient(server->port());
  auto response = client->Send("GET", "/", "", {{"X-Big", std::string(4096, 'h')}});
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(response->status, 431);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, MalformedHttpGets400AndClose) {
  auto server = StartServer(OkHandler());
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.Handshake());
  ASSERT_TRUE(raw.WriteTls("G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto result = raw.ReadUntilClosed(5s, /*tls=*/true);
  EXPECT_TRUE(result.closed);
  EXPECT_EQ(result.data.rfind("HTTP/1.1 400 ", 0), 0u) << result.data;
  EXPECT_NE(result.data.find("urn:citadel:problem:bad-request"), std::string::npos);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, ExpectContinueGets100BeforeTheBody) {
  auto server = StartServer([](const Request& request) { return JsonResponse({{"body", request.body}}); });
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.Handshake());
  ASSERT_TRUE(raw.WriteTls("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  std::string interim = raw.ReadUntil("\r\n\r\n", 5s);
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << interim;
  ASSERT_TRUE(raw.WriteTls("hello"));
  std::string final_response = raw.ReadUntil("\"}", 5s);
  EXPECT_EQ(final_response.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << final_response;
  EXPECT_NE(final_response.find("{\"body\":\"hello\"}"), std::string::npos) << final_response;
}

TEST(HttpServerClientTest, PlaintextOnTlsPortIsClosedAndServerKeepsServing) {
  auto server = StartServer(OkHandler());
  RawConnection raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.WritePlain("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto result = raw.ReadUntilClosed(5s, /*tls=*/false);
  EXPECT_TRUE(result.closed);
  EXPECT_EQ(result.data.find("HTTP/1.1"), std::string::npos);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, SilentClientsAreDisconnectedWhileOthersAreServed) {
  auto server = StartServer(OkHandler(), [](ServerOptions& options) {
    options.handshake_timeout = 300ms;
    options.read_timeout = 300ms;
  });
  RawConnection no_handshake(server->port());
  RawConnection no_request(server->port());
  RawConnection partial_request(server->port());
  ASSERT_TRUE(no_handshake.connected());
  ASSERT_TRUE(no_request.Handshake());
  ASSERT_TRUE(partial_request.Handshake());
  ASSERT_TRUE(partial_request.WriteTls("GET / HTTP/1.1\r\nHost: x\r\n"));
  auto start = Clock::now();

  ExpectServes(*server);

  auto silent = no_handshake.ReadUntilClosed(3s, /*tls=*/false);
  EXPECT_TRUE(silent.closed);
  auto idle = no_request.ReadUntilClosed(3s, /*tls=*/true);
  EXPECT_TRUE(idle.closed);
  EXPECT_EQ(idle.data, "");
  auto slow = partial_request.ReadUntilClosed(3s, /*tls=*/true);
  EXPECT_TRUE(slow.closed);
  EXPECT_EQ(slow.data, "");
  // Closed by the timeouts, not at once.
  EXPECT_GE(Clock::now() - start, 250ms);
  ExpectServes(*server);
}

TEST(HttpServerClientTest, ConnectionCapRefusesExtraConnections) {
  auto server = StartServer(OkHandler(), [](ServerOptions& options) { options.max_connections = 1; });
  {
    RawConnection holder(server->port());
    ASSERT_TRUE(holder.connected());
    ASSERT_TRUE(holder.Handshake());  // the server has certainly counted it
    auto refused = MakeClient(server->port())->Send("GET", "/");
    EXPECT_FALSE(refused.has_value());
  }
  // The slot frees once the server sees the holder's close.
  bool served = false;
  for (int attempt = 0; attempt < 100 && !served; ++attempt) {
    served = MakeClient(server->port())->Send("GET", "/").has_value();
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served);
}

TEST(HttpServerClientTest, ThrowingHandlerGives500AndServerKeepsServing) {
  auto server = StartServer([](const Request& request) -> Response {
    if (request.path == "/throw") throw std::runtime_error("boom");
    if (request.path == "/throw-int") throw 42;
    return JsonResponse({{"ok", true}});
  });
  auto client = MakeClient(server->port());
  for (const char* path : {"/throw", "/throw-int"}) {
    auto response = client->Send("GET", path);
    ASSERT_TRUE(response.has_value()) << response.error().message();
    EXPECT_EQ(response->status, 500);
    EXPECT_EQ(response->content_type, "application/problem+json");
    EXPECT_EQ(nlohmann::json::parse(response->body)["type"], "urn:citadel:problem:internal");
    EXPECT_EQ(response->body.find("boom"), std::string::npos);  // internals stay in the log
  }
  auto fine = client->Send("GET", "/fine");
  ASSERT_TRUE(fine.has_value()) << fine.error().message();
  EXPECT_EQ(fine->status, 200);
}

// ------------------------------------------------------------ certificates

TEST(HttpServerClientTest, ClientCertificateChainReachesHandler) {
  std::mutex mutex;
  std::vector<std::vector<std::string>> chains;
  auto server = StartServer([&](const Request& request) {
    std::vector<std::string> fingerprints;
    for (const auto& certificate : request.peer_chain) fingerprints.push_back(certificate.FingerprintSha256());
    std::lock_guard lock(mutex);
    chains.push_back(fingerprints);
    return JsonResponse({{"ok", true}});
  });
  const Pki& pki = GetPki();

  auto with_identity = MakeClient(server->port(), pki.ClientIdentity());
  ASSERT_TRUE(with_identity->Send("GET", "/").has_value());
  ASSERT_TRUE(with_identity->Send("GET", "/again").has_value());
  auto without_identity = MakeClient(server->port());
  ASSERT_TRUE(without_identity->Send("GET", "/").has_value());

  std::lock_guard lock(mutex);
  ASSERT_EQ(chains.size(), 3u);
  std::vector<std::string> expected = {pki.client_cert.FingerprintSha256(),
                                       pki.device_intermediate.FingerprintSha256()};
  EXPECT_EQ(chains[0], expected);
  EXPECT_EQ(chains[1], expected);  // same connection, same chain
  EXPECT_TRUE(chains[2].empty());
}

TEST(HttpServerClientTest, ClientCertificateNotRequestedWhenDisabled) {
  std::atomic<std::size_t> chain_size{99};
  auto server = StartServer(
      [&](const Request& request) {
        chain_size = request.peer_chain.size();
        return JsonResponse({{"ok", true}});
      },
      [](ServerOptions& options) { options.request_client_certificate = false; });
  auto client = MakeClient(server->port(), GetPki().ClientIdentity());
  ASSERT_TRUE(client->Send("GET", "/").has_value());
  EXPECT_EQ(chain_size.load(), 0u);
}

TEST(HttpServerClientTest, ClientRefusesServerNotFromPinnedCa) {
  std::atomic<int> handled{0};
  auto server = StartServer([&](const Request&) {
    ++handled;
    return JsonResponse({{"ok", true}});
  });
  auto client = MakeClient(server->port(), std::nullopt, GetPki().other_ca.Pem());
  auto response = client->Send("GET", "/");
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kCrypto) << response.error().message();
  EXPECT_EQ(handled.load(), 0);
}

TEST(HttpServerClientTest, ClientRefusesCertificateForAnotherAddress) {
  std::atomic<int> handled{0};
  auto server = StartServer(
      [&](const Request&) {
        ++handled;
        return JsonResponse({{"ok", true}});
      },
      [](ServerOptions& options) { options.identity = GetPki().ServerIdentity(GetPki().other_ip_cert); });
  auto response = MakeClient(server->port())->Send("GET", "/");
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kCrypto) << response.error().message();
  EXPECT_EQ(handled.load(), 0);
}

TEST(HttpServerClientTest, ClientChecksHostNames) {
  auto ip_only = StartServer(OkHandler());
  auto refused = MakeClient(ip_only->port(), std::nullopt, GetPki().server_ca.Pem(), "localhost")->Send("GET", "/");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCrypto) << refused.error().message();

  auto named = StartServer(
      OkHandler(), [](ServerOptions& options) { options.identity = GetPki().ServerIdentity(GetPki().localhost_cert); });
  auto accepted = MakeClient(named->port(), std::nullopt, GetPki().server_ca.Pem(), "localhost")->Send("GET", "/");
  ASSERT_TRUE(accepted.has_value()) << accepted.error().message();
  EXPECT_EQ(accepted->status, 200);
}

TEST(HttpServerClientTest, Ipv6LoopbackWithBrackets) {
  auto server = Must(Server::Create(
      [] {
        ServerOptions options;
        options.address = "::1";
        options.identity = GetPki().ServerIdentity(GetPki().server_cert);
        options.threads = 1;
        return options;
      }(),
      OkHandler()));
  // IPv6 loopback is required: devices and the CLI may reach the service on
  // [::1], so a machine without it must fail this test, not skip it.
  auto started = server->Start();
  ASSERT_TRUE(started.has_value()) << "cannot listen on [::1]: " << started.error().message();
  auto response = MakeClient(server->port(), std::nullopt, GetPki().server_ca.Pem(), "[::1]")->Send("GET", "/");
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(response->status, 200);
}

TEST(HttpServerClientTest, ClientReportsUnreachableServer) {
  std::uint16_t port = 0;
  {
    auto server = StartServer(OkHandler());
    port = server->port();
  }
  auto response = MakeClient(port)->Send("GET", "/");
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
}

TEST(HttpServerClientTest, ClientRefusesBadInput) {
  ClientOptions plain_http;
  plain_http.base_url = "http://127.0.0.1:1";
  plain_http.ca_certificate_pem = GetPki().server_ca.Pem();
  EXPECT_FALSE(Client::Create(plain_http));
  ClientOptions no_ca;
  no_ca.base_url = "https://127.0.0.1:1";
  EXPECT_FALSE(Client::Create(no_ca));
  auto client = MakeClient(1);
  EXPECT_EQ(client->Send("GET", "no-slash").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(client->Send("GE T", "/").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(client->Send("GET", "/", "", {{"X", "a\r\nb: c"}}).error().code(), ErrorCode::kInvalidArgument);
}

TEST(HttpServerClientTest, ResponseOverClientLimitIsTooLarge) {
  auto server = StartServer([](const Request&) {
    Response response;
    response.body = std::string(64 * 1024, 'x');
    return response;
  });
  ClientOptions options;
  options.base_url = "https://127.0.0.1:" + std::to_string(server->port());
  options.ca_certificate_pem = GetPki().server_ca.Pem();
  options.max_response_bytes = 1024;
  auto client = Must(Client::Create(std::move(options)));
  auto response = client->Send("GET", "/");
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code(), ErrorCode::kTooLarge);
}

// ------------------------------------------------------------ stop

TEST(HttpServerClientTest, StopCompletesInFlightRequest) {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto server = StartServer([&, released](const Request& request) {
    if (request.path == "/slow") {
      entered.set_value();
      released.wait();
    }
    return JsonResponse({{"path", request.path}});
  });
  std::uint16_t port = server->port();

  auto idle_client = MakeClient(port);  // holds an idle kept-alive connection
  ASSERT_TRUE(idle_client->Send("GET", "/warm").has_value());

  auto in_flight = std::async(std::launch::async, [port] { return MakeClient(port)->Send("GET", "/slow"); });
  entered.get_future().wait();

  auto stopped = std::async(std::launch::async, [&] { server->Stop(); });
  // Stop must wait for the request in flight.
  EXPECT_EQ(stopped.wait_for(200ms), std::future_status::timeout);
  release.set_value();

  auto response = in_flight.get();
  ASSERT_TRUE(response.has_value()) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(nlohmann::json::parse(response->body)["path"], "/slow");
  EXPECT_EQ(stopped.wait_for(3s), std::future_status::ready);
  server->Wait();  // returns at once once stopped
  server->Stop();  // idempotent

  auto after = MakeClient(port)->Send("GET", "/");
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().code(), ErrorCode::kUnavailable);
}

TEST(HttpServerClientTest, StopClosesIdleConnectionsPromptly) {
  auto server = StartServer(OkHandler());
  auto client = MakeClient(server->port());
  ASSERT_TRUE(client->Send("GET", "/").has_value());
  RawConnection silent(server->port());  // still in its TLS handshake
  ASSERT_TRUE(silent.connected());
  auto start = Clock::now();
  server->Stop();
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_TRUE(silent.ReadUntilClosed(2s, /*tls=*/false).closed);
}

TEST(HttpServerClientTest, WaitReturnsAfterStopFromAnotherThread) {
  auto server = StartServer(OkHandler());
  std::thread stopper([&] { server->Stop(); });
  server->Wait();
  stopper.join();
}

TEST(HttpServerClientTest, CreateRefusesMismatchedKey) {
  ServerOptions options;
  options.identity = {GetPki().server_cert.Pem(), &GetPki().client_key};
  auto server = Server::Create(std::move(options), OkHandler());
  ASSERT_FALSE(server.has_value());
  EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace citadel::http
