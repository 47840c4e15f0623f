// The client workflow through the in-memory repository: the happy path,
// then one test per attack — each asserts the refusal AND that the client's
// trusted metadata on disk did not change.
#include "tuf/updater.hpp"

#include <gtest/gtest.h>

#include <ctime>

#include "crypto/crypto.hpp"
#include "tuf/updater_fixture.hpp"

namespace citadel::tuf::testing {
namespace {

using UpdaterTest = UpdaterFixture;

std::string Url(std::string_view file) { return std::string(kMetadataUrl) + "/" + std::string(file); }

// ------------------------------------------------------------- happy path

TEST_F(UpdaterTest, RefreshFetchesAndPersistsTheTopLevelRoles) {
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(fetcher_->requested_urls(), (std::vector<std::string>{Url("2.root.json"), Url("timestamp.json"),
                                                                  Url("1.snapshot.json"), Url("1.targets.json")}));
  for (const char* role : {"root", "timestamp", "snapshot", "targets"}) EXPECT_EQ(ClientVersion(role), 1) << role;
  // Files are stored byte for byte as served.
  EXPECT_EQ(ClientFiles().at("snapshot.json"), repo_->Published("snapshot"));
  EXPECT_EQ(ClientFiles().size(), 4U);
}

TEST_F(UpdaterTest, SecondRefreshUsesLocalCopies) {
  ASSERT_TRUE(Refresh());
  fetcher_->ClearLog();
  ASSERT_TRUE(Refresh());
  // Same timestamp version: nothing else is fetched.
  EXPECT_EQ(fetcher_->requested_urls(), (std::vector<std::string>{Url("2.root.json"), Url("timestamp.json")}));
}

TEST_F(UpdaterTest, FollowsNewVersions) {
  ASSERT_TRUE(Refresh());
  repo_->AddTarget("targets", "app.img", "app v2");
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  auto updater = NewUpdater();
  ASSERT_TRUE(updater->Refresh());
  EXPECT_EQ(ClientVersion("targets"), 2);
  EXPECT_EQ(ClientVersion("snapshot"), 2);
  EXPECT_EQ(ClientVersion("timestamp"), 2);
  auto info = updater->GetTargetInfo("app.img");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->length, 6);
}

TEST_F(UpdaterTest, DownloadsAndCachesATarget) {
  repo_->AddTarget("targets", "dir/app.img", "the application image", Json{{"version", "2.1"}});
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  auto updater = NewUpdater();
  ASSERT_TRUE(updater->Refresh());
  auto info = updater->GetTargetInfo("dir/app.img");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->custom, Json({{"version", "2.1"}}));
  const auto path = updater->DefaultTargetPath(*info).value();
  EXPECT_EQ(path, target_dir() / "dir%2Fapp.img");
  EXPECT_FALSE(updater->FindCachedTarget(*info, path));
  std::uint64_t last_progress = 0;
  auto result = updater->DownloadTarget(*info, path, [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_EQ(total, 21U);
    last_progress = done;
  });
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->bytes_fetched, 21U);
  EXPECT_FALSE(result->resumed);
  EXPECT_EQ(last_progress, 21U);
  // Consistent snapshots: fetched under its hash-prefixed name.
  EXPECT_EQ(fetcher_->requested_urls().back(), repo_->TargetUrl("dir/app.img", true));
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"dir%2Fapp.img", "the application image"}}));
  EXPECT_TRUE(updater->FindCachedTarget(*info, path));
}

TEST_F(UpdaterTest, DefaultTargetPathStaysInTheTargetDirectory) {
  auto updater = NewUpdater();
  auto path = [&](const std::string& target) { return updater->DefaultTargetPath({.path = target}).value(); };
  EXPECT_EQ(path("../../etc/passwd"), target_dir() / "..%2F..%2Fetc%2Fpasswd");
  EXPECT_EQ(path(".."), target_dir() / "%2E%2E");
  EXPECT_EQ(path("."), target_dir() / "%2E");
  EXPECT_EQ(path(""), target_dir() / "%");
  EXPECT_EQ(path("a b/c?"), target_dir() / "a%20b%2Fc%3F");
}

