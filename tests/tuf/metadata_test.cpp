#include "tuf/metadata.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "crypto/crypto.hpp"

namespace citadel::tuf {
namespace {

constexpr std::int64_t kExpires = 1893456000;  // 2030-01-01T00:00:00Z

SigningKey NewKey() { return SigningKey::Generate(KeyAlgorithm::kEd25519).value(); }

std::string Serialize(const Envelope& md) { return md.Serialize().value(); }

// A valid, signed timestamp as JSON, for tests to mutate.
Json TimestampJson(const SigningKey& key) {
  Timestamp body;
  body.expires = kExpires;
  body.snapshot_meta = MetaFile{3, 100, {{"sha256", std::string(64, 'a')}}};
  auto md = MakeMetadata(body).value();
  EXPECT_TRUE(md.Sign(key));
  return ParseJsonStrict(Serialize(md)).value();
}

Expected<Metadata<Timestamp>> ParseTimestampJson(const Json& json) { return ParseMetadata<Timestamp>(json.dump()); }

// Re-signs the (mutated) signed object so that only the parser can refuse.
Json Resign(Json document, const SigningKey& key) {
  Envelope envelope;
  EXPECT_TRUE(envelope.SetSigned(document["signed"]));
  EXPECT_TRUE(envelope.Sign(key));
  return ParseJsonStrict(Serialize(envelope)).value();
}

TEST(MetadataTest, ExpiresRoundTrip) {
  EXPECT_EQ(ParseExpires("1970-01-01T00:00:00Z").value(), 0);
  EXPECT_EQ(ParseExpires("2030-01-01T00:00:00Z").value(), kExpires);
  EXPECT_EQ(ParseExpires("2024-02-29T23:59:59Z").value(), 1709251199);
  EXPECT_EQ(FormatExpires(1709251199), "2024-02-29T23:59:59Z");
  const std::int64_t far = ParseExpires("9999-12-31T23:59:59Z").value();
  EXPECT_EQ(FormatExpires(far), "9999-12-31T23:59:59Z");
  EXPECT_EQ(FormatExpires(ParseExpires("0001-01-01T00:00:00Z").value()), "0001-01-01T00:00:00Z");
  for (const char* bad :
       {"2023-02-29T00:00:00Z", "2030-13-01T00:00:00Z", "2030-01-01T24:00:00Z", "2030-01-01T00:00:60Z",
        "2030-01-01 00:00:00Z", "2030-01-01T00:00:00", "2030-01-01T00:00:00+00:00", "2030-1-01T00:00:00Z",
        "0000-01-01T00:00:00Z", "2030-01-01T00:00:00.5Z", ""}) {
    EXPECT_FALSE(ParseExpires(bad)) << bad;
  }
}

TEST(MetadataTest, RoundTripsEveryRole) {
  SigningKey key = NewKey();
  Root root;
  root.expires = kExpires;
  root.consistent_snapshot = false;
  for (auto role : {kRootRole, kTimestampRole, kSnapshotRole, kTargetsRole}) {
    root.AddKey(key.PublicKey(), key.KeyId(), role);
  }
  auto root_md = MakeMetadata(root).value();
  ASSERT_TRUE(root_md.Sign(key));
  auto parsed_root = ParseMetadata<Root>(Serialize(root_md));
  ASSERT_TRUE(parsed_root) << parsed_root.error().message();
  EXPECT_EQ(parsed_root->body.version, 1);
  EXPECT_EQ(parsed_root->body.expires, kExpires);
  EXPECT_FALSE(parsed_root->body.consistent_snapshot);
  EXPECT_EQ(parsed_root->body.roles.at("snapshot").keyids, std::vector<std::string>{key.KeyId()});
  EXPECT_TRUE(parsed_root->body.VerifyDelegate(kRootRole, *parsed_root));
  EXPECT_EQ(parsed_root->signed_bytes, root_md.signed_bytes);

  Snapshot snapshot;
  snapshot.expires = kExpires;
  snapshot.version = 7;
  snapshot.meta["targets.json"] = MetaFile{4, std::nullopt, {}};
  snapshot.meta["a.json"] = MetaFile::FromData(2, "bytes");
  auto parsed_snapshot = ParseMetadata<Snapshot>(Serialize(MakeMetadata(snapshot).value()));
  ASSERT_TRUE(parsed_snapshot) << parsed_snapshot.error().message();
  EXPECT_EQ(parsed_snapshot->body.version, 7);
  EXPECT_EQ(parsed_snapshot->body.meta.at("a.json").length, 5);
  EXPECT_TRUE(parsed_snapshot->body.meta.at("a.json").VerifyLengthAndHashes("bytes", "a"));
  EXPECT_FALSE(parsed_snapshot->body.meta.at("a.json").VerifyLengthAndHashes("bytez", "a"));
  EXPECT_FALSE(parsed_snapshot->body.meta.at("a.json").VerifyLengthAndHashes("byte", "a"));

  Targets targets;
  targets.expires = kExpires;
  targets.targets.emplace("dir/app.img", TargetFile::FromData("dir/app.img", "image", Json{{"hw", "rev2"}}));
  Delegations delegations;
  delegations.keys.emplace(key.KeyId(), key.PublicKey());
  delegations.roles.push_back({"apps", {key.KeyId()}, 1, true, std::vector<std::string>{"apps/*"}, std::nullopt});
  delegations.roles.push_back({"bins", {key.KeyId()}, 1, false, std::nullopt, std::vector<std::string>{"0", "8f"}});
  targets.delegations = delegations;
  auto parsed_targets = ParseMetadata<Targets>(Serialize(MakeMetadata(targets).value()));
  ASSERT_TRUE(parsed_targets) << parsed_targets.error().message();
  const TargetFile& file = parsed_targets->body.targets.at("dir/app.img");
  EXPECT_EQ(file.path, "dir/app.img");
  EXPECT_EQ(file.length, 5);
  EXPECT_EQ(file.custom, Json({{"hw", "rev2"}}));
  EXPECT_TRUE(file.hashes.contains("sha256"));
  EXPECT_TRUE(file.hashes.contains("sha512"));
  EXPECT_TRUE(file.VerifyLengthAndHashes("image"));
  EXPECT_FALSE(file.VerifyLengthAndHashes("imagf"));
  ASSERT_TRUE(parsed_targets->body.delegations);
  ASSERT_EQ(parsed_targets->body.delegations->roles.size(), 2U);
  EXPECT_TRUE(parsed_targets->body.delegations->roles[0].terminating);
  EXPECT_EQ(parsed_targets->body.delegations->roles[1].path_hash_prefixes->size(), 2U);
}

TEST(MetadataTest, StrictTypeChecks) {
  SigningKey key = NewKey();
  const Json good = TimestampJson(key);
  ASSERT_TRUE(ParseTimestampJson(good));

  auto refused = [&](const std::function<void(Json&)>& mutate, const std::string& needle) {
    Json document = good;
    mutate(document);
    auto parsed = ParseTimestampJson(Resign(document, key));
    EXPECT_FALSE(parsed) << document.dump();
    if (!parsed) {
      EXPECT_NE(parsed.error().message().find(needle), std::string::npos) << parsed.error().message();
    }
  };
  refused([](Json& d) { d["signed"]["_type"] = "snapshot"; }, "_type");
  refused([](Json& d) { d["signed"].erase("_type"); }, "_type");
  refused([](Json& d) { d["signed"]["spec_version"] = "2.0.0"; }, "spec_version");
  refused([](Json& d) { d["signed"]["spec_version"] = "1.0.0.0"; }, "spec_version");
  refused([](Json& d) { d["signed"]["spec_version"] = "1..0"; }, "spec_version");
  refused([](Json& d) { d["signed"]["spec_version"] = 1; }, "spec_version");
  refused([](Json& d) { d["signed"]["version"] = 0; }, "version");
  refused([](Json& d) { d["signed"]["version"] = -3; }, "version");
  refused([](Json& d) { d["signed"]["version"] = "3"; }, "version");
  refused([](Json& d) { d["signed"]["version"] = true; }, "version");
  refused([](Json& d) { d["signed"]["expires"] = "2030-01-01"; }, "expires");
  refused([](Json& d) { d["signed"]["meta"].erase("snapshot.json"); }, "snapshot.json");
  refused([](Json& d) { d["signed"]["meta"]["snapshot.json"]["length"] = -1; }, "length");
  refused([](Json& d) { d["signed"]["meta"]["snapshot.json"]["hashes"] = Json::object(); }, "hashes");
  refused([](Json& d) { d["signed"]["meta"]["snapshot.json"]["hashes"]["sha256"] = 5; }, "sha256");

  // "1.0" is a valid spec_version (major 1).
  Json two_part = good;
  two_part["signed"]["spec_version"] = "1.0";
  EXPECT_TRUE(ParseTimestampJson(Resign(two_part, key)));
  // A float anywhere in "signed" has no canonical form.
  EXPECT_FALSE(ParseMetadata<Timestamp>(R"({"signed":{"_type":"timestamp","x":1.5},"signatures":[]})"));
  // Envelope shape.
  EXPECT_FALSE(ParseMetadata<Timestamp>("not json"));
  EXPECT_FALSE(ParseMetadata<Timestamp>(R"({"signed":{},"signatures":{}})"));
  Json no_sigs = good;
  no_sigs.erase("signatures");
  EXPECT_FALSE(ParseTimestampJson(no_sigs));
  // Duplicate JSON keys are refused before anything else.
  EXPECT_FALSE(ParseMetadata<Timestamp>(R"({"signed":{},"signed":{},"signatures":[]})"));
}

TEST(MetadataTest, UnknownFieldsAreKeptAndSigned) {
  SigningKey key = NewKey();
  Json document = TimestampJson(key);
  document["signed"]["x-custom"] = {{"nested", {1, 2, 3}}};
  document["signed"]["meta"]["snapshot.json"]["x-extra"] = "kept";
  document = Resign(document, key);
  document["x-envelope"] = true;  // outside "signed": not signed, ignored
  auto parsed = ParseTimestampJson(document);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_TRUE(parsed->signed_json.contains("x-custom"));
  EXPECT_NE(parsed->signed_bytes.find("x-extra"), std::string::npos);
  std::map<std::string, Key> keys;
  keys.emplace(key.KeyId(), key.PublicKey());
  EXPECT_TRUE(VerifySignatures("timestamp", keys, RoleKeys{{key.KeyId()}, 1}, *parsed));
  // Dropping an unknown field breaks the signature: it covers them.
  Json stripped = document;
  stripped["signed"].erase("x-custom");
  auto tampered = ParseTimestampJson(stripped);
  ASSERT_TRUE(tampered);
  EXPECT_FALSE(VerifySignatures("timestamp", keys, RoleKeys{{key.KeyId()}, 1}, *tampered));
}

TEST(MetadataTest, DuplicateSignatureKeyIdsAreRefused) {
  SigningKey key = NewKey();
  Json document = TimestampJson(key);
  document["signatures"].push_back(document["signatures"][0]);
  auto parsed = ParseTimestampJson(document);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("more than once"), std::string::npos);
}

class ThresholdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 4; ++i) {
      keys_.push_back(NewKey());
      key_map_.emplace(keys_.back().KeyId(), keys_.back().PublicKey());
    }
    Snapshot body;
    body.expires = kExpires;
    md_ = MakeMetadata(body).value();
  }
  const std::string& Id(int i) const { return keys_[static_cast<std::size_t>(i)].KeyId(); }
  void SignWith(std::initializer_list<int> signers) {
    for (int i : signers) ASSERT_TRUE(md_.Sign(keys_[static_cast<std::size_t>(i)]));
  }
  Expected<void> Verify(std::vector<std::string> keyids, std::int64_t threshold) const {
    return VerifySignatures("snapshot", key_map_, RoleKeys{std::move(keyids), threshold}, md_);
  }

  std::vector<SigningKey> keys_;
  std::map<std::string, Key> key_map_;
  Metadata<Snapshot> md_;
};

