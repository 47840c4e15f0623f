// The TrustedMetadataSet state machine on its own: ordering, intermediate
// metadata, and each rule's error code and message.
#include "tuf/trusted_set.hpp"

#include <gtest/gtest.h>

#include "tuf/memory_fetcher.hpp"
#include "tuf/test_repository.hpp"

namespace citadel::tuf {
namespace {

using testing::kDay;
using testing::kRepositoryNow;
using testing::MemoryFetcher;
using testing::TestRepository;

class TrustedSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto repo = TestRepository::Create(fetcher_);
    ASSERT_TRUE(repo) << repo.error().message();
    repo_ = *std::move(repo);
  }
  TrustedMetadataSet NewSet(std::int64_t now = kRepositoryNow) {
    auto set = TrustedMetadataSet::Create(repo_->PublishedRoot(1), now);
    EXPECT_TRUE(set) << set.error().message();
    return *std::move(set);
  }
  // Loads every top-level role of the repository's latest versions.
  void LoadAll(TrustedMetadataSet& set) {
    ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp")));
    ASSERT_TRUE(set.UpdateSnapshot(repo_->Published("snapshot")));
    ASSERT_TRUE(set.UpdateTargets(repo_->Published("targets")));
  }
  static void ExpectError(const Expected<void>& result, ErrorCode code, std::string_view needle) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code(), code) << result.error().message();
    EXPECT_NE(result.error().message().find(needle), std::string::npos) << result.error().message();
  }
  template <typename T>
  static void ExpectError(const Expected<T>& result, ErrorCode code, std::string_view needle) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code(), code) << result.error().message();
    EXPECT_NE(result.error().message().find(needle), std::string::npos) << result.error().message();
  }

  MemoryFetcher fetcher_;
  std::unique_ptr<TestRepository> repo_;
};

TEST_F(TrustedSetTest, LoadsTheTopLevelRolesInOrder) {
  TrustedMetadataSet set = NewSet();
  EXPECT_EQ(set.timestamp(), nullptr);
  LoadAll(set);
  EXPECT_EQ(set.timestamp()->body.version, 1);
  EXPECT_EQ(set.snapshot()->body.version, 1);
  EXPECT_EQ(set.targets()->body.version, 1);
}

TEST_F(TrustedSetTest, StepsOutOfOrderAreRefused) {
  TrustedMetadataSet set = NewSet();
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot")), ErrorCode::kFailedPrecondition, "before timestamp");
  ExpectError(set.UpdateTargets(repo_->Published("targets")), ErrorCode::kFailedPrecondition, "before snapshot");
  LoadAll(set);
  ASSERT_TRUE(repo_->Bump("root"));
  ExpectError(set.UpdateRoot(repo_->PublishedRoot(2)), ErrorCode::kFailedPrecondition, "after timestamp");
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp")), ErrorCode::kFailedPrecondition, "after snapshot");
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot")), ErrorCode::kFailedPrecondition, "after targets");
}

TEST_F(TrustedSetTest, InitialRootMustBeSelfSigned) {
  std::string root = repo_->PublishedRoot(1);
  auto sig = root.find("\"sig\":\"") + 7;
  root[sig] = root[sig] == '0' ? '1' : '0';
  ExpectError(TrustedMetadataSet::Create(root, kRepositoryNow), ErrorCode::kCrypto, "threshold");
  ExpectError(TrustedMetadataSet::Create("{}", kRepositoryNow), ErrorCode::kInvalidArgument, "trusted root");
}

TEST_F(TrustedSetTest, RootVersionMustBeExactlyNext) {
  ASSERT_TRUE(repo_->Bump("root"));
  ASSERT_TRUE(repo_->Bump("root"));
  TrustedMetadataSet set = NewSet();
  ExpectError(set.UpdateRoot(repo_->PublishedRoot(3)), ErrorCode::kConflict, "root version 3 is not the expected 2");
  ExpectError(set.UpdateRoot(repo_->PublishedRoot(1)), ErrorCode::kConflict, "root version 1 is not the expected 2");
  ASSERT_TRUE(set.UpdateRoot(repo_->PublishedRoot(2)));
  ASSERT_TRUE(set.UpdateRoot(repo_->PublishedRoot(3)));
  EXPECT_EQ(set.root().body.version, 3);
}