TEST_F(UpdaterTest, FailedFetchLeavesNoEmptyPart) {
  repo_->AddTarget("targets", "gone.bin", "bytes");
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  auto updater = NewUpdater();
  ASSERT_TRUE(updater->Refresh());
  auto info = updater->GetTargetInfo("gone.bin");
  ASSERT_TRUE(info);
  fetcher_->SetFault(repo_->TargetUrl("gone.bin", true), {.drop = true});
  auto result = updater->DownloadTarget(*info, target_dir() / "gone.bin");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(TargetFiles().empty());
}

TEST_F(UpdaterTest, WithoutConsistentSnapshotsUsesPlainNames) {
  ASSERT_NO_FATAL_FAILURE(MakeRepository({.consistent_snapshot = false}));
  repo_->AddTarget("targets", "a/b.bin", "bytes");
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  auto updater = NewUpdater();
  ASSERT_TRUE(updater->Refresh());
  EXPECT_EQ(fetcher_->requested_urls(), (std::vector<std::string>{Url("2.root.json"), Url("timestamp.json"),
                                                                  Url("snapshot.json"), Url("targets.json")}));
  auto info = updater->GetTargetInfo("a/b.bin");
  ASSERT_TRUE(info);
  ASSERT_TRUE(updater->DownloadTarget(*info, target_dir() / "b.bin"));
  EXPECT_EQ(fetcher_->requested_urls().back(), std::string(kTargetsUrl) + "/a/b.bin");
}

TEST_F(UpdaterTest, DefaultClockIsTheSystemClock) {
  // No injected time: time(2) is used (libfaketime moves it in the
  // conformance suite). A repository built around the real "now" refreshes.
  ASSERT_NO_FATAL_FAILURE(MakeRepository({.now = static_cast<std::int64_t>(std::time(nullptr))}));
  Updater updater(UpdaterConfig{.metadata_dir = metadata_dir(), .metadata_base_url = std::string(kMetadataUrl)},
                  *fetcher_);
  EXPECT_TRUE(updater.Refresh());
  // And the same repository seen 31 days later is frozen.
  EXPECT_FALSE(Refresh(static_cast<std::int64_t>(std::time(nullptr)) + 31 * kDay));
}

TEST_F(UpdaterTest, InitRefusesAnInvalidTrustedRoot) {
  const auto dir = temp_.path() / "other";
  std::string root = repo_->PublishedRoot(1);
  root.replace(root.find("\"version\":1"), 11, "\"version\":2");  // breaks the signature
  EXPECT_FALSE(Updater::InitTrustedRoot(dir, root));
  EXPECT_FALSE(Updater::InitTrustedRoot(dir, "{}"));
  EXPECT_FALSE(std::filesystem::exists(dir / "root.json"));
}

TEST_F(UpdaterTest, RefreshWithoutTrustedRootFetchesNothing) {
  std::filesystem::remove(metadata_dir() / "root.json");
  ExpectRefused(Refresh(), ErrorCode::kNotFound, "run init first");
  std::filesystem::create_directories(metadata_dir());
  ASSERT_TRUE(WriteFileAtomic(metadata_dir() / "root.json", "{\"signed\":{}}"));
  EXPECT_FALSE(Refresh());
  EXPECT_TRUE(fetcher_->requests().empty());
}

TEST_F(UpdaterTest, CorruptLocalCopiesAreReplaced) {
  ASSERT_TRUE(Refresh());
  ASSERT_TRUE(WriteFileAtomic(metadata_dir() / "timestamp.json", "garbage"));
  ASSERT_TRUE(WriteFileAtomic(metadata_dir() / "snapshot.json", "{}"));
  ASSERT_TRUE(WriteFileAtomic(metadata_dir() / "targets.json", repo_->Published("snapshot")));
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientFiles().at("timestamp.json"), repo_->Published("timestamp"));
  EXPECT_EQ(ClientFiles().at("snapshot.json"), repo_->Published("snapshot"));
  EXPECT_EQ(ClientFiles().at("targets.json"), repo_->Published("targets"));
}