TEST_F(ThresholdTest, CountsDistinctAuthorisedKeys) {
  SignWith({0, 1});
  EXPECT_TRUE(Verify({Id(0), Id(1), Id(2)}, 2));
  auto short_of_one = Verify({Id(0), Id(1), Id(2)}, 3);
  ASSERT_FALSE(short_of_one);
  EXPECT_EQ(short_of_one.error().code(), ErrorCode::kCrypto);
  EXPECT_NE(short_of_one.error().message().find("2 valid signatures from authorised keys, 3 required"),
            std::string::npos)
      << short_of_one.error().message();
}

TEST_F(ThresholdTest, KeyIdListedTwiceCountsOnce) {
  SignWith({0});
  EXPECT_FALSE(Verify({Id(0), Id(0)}, 2));
  EXPECT_TRUE(Verify({Id(0), Id(0)}, 1));
}

TEST_F(ThresholdTest, SameKeyUnderTwoIdsCountsOnce) {
  SignWith({0});
  // An alias key id bound to the same public key, with a copied signature.
  key_map_.emplace("alias", keys_[0].PublicKey());
  md_.signatures.push_back({"alias", md_.signatures[0].sig});
  EXPECT_FALSE(Verify({Id(0), "alias"}, 2));
}

TEST_F(ThresholdTest, UnauthorisedSignaturesAreIgnored) {
  SignWith({0, 1, 2});
  EXPECT_FALSE(Verify({Id(0), Id(3)}, 2));  // 1 and 2 signed but are not authorised
  EXPECT_TRUE(Verify({Id(0), Id(3)}, 1));
}