TEST_F(TrustedSetTest, NewRootNeedsBothThresholds) {
  // v2 rotates the root key but is signed only by the new key.
  auto old_signers = repo_->signers["root"];
  ASSERT_TRUE(repo_->RotateKeys("root"));
  ASSERT_TRUE(repo_->Bump("root"));
  TrustedMetadataSet set = NewSet();
  ExpectError(set.UpdateRoot(repo_->PublishedRoot(2)), ErrorCode::kCrypto, "keys of the trusted root");
  // v2 signed only by the old key is not signed by its own keys.
  repo_->signers["root"] = old_signers;
  ASSERT_TRUE(repo_->Publish("root"));
  ExpectError(set.UpdateRoot(repo_->PublishedRoot(2)), ErrorCode::kCrypto, "its own keys");
  EXPECT_EQ(set.root().body.version, 1);
}

TEST_F(TrustedSetTest, ExpiredFinalRootStopsTheTimestamp) {
  TrustedMetadataSet set = NewSet(repo_->root.expires);
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp")), ErrorCode::kExpired, "root version 1 expired");
}

TEST_F(TrustedSetTest, TimestampRules) {
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v2, timestamp v2
  TrustedMetadataSet set = NewSet();
  ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp", 2)));
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp", 1)), ErrorCode::kConflict,
              "timestamp version 1 is older than trusted 2");
  auto same = set.UpdateTimestamp(repo_->Published("timestamp", 2));
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, TimestampUpdate::kUnchanged);
  // v3 pointing back at snapshot v1.
  repo_->timestamp.snapshot_meta.version = 1;
  ASSERT_TRUE(repo_->Bump("timestamp"));
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp", 3)), ErrorCode::kConflict,
              "timestamp lists snapshot version 1, older than trusted 2");
  EXPECT_EQ(set.timestamp()->body.version, 2);
}

TEST_F(TrustedSetTest, ExpiredTimestampIsKeptForRollbackChecksOnly) {
  repo_->timestamp.expires = kRepositoryNow - kDay;
  ASSERT_TRUE(repo_->Bump("timestamp"));  // v2, expired
  TrustedMetadataSet set = NewSet();
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp", 2)), ErrorCode::kExpired,
              "timestamp version 2 expired");
  // It still refuses a rollback to v1 ...
  ExpectError(set.UpdateTimestamp(repo_->Published("timestamp", 1)), ErrorCode::kConflict, "older than trusted 2");
  // ... and the snapshot cannot build on it.
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot")), ErrorCode::kExpired, "timestamp version 2 expired");
}

TEST_F(TrustedSetTest, SnapshotRules) {
  TrustedMetadataSet set = NewSet();
  ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp")));
  // Signed by the wrong key.
  auto good_signers = repo_->signers["snapshot"];
  repo_->signers["snapshot"] = repo_->signers["targets"];
  ASSERT_TRUE(repo_->Publish("snapshot"));
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot")), ErrorCode::kCrypto, "snapshot: signature threshold");
  repo_->signers["snapshot"] = good_signers;
  // A snapshot of another version than the timestamp lists.
  ASSERT_TRUE(repo_->Bump("snapshot"));
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot", 2)), ErrorCode::kConflict,
              "snapshot version 2 is not the version 1 the timestamp lists");
}