TEST_F(UpdaterTest, GetTargetInfoNeedsARefresh) {
  auto updater = NewUpdater();
  auto info = updater->GetTargetInfo("x");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(UpdaterTest, EqualTimestampVersionKeepsTheTrustedOne) {
  ASSERT_TRUE(Refresh());
  // Same version, other content (what a repository must never do).
  repo_->timestamp.snapshot_meta.version = 100;
  ASSERT_TRUE(repo_->Publish("timestamp"));
  const auto before = ClientFiles();
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientFiles(), before);
}

// ------------------------------------------------------- rollback attacks

TEST_F(UpdaterTest, AttackTimestampRollback) {
  ASSERT_TRUE(repo_->UpdateTimestamp());  // v2
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->ServeMetadata("timestamp", std::nullopt, repo_->Published("timestamp", 1));
  ExpectRefused(Refresh(), ErrorCode::kConflict, "timestamp version 1 is older than trusted 2");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackSnapshotRollbackThroughTimestamp) {
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v2, timestamp v2
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  // A new timestamp (the attacker has the online key) pointing at snapshot v1.
  repo_->timestamp.snapshot_meta.version = 1;
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ExpectRefused(Refresh(), ErrorCode::kConflict, "snapshot version 1, older than trusted 2");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackSnapshotRollbackWithoutNewTimestamp) {
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->ServeMetadata("snapshot", 2, repo_->Published("snapshot", 1));
  repo_->ServeMetadata("snapshot", std::nullopt, repo_->Published("snapshot", 1));
  // The client already has the snapshot the timestamp lists: it keeps it.
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientFiles(), before);
  EXPECT_EQ(fetcher_->requested_urls().back(), Url("timestamp.json"));
}

TEST_F(UpdaterTest, AttackTargetsRollbackInSnapshot) {
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->Bump("targets"));  // v3
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->targets["targets"].version = 1;
  ASSERT_TRUE(repo_->Bump("targets"));  // v2 < 3
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ExpectRefused(Refresh(), ErrorCode::kConflict, "\"targets.json\" version 2, older than trusted 3");
  ExpectUnchangedExceptTimestamp(before);
}

TEST_F(UpdaterTest, AttackTargetsRollbackServedDirectly) {
  // Snapshot lists targets v2; the mirror serves v1 under the v2 name.
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  repo_->ServeMetadata("targets", 2, repo_->Published("targets", 1));
  ExpectRefused(Refresh(), ErrorCode::kConflict, "\"targets\" version 1 is not the version 2 the snapshot lists");
  EXPECT_EQ(ClientVersion("targets"), 0);
}

TEST_F(UpdaterTest, AttackSnapshotDropsADelegatedRole) {
  ASSERT_TRUE(repo_->AddDelegation("targets", {.name = "apps", .paths = std::vector<std::string>{"apps/*"}}));
  ASSERT_TRUE(repo_->Publish("apps"));
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->snapshot.meta.erase("apps.json");
  ASSERT_TRUE(repo_->Bump("snapshot"));
  ASSERT_TRUE(repo_->UpdateTimestamp());
  ExpectRefused(Refresh(), ErrorCode::kConflict, "snapshot no longer lists \"apps.json\"");
  ExpectUnchangedExceptTimestamp(before);
}

// ---------------------------------------------------------- freeze attacks

TEST_F(UpdaterTest, AttackFreezeExpiredTimestamp) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->timestamp.expires = kRepositoryNow - kDay;
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ExpectRefused(Refresh(), ErrorCode::kExpired, "timestamp version 2 expired");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackFreezeExpiredSnapshot) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->snapshot.expires = kRepositoryNow - kDay;
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ExpectRefused(Refresh(), ErrorCode::kExpired, "snapshot version 2 expired");
  EXPECT_EQ(ClientVersion("timestamp"), 2);
  ExpectUnchangedExceptTimestamp(before);
}

