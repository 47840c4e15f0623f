// `citadel device sideload|app ...|apply-development` against a real
// DevServer (unix socket) over a fake launcher: output, --json, exit codes
// and the hints that say what to do next.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include <sstream>

#include "apps/dev_server.hpp"
#include "cli/command_context.hpp"
#include "test_support.hpp"

namespace citadel::cli {
void RegisterDeviceAppsCommands(CommandSet& commands);
}

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using testing::Manifest;

struct CliResult {
  int code = 0;
  std::string out;
  std::string err;
};

// A miniature RunCli with only the device app commands registered.
CliResult RunDeviceCli(std::vector<std::string> args) {
  std::ostringstream out;
  std::ostringstream err;
  cli::Environment environment;
  environment.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  environment.out = &out;
  environment.err = &err;
  environment.now = [] { return Clock::now(); };
  cli::GlobalOptions options;
  CLI::App app("citadel", "citadel");
  app.fallthrough();
  app.add_flag("--json", options.json);
  cli::CommandSet commands(app);
  commands.Group(&app, "device", "Devices");
  cli::RegisterDeviceAppsCommands(commands);
  args.insert(args.begin(), "citadel");
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& arg : args) argv.push_back(arg.c_str());
  CliResult result;
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& error) {
    result.code = app.exit(error, out, err) == 0 ? 0 : 2;
    result.out = out.str();
    result.err = err.str();
    return result;
  }
  CLI::App* current = &app;
  while (!current->get_subcommands().empty()) current = current->get_subcommands().front();
  const cli::Action* action = commands.Find(current);
  if (action == nullptr) {
    result.code = 2;
    return result;
  }
  cli::CommandContext context(environment, options);
  auto outcome = (*action)(context);
  if (!outcome) {
    cli::PrintFailure(err, outcome.error());
    result.code = static_cast<int>(outcome.error().exit_code);
  }
  result.out = out.str();
  result.err = err.str();
  return result;
}

class DevServerCliTest : public ::testing::Test {
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
    store_ = std::move(*AppStore::Open(store_options));
    manager_ = std::move(*AppManager::Create(*store_, launcher_, ManagerOptions{}));
    api_ = std::make_unique<DevApi>(*manager_, *trust_);
    DevServerOptions options;
    options.socket_path = state_ / kDevSocketName;
    auto server = DevServer::Start(
        options, [this](const Json& header, std::span<const std::uint8_t> body) { return api_->Handle(header, body); });
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_.reset();
    manager_.reset();
  }
  std::string Write(const std::string& name, const std::string& text) {
    auto path = dir_.path() / name;
    testing::WriteText(path, text);
    return path.string();
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

TEST_F(DevServerCliTest, SideloadFlowTeachesWhatToDoNext) {
  const std::string device = state_.string();
  auto empty = RunDeviceCli({"device", "app", "list", "--device", device});
  EXPECT_EQ(empty.code, 0) << empty.err;
  EXPECT_NE(empty.out.find("No apps installed"), std::string::npos) << empty.out;

  auto developer = testing::NewKey();
  Bytes image =
      testing::PackApp(dir_.path() / "work", developer, Manifest("blink", "11111111-1111-4111-8111-111111111111"));
  std::string image_path = Write("blink.img", std::string(image.begin(), image.end()));

  auto refused = RunDeviceCli({"device", "sideload", image_path, "--device", device});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("error: installing sideloaded image: this device does not accept sideloaded apps"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("hint: after `citadel device enable-development <device-id>`"), std::string::npos)
      << refused.err;

  std::string capability = Write("capability.json", tenant_.Envelope(tenant_.Capability({&developer})));
  auto applied = RunDeviceCli({"device", "apply-development", capability, "--device", device});
  EXPECT_EQ(applied.code, 0) << applied.err;
  EXPECT_NE(applied.out.find("Development mode is on"), std::string::npos);

  launcher_.Set("11111111-1111-4111-8111-111111111111", testing::FakeBehaviour::Writing("blink on\x1b[31m\n"));
  auto sideloaded = RunDeviceCli({"device", "sideload", image_path, "--device", device});
  EXPECT_EQ(sideloaded.code, 0) << sideloaded.err;
  EXPECT_NE(sideloaded.out.find("running (desired: running)"), std::string::npos) << sideloaded.out;

  auto listed = RunDeviceCli({"device", "app", "list", "--device", device});
  EXPECT_NE(listed.out.find("NAME"), std::string::npos);
  EXPECT_NE(listed.out.find("blink"), std::string::npos);
  auto json_list = RunDeviceCli({"--json", "device", "app", "list", "--device", device});
  auto parsed = Json::parse(json_list.out);
  EXPECT_EQ(parsed["apps"][0]["name"], "blink");

  ASSERT_TRUE(testing::WaitUntil([&] {
    return RunDeviceCli({"device", "app", "logs", "blink", "--device", device}).out.find("blink on") !=
           std::string::npos;
  }));
  auto logs = RunDeviceCli({"device", "app", "logs", "blink", "-n", "10", "--device", device});
  EXPECT_EQ(logs.out.find('\x1b'), std::string::npos) << "terminal escapes must be sanitised";

  auto stopped = RunDeviceCli({"device", "app", "stop", "blink", "--device", device});
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_NE(stopped.out.find("stopped (desired: stopped)"), std::string::npos) << stopped.out;
  auto removed = RunDeviceCli({"device", "app", "remove", "blink", "--device", device});
  EXPECT_EQ(removed.code, 0) << removed.err;
  auto missing = RunDeviceCli({"device", "app", "start", "blink", "--device", device});
  EXPECT_EQ(missing.code, 4);
  EXPECT_NE(missing.err.find("hint: list the device's apps"), std::string::npos) << missing.err;
}

TEST_F(DevServerCliTest, UnreachableDeviceAndMissingDeviceAreExplained) {
  auto unreachable = RunDeviceCli({"device", "app", "list", "--device", (dir_.path() / "nowhere.sock").string()});
  EXPECT_EQ(unreachable.code, 6);
  EXPECT_NE(unreachable.err.find("citadeld apps serve"), std::string::npos) << unreachable.err;
  auto no_device = RunDeviceCli({"device", "app", "list"});
  EXPECT_EQ(no_device.code, 2);
  EXPECT_NE(no_device.err.find("--device"), std::string::npos) << no_device.err;
}

}  // namespace
}  // namespace citadel::apps
