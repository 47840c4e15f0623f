// AppStore: installs only what verifies, and a refused install changes
// nothing on disk or in the claims.
#include <gtest/gtest.h>

#include <algorithm>

#include "apps/app_store.hpp"
#include "test_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using testing::Manifest;
using testing::Snapshot;

constexpr const char* kAlphaId = "11111111-1111-4111-8111-111111111111";
constexpr const char* kBetaId = "22222222-2222-4222-8222-222222222222";
constexpr const char* kGammaId = "33333333-3333-4333-8333-333333333333";

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_.publishers = {&publisher_};
    Reopen();
  }
  void Reopen() {
    store_.reset();
    StoreOptions options;
    options.state_dir = dir_.path() / "state";
    options.board = testing::TestBoard();
    options.trust = &trust_;
    auto store = AppStore::Open(options);
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
  }
  Bytes Pack(const crypto::PrivateKey& key, const std::string& manifest) {
    return testing::PackApp(dir_.path() / "work", key, manifest);
  }
  Expected<InstalledApp> Install(const Bytes& bytes, InstallSource source = InstallSource::kTenant) {
    return store_->Install(bytes, "test.img", source);
  }

  citadel::testing::TempDir dir_ = testing::StateTempDir();
  crypto::PrivateKey publisher_ = testing::NewKey();
  testing::StaticTrust trust_;
  std::unique_ptr<AppStore> store_;
};

TEST_F(StoreTest, InstallsAVerifiedImage) {
  auto installed = Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"]})")));
  ASSERT_TRUE(installed) << installed.error().message();
  EXPECT_EQ(installed->component_id, kAlphaId);
  EXPECT_EQ(installed->slot, 0u);
  EXPECT_EQ(installed->image_signer, image::PublisherKeyId(publisher_.Public()));
  EXPECT_FALSE(installed->sideloaded);
  EXPECT_EQ(installed->desired, DesiredState::kStopped);
  auto root = store_->RootOf(kAlphaId);
  EXPECT_EQ(*ReadFile(root / "bin" / "app"), "#!/bin/sh\necho hello\n");
  EXPECT_TRUE(fs::exists(root / "app_manifest.json"));
  EXPECT_TRUE(store_->HolderOf("gpio:gpiochip0#0").has_value());
  auto state = LoadAppsState(store_->state_file());
  ASSERT_TRUE(state);
  EXPECT_EQ(state->apps.at(kAlphaId), *installed);
  auto policy = store_->PolicyOf(kAlphaId);
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy->peripherals.size(), 1u);
}

TEST_F(StoreTest, RefusedImagesChangeNothing) {
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"]})"))));
  auto state_root = dir_.path() / "state";
  const std::string before = Snapshot(state_root);

  Bytes good = Pack(publisher_, Manifest("omega", kBetaId));
  auto stranger = testing::NewKey();
  std::vector<std::pair<std::string, Bytes>> cases;
  {
    Bytes tampered = good;
    tampered[tampered.size() / 2] ^= 0x01;  // a payload byte
    cases.emplace_back("tampered payload", tampered);
  }
  cases.emplace_back("untrusted key", Pack(stranger, Manifest("omega", kBetaId)));
  {
    // The signature block cut off: an unsigned image.
    Bytes unsigned_image(good.begin(), good.end() - 40);
    cases.emplace_back("unsigned", unsigned_image);
  }
  {
    // The manifest swapped after signing: same length, other name.
    Bytes swapped = good;
    std::string text(swapped.begin(), swapped.end());
    auto at = text.find("\"Name\":\"omega\"");
    ASSERT_NE(at, std::string::npos);
    std::string replacement = "\"Name\":\"gamma\"";
    std::copy(replacement.begin(), replacement.end(), swapped.begin() + static_cast<std::ptrdiff_t>(at));
    cases.emplace_back("manifest swapped", swapped);
  }
  cases.emplace_back("exclusive resource held", Pack(publisher_, Manifest("omega", kBetaId, R"({"Gpio":["LED1"]})")));
  cases.emplace_back("peripheral not on board", Pack(publisher_, Manifest("omega", kBetaId, R"({"Gpio":["LED9"]})")));
  cases.emplace_back("name taken", Pack(publisher_, Manifest("alpha", kBetaId)));
  cases.emplace_back("sideload without capability", good);
  cases.emplace_back("garbage", Bytes{'n', 'o', 'p', 'e'});

  for (const auto& [name, bytes] : cases) {
    auto source = name == "sideload without capability" ? InstallSource::kSideload : InstallSource::kTenant;
    auto result = Install(bytes, source);
    EXPECT_FALSE(result) << name << " was installed";
    if (!result) {
      EXPECT_NE(result.error().message(), "") << name;
    }
    EXPECT_EQ(Snapshot(state_root), before) << name << " changed the installed apps";
    EXPECT_FALSE(store_->Resolve(kBetaId)) << name;
  }
  // The claims are untouched: the held pin is still alpha's.
  EXPECT_EQ(store_->HolderOf("gpio:gpiochip0#0")->component_id, kAlphaId);
  // ...and the good image still installs afterwards.
  EXPECT_TRUE(Install(good));
}