TEST_F(UpdaterTest, AttackFreezeExpiredTargets) {
  ASSERT_TRUE(Refresh());
  repo_->targets["targets"].expires = kRepositoryNow - kDay;
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  const auto before = ClientFiles();
  ExpectRefused(Refresh(), ErrorCode::kExpired, "\"targets\" version 2 expired");
  EXPECT_EQ(ClientFiles().at("targets.json"), before.at("targets.json"));
  EXPECT_EQ(ClientVersion("targets"), 1);
  EXPECT_EQ(ClientVersion("snapshot"), 2);  // the snapshot listing it was fine
}

TEST_F(UpdaterTest, AttackFreezeEverythingReplayed) {
  // A mirror replays the same, once valid, metadata forever: once the
  // reference time passes its expiry, the client notices.
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  ExpectRefused(Refresh(kRepositoryNow + 31 * kDay), ErrorCode::kExpired, "expired");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackFreezeExpiredRoot) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  repo_->root.expires = kRepositoryNow - kDay;
  ASSERT_TRUE(repo_->Bump("root"));
  repo_->targets["targets"].version += 1;
  ASSERT_TRUE(repo_->Publish("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ExpectRefused(Refresh(), ErrorCode::kExpired, "root version 2 expired");
  // Spec 5.3.8/5.3.10: the new root is persisted, the freeze is detected
  // after the walk, and nothing else changes.
  EXPECT_EQ(ClientVersion("root"), 2);
  for (const char* file : {"timestamp.json", "snapshot.json", "targets.json"}) {
    EXPECT_EQ(ClientFiles().at(file), before.at(file)) << file;
  }
}

TEST_F(UpdaterTest, ExpiredLocalTimestampStillGuardsAgainstRollback) {
  repo_->timestamp.expires = kRepositoryNow + 7 * kDay;
  ASSERT_TRUE(repo_->Bump("timestamp"));  // v2
  ASSERT_TRUE(Refresh());
  // 18 days later the local timestamp v2 has expired. A mirror replaying
  // the older v1 (still unexpired) is refused: the expired local copy still
  // counts for the rollback check.
  repo_->ServeMetadata("timestamp", std::nullopt, repo_->Published("timestamp", 1));
  const auto before = ClientFiles();
  ExpectRefused(Refresh(kRepositoryNow + 18 * kDay), ErrorCode::kConflict, "older than trusted 2");
  EXPECT_EQ(ClientFiles(), before);
  // A fresh v3 with a later expiry is accepted from the expired state.
  repo_->timestamp.expires = kRepositoryNow + 21 * kDay;
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh(kRepositoryNow + 18 * kDay));
  EXPECT_EQ(ClientVersion("timestamp"), 3);
  EXPECT_EQ(ClientVersion("snapshot"), 2);
}

// ------------------------------------------------ mix-and-match / altered

TEST_F(UpdaterTest, AttackMixAndMatchSnapshotVersion) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v2, timestamp v2
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v3, timestamp v3
  // The mirror serves snapshot v2 (another repository state) as v3.
  repo_->ServeMetadata("snapshot", 3, repo_->Published("snapshot", 2));
  ExpectRefused(Refresh(), ErrorCode::kConflict, "snapshot version 2 is not the version 3 the timestamp lists");
  ExpectUnchangedExceptTimestamp(before);
}

TEST_F(UpdaterTest, AttackAlteredMetadata) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  ASSERT_TRUE(repo_->UpdateSnapshot());
  std::string snapshot = repo_->Published("snapshot", 2);
  const std::string listed = "\"targets.json\":{\"version\":1}";
  const auto at = snapshot.find(listed);
  ASSERT_NE(at, std::string::npos);
  snapshot.replace(at, listed.size(), "\"targets.json\":{\"version\":9}");
  repo_->ServeMetadata("snapshot", 2, snapshot);
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "snapshot: signature threshold not met");
  ExpectUnchangedExceptTimestamp(before);
}

