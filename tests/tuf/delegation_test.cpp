// Spec 5.6.7: the preorder depth-first search of the delegation graph —
// order, terminating roles, path patterns, hash prefixes, succinct hash
// bins, cycles, the role limit, and re-verification of a role reached
// through another delegator.
#include <gtest/gtest.h>

#include "crypto/crypto.hpp"
#include "tuf/updater_fixture.hpp"

namespace citadel::tuf::testing {
namespace {

class DelegationTest : public UpdaterFixture {
 protected:
  void Delegate(const std::string& delegator, const std::string& name, std::vector<std::string> paths = {"*"},
                bool terminating = false) {
    ASSERT_TRUE(repo_->AddDelegation(
        delegator, DelegatedRole{.name = name, .terminating = terminating, .paths = std::move(paths)}));
  }
  // Publishes every targets role (the top-level one as a new version) and
  // a snapshot listing them.
  void PublishAll() {
    for (const auto& [role, body] : repo_->targets) {
      ASSERT_TRUE(role == "targets" ? repo_->Bump(role) : repo_->Publish(role)) << role;
    }
    ASSERT_TRUE(repo_->UpdateSnapshot());
  }
  // Refreshes, then looks target_path up; `visited` receives the delegated
  // roles fetched during the lookup, in order. Local copies of delegated
  // roles are removed first (so that every visit shows as a fetch) unless
  // keep_local.
  Expected<TargetFile> Lookup(const std::string& target_path, std::vector<std::string>* visited = nullptr,
                              std::int64_t max_delegations = 32, bool keep_local = false) {
    if (!keep_local) {
      for (const auto& entry : std::filesystem::directory_iterator(metadata_dir())) {
        const std::string name = entry.path().filename().string();
        if (name != "root.json" && name != "timestamp.json" && name != "snapshot.json" && name != "targets.json") {
          std::filesystem::remove(entry.path());
        }
      }
    }
    auto config = Config();
    config.max_delegations = max_delegations;
    updater_ = std::make_unique<Updater>(config, *fetcher_);
    CITADEL_TRY_VOID(updater_->Refresh());
    fetcher_->ClearLog();
    auto result = updater_->GetTargetInfo(target_path);
    if (visited != nullptr) {
      visited->clear();
      const std::string prefix = std::string(kMetadataUrl) + "/1.";
      for (const auto& url : fetcher_->requested_urls()) {
        if (url.starts_with(prefix)) visited->push_back(url.substr(prefix.size(), url.size() - prefix.size() - 5));
      }
    }
    return result;
  }

  std::unique_ptr<Updater> updater_;
};

TEST_F(DelegationTest, PreorderDepthFirstInOrderOfAppearance) {
  Delegate("targets", "A");
  Delegate("targets", "B");
  Delegate("A", "C");
  Delegate("A", "D");
  PublishAll();
  std::vector<std::string> visited;
  auto info = Lookup("missing", &visited);
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(visited, (std::vector<std::string>{"A", "C", "D", "B"}));
}

TEST_F(DelegationTest, TerminatingRoleEndsTheSearch) {
  Delegate("targets", "A");
  Delegate("targets", "B");
  Delegate("A", "C", {"*"}, /*terminating=*/true);
  Delegate("A", "D");
  repo_->AddTarget("B", "file", "from B");
  PublishAll();
  std::vector<std::string> visited;
  auto info = Lookup("file", &visited);
  ASSERT_FALSE(info);  // B lists it, but C's terminating delegation ends the search first
  EXPECT_EQ(visited, (std::vector<std::string>{"A", "C"}));
}

TEST_F(DelegationTest, FirstMatchInTrustOrderWins) {
  Delegate("targets", "A");
  Delegate("targets", "B");
  repo_->AddTarget("A", "file", "from A");
  repo_->AddTarget("B", "file", "from B, ignored");
  PublishAll();
  auto info = Lookup("file");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->length, 6);
}

TEST_F(DelegationTest, PathsPruneBranches) {
  Delegate("targets", "A", {"*.py"});
  Delegate("targets", "B");
  Delegate("A", "C");
  PublishAll();
  std::vector<std::string> visited;
  ASSERT_FALSE(Lookup("missing", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"B"}));
}

TEST_F(DelegationTest, TargetMustBeInTheTrustedPathsOfTheWholeChain) {
  Delegate("targets", "A", {"*.doc", "*.md"});
  Delegate("targets", "B", {"releases/*/*"});
  Delegate("B", "C", {"releases/x/*"});
  Delegate("B", "D", {"releases/y/*.zip"});
  repo_->AddTarget("A", "README.md", "readme");
  repo_->AddTarget("C", "releases/x/x_v1", "x");
  repo_->AddTarget("D", "releases/y/y_v1.zip", "y");
  repo_->AddTarget("D", "releases/z/z_v1.zip", "z, outside D's paths");
  PublishAll();
  std::vector<std::string> visited;
  ASSERT_TRUE(Lookup("README.md", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"A"}));
  ASSERT_TRUE(Lookup("releases/x/x_v1", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"B", "C"}));
  auto y = Lookup("releases/y/y_v1.zip", &visited);
  ASSERT_TRUE(y);
  EXPECT_EQ(visited, (std::vector<std::string>{"B", "D"}));
  ASSERT_TRUE(updater_->DownloadTarget(*y, target_dir() / "y.zip"));
  EXPECT_FALSE(Lookup("releases/z/z_v1.zip", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"B"}));
}

TEST_F(DelegationTest, CyclesAreVisitedOnce) {
  Delegate("targets", "A");
  Delegate("targets", "B");
  Delegate("B", "C");
  Delegate("C", "D");
  Delegate("D", "B");
  PublishAll();
  std::vector<std::string> visited;
  ASSERT_FALSE(Lookup("missing", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"A", "B", "C", "D"}));
}