TEST_F(TrustedSetTest, SnapshotHashesFromTimestamp) {
  MemoryFetcher fetcher;
  auto repo = TestRepository::Create(fetcher, {.hashes_in_meta = true});
  ASSERT_TRUE(repo);
  ASSERT_TRUE((*repo)->UpdateSnapshot());
  auto set = TrustedMetadataSet::Create((*repo)->PublishedRoot(1), kRepositoryNow);
  ASSERT_TRUE(set);
  ASSERT_TRUE(set->UpdateTimestamp((*repo)->Published("timestamp")));
  const std::string snapshot = (*repo)->Published("snapshot");
  // Same length, other bytes: one signature digit changed. The hash check
  // comes first, so the error is the hash, not the signature.
  std::string altered = snapshot;
  const auto sig = altered.find("\"sig\":\"") + 7;
  altered[sig] = altered[sig] == '0' ? '1' : '0';
  ExpectError(set->UpdateSnapshot(altered), ErrorCode::kCrypto, "sha256 mismatch");
  ExpectError(set->UpdateSnapshot(snapshot + " "), ErrorCode::kCrypto, "length");
  // A local copy the client verified before skips the hash check (here the
  // same metadata, pretty-printed: other bytes, same signed content).
  const std::string pretty = ParseJsonStrict(snapshot).value().dump(2);
  ExpectError(set->UpdateSnapshot(pretty), ErrorCode::kCrypto, "length");
  EXPECT_TRUE(set->UpdateSnapshot(pretty, /*trusted_local_copy=*/true));
}

TEST_F(TrustedSetTest, SnapshotMayNotDropOrRollBackRoles) {
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());  // snapshot v2 lists targets v2; timestamp v2
  TrustedMetadataSet set = NewSet();
  ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp")));
  ASSERT_TRUE(set.UpdateSnapshot(repo_->Published("snapshot")));
  repo_->snapshot.meta["targets.json"].version = 1;
  ASSERT_TRUE(repo_->Bump("snapshot"));  // v3
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot", 3)), ErrorCode::kConflict,
              "snapshot lists \"targets.json\" version 1, older than trusted 2");
  repo_->snapshot.meta.erase("targets.json");
  ASSERT_TRUE(repo_->Publish("snapshot"));
  ExpectError(set.UpdateSnapshot(repo_->Published("snapshot", 3)), ErrorCode::kConflict,
              "snapshot no longer lists \"targets.json\"");
  EXPECT_EQ(set.snapshot()->body.version, 2);
}

TEST_F(TrustedSetTest, TargetsRules) {
  ASSERT_TRUE(repo_->Bump("targets"));  // v2 published, snapshot still lists v1
  TrustedMetadataSet set = NewSet();
  ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp")));
  ASSERT_TRUE(set.UpdateSnapshot(repo_->Published("snapshot")));
  ExpectError(set.UpdateTargets(repo_->Published("targets", 2)), ErrorCode::kConflict,
              "\"targets\" version 2 is not the version 1 the snapshot lists");
  ExpectError(set.UpdateDelegatedTargets(repo_->Published("targets", 1), "nobody", "targets"),
              ErrorCode::kFailedPrecondition, "before its delegator");
  ASSERT_TRUE(set.UpdateTargets(repo_->Published("targets", 1)));
  ExpectError(set.UpdateDelegatedTargets(repo_->Published("targets", 1), "nobody", "targets"), ErrorCode::kNotFound,
              "snapshot does not list \"nobody.json\"");
}

TEST_F(TrustedSetTest, ExpiredTargetsAreRefused) {
  repo_->targets["targets"].expires = kRepositoryNow;  // expires exactly now: expired
  ASSERT_TRUE(repo_->Bump("targets"));
  ASSERT_TRUE(repo_->UpdateSnapshot());
  TrustedMetadataSet set = NewSet();
  ASSERT_TRUE(set.UpdateTimestamp(repo_->Published("timestamp")));
  ASSERT_TRUE(set.UpdateSnapshot(repo_->Published("snapshot")));
  ExpectError(set.UpdateTargets(repo_->Published("targets")), ErrorCode::kExpired, "\"targets\" version 2 expired");
  EXPECT_EQ(set.targets(), nullptr);
}

}  // namespace
}  // namespace citadel::tuf