TEST_F(UpdaterTest, AttackAlteredMetadataCaughtByHashes) {
  ASSERT_NO_FATAL_FAILURE(MakeRepository({.hashes_in_meta = true}));
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  // Another targets v2 of the same length: the snapshot's hash catches it
  // before any signature check.
  std::string altered = repo_->Published("targets", 2);
  const auto sig = altered.find("\"sig\":\"") + 7;
  altered[sig] = altered[sig] == '0' ? '1' : '0';
  repo_->ServeMetadata("targets", 2, altered);
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "\"targets\": sha256 mismatch");
  EXPECT_EQ(ClientVersion("snapshot"), 2);  // the snapshot listing the hash was fine
  EXPECT_EQ(ClientFiles().at("targets.json"), before.at("targets.json"));
  // A longer one is cut at the length the snapshot lists.
  repo_->ServeMetadata("targets", 2, repo_->Published("targets", 2) + "    ");
  ExpectRefused(Refresh(), ErrorCode::kTooLarge);
  EXPECT_EQ(ClientFiles().at("targets.json"), before.at("targets.json"));
}

// --------------------------------------------------- arbitrary software

TEST_F(UpdaterTest, AttackThresholdNotMet) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  // The timestamp signed by a key root does not authorise.
  auto intruder = repo_->NewSigner();
  ASSERT_TRUE(intruder);
  repo_->signers["timestamp"] = {*intruder};
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "timestamp: signature threshold not met");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackThresholdRaisedButNotMet) {
  ASSERT_TRUE(repo_->AddKey("snapshot"));
  repo_->root.roles["snapshot"].threshold = 2;
  repo_->signers["snapshot"].pop_back();  // only one of the two keys signs
  ASSERT_TRUE(repo_->Bump("root"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "snapshot: signature threshold not met (1 valid signature");
  EXPECT_EQ(ClientVersion("snapshot"), 0);
}

TEST_F(UpdaterTest, AttackArbitraryTarget) {
  auto updater = NewUpdater();
  ASSERT_TRUE(updater->Refresh());
  fetcher_->Put(std::string(kTargetsUrl) + "/evil.sh", "rm -rf /");
  auto info = updater->GetTargetInfo("evil.sh");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(TargetFiles().empty());
}

class TargetAttackTest : public UpdaterFixture {
 protected:
  void SetUp() override {
    UpdaterFixture::SetUp();
    repo_->AddTarget("targets", "fw.bin", content_);
    ASSERT_TRUE(repo_->Bump("targets"));
    ASSERT_TRUE(repo_->UpdateSnapshot());
    updater_ = NewUpdater();
    ASSERT_TRUE(updater_->Refresh());
    auto info = updater_->GetTargetInfo("fw.bin");
    ASSERT_TRUE(info) << info.error().message();
    info_ = *info;
    url_ = repo_->TargetUrl("fw.bin", true);
    path_ = target_dir() / "fw.bin";
  }
  Expected<DownloadResult> Download() { return updater_->DownloadTarget(info_, path_); }

  const std::string content_ = std::string(10000, 'a') + "firmware" + std::string(10000, 'z');
  std::unique_ptr<Updater> updater_;
  TargetFile info_;
  std::string url_;
  std::filesystem::path path_;
};

TEST_F(TargetAttackTest, WrongHash) {
  std::string evil = content_;
  evil[5000] = 'b';
  fetcher_->SetFault(url_, {.serve_instead = evil});
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto) << result.error().message();
  EXPECT_NE(result.error().message().find("sha"), std::string::npos);
  EXPECT_TRUE(TargetFiles().empty());  // no file, no ".part"
}

TEST_F(TargetAttackTest, WrongLengthShorter) {
  fetcher_->SetFault(url_, {.serve_instead = content_.substr(0, 100)});
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto) << result.error().message();
  EXPECT_NE(result.error().message().find("has 100 bytes, the target 20008"), std::string::npos);
  EXPECT_TRUE(TargetFiles().empty());
}

TEST_F(TargetAttackTest, WrongLengthLonger) {
  fetcher_->SetFault(url_, {.serve_instead = content_ + "trailer"});
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge) << result.error().message();
  EXPECT_TRUE(TargetFiles().empty());
}