TEST_F(ThresholdTest, BadSignatureFromAuthorisedKeyDoesNotFailAlone) {
  SignWith({0, 1, 2});
  md_.signatures[1].sig = md_.signatures[0].sig;  // key 1's signature is now wrong
  md_.signatures[2].sig = "";                     // and key 2's is empty
  EXPECT_TRUE(Verify({Id(0), Id(1), Id(2)}, 1));
  EXPECT_FALSE(Verify({Id(0), Id(1), Id(2)}, 2));
}

TEST_F(ThresholdTest, KeyIdWithoutKeyNeverCounts) {
  SignWith({0});
  EXPECT_FALSE(Verify({"missing", Id(0)}, 2));
  EXPECT_TRUE(Verify({"missing", Id(0)}, 1));
}

TEST_F(ThresholdTest, SignaturesCoverTheCanonicalBytes) {
  SignWith({0});
  md_.signed_json["version"] = 2;
  ASSERT_TRUE(md_.SetSigned(md_.signed_json));
  EXPECT_TRUE(md_.signatures.empty());  // SetSigned drops signatures
  SignWith({0});
  EXPECT_TRUE(Verify({Id(0)}, 1));
  md_.signed_bytes += " ";
  EXPECT_FALSE(Verify({Id(0)}, 1));
}