TEST_F(DelegationTest, RoleLimitBoundsTheSearch) {
  Delegate("targets", "R1");
  for (int i = 2; i <= 5; ++i) Delegate("R" + std::to_string(i - 1), "R" + std::to_string(i));
  repo_->AddTarget("R5", "deep", "deep");
  PublishAll();
  std::vector<std::string> visited;
  // "targets" counts as a visited role: with 3, R1..R3 are searched.
  ASSERT_FALSE(Lookup("deep", &visited, 3));
  EXPECT_EQ(visited, (std::vector<std::string>{"R1", "R2", "R3"}));
  ASSERT_TRUE(Lookup("deep", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"R1", "R2", "R3", "R4", "R5"}));
}

TEST_F(DelegationTest, PathHashPrefixes) {
  const std::string digest = crypto::Sha256Hex("bin/file");
  const std::string other = digest[0] == '0' ? "1" : "0";
  ASSERT_TRUE(repo_->AddDelegation(
      "targets", DelegatedRole{.name = "miss", .path_hash_prefixes = std::vector<std::string>{other}}));
  ASSERT_TRUE(repo_->AddDelegation(
      "targets", DelegatedRole{.name = "hit", .path_hash_prefixes = std::vector<std::string>{digest.substr(0, 3)}}));
  repo_->AddTarget("hit", "bin/file", "binned");
  PublishAll();
  std::vector<std::string> visited;
  ASSERT_TRUE(Lookup("bin/file", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"hit"}));
}

TEST_F(DelegationTest, SuccinctHashBins) {
  auto signer = repo_->NewSigner();
  ASSERT_TRUE(signer);
  Delegations delegations;
  delegations.keys.emplace((*signer)->KeyId(), (*signer)->PublicKey());
  delegations.succinct_roles = SuccinctRoles{{(*signer)->KeyId()}, 1, 2, "bin"};
  repo_->targets["targets"].delegations = delegations;
  for (const char* bin : {"bin-0", "bin-1", "bin-2", "bin-3"}) {
    repo_->targets[bin].expires = repo_->Expiry(30 * kDay);
    repo_->signers[bin] = {*signer};
  }
  const std::string bin = delegations.succinct_roles->RoleForTarget("pkg.tar");
  repo_->AddTarget(bin, "pkg.tar", "package");
  PublishAll();
  std::vector<std::string> visited;
  auto info = Lookup("pkg.tar", &visited);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(visited, (std::vector<std::string>{bin}));
  // Every other name goes to its bin (terminating): one bin per lookup.
  ASSERT_FALSE(Lookup("other.tar", &visited));
  EXPECT_EQ(visited.size(), 1U);
}

TEST_F(DelegationTest, RoleReachedThroughAnotherDelegatorIsReverified) {
  Delegate("targets", "A", {"a/*"});
  Delegate("targets", "B", {"b/*"});
  Delegate("A", "C", {"*/*"});
  Delegate("B", "C", {"*/*"});    // B authorises another key for C ...
  repo_->signers["C"].resize(1);  // ... but C is signed by A's key only
  repo_->AddTarget("C", "a/x", "via A");
  repo_->AddTarget("C", "b/y", "via B");
  PublishAll();
  ASSERT_TRUE(Lookup("a/x"));
  auto via_b = updater_->GetTargetInfo("b/y");
  ASSERT_FALSE(via_b);
  EXPECT_EQ(via_b.error().code(), ErrorCode::kCrypto) << via_b.error().message();
  // A fresh updater reaching C through B first refuses it too.
  auto fresh = Lookup("b/y");
  ASSERT_FALSE(fresh);
  EXPECT_EQ(fresh.error().code(), ErrorCode::kCrypto) << fresh.error().message();
}

TEST_F(DelegationTest, DelegatedRoleBelowThresholdIsRefused) {
  Delegate("targets", "A");
  auto intruder = repo_->NewSigner();
  ASSERT_TRUE(intruder);
  repo_->signers["A"] = {*intruder};
  repo_->AddTarget("A", "file", "evil");
  PublishAll();
  auto info = Lookup("file");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kCrypto);
  EXPECT_NE(info.error().message().find("A: signature threshold not met"), std::string::npos);
  EXPECT_EQ(ClientVersion("A"), 0);
}

TEST_F(DelegationTest, DelegatedRoleMissingFromSnapshot) {
  Delegate("targets", "A");
  ASSERT_TRUE(repo_->Bump("targets"));  // A never published: snapshot does not list it
  ASSERT_TRUE(repo_->UpdateSnapshot());
  auto info = Lookup("file");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(info.error().message().find("not listed in snapshot"), std::string::npos);
}

TEST_F(DelegationTest, UnusualRoleNamesStayInsideTheMetadataDirectory) {
  for (const char* name : {"../escape", "?", "#", "/abs", "a b"}) Delegate("targets", name);
  PublishAll();
  std::vector<std::string> visited;
  ASSERT_FALSE(Lookup("missing", &visited));
  EXPECT_EQ(visited, (std::vector<std::string>{"..%2Fescape", "%3F", "%23", "%2Fabs", "a%20b"}));
  for (const char* file : {"..%2Fescape.json", "%3F.json", "%23.json", "%2Fabs.json", "a%20b.json"}) {
    EXPECT_TRUE(std::filesystem::exists(metadata_dir() / file)) << file;
  }
  EXPECT_FALSE(std::filesystem::exists(temp_.path() / "escape.json"));
  // A second lookup uses the local copies.
  ASSERT_FALSE(Lookup("missing", &visited, 32, /*keep_local=*/true));
  EXPECT_TRUE(visited.empty());
}

}  // namespace
}  // namespace citadel::tuf::testing