TEST_F(TargetAttackTest, EndlessData) {
  fetcher_->SetFault(url_, {.endless = true});
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge);
  EXPECT_LE(fetcher_->bytes_sent(url_), content_.size());
  EXPECT_TRUE(TargetFiles().empty());
}

TEST_F(TargetAttackTest, EndlessDataFromAFetcherIgnoringItsBound) {
  // Defence in depth: the updater's own sink refuses the extra bytes.
  fetcher_->SetFault(url_, {.endless = true, .ignore_max_length = true});
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge);
  EXPECT_NE(result.error().message().find("longer than the 20008 bytes"), std::string::npos);
  EXPECT_TRUE(TargetFiles().empty());
}

TEST_F(TargetAttackTest, SubstitutedAfterCaching) {
  ASSERT_TRUE(Download());
  fetcher_->SetFault(url_, {.serve_instead = std::string(content_.size(), 'e')});
  // Cached: no need to fetch; and a forced fetch is refused.
  EXPECT_TRUE(updater_->FindCachedTarget(info_, path_));
  EXPECT_FALSE(updater_->DownloadTarget(info_, target_dir() / "copy"));
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin", content_}}));
}

// ------------------------------------------------------- endless metadata

TEST_F(UpdaterTest, AttackEndlessTimestamp) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  fetcher_->SetFault(Url("timestamp.json"), {.endless = true, .ignore_max_length = true});
  fetcher_->ClearLog();
  ExpectRefused(Refresh(), ErrorCode::kTooLarge, "longer than the 16384 bytes allowed");
  EXPECT_LE(fetcher_->bytes_sent(Url("timestamp.json")), 16384U + 4096U);
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackEndlessRoot) {
  fetcher_->SetFault(Url("2.root.json"), {.endless = true});
  ExpectRefused(Refresh(), ErrorCode::kTooLarge);
  EXPECT_LE(fetcher_->bytes_sent(Url("2.root.json")), 512000U);
  EXPECT_EQ(ClientFiles().size(), 1U);
}

TEST_F(UpdaterTest, AttackSnapshotLongerThanTimestampSays) {
  ASSERT_NO_FATAL_FAILURE(MakeRepository({.hashes_in_meta = true}));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  fetcher_->SetFault(Url("2.snapshot.json"), {.endless = true});
  ExpectRefused(Refresh(), ErrorCode::kTooLarge);
  // Bounded by the length the timestamp lists, not by snapshot_max_length.
  EXPECT_EQ(fetcher_->bytes_sent(Url("2.snapshot.json")),
            static_cast<std::uint64_t>(*repo_->timestamp.snapshot_meta.length));
  EXPECT_EQ(ClientVersion("snapshot"), 0);
}

// ---------------------------------------------------------- root rotation

TEST_F(UpdaterTest, RootRotationWalksEveryVersion) {
  for (int i = 0; i < 2; ++i) {
    // Each new root is signed by the previous root key and the new one.
    auto previous = repo_->signers["root"];
    ASSERT_TRUE(repo_->RotateKeys("root"));
    repo_->signers["root"].insert(repo_->signers["root"].end(), previous.begin(), previous.end());
    ASSERT_TRUE(repo_->Bump("root"));
    repo_->signers["root"].resize(1);
  }
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("root"), 3);
  const auto urls = fetcher_->requested_urls();
  EXPECT_EQ(std::vector<std::string>(urls.begin(), urls.begin() + 3),
            (std::vector<std::string>{Url("2.root.json"), Url("3.root.json"), Url("4.root.json")}));
  EXPECT_EQ(ClientFiles().at("root.json"), repo_->PublishedRoot(3));
}

TEST_F(UpdaterTest, RootWalkIsBounded) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(repo_->Bump("root"));  // v6
  auto config = Config();
  config.max_root_rotations = 3;
  Updater updater(config, *fetcher_);
  ASSERT_TRUE(updater.Refresh());
  EXPECT_EQ(ClientVersion("root"), 4);
  ASSERT_TRUE(updater.Refresh());  // the next refresh carries on
  EXPECT_EQ(ClientVersion("root"), 6);
}

