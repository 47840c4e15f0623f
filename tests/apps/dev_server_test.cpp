// The development interface over a real unix socket: framing errors get a
// clear answer and the server keeps serving; sideloads need the capability.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstring>

#include "apps/dev_server.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using testing::Manifest;

constexpr const char* kAlphaId = "11111111-1111-4111-8111-111111111111";

UniqueFd Connect(const fs::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0)
      << std::strerror(errno);
  return fd;
}

// Sends raw bytes and reads the one framed answer.
Json RawExchange(const fs::path& path, const std::string& bytes) {
  auto fd = Connect(path);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  EXPECT_TRUE(WriteAll(fd.get(), AsBytes(bytes), deadline));
  auto answer = ReadFrame(fd.get(), kMaxDevResponseBytes, deadline);
  EXPECT_TRUE(answer) << (answer ? "" : answer.error().message());
  return answer ? Json::parse(*answer) : Json();
}

std::string Be32(std::uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
          static_cast<char>(value)};
}

std::string Frame(const std::string& text) { return Be32(static_cast<std::uint32_t>(text.size())) + text; }

class DevServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = dir_.path() / "s";
    fs::create_directories(state_);
    testing::TrustPublishers(state_, {&publisher_});
    trust_ = std::make_unique<FileTrustSource>(state_, [this] { return Expected<DeviceIdentity>(tenant_.Identity()); });
    StoreOptions store_options;
    store_options.state_dir = state_;
    store_options.board = testing::TestBoard();
    store_options.trust = trust_.get();
    auto store = AppStore::Open(store_options);
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
    ManagerOptions manager_options;
    manager_options.stop_grace = std::chrono::milliseconds(100);
    auto manager = AppManager::Create(*store_, launcher_, manager_options);
    ASSERT_TRUE(manager);
    manager_ = std::move(*manager);
    api_ = std::make_unique<DevApi>(*manager_, *trust_);
    StartServer();
  }
  void StartServer() {
    DevServerOptions options;
    options.socket_path = state_ / kDevSocketName;
    options.header_timeout = std::chrono::milliseconds(500);
    options.max_connections = 2;
    auto server = DevServer::Start(
        options, [this](const Json& header, std::span<const std::uint8_t> body) { return api_->Handle(header, body); });
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_.reset();
    manager_.reset();
  }
  fs::path Socket() const { return state_ / kDevSocketName; }
  Expected<Json> Call(const Json& header, const Bytes& body = {}) { return DevCall(state_, header, body); }
  void ExpectStillServing() {
    auto listed = Call({{"op", "app-list"}});
    EXPECT_TRUE(listed) << listed.error().message();
  }

  citadel::testing::TempDir dir_ = testing::StateTempDir();
  fs::path state_;
  crypto::PrivateKey publisher_ = testing::NewKey();
  testing::TestTenant tenant_;
  testing::FakeLauncher launcher_;
  std::unique_ptr<FileTrustSource> trust_;
  std::unique_ptr<AppStore> store_;
  std::unique_ptr<AppManager> manager_;
  std::unique_ptr<DevApi> api_;
  std::unique_ptr<DevServer> server_;
};

TEST_F(DevServerTest, SocketIsPrivate) {
  struct stat info {};
  ASSERT_EQ(::lstat(Socket().c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0600u);
  // No leftovers of the private bind directory.
  for (const auto& entry : fs::directory_iterator(state_)) {
    EXPECT_EQ(entry.path().filename().string().find(".dev-sock-"), std::string::npos);
  }
}

TEST_F(DevServerTest, ReplacesAStaleSocketButNotALiveOne) {
  // A live server on the path: a second one is refused.
  DevServerOptions options;
  options.socket_path = Socket();
  auto second = DevServer::Start(options, [](const Json&, std::span<const std::uint8_t>) { return Json(); });
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("in use"), std::string::npos);
  // After a crash the socket file stays behind; a new server replaces it.
  server_.reset();
  {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, Socket().c_str(), sizeof address.sun_path - 1);
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  }
  StartServer();
  ExpectStillServing();
}

