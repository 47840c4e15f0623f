// Fixture for the update-trial tests of the app store: two signed versions
// of one app (1.0 holds LED1, 2.0 holds LED2, so the claims show which
// version is installed), written as image files as the update client
// downloads them, and stores opened with a fault hook of the test's choice.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "apps/app_store.hpp"
#include "common/encoding.hpp"
#include "crypto/crypto.hpp"
#include "test_support.hpp"

namespace citadel::apps::testing {

inline constexpr const char* kTrialAppId = "11111111-1111-4111-8111-111111111111";
inline constexpr const char* kOtherAppId = "22222222-2222-4222-8222-222222222222";
inline constexpr const char* kLed1 = "gpio:gpiochip0#0";
inline constexpr const char* kLed2 = "gpio:gpiochip0#1";

using FaultHook = std::function<void(std::string_view)>;

class TrialStoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_.publishers = {&publisher_};
    v1_ = Pack(VersionedManifest("alpha", kTrialAppId, "1.0", 1, R"({"Gpio":["LED1"]})"));
    v2_ = Pack(VersionedManifest("alpha", kTrialAppId, "2.0", 2, R"({"Gpio":["LED2"]})"));
    v1_file_ = WriteImage("alpha-1.0.img", v1_);
    v2_file_ = WriteImage("alpha-2.0.img", v2_);
  }

  StoreOptions Options(
      const fs::path& state_dir, FaultHook fault = [](std::string_view) {}) {
    StoreOptions options;
    options.state_dir = state_dir;
    options.board = TestBoard();
    options.trust = &trust_;
    options.fault_point = std::move(fault);
    return options;
  }
  std::unique_ptr<AppStore> OpenAt(
      const fs::path& state_dir, FaultHook fault = [](std::string_view) {}) {
    auto store = AppStore::Open(Options(state_dir, std::move(fault)));
    EXPECT_TRUE(store) << store.error().message();
    return store ? std::move(*store) : nullptr;
  }
  Bytes Pack(const std::string& manifest) { return PackApp(dir_.path() / "work", publisher_, manifest); }
  fs::path WriteImage(const std::string& name, const Bytes& bytes) {
    fs::path path = dir_.path() / "images" / name;
    fs::create_directories(path.parent_path());
    EXPECT_TRUE(WriteFileAtomic(path, AsText(bytes), 0644));
    return path;
  }
  static std::string Sha(const Bytes& bytes) { return HexEncode(crypto::Sha256(bytes)); }
  const Bytes& Image(const std::string& version) const { return version == "1.0" ? v1_ : v2_; }
  static fs::path AppDir(const AppStore& store) { return store.apps_dir() / kTrialAppId; }

  citadel::testing::TempDir dir_ = StateTempDir();
  crypto::PrivateKey publisher_ = NewKey();
  StaticTrust trust_;
  Bytes v1_;
  Bytes v2_;
  fs::path v1_file_;
  fs::path v2_file_;
};

}  // namespace citadel::apps::testing