TEST_F(UpdaterTest, AttackRootNotSignedByTrustedRoot) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  ASSERT_TRUE(repo_->RotateKeys("root"));  // v2 signed by the new key only
  ASSERT_TRUE(repo_->Bump("root"));
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "keys of the trusted root");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackRootNotSignedByItsOwnKeys) {
  ASSERT_TRUE(Refresh());
  const auto before = ClientFiles();
  auto old = repo_->signers["root"];
  ASSERT_TRUE(repo_->RotateKeys("root"));
  repo_->signers["root"] = old;  // v2 signed only by the old key
  ASSERT_TRUE(repo_->Bump("root"));
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "its own keys");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, AttackOldKeyAfterRotation) {
  // The timestamp key leaked; root v2 rotates it away. The attacker's
  // timestamp signed with the old key is refused from then on.
  ASSERT_TRUE(Refresh());
  auto leaked = repo_->signers["timestamp"];
  ASSERT_TRUE(repo_->RotateKeys("timestamp"));
  ASSERT_TRUE(repo_->Bump("root"));
  ASSERT_TRUE(repo_->UpdateTimestamp());
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("root"), 2);
  const auto before = ClientFiles();
  repo_->signers["timestamp"] = leaked;
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ExpectRefused(Refresh(), ErrorCode::kCrypto, "timestamp: signature threshold not met");
  EXPECT_EQ(ClientFiles(), before);
}

TEST_F(UpdaterTest, FastForwardRecoveryOfTimestamp) {
  // An attacker with the timestamp key pushed timestamp v100.
  for (int i = 0; i < 99; ++i) ASSERT_TRUE(repo_->Bump("timestamp"));
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("timestamp"), 100);
  // The repository rotates the timestamp key and starts again at v2.
  ASSERT_TRUE(repo_->RotateKeys("timestamp"));
  ASSERT_TRUE(repo_->Bump("root"));
  repo_->timestamp.version = 1;
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("timestamp"), 2);
}

TEST_F(UpdaterTest, FastForwardRecoveryOfSnapshot) {
  repo_->snapshot.version = 99998;
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v99999
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("snapshot"), 99999);
  ASSERT_TRUE(repo_->RotateKeys("snapshot"));
  ASSERT_TRUE(repo_->RotateKeys("timestamp"));
  ASSERT_TRUE(repo_->Bump("root"));
  repo_->snapshot.version = 0;
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v1, timestamp v3
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("snapshot"), 1);
}

TEST_F(UpdaterTest, FastForwardRecoveryOfTargetsBySnapshotKeyRotation) {
  for (int i = 0; i < 99; ++i) ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("targets"), 100);
  ASSERT_TRUE(repo_->RotateKeys("snapshot"));
  ASSERT_TRUE(repo_->Bump("root"));
  repo_->targets["targets"].version = 1;
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  ASSERT_TRUE(Refresh());
  EXPECT_EQ(ClientVersion("targets"), 2);
}