TEST_F(DevServerTest, FramingErrorsGetClearAnswersAndTheServerKeepsServing) {
  auto expect_error = [&](const std::string& bytes, const std::string& code, const std::string& needle) {
    Json answer = RawExchange(Socket(), bytes);
    EXPECT_EQ(answer["ok"], false) << answer.dump();
    EXPECT_EQ(answer["error"]["code"], code) << answer.dump();
    EXPECT_NE(answer["error"]["message"].get<std::string>().find(needle), std::string::npos) << answer.dump();
    ExpectStillServing();
  };
  expect_error(Be32(0), "parse", "empty frame");
  expect_error(Be32(0xFFFFFFFF), "too-large", "exceeds the limit");
  expect_error(Frame("{oops"), "parse", "not valid JSON");
  expect_error(Frame("[]"), "parse", "\"op\"");
  expect_error(Frame(R"({"op":"explode"})"), "invalid-argument", "unknown op");
  expect_error(Frame(R"({"op":"app-logs","lines":"x"})"), "invalid-argument", "app");
  // A body length beyond the image limit is refused before any allocation.
  std::string header = R"({"op":"sideload"})";
  std::string huge_length("\x7f\xff\xff\xff\xff\xff\xff\xff", 8);
  expect_error(Frame(header) + huge_length, "too-large", "body");
  // A client that sends half a header and stalls is cut off by the timeout.
  {
    auto fd = Connect(Socket());
    std::string partial = Be32(100) + "{\"op\"";
    ASSERT_TRUE(WriteAll(fd.get(), AsBytes(partial), std::chrono::steady_clock::now() + std::chrono::seconds(1)));
    auto answer = ReadFrame(fd.get(), kMaxDevResponseBytes, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    ASSERT_TRUE(answer);
    EXPECT_NE(answer->find("timed out"), std::string::npos) << *answer;
  }
  ExpectStillServing();
}

TEST_F(DevServerTest, TooManyConnectionsAreRefusedNotQueued) {
  // Two stalled connections take both slots; the third is told to retry.
  auto first = Connect(Socket());
  auto second = Connect(Socket());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto third = Call({{"op", "app-list"}});
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(third.error().message().find("busy"), std::string::npos);
  first.Reset();
  second.Reset();
  ASSERT_TRUE(testing::WaitUntil([&] { return Call({{"op", "app-list"}}).has_value(); }));
}

TEST_F(DevServerTest, SideloadNeedsTheDevelopmentCapability) {
  auto developer = testing::NewKey();
  Bytes image = testing::PackApp(dir_.path() / "work", developer, Manifest("alpha", kAlphaId));
  auto refused = Call({{"op", "sideload"}}, image);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message(),
            "installing sideloaded image: this device does not accept sideloaded apps: development mode is not "
            "enabled; run `citadel device enable-development <device-id>`");

  // A capability for another device is refused and not stored.
  auto wrong = tenant_.Capability({&developer});
  wrong["DeviceId"] = std::string(64, 'e');
  std::string wrong_envelope = tenant_.Envelope(wrong);
  auto not_applied = Call({{"op", "apply-capability"}}, Bytes(wrong_envelope.begin(), wrong_envelope.end()));
  ASSERT_FALSE(not_applied);
  EXPECT_FALSE(Call({{"op", "sideload"}}, image));

  std::string envelope = tenant_.Envelope(tenant_.Capability({&developer}));
  auto applied = Call({{"op", "apply-capability"}}, Bytes(envelope.begin(), envelope.end()));
  ASSERT_TRUE(applied) << applied.error().message();
  EXPECT_EQ((*applied)["developer_keys"], 1);

  auto sideloaded = Call({{"op", "sideload"}}, image);
  ASSERT_TRUE(sideloaded) << sideloaded.error().message();
  EXPECT_EQ((*sideloaded)["name"], "alpha");
  EXPECT_EQ((*sideloaded)["state"], "running");
  EXPECT_EQ((*sideloaded)["sideloaded"], true);

  // app-install (tenant path) does not trust the developer key.
  auto install = Call({{"op", "app-install"}}, image);
  ASSERT_FALSE(install);
  EXPECT_NE(install.error().message().find("not a trusted publisher"), std::string::npos);

  auto list = Call({{"op", "app-list"}});
  ASSERT_TRUE(list);
  ASSERT_EQ((*list)["apps"].size(), 1u);
  EXPECT_EQ((*list)["apps"][0]["component_id"], kAlphaId);

  auto logs = Call({{"op", "app-logs"}, {"app", "alpha"}, {"lines", 5}});
  ASSERT_TRUE(logs) << logs.error().message();
  EXPECT_GE((*logs)["lines"].size(), 1u);

  auto stopped = Call({{"op", "app-stop"}, {"app", "alpha"}});
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ((*stopped)["state"], "stopped");
  EXPECT_EQ((*stopped)["desired"], "stopped");
  auto started = Call({{"op", "app-start"}, {"app", kAlphaId}});
  ASSERT_TRUE(started);
  EXPECT_EQ((*started)["state"], "running");
  auto removed = Call({{"op", "app-remove"}, {"app", "alpha"}});
  ASSERT_TRUE(removed) << removed.error().message();
  auto missing = Call({{"op", "app-stop"}, {"app", "alpha"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(DevServerTest, TenantSignedInstallNeedsNoCapability) {
  Bytes image = testing::PackApp(dir_.path() / "work", publisher_, Manifest("alpha", kAlphaId));
  auto installed = Call({{"op", "app-install"}, {"start", false}}, image);
  ASSERT_TRUE(installed) << installed.error().message();
  EXPECT_EQ((*installed)["state"], "stopped");
  EXPECT_EQ((*installed)["sideloaded"], false);
}

}  // namespace
}  // namespace citadel::apps
