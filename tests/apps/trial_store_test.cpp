// AppStore update trials: the previous version stays until commit, a revert
// restores tree, image, state and claims, a refused update changes nothing,
// and the installed image is kept as the next delta's base.
#include <gtest/gtest.h>

#include "apps/app_store.hpp"
#include "trial_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using testing::kLed1;
using testing::kLed2;
using testing::kOtherAppId;
using testing::kTrialAppId;
using testing::Manifest;
using testing::Snapshot;
using testing::VersionedManifest;

class TrialStoreTest : public testing::TrialStoreFixture {
 protected:
  void SetUp() override {
    TrialStoreFixture::SetUp();
    state_dir_ = dir_.path() / "state";
    store_ = OpenAt(state_dir_);
    ASSERT_TRUE(store_);
  }
  void Reopen() {
    store_.reset();
    store_ = OpenAt(state_dir_);
    ASSERT_TRUE(store_);
  }
  InstalledApp InstallV1() {
    auto installed = store_->Install(v1_, "alpha-1.0.img", InstallSource::kTenant);
    EXPECT_TRUE(installed) << installed.error().message();
    return installed ? *installed : InstalledApp{};
  }
  std::string Holder(const char* resource) {
    auto holder = store_->HolderOf(resource);
    return holder ? holder->component_id : "";
  }
  fs::path AppDir() { return TrialStoreFixture::AppDir(*store_); }

  fs::path state_dir_;
  std::unique_ptr<AppStore> store_;
};

TEST_F(TrialStoreTest, TrialKeepsThePreviousVersionUntilCommit) {
  InstallV1();
  auto began = store_->BeginTrial(v2_file_, kTrialAppId);
  ASSERT_TRUE(began) << began.error().message();
  EXPECT_EQ(began->version, "2.0");
  EXPECT_EQ(began->security_version, 2);
  EXPECT_EQ(began->image_sha256, Sha(v2_));
  EXPECT_EQ(began->desired, DesiredState::kStopped);  // an update keeps the desired state
  EXPECT_EQ(began->slot, 0u);

  auto trial = store_->TrialOf(kTrialAppId);
  ASSERT_TRUE(trial);
  EXPECT_EQ(trial->image_sha256, Sha(v2_));
  EXPECT_EQ(trial->exits, 0u);
  EXPECT_EQ(trial->phase, TrialPhase::kOpen);
  ASSERT_TRUE(trial->previous);
  EXPECT_EQ(trial->previous->version, "1.0");
  EXPECT_EQ(trial->previous->image_sha256, Sha(v1_));
  // Persisted: the state file holds the same trial.
  EXPECT_EQ(LoadAppsState(store_->state_file())->trials.at(kTrialAppId), *trial);

  EXPECT_NE(ReadFile(AppDir() / "root" / "app_manifest.json")->find("\"2.0\""), std::string::npos);
  EXPECT_NE(ReadFile(AppDir() / "root.previous" / "app_manifest.json")->find("\"1.0\""), std::string::npos);
  EXPECT_EQ(*ReadFile(AppDir() / "image.img", 1u << 24), AsText(v2_));
  EXPECT_EQ(*ReadFile(AppDir() / "image.previous", 1u << 24), AsText(v1_));
  // The launcher is given the new version's policy.
  EXPECT_EQ(store_->PolicyOf(kTrialAppId)->peripherals.at(0).ResourceKey(), kLed2);

  // Both versions' resources stay claimed, so a revert cannot be blocked.
  EXPECT_EQ(Holder(kLed1), kTrialAppId);
  EXPECT_EQ(Holder(kLed2), kTrialAppId);
  auto grab =
      store_->Install(Pack(Manifest("beta", kOtherAppId, R"({"Gpio":["LED1"]})")), "beta.img", InstallSource::kTenant);
  ASSERT_FALSE(grab);
  EXPECT_EQ(grab.error().code(), ErrorCode::kConflict);

  ASSERT_TRUE(store_->CommitTrial(kTrialAppId));
  EXPECT_FALSE(store_->TrialOf(kTrialAppId));
  EXPECT_FALSE(fs::exists(AppDir() / "root.previous"));
  EXPECT_FALSE(fs::exists(AppDir() / "image.previous"));
  EXPECT_EQ(Holder(kLed1), "");
  EXPECT_EQ(Holder(kLed2), kTrialAppId);
  EXPECT_TRUE(LoadAppsState(store_->state_file())->trials.empty());
  EXPECT_EQ(store_->Resolve(kTrialAppId)->version, "2.0");
  // Idempotent: a second commit (say, after a crash of the caller) is harmless.
  EXPECT_TRUE(store_->CommitTrial(kTrialAppId));
}