TEST_F(StoreTest, ExclusivityConflictNamesBothApps) {
  ASSERT_TRUE(
      Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"],"AllowedTcpServerPorts":[8080]})"))));
  auto conflict = Install(Pack(publisher_, Manifest("beta", kBetaId, R"({"AllowedTcpServerPorts":[8080]})")));
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code(), ErrorCode::kConflict);
  EXPECT_NE(conflict.error().message().find("alpha"), std::string::npos) << conflict.error().message();
  EXPECT_NE(conflict.error().message().find("beta"), std::string::npos) << conflict.error().message();
}

TEST_F(StoreTest, ClaimsAreRebuiltFromStateAtStartup) {
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"]})"))));
  Reopen();
  EXPECT_EQ(store_->HolderOf("gpio:gpiochip0#0")->component_id, kAlphaId);
  auto conflict = Install(Pack(publisher_, Manifest("beta", kBetaId, R"({"Gpio":["LED1"]})")));
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code(), ErrorCode::kConflict);
}

TEST_F(StoreTest, SlotsArePersistentAndReused) {
  ASSERT_EQ(Install(Pack(publisher_, Manifest("alpha", kAlphaId)))->slot, 0u);
  ASSERT_EQ(Install(Pack(publisher_, Manifest("beta", kBetaId)))->slot, 1u);
  // An update keeps its slot.
  ASSERT_EQ(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED2"]})")))->slot, 0u);
  Reopen();
  EXPECT_EQ(store_->Resolve("beta")->slot, 1u);
  ASSERT_TRUE(store_->Remove(kAlphaId));
  EXPECT_EQ(Install(Pack(publisher_, Manifest("gamma", kGammaId)))->slot, 0u);
}

TEST_F(StoreTest, UpdateReplacesTreeAndClaims) {
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"]})"))));
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED2"]})"))));
  EXPECT_FALSE(store_->HolderOf("gpio:gpiochip0#0").has_value());
  EXPECT_EQ(store_->HolderOf("gpio:gpiochip0#1")->component_id, kAlphaId);
  EXPECT_FALSE(fs::exists(store_->apps_dir() / kAlphaId / "root.staging"));
}

TEST_F(StoreTest, RemoveDeletesEverythingAndReleasesClaims) {
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId, R"({"Gpio":["LED1"]})"))));
  testing::WriteText(store_->StorageImageOf(kAlphaId), "storage");
  ASSERT_TRUE(store_->Remove("11111111-1111-4111-8111-111111111111"));
  EXPECT_FALSE(fs::exists(store_->apps_dir() / kAlphaId));
  EXPECT_TRUE(LoadAppsState(store_->state_file())->apps.empty());
  EXPECT_FALSE(store_->HolderOf("gpio:gpiochip0#0").has_value());
  EXPECT_TRUE(Install(Pack(publisher_, Manifest("beta", kBetaId, R"({"Gpio":["LED1"]})"))));
  auto missing = store_->Resolve("alpha");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("citadel device app list"), std::string::npos);
}

TEST_F(StoreTest, SideloadNeedsTheCapabilityAndThenTrustsDeveloperKeys) {
  auto developer = testing::NewKey();
  Bytes dev_image = Pack(developer, Manifest("alpha", kAlphaId));
  auto refused = Install(dev_image, InstallSource::kSideload);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find(
                "this device does not accept sideloaded apps: development mode is not enabled; run `citadel "
                "device enable-development <device-id>`"),
            std::string::npos)
      << refused.error().message();

  DevelopmentGrant grant;
  grant.capability_id = "c";
  grant.developer_keys.push_back(developer.Public());
  trust_.grant = grant;
  auto sideloaded = Install(dev_image, InstallSource::kSideload);
  ASSERT_TRUE(sideloaded) << sideloaded.error().message();
  EXPECT_TRUE(sideloaded->sideloaded);
  // A developer key is not a publisher key: a tenant install signed by it is refused.
  auto tenant_install = Install(Pack(developer, Manifest("beta", kBetaId)), InstallSource::kTenant);
  ASSERT_FALSE(tenant_install);
  EXPECT_NE(tenant_install.error().message().find("not a trusted publisher"), std::string::npos)
      << tenant_install.error().message();
}

TEST_F(StoreTest, FileSystemFailureAfterTheChecksLeavesNoTrace) {
  ASSERT_TRUE(Install(Pack(publisher_, Manifest("alpha", kAlphaId))));
  auto state_root = dir_.path() / "state";
  // A file where beta's directory would go: every check passes, then the
  // extraction cannot start.
  testing::WriteText(store_->apps_dir() / kBetaId, "not a directory");
  const std::string before = Snapshot(state_root);
  auto result = Install(Pack(publisher_, Manifest("beta", kBetaId)));
  EXPECT_FALSE(result);
  EXPECT_EQ(Snapshot(state_root), before);
  EXPECT_FALSE(store_->Resolve(kBetaId));
}

}  // namespace
}  // namespace citadel::apps