TEST(MetadataTest, RootNeedsEveryTopLevelRoleAndPositiveThresholds) {
  SigningKey key = NewKey();
  Root root;
  root.expires = kExpires;
  for (auto role : {kRootRole, kTimestampRole, kSnapshotRole, kTargetsRole}) {
    root.AddKey(key.PublicKey(), key.KeyId(), role);
  }
  Json good = root.ToJson();
  ASSERT_TRUE(Root::FromJson(good));
  Json missing = good;
  missing["roles"].erase("snapshot");
  EXPECT_FALSE(Root::FromJson(missing));
  Json zero = good;
  zero["roles"]["targets"]["threshold"] = 0;
  EXPECT_FALSE(Root::FromJson(zero));
  Json extra_role = good;
  extra_role["roles"]["mirrors"] = {{"keyids", Json::array()}, {"threshold", 1}};
  EXPECT_TRUE(Root::FromJson(extra_role));
  Json absent_consistent = good;
  absent_consistent.erase("consistent_snapshot");
  EXPECT_FALSE(Root::FromJson(absent_consistent).value().consistent_snapshot);
  Json bad_key = good;
  bad_key["keys"][key.KeyId()].erase("keyval");
  EXPECT_FALSE(Root::FromJson(bad_key));
  // Key ids are not recomputed, and listing an id without a key is allowed.
  Json renamed = good;
  renamed["keys"]["not-the-hash"] = renamed["keys"][key.KeyId()];
  renamed["roles"]["root"]["keyids"].push_back("absent-key");
  EXPECT_TRUE(Root::FromJson(renamed));
}

