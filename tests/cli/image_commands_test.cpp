// `citadel image` and `citadel publisher-key`, driven in-process through
// RunCli; they are local commands, so no client may be created.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "common/file.hpp"
#include "image/image.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

using citadel::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

class ImageCommandsTest : public ::testing::Test {
 protected:
  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "citadel");
    Environment environment;
    environment.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
    environment.out = &out_;
    environment.err = &err_;
    environment.make_client = [](http::ClientOptions) -> Expected<std::unique_ptr<http::Client>> {
      ADD_FAILURE() << "a local command tried to reach the server";
      return MakeError(ErrorCode::kUnavailable, "no server in this test");
    };
    environment.now = [] { return FromUnixSeconds(1'800'000'000); };
    return RunCli(args, environment);
  }

  void MakeApp(const fs::path& app) {
    fs::create_directories(app / "bin");
    std::ofstream(app / "app_manifest.json") << R"({"Name":"blink","ComponentId":"c0ffee00-1111","Version":"1.0.0"})";
    std::ofstream(app / "bin" / "blink") << "binary";
  }

  std::string Key(const char* name) const { return (dir_.path() / "keys" / name).string(); }

  TempDir dir_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(ImageCommandsTest, PublisherKeyCreateWritesAKeyPairAndRefusesOverwrite) {
  ASSERT_EQ(Run({"publisher-key", "create", "--out", (dir_.path() / "keys").string(), "--json"}), 0) << err_.str();
  auto created = json::parse(out_.str());
  struct stat info {};
  ASSERT_EQ(::stat(Key("publisher.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  auto key_pem = ReadFile(Key("publisher.key"));
  ASSERT_TRUE(key_pem.has_value());
  EXPECT_NE(key_pem->find("BEGIN PRIVATE KEY"), std::string::npos);
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*key_pem)));
  ASSERT_TRUE(key.has_value());
  auto public_key = crypto::PublicKey::FromPem(*ReadFile(Key("publisher.pem")));
  ASSERT_TRUE(public_key.has_value());
  EXPECT_TRUE(key->Public() == *public_key);
  EXPECT_EQ(created["key_id"], image::PublisherKeyId(*public_key));

  ASSERT_EQ(Run({"publisher-key", "show", Key("publisher.pem")}), 0);
  EXPECT_NE(out_.str().find(image::PublisherKeyId(*public_key)), std::string::npos);

  auto before = *ReadFile(Key("publisher.key"));
  EXPECT_EQ(Run({"publisher-key", "create", "--out", (dir_.path() / "keys").string()}), 5);
  EXPECT_NE(err_.str().find("already exists"), std::string::npos);
  EXPECT_EQ(*ReadFile(Key("publisher.key")), before);
}

TEST_F(ImageCommandsTest, PackThenShowAndVerify) {
  ASSERT_EQ(Run({"publisher-key", "create", "--out", (dir_.path() / "keys").string()}), 0) << err_.str();
  ASSERT_EQ(Run({"publisher-key", "create", "--out", (dir_.path() / "other").string()}), 0) << err_.str();
  MakeApp(dir_.path() / "app");
  auto image_file = (dir_.path() / "app.img").string();
  ASSERT_EQ(
      Run({"image", "pack", (dir_.path() / "app").string(), "--key", Key("publisher.key"), "-o", image_file, "--json"}),
      0)
      << err_.str();
  auto packed = json::parse(out_.str());
  auto info = image::ParseImageFile(image_file);
  ASSERT_TRUE(info.has_value()) << info.error().message();
  EXPECT_EQ(packed["digest"], info->digest);
  EXPECT_EQ(packed["name"], "blink");
  EXPECT_EQ(packed["file_count"], 1);

  ASSERT_EQ(Run({"image", "show", image_file}), 0) << err_.str();
  EXPECT_NE(out_.str().find("blink"), std::string::npos);
  EXPECT_NE(out_.str().find("c0ffee00-1111"), std::string::npos);
  EXPECT_NE(out_.str().find("1.0.0"), std::string::npos);
  EXPECT_NE(out_.str().find(info->digest), std::string::npos);
  EXPECT_NE(out_.str().find(info->key_id), std::string::npos);
  EXPECT_NE(out_.str().find("signature not checked against a publisher list"), std::string::npos) << out_.str();

  ASSERT_EQ(Run({"image", "show", image_file, "--publisher-key", Key("publisher.pem"), "--json"}), 0) << err_.str();
  EXPECT_EQ(json::parse(out_.str())["signature_verified"], true);

  EXPECT_EQ(Run({"image", "show", image_file, "--publisher-key", (dir_.path() / "other" / "publisher.pem").string()}),
            1);
  EXPECT_NE(err_.str().find("which is not a trusted publisher"), std::string::npos) << err_.str();

  // One flipped byte in the payload region: the signature check refuses it.
  auto bytes = *ReadFile(image_file);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x20);
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "tampered.img", bytes).has_value());
  EXPECT_EQ(Run({"image", "show", (dir_.path() / "tampered.img").string(), "--publisher-key", Key("publisher.pem")}),
            1);
  EXPECT_NE(err_.str().find("error: image "), std::string::npos) << err_.str();
}

TEST_F(ImageCommandsTest, PackErrorsSayWhatIsWrong) {
  ASSERT_EQ(Run({"publisher-key", "create", "--out", (dir_.path() / "keys").string()}), 0);
  fs::create_directories(dir_.path() / "empty");
  auto output = (dir_.path() / "out.img").string();
  EXPECT_EQ(Run({"image", "pack", (dir_.path() / "empty").string(), "--key", Key("publisher.key"), "-o", output}), 1);
  EXPECT_NE(err_.str().find("no app_manifest.json"), std::string::npos) << err_.str();
  EXPECT_FALSE(fs::exists(output));

  MakeApp(dir_.path() / "app");
  fs::create_symlink("/etc/shadow", dir_.path() / "app" / "shadow");
  EXPECT_EQ(Run({"image", "pack", (dir_.path() / "app").string(), "--key", Key("publisher.key"), "-o", output}), 1);
  EXPECT_NE(err_.str().find("shadow: is a symbolic link"), std::string::npos) << err_.str();
  EXPECT_FALSE(fs::exists(output));

  // A public key is not a signing key.
  EXPECT_EQ(Run({"image", "pack", (dir_.path() / "app").string(), "--key", Key("publisher.pem"), "-o", output}), 2);
  EXPECT_EQ(Run({"image", "show", (dir_.path() / "missing.img").string()}), 4);
}

}  // namespace
}  // namespace citadel::cli
