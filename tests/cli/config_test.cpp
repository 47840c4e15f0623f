#include "cli/config.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <map>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

using citadel::testing::TempDir;

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

unsigned ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 0777;
}

TEST(ConfigPathTest, ExplicitThenXdgThenHome) {
  EXPECT_EQ(*ConfigPath(FakeEnv({{"CITADEL_CONFIG", "/a/c.json"}, {"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})),
            "/a/c.json");
  EXPECT_EQ(*ConfigPath(FakeEnv({{"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})), "/x/citadel/config.json");
  EXPECT_EQ(*ConfigPath(FakeEnv({{"HOME", "/h"}})), "/h/.config/citadel/config.json");
  // Empty counts as unset.
  EXPECT_EQ(*ConfigPath(FakeEnv({{"CITADEL_CONFIG", ""}, {"HOME", "/h"}})), "/h/.config/citadel/config.json");
  EXPECT_FALSE(ConfigPath(FakeEnv({})).has_value());
}

TEST(ConfigFileTest, SaveWritesMode0600InA0700DirectoryAndLoadsBack) {
  TempDir dir;
  auto path = dir.path() / "nested" / "citadel" / "config.json";
  mode_t old_umask = ::umask(0);  // a permissive umask must not widen the file
  auto saved = SaveConfig(path, Config{"https://127.0.0.1:8443", "cit_secret", "-----BEGIN CERTIFICATE-----\n"});
  ::umask(old_umask);
  ASSERT_TRUE(saved.has_value()) << saved.error().message();
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(ModeOf(path.parent_path()), 0700u);
  EXPECT_FALSE(IsAccessibleByOthers(path));

  auto loaded = LoadConfig(path);
  ASSERT_TRUE(loaded.has_value());
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->server, "https://127.0.0.1:8443");
  EXPECT_EQ((*loaded)->token, "cit_secret");
  EXPECT_EQ((*loaded)->ca_pem, "-----BEGIN CERTIFICATE-----\n");
}

TEST(ConfigFileTest, SavingAgainKeepsMode0600) {
  TempDir dir;
  auto path = dir.path() / "config.json";
  ASSERT_TRUE(WriteFileAtomic(path, "{}", 0644).has_value());
  ASSERT_TRUE(IsAccessibleByOthers(path));
  ASSERT_TRUE(SaveConfig(path, Config{"https://s", "t", "c"}).has_value());
  EXPECT_EQ(ModeOf(path), 0600u);
}

TEST(ConfigFileTest, MissingFileIsNoConfigAndGarbageIsAnError) {
  TempDir dir;
  auto missing = LoadConfig(dir.path() / "none.json");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());

  ASSERT_TRUE(WriteFileAtomic(dir.path() / "bad.json", "not json", 0600).has_value());
  auto bad = LoadConfig(dir.path() / "bad.json");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kParse);

  ASSERT_TRUE(WriteFileAtomic(dir.path() / "typed.json", R"({"token": 5})", 0600).has_value());
  EXPECT_FALSE(LoadConfig(dir.path() / "typed.json").has_value());
}

TEST(ConfigFileTest, RemoveReportsWhetherThereWasOne) {
  TempDir dir;
  auto path = dir.path() / "config.json";
  ASSERT_TRUE(SaveConfig(path, Config{"https://s", "t", "c"}).has_value());
  EXPECT_TRUE(*RemoveConfig(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(*RemoveConfig(path));
}

class ResolveConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    flag_ca_ = dir_.path() / "flag-ca.pem";
    env_ca_ = dir_.path() / "env-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(flag_ca_, "FLAG CA PEM").has_value());
    ASSERT_TRUE(WriteFileAtomic(env_ca_, "ENV CA PEM").has_value());
  }
  TempDir dir_;
  std::filesystem::path flag_ca_;
  std::filesystem::path env_ca_;
  Config saved_{"https://saved:1", "cit_saved", "SAVED CA PEM"};
};

TEST_F(ResolveConnectionTest, SavedConfigAloneIsUsed) {
  auto settings = ResolveConnection({}, FakeEnv({}), saved_);
  ASSERT_TRUE(settings.has_value());
  EXPECT_EQ(settings->server, "https://saved:1");
  EXPECT_EQ(settings->token, "cit_saved");
  EXPECT_EQ(settings->ca_pem, "SAVED CA PEM");
  EXPECT_EQ(settings->token_source, SettingSource::kConfigFile);
  EXPECT_TRUE(RequireComplete(*settings).has_value());
}

TEST_F(ResolveConnectionTest, EnvironmentOverridesSavedConfig) {
  auto env =
      FakeEnv({{"CITADEL_SERVER", "https://env:2/"}, {"CITADEL_TOKEN", "cit_env"}, {"CITADEL_CA", env_ca_.string()}});
  auto settings = ResolveConnection({}, env, saved_);
  ASSERT_TRUE(settings.has_value());
  EXPECT_EQ(settings->server, "https://env:2");  // trailing slash dropped
  EXPECT_EQ(settings->token, "cit_env");
  EXPECT_EQ(settings->ca_pem, "ENV CA PEM");  // contents, not the path
  EXPECT_EQ(settings->server_source, SettingSource::kEnvironment);
}

TEST_F(ResolveConnectionTest, FlagsOverrideEnvironment) {
  auto env =
      FakeEnv({{"CITADEL_SERVER", "https://env:2"}, {"CITADEL_TOKEN", "cit_env"}, {"CITADEL_CA", env_ca_.string()}});
  auto settings = ResolveConnection({"https://flag:3", "cit_flag", flag_ca_.string()}, env, saved_);
  ASSERT_TRUE(settings.has_value());
  EXPECT_EQ(settings->server, "https://flag:3");
  EXPECT_EQ(settings->token, "cit_flag");
  EXPECT_EQ(settings->ca_pem, "FLAG CA PEM");
  EXPECT_EQ(settings->ca_source, SettingSource::kFlag);
}

TEST_F(ResolveConnectionTest, EachSettingIsResolvedSeparately) {
  auto env = FakeEnv({{"CITADEL_TOKEN", "cit_env"}});
  auto settings = ResolveConnection({"https://flag:3", "", ""}, env, saved_);
  ASSERT_TRUE(settings.has_value());
  EXPECT_EQ(settings->server, "https://flag:3");
  EXPECT_EQ(settings->token, "cit_env");
  EXPECT_EQ(settings->ca_pem, "SAVED CA PEM");
}

TEST_F(ResolveConnectionTest, UnreadableCaFileIsAUsageError) {
  auto settings = ResolveConnection({"", "", (dir_.path() / "missing.pem").string()}, FakeEnv({}), saved_);
  ASSERT_FALSE(settings.has_value());
  EXPECT_EQ(settings.error().exit_code, ExitCode::kUsage);
  EXPECT_NE(settings.error().message.find("--ca"), std::string::npos);
}

TEST_F(ResolveConnectionTest, NothingConfiguredAsksToLogIn) {
  auto settings = ResolveConnection({}, FakeEnv({}), std::nullopt);
  ASSERT_TRUE(settings.has_value());
  auto complete = RequireComplete(*settings);
  ASSERT_FALSE(complete.has_value());
  EXPECT_EQ(complete.error().exit_code, ExitCode::kAuth);
  EXPECT_NE(complete.error().hint.find("citadel login"), std::string::npos);
  EXPECT_NE(complete.error().message.find("token"), std::string::npos);
}

}  // namespace
}  // namespace citadel::cli