TEST_F(TrialStoreTest, RevertRestoresTreeImageStateAndClaims) {
  InstallV1();
  ASSERT_TRUE(store_->SetDesired(kTrialAppId, DesiredState::kRunning));
  const auto before = *store_->Resolve(kTrialAppId);
  const std::string files_before = Snapshot(AppDir());
  testing::WriteText(store_->StorageImageOf(kTrialAppId), "the app's data");

  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  ASSERT_TRUE(store_->RevertTrial(kTrialAppId));

  EXPECT_FALSE(store_->TrialOf(kTrialAppId));
  EXPECT_EQ(*store_->Resolve(kTrialAppId), before);
  auto saved = LoadAppsState(store_->state_file());
  EXPECT_EQ(saved->apps.at(kTrialAppId), before);
  EXPECT_TRUE(saved->trials.empty());
  // The data the app wrote is its own, not a version's: it stays.
  EXPECT_EQ(*ReadFile(store_->StorageImageOf(kTrialAppId)), "the app's data");
  fs::remove(store_->StorageImageOf(kTrialAppId));
  EXPECT_EQ(Snapshot(AppDir()), files_before);
  EXPECT_EQ(Holder(kLed1), kTrialAppId);
  EXPECT_EQ(Holder(kLed2), "");
  EXPECT_EQ(store_->PolicyOf(kTrialAppId)->peripherals.at(0).ResourceKey(), kLed1);
  EXPECT_TRUE(store_->RevertTrial(kTrialAppId));  // idempotent

  // The same update can be tried again later.
  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  EXPECT_TRUE(store_->TrialOf(kTrialAppId));
}

TEST_F(TrialStoreTest, RevertKeepsTheDesiredStateChosenDuringTheTrial) {
  InstallV1();
  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  ASSERT_TRUE(store_->SetDesired(kTrialAppId, DesiredState::kRunning));
  ASSERT_TRUE(store_->RevertTrial(kTrialAppId));
  EXPECT_EQ(store_->Resolve(kTrialAppId)->desired, DesiredState::kRunning);
  EXPECT_EQ(store_->Resolve(kTrialAppId)->version, "1.0");
}

TEST_F(TrialStoreTest, TheSameImageAgainIsANoOpAndAnotherIsRefused) {
  InstallV1();
  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  const auto trial = *store_->TrialOf(kTrialAppId);
  const std::string files = Snapshot(state_dir_);
  auto again = store_->BeginTrial(v2_file_, kTrialAppId);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->image_sha256, Sha(v2_));
  EXPECT_EQ(*store_->TrialOf(kTrialAppId), trial);
  EXPECT_EQ(Snapshot(state_dir_), files);

  auto v3 = WriteImage("alpha-3.0.img", Pack(VersionedManifest("alpha", kTrialAppId, "3.0", 3)));
  auto other = store_->BeginTrial(v3, kTrialAppId);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kConflict);
  // Nor does a sideload or development install cut into an open trial.
  auto plain = store_->InstallFile(v3, InstallSource::kTenant);
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code(), ErrorCode::kConflict);
  EXPECT_NE(plain.error().message().find("on trial"), std::string::npos) << plain.error().message();
  EXPECT_EQ(Snapshot(state_dir_), files);

  ASSERT_TRUE(store_->CommitTrial(kTrialAppId));
  EXPECT_TRUE(store_->BeginTrial(v3, kTrialAppId));
}