TEST_F(UpdaterTest, FailedRefreshAfterKeyRotationKeepsTheTrustedFiles) {
  // The conformance suite reads snapshot.json after such a failure: the
  // last trusted copy must still be there (not deleted by 5.3.11).
  ASSERT_TRUE(Refresh());
  ASSERT_TRUE(repo_->AddKey("snapshot"));
  repo_->root.roles["snapshot"].threshold = 3;
  ASSERT_TRUE(repo_->Bump("root"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  EXPECT_FALSE(Refresh());
  EXPECT_EQ(ClientVersion("root"), 2);
  EXPECT_EQ(ClientVersion("snapshot"), 1);
}

// ---------------------------------------------------------------- resume

class ResumeTest : public TargetAttackTest {};

TEST_F(ResumeTest, CutTransferResumesWithTheRest) {
  fetcher_->set_chunk_size(1000);
  fetcher_->SetFault(url_, {.cut_after = 7000});
  auto cut = Download();
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin.part", content_.substr(0, 7000)}}));

  fetcher_->ClearFaults();
  fetcher_->ClearLog();
  auto resumed = Download();
  ASSERT_TRUE(resumed) << resumed.error().message();
  EXPECT_EQ(resumed->bytes_fetched, content_.size() - 7000);
  EXPECT_TRUE(resumed->resumed);
  EXPECT_EQ(fetcher_->requests().back().offset, 7000U);
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin", content_}}));
}

TEST_F(ResumeTest, ServerIgnoringRangeStartsOver) {
  fetcher_->SetFault(url_, {.cut_after = 5000});
  ASSERT_FALSE(Download());
  fetcher_->SetFault(url_, {.ignore_range = true});
  auto result = Download();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->bytes_fetched, content_.size());
  EXPECT_FALSE(result->resumed);
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin", content_}}));
}

TEST_F(ResumeTest, CorruptPrefixIsCaughtAsAWhole) {
  // A ".part" whose prefix is wrong (a hostile server before the cut).
  ASSERT_TRUE(WriteFileAtomic(target_dir() / "fw.bin.part", std::string(3000, 'q')));
  auto result = Download();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto);
  EXPECT_EQ(fetcher_->bytes_sent(url_), content_.size() - 3000);
  EXPECT_TRUE(TargetFiles().empty());
  // The next attempt starts from zero and succeeds.
  ASSERT_TRUE(Download());
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin", content_}}));
}

TEST_F(ResumeTest, CompleteLeftoverNeedsNoFetch) {
  ASSERT_TRUE(WriteFileAtomic(target_dir() / "fw.bin.part", content_));
  auto result = Download();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->bytes_fetched, 0U);
  EXPECT_EQ(fetcher_->bytes_sent(url_), 0U);
  EXPECT_EQ(TargetFiles(), (std::map<std::string, std::string>{{"fw.bin", content_}}));
}

TEST_F(ResumeTest, OversizedLeftoverStartsOver) {
  ASSERT_TRUE(WriteFileAtomic(target_dir() / "fw.bin.part", content_ + "extra"));
  auto result = Download();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->bytes_fetched, content_.size());
}

// -------------------------------------------------------------- interop

TEST(UpdaterInteropTest, TufOnCiRepository) {
  // A repository made by tuf-on-ci / securesystemslib (testdata/tuf-on-ci).
  const std::filesystem::path data = CITADEL_TUF_TESTDATA "/tuf-on-ci";
  MemoryFetcher fetcher;
  for (const char* file : {"timestamp.json", "2.snapshot.json", "1.targets.json", "2.delegatedrole.json"}) {
    fetcher.Put(std::string(kMetadataUrl) + "/" + file, ReadFile(data / "metadata" / file).value());
  }
  const std::string artifact = ReadFile(data / "artifact").value();
  fetcher.Put(std::string(kTargetsUrl) + "/delegatedrole/" + crypto::Sha256Hex(artifact) + ".artifact", artifact);
  citadel::testing::TempDir temp("tuf-interop");
  ASSERT_TRUE(Updater::InitTrustedRoot(temp.path() / "md", ReadFile(data / "initial_root.json").value()));
  Updater updater({.metadata_dir = temp.path() / "md",
                   .metadata_base_url = std::string(kMetadataUrl),
                   .target_base_url = std::string(kTargetsUrl),
                   .now_unix_seconds = [] { return ParseExpires("2025-02-09T09:17:23Z").value(); }},
                  fetcher);
  auto refreshed = updater.Refresh();
  ASSERT_TRUE(refreshed) << refreshed.error().message();
  auto info = updater.GetTargetInfo("delegatedrole/artifact");
  ASSERT_TRUE(info) << info.error().message();
  auto downloaded = updater.DownloadTarget(*info, temp.path() / "artifact");
  ASSERT_TRUE(downloaded) << downloaded.error().message();
  EXPECT_EQ(ReadFile(temp.path() / "artifact").value(), artifact);
  EXPECT_TRUE(std::filesystem::exists(temp.path() / "md" / "delegatedrole.json"));
  // The delegation is terminating and path-limited.
  auto outside = updater.GetTargetInfo("elsewhere/artifact");
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace citadel::tuf::testing