TEST(MetadataTest, DelegationRules) {
  Targets targets;
  targets.expires = kExpires;
  Delegations delegations;
  delegations.roles.push_back({"a", {"k"}, 1, false, std::vector<std::string>{"*"}, std::nullopt});
  targets.delegations = delegations;
  Json good = targets.ToJson();
  ASSERT_TRUE(Targets::FromJson(good));

  auto refused = [&](const std::function<void(Json&)>& mutate) {
    Json document = good;
    mutate(document);
    EXPECT_FALSE(Targets::FromJson(document)) << document.dump();
  };
  refused([](Json& d) { d["delegations"]["roles"][0]["path_hash_prefixes"] = {"ab"}; });  // both
  refused([](Json& d) { d["delegations"]["roles"][0].erase("paths"); });                  // neither
  refused([](Json& d) { d["delegations"]["roles"][0]["name"] = "snapshot"; });            // top-level name
  refused([](Json& d) { d["delegations"]["roles"][0]["name"] = ""; });
  refused([](Json& d) { d["delegations"]["roles"][0].erase("terminating"); });
  refused([](Json& d) { d["delegations"]["roles"].push_back(d["delegations"]["roles"][0]); });  // same name twice
  refused([](Json& d) { d["delegations"].erase("keys"); });
  refused([](Json& d) { d["delegations"]["succinct_roles"] = Json::object(); });  // roles and succinct_roles
  refused([](Json& d) { d["targets"]["f"] = {{"length", 1}}; });                  // no hashes
  refused([](Json& d) { d["targets"]["f"] = {{"length", -1}, {"hashes", {{"sha256", "00"}}}}; });
  refused([](Json& d) { d.erase("targets"); });
}

TEST(MetadataTest, PathPatterns) {
  EXPECT_TRUE(MatchPathPattern("targets/*.tgz", "targets/foo.tgz"));
  EXPECT_FALSE(MatchPathPattern("targets/*.tgz", "targets/foo.txt"));
  EXPECT_TRUE(MatchPathPattern("foo-version-?.tgz", "foo-version-2.tgz"));
  EXPECT_FALSE(MatchPathPattern("foo-version-?.tgz", "foo-version-alpha.tgz"));
  EXPECT_TRUE(MatchPathPattern("*.tgz", "foo.tgz"));
  EXPECT_FALSE(MatchPathPattern("*.tgz", "targets/foo.tgz"));  // '*' does not cross '/'
  EXPECT_TRUE(MatchPathPattern("foo.tgz", "foo.tgz"));
  EXPECT_FALSE(MatchPathPattern("foo.tgz", "xfoo.tgz"));
  EXPECT_TRUE(MatchPathPattern("*", "anything"));
  EXPECT_FALSE(MatchPathPattern("*", "a/b"));
  EXPECT_TRUE(MatchPathPattern("*/*", "a/b"));
  EXPECT_TRUE(MatchPathPattern("releases/*/*", "releases/x/x_v1"));
  EXPECT_FALSE(MatchPathPattern("releases/*/*", "releases/x"));
  EXPECT_TRUE(MatchPathPattern("v[0-9].bin", "v7.bin"));
  EXPECT_FALSE(MatchPathPattern("v[!0-9].bin", "v7.bin"));
  EXPECT_TRUE(MatchPathPattern("v[!0-9].bin", "vx.bin"));
  EXPECT_TRUE(MatchPathPattern("a[]]b", "a]b"));
  EXPECT_TRUE(MatchPathPattern("a[b", "a[b"));  // unclosed set: a literal '['
  EXPECT_TRUE(MatchPathPattern("*a*b*c", "xxaxxbxxc"));
  EXPECT_FALSE(MatchPathPattern("*a*b*c", "xxaxxbxx"));
  EXPECT_TRUE(MatchPathPattern("", ""));
  EXPECT_FALSE(MatchPathPattern("", "a"));
  // Hostile patterns stay fast (no exponential backtracking).
  EXPECT_FALSE(MatchPathPattern(std::string(200, '*') + "b", std::string(4000, 'a')));
}