TEST_F(TrialStoreTest, RefusedUpdatesChangeNothing) {
  InstallV1();
  ASSERT_TRUE(
      store_->Install(Pack(Manifest("beta", kOtherAppId, R"({"Gpio":["LED2"]})")), "beta.img", InstallSource::kTenant));
  const std::string before = Snapshot(state_dir_);
  auto stranger = testing::NewKey();
  auto developer = testing::NewKey();
  DevelopmentGrant grant;
  grant.capability_id = "c";
  grant.developer_keys.push_back(developer.Public());
  trust_.grant = grant;  // developer keys are trusted for sideloads, never for updates

  std::vector<std::pair<std::string, fs::path>> cases{
      {"resource held by another app", v2_file_},
      {"image of another app", WriteImage("beta-2.img", Pack(VersionedManifest("beta", kOtherAppId, "2.0", 2)))},
      {"untrusted signer",
       WriteImage("stranger.img",
                  testing::PackApp(dir_.path() / "work", stranger, VersionedManifest("alpha", kTrialAppId, "2.0", 2)))},
      {"developer signer",
       WriteImage("developer.img", testing::PackApp(dir_.path() / "work", developer,
                                                    VersionedManifest("alpha", kTrialAppId, "2.0", 2)))},
      {"peripheral not on board",
       WriteImage("led9.img", Pack(VersionedManifest("alpha", kTrialAppId, "2.0", 2, R"({"Gpio":["LED9"]})")))},
      {"name of another app", WriteImage("named-beta.img", Pack(VersionedManifest("beta", kTrialAppId, "2.0", 2)))},
      {"garbage", WriteImage("garbage.img", Bytes{'n', 'o', 'p', 'e'})},
      {"missing file", dir_.path() / "images" / "missing.img"},
  };
  for (const auto& [name, file] : cases) {
    auto result = store_->BeginTrial(file, kTrialAppId);
    EXPECT_FALSE(result) << name << " began a trial";
    if (!result) {
      EXPECT_NE(result.error().message(), "") << name;
    }
    EXPECT_EQ(Snapshot(state_dir_), before) << name << " changed the installed apps";
    EXPECT_FALSE(store_->TrialOf(kTrialAppId)) << name;
    EXPECT_EQ(Holder(kLed1), kTrialAppId) << name;
    EXPECT_EQ(Holder(kLed2), kOtherAppId) << name;
  }
  auto wrong = store_->BeginTrial(cases[1].second, kTrialAppId);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message().find("not " + std::string(kTrialAppId)), std::string::npos)
      << wrong.error().message();
}

TEST_F(TrialStoreTest, FirstInstallOnTrialRunsAndARevertRemovesIt) {
  auto began = store_->BeginTrial(v1_file_, kTrialAppId);
  ASSERT_TRUE(began) << began.error().message();
  EXPECT_EQ(began->desired, DesiredState::kRunning);
  auto trial = store_->TrialOf(kTrialAppId);
  ASSERT_TRUE(trial);
  EXPECT_FALSE(trial->previous);
  EXPECT_EQ(Holder(kLed1), kTrialAppId);

  ASSERT_TRUE(store_->RevertTrial(kTrialAppId));
  EXPECT_FALSE(store_->Resolve(kTrialAppId));
  EXPECT_FALSE(fs::exists(AppDir()));
  EXPECT_EQ(Holder(kLed1), "");
  EXPECT_TRUE(LoadAppsState(store_->state_file())->apps.empty());

  ASSERT_TRUE(store_->BeginTrial(v1_file_, kTrialAppId));
  ASSERT_TRUE(store_->CommitTrial(kTrialAppId));
  EXPECT_EQ(store_->Resolve(kTrialAppId)->version, "1.0");
}

TEST_F(TrialStoreTest, AnOpenTrialSurvivesARestart) {
  InstallV1();
  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  EXPECT_EQ(store_->RecordTrialExit(kTrialAppId), 1u);
  EXPECT_EQ(store_->RecordTrialExit(kTrialAppId), 2u);
  Reopen();
  auto trial = store_->TrialOf(kTrialAppId);
  ASSERT_TRUE(trial);
  EXPECT_EQ(trial->exits, 2u);
  EXPECT_EQ(Holder(kLed1), kTrialAppId);
  EXPECT_EQ(Holder(kLed2), kTrialAppId);
  EXPECT_TRUE(fs::exists(AppDir() / "root.previous"));
  ASSERT_TRUE(store_->RevertTrial(kTrialAppId));
  EXPECT_EQ(store_->Resolve(kTrialAppId)->version, "1.0");
  EXPECT_EQ(store_->RecordTrialExit(kTrialAppId), 0u);  // no trial: not counted
}

TEST_F(TrialStoreTest, TheInstalledImageIsKeptAsTheDeltaBase) {
  auto v1 = InstallV1();
  EXPECT_EQ(v1.image_sha256, Sha(v1_));
  EXPECT_EQ(v1.version, "1.0");
  EXPECT_EQ(v1.security_version, 1);
  EXPECT_EQ(*ReadFile(store_->ImageFileOf(kTrialAppId), 1u << 24), AsText(v1_));
  // A plain install over an installed app is immediate: no trial, nothing kept.
  auto v2 = store_->Install(v2_, "alpha-2.0.img", InstallSource::kTenant);
  ASSERT_TRUE(v2) << v2.error().message();
  EXPECT_FALSE(store_->TrialOf(kTrialAppId));
  EXPECT_EQ(*ReadFile(store_->ImageFileOf(kTrialAppId), 1u << 24), AsText(v2_));
  EXPECT_FALSE(fs::exists(AppDir() / "image.previous"));
  EXPECT_FALSE(fs::exists(AppDir() / "root.previous"));
  EXPECT_TRUE(LoadAppsState(store_->state_file())->trials.empty());
  EXPECT_EQ(Holder(kLed1), "");
  EXPECT_EQ(Holder(kLed2), kTrialAppId);
}

TEST_F(TrialStoreTest, AppsInstalledBeforeImagesWereKeptCanBeUpdatedAndReverted) {
  InstallV1();
  // The state file and files of an older citadeld: no version fields, no image.
  store_.reset();
  auto state_file = state_dir_ / "apps" / "state.json";
  auto json = *ParseJsonStrict(*ReadFile(state_file));
  for (auto& [id, app] : json["apps"].items()) {
    app.erase("version");
    app.erase("security_version");
    app.erase("image_sha256");
  }
  json.erase("trials");
  ASSERT_TRUE(WriteFileAtomic(state_file, json.dump(), 0600));
  fs::remove(state_dir_ / "apps" / kTrialAppId / "image.img");
  Reopen();
  auto app = store_->Resolve(kTrialAppId);
  ASSERT_TRUE(app) << app.error().message();
  EXPECT_EQ(app->version, "1.0");  // from the installed manifest
  EXPECT_EQ(app->security_version, 1);
  EXPECT_EQ(app->image_sha256, "");

  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  EXPECT_EQ(*ReadFile(store_->ImageFileOf(kTrialAppId), 1u << 24), AsText(v2_));
  ASSERT_TRUE(store_->RevertTrial(kTrialAppId));
  // The previous version had no image: none is left that would misname it.
  EXPECT_FALSE(fs::exists(store_->ImageFileOf(kTrialAppId)));
  EXPECT_EQ(store_->Resolve(kTrialAppId)->image_sha256, "");
  EXPECT_EQ(Holder(kLed1), kTrialAppId);
}

TEST_F(TrialStoreTest, LeftoversOfInterruptedWritesAreRemovedAtOpen) {
  InstallV1();
  const std::string files = Snapshot(AppDir());
  for (const char* dir : {".root.staging.new-Ab12Cd", "root.staging", "root.discard", "root.previous"}) {
    testing::WriteText(AppDir() / dir / "bin" / "app", "partial");
  }
  for (const char* file : {".image.staging.tmp1234", "image.staging", "image.discard", "image.previous"}) {
    testing::WriteText(AppDir() / file, "partial");
  }
  testing::WriteText(store_->apps_dir() / kOtherAppId / "root" / "bin" / "app", "not installed");
  Reopen();
  EXPECT_EQ(Snapshot(AppDir()), files);
  EXPECT_FALSE(fs::exists(store_->apps_dir() / kOtherAppId));
}

TEST_F(TrialStoreTest, StateFilesWithBrokenTrialsAreRefused) {
  InstallV1();
  ASSERT_TRUE(store_->BeginTrial(v2_file_, kTrialAppId));
  store_.reset();
  auto state_file = state_dir_ / "apps" / "state.json";
  const auto good = *ParseJsonStrict(*ReadFile(state_file));
  std::vector<std::pair<std::string, std::function<void(Json&)>>> cases{
      {"trial of an app not installed", [](Json& j) { j["trials"][kOtherAppId] = j["trials"][kTrialAppId]; }},
      {"unknown phase", [](Json& j) { j["trials"][kTrialAppId]["phase"] = "maybe"; }},
      {"negative exits", [](Json& j) { j["trials"][kTrialAppId]["exits"] = -1; }},
      {"previous in another slot", [](Json& j) { j["trials"][kTrialAppId]["previous"]["slot"] = 7; }},
      {"previous missing", [](Json& j) { j["trials"][kTrialAppId].erase("previous"); }},
      {"security version out of range", [](Json& j) { j["apps"][kTrialAppId]["security_version"] = 2000000; }},
  };
  for (const auto& [name, damage] : cases) {
    Json broken = good;
    damage(broken);
    ASSERT_TRUE(WriteFileAtomic(state_file, broken.dump(), 0600));
    EXPECT_FALSE(LoadAppsState(state_file)) << name;
  }
}

}  // namespace
}  // namespace citadel::apps