TEST(MetadataTest, HashPrefixesAndSuccinctRoles) {
  const std::string digest = crypto::Sha256Hex("apps/thermostat.img");
  DelegatedRole bins{"bin", {}, 1, false, std::nullopt, std::vector<std::string>{digest.substr(0, 2)}};
  EXPECT_TRUE(bins.IsDelegatedPath("apps/thermostat.img"));
  bins.path_hash_prefixes = std::vector<std::string>{digest[0] == 'f' ? "0" : "f"};
  EXPECT_FALSE(bins.IsDelegatedPath("apps/thermostat.img"));

  SuccinctRoles succinct{{}, 1, 8, "bin"};
  EXPECT_EQ(succinct.RoleForTarget("apps/thermostat.img"), "bin-" + digest.substr(0, 2));
  EXPECT_TRUE(succinct.IsDelegatedRole("bin-00"));
  EXPECT_TRUE(succinct.IsDelegatedRole("bin-ff"));
  EXPECT_FALSE(succinct.IsDelegatedRole("bin-100"));
  EXPECT_FALSE(succinct.IsDelegatedRole("bin-0"));
  EXPECT_FALSE(succinct.IsDelegatedRole("other-00"));
  SuccinctRoles odd{{}, 1, 5, "b"};  // 32 bins: suffix "00".."1f"
  EXPECT_TRUE(odd.IsDelegatedRole("b-1f"));
  EXPECT_FALSE(odd.IsDelegatedRole("b-20"));
  const int first_byte = std::stoi(digest.substr(0, 2), nullptr, 16);
  char expected[8];
  ASSERT_GT(std::snprintf(expected, sizeof expected, "b-%02x", first_byte >> 3), 0);
  EXPECT_EQ(odd.RoleForTarget("apps/thermostat.img"), expected);
}

TEST(MetadataTest, HashVerifierRefusesUnknownAlgorithms) {
  EXPECT_FALSE(HashVerifier::Create({{"md5", "00"}}));
  const TargetFile file{"f", 1, {{"sha256", crypto::Sha256Hex("x")}, {"crc32", "00"}}, nullptr};
  EXPECT_FALSE(file.VerifyLengthAndHashes("x"));
  auto verifier = HashVerifier::Create({{"sha256", crypto::Sha256Hex("abc")}});
  ASSERT_TRUE(verifier);
  verifier->Update("a");
  verifier->Update("bc");
  EXPECT_TRUE(verifier->Finish("abc"));
}

TEST(MetadataTest, RealWorldRootFromTufOnCi) {
  // Signed by securesystemslib (ECDSA P-256, keytype "ecdsa"), with "x-"
  // extension fields and key ids that are not the hash of the key.
  auto bytes = ReadFile(CITADEL_TUF_TESTDATA "/tuf-on-ci/initial_root.json");
  ASSERT_TRUE(bytes) << bytes.error().message();
  auto root = ParseMetadata<Root>(*bytes);
  ASSERT_TRUE(root) << root.error().message();
  EXPECT_TRUE(root->body.consistent_snapshot);
  EXPECT_EQ(root->body.expires, ParseExpires("2044-08-10T10:05:04Z").value());
  EXPECT_TRUE(root->body.VerifyDelegate(kRootRole, *root));
  // One changed byte inside "signed" breaks it.
  std::string tampered = *bytes;
  tampered.replace(tampered.find("@jku"), 4, "@jkv");
  EXPECT_FALSE(root->body.VerifyDelegate(kRootRole, ParseMetadata<Root>(tampered).value()));
}

}  // namespace
}  // namespace citadel::tuf
