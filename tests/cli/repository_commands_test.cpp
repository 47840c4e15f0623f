// `citadel keys` and `citadel repo`: the ceremony logic without a server
// (cli/repository_ceremony.hpp, checked with src/tuf's own verification),
// the local commands through RunCli, and the whole ceremony against a real
// citadel-server in-process (HTTPS on loopback, SQLite store).
#include "cli/repository_ceremony.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "common/file.hpp"
#include "common/time.hpp"
#include "crypto/crypto.hpp"
#include "server/service.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

namespace fs = std::filesystem;
using citadel::testing::TempDir;
using nlohmann::json;

constexpr std::int64_t kDay = 24 * 60 * 60;

std::int64_t WallNow() { return ToUnixSeconds(Clock::now()); }

using citadel::testing::Must;

unsigned ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777u;
}

PublicKeyFile PublicOf(const tuf::SigningKey& key) { return {key.PublicKey(), key.KeyId()}; }

// Online keys as the service would hand them out.
struct FakeOnline {
  std::vector<tuf::SigningKey> keys;
  OnlineKeys online;
  json answer = json::object();

  FakeOnline() {
    for (const auto& [repository, roles] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"image", {"snapshot", "timestamp"}}, {"director", {"targets", "snapshot", "timestamp"}}}) {
      for (const auto& role : roles) {
        keys.push_back(Must(tuf::SigningKey::Generate()));
        answer[repository][role] = keys.back().PublicKey().json();
      }
    }
    online = Must(ParseOnlineKeys(answer));
  }
};

tuf::Metadata<tuf::Root> Signed(const tuf::Root& root, const std::vector<const tuf::SigningKey*>& signers) {
  auto md = Must(tuf::MakeMetadata(root));
  for (const auto* key : signers) EXPECT_TRUE(md.Sign(*key));
  return md;
}

// ---- ceremony logic, no server -------------------------------------------------

class CeremonyTest : public ::testing::Test {
 protected:
  tuf::SigningKey a_ = Must(tuf::SigningKey::Generate());
  tuf::SigningKey b_ = Must(tuf::SigningKey::Generate());
  tuf::SigningKey c_ = Must(tuf::SigningKey::Generate());
  tuf::SigningKey t_ = Must(tuf::SigningKey::Generate());
  FakeOnline online_;

  RoleKeySet RootKeys() { return {{PublicOf(a_), PublicOf(b_), PublicOf(c_)}, 2}; }
  RoleKeySet TargetsKeys() { return {{PublicOf(t_)}, 1}; }
  tuf::Root ImageRootV1() {
    return Must(BuildInitialRoot(RepositoryKind::kImage, RootKeys(), TargetsKeys(), online_.online, WallNow() + kDay));
  }
};

TEST_F(CeremonyTest, ImageRootHasTheOfflineKeysThresholdsAndTheServicesOnlineKeys) {
  const auto root = ImageRootV1();
  EXPECT_EQ(root.version, 1);
  EXPECT_TRUE(root.consistent_snapshot);
  EXPECT_EQ(root.roles.at("root").threshold, 2);
  EXPECT_EQ(root.roles.at("root").keyids, (std::vector<std::string>{a_.KeyId(), b_.KeyId(), c_.KeyId()}));
  EXPECT_EQ(root.roles.at("targets").keyids, std::vector<std::string>{t_.KeyId()});
  for (const char* role : {"snapshot", "timestamp"}) {
    EXPECT_EQ(root.roles.at(role).threshold, 1);
    EXPECT_EQ(root.roles.at(role).keyids, std::vector<std::string>{online_.online.image.at(role).key_id});
  }
  // Signed by two of three root keys, it verifies with src/tuf's own rule.
  auto md = Signed(root, {&a_, &c_});
  EXPECT_TRUE(root.VerifyDelegate(tuf::kRootRole, md));
  EXPECT_TRUE(AllMet(CheckRootSignatures(md, nullptr)));
  // Round trip through the file form keeps it verifying.
  auto parsed = Must(tuf::ParseMetadata<tuf::Root>(Must(md.Serialize())));
  EXPECT_TRUE(parsed.body.VerifyDelegate(tuf::kRootRole, parsed));

  auto one = Signed(root, {&b_});
  EXPECT_FALSE(root.VerifyDelegate(tuf::kRootRole, one));
  auto checks = CheckRootSignatures(one, nullptr);
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_FALSE(checks[0].met);
  EXPECT_EQ(checks[0].valid, 1);
  EXPECT_EQ(checks[0].missing_key_ids, (std::vector<std::string>{a_.KeyId(), c_.KeyId()}));
}

TEST_F(CeremonyTest, DirectorRootUsesTheOnlineDirectorKeysForTargets) {
  auto root =
      Must(BuildInitialRoot(RepositoryKind::kDirector, RootKeys(), TargetsKeys(), online_.online, WallNow() + kDay));
  for (const char* role : {"targets", "snapshot", "timestamp"}) {
    EXPECT_EQ(root.roles.at(role).keyids, std::vector<std::string>{online_.online.director.at(role).key_id}) << role;
    EXPECT_EQ(root.roles.at(role).threshold, 1);
  }
  EXPECT_FALSE(root.keys.contains(t_.KeyId())) << "the director has no offline targets key";
  EXPECT_EQ(root.roles.at("root").keyids.size(), 3u);
}

TEST_F(CeremonyTest, InitialRootRefusesBadThresholdsAndOnlineKeysAsOfflineKeys) {
  RoleKeySet too_high = RootKeys();
  too_high.threshold = 4;
  EXPECT_FALSE(BuildInitialRoot(RepositoryKind::kImage, too_high, TargetsKeys(), online_.online, WallNow() + kDay));
  RoleKeySet zero = RootKeys();
  zero.threshold = 0;
  EXPECT_FALSE(BuildInitialRoot(RepositoryKind::kImage, zero, TargetsKeys(), online_.online, WallNow() + kDay));
  RoleKeySet online_root = RootKeys();
  online_root.keys.push_back({online_.online.image.at("timestamp").key, online_.online.image.at("timestamp").key_id});
  auto refused = BuildInitialRoot(RepositoryKind::kImage, online_root, TargetsKeys(), online_.online, WallNow() + kDay);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("online"), std::string::npos) << refused.error().message();
}

TEST_F(CeremonyTest, CompromisedKeyRotationVerifiesUnderTheOldAndTheNewRoot) {
  const auto v1 = ImageRootV1();
  const auto v1_md = Signed(v1, {&a_, &b_});
  tuf::SigningKey d = Must(tuf::SigningKey::Generate());
  RootChange change;
  change.role = "root";
  change.remove_key_ids = {a_.KeyId().substr(0, 10)};  // a is compromised
  change.add_keys = {PublicOf(d)};
  change.expires = WallNow() + 2 * kDay;
  const auto v2 = Must(NextRoot(RepositoryKind::kImage, v1, change));
  EXPECT_EQ(v2.version, 2);
  EXPECT_EQ(v2.roles.at("root").keyids, (std::vector<std::string>{b_.KeyId(), c_.KeyId(), d.KeyId()}));
  EXPECT_FALSE(v2.keys.contains(a_.KeyId())) << "a key no role lists leaves \"keys\"";
  EXPECT_EQ(v2.roles.at("snapshot").keyids, v1.roles.at("snapshot").keyids) << "online keys stay fixed";

  // b and c meet the old threshold, any two of b, c, d the new one.
  auto v2_md = Signed(v2, {&b_, &c_, &d});
  EXPECT_TRUE(v1.VerifyDelegate(tuf::kRootRole, v2_md));
  EXPECT_TRUE(v2.VerifyDelegate(tuf::kRootRole, v2_md));
  EXPECT_TRUE(AllMet(CheckRootSignatures(v2_md, &v1)));
  // A client holding v1 walks to v2.
  const std::string v2_document = Must(v2_md.Serialize());
  auto walked = WalkRootChain(v1_md, 2, [&](std::int64_t version) -> Expected<std::string> {
    EXPECT_EQ(version, 2);
    return v2_document;
  });
  ASSERT_TRUE(walked) << walked.error().message();
  EXPECT_EQ(walked->body.version, 2);

  // b and d alone meet v2's threshold (2 of b, c, d) but not v1's (2 of
  // a, b, c): whoever holds one old key cannot hand the root to new keys of
  // their own choosing.
  auto partial = Signed(v2, {&b_, &d});
  auto checks = CheckRootSignatures(partial, &v1);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_TRUE(checks[0].met) << "v2's own: b and d";
  EXPECT_FALSE(checks[1].met) << "v1's: only b";
  EXPECT_EQ(checks[1].missing_key_ids, (std::vector<std::string>{a_.KeyId(), c_.KeyId()}));
  auto lines = DescribeMissing(checks);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("root version 1"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(c_.KeyId()), std::string::npos) << lines[0];
}

TEST_F(CeremonyTest, RotationRefusesOnlineRolesUnknownKeysAndBadThresholds) {
  const auto v1 = ImageRootV1();
  RootChange change;
  change.expires = WallNow() + kDay;
  change.role = "snapshot";
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change));
  change.role = "targets";
  EXPECT_FALSE(NextRoot(RepositoryKind::kDirector, v1, change)) << "director targets are online";
  change.role = "root";
  change.remove_key_ids = {"0123456789abcdef"};
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change));
  change.remove_key_ids = {"abc"};
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change)) << "a prefix needs 8 digits";
  change.remove_key_ids = {};
  change.add_keys = {PublicOf(b_)};
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change)) << "already a root key";
  change.add_keys = {};
  change.threshold = 4;
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change));
  change.threshold = std::nullopt;
  change.add_keys = {{online_.online.image.at("timestamp").key, online_.online.image.at("timestamp").key_id}};
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change)) << "an online key is never an offline key";
  // The other repository's online keys are known from the service's status.
  change.add_keys = {{online_.online.director.at("targets").key, online_.online.director.at("targets").key_id}};
  change.online_key_ids = {online_.online.director.at("targets").key_id};
  EXPECT_FALSE(NextRoot(RepositoryKind::kImage, v1, change));
  // A plain re-signing (new expiry, same keys) is allowed.
  change.add_keys = {};
  auto renewed = NextRoot(RepositoryKind::kImage, v1, change);
  ASSERT_TRUE(renewed) << renewed.error().message();
  EXPECT_EQ(renewed->roles.at("root").keyids, v1.roles.at("root").keyids);
}

TEST_F(CeremonyTest, AddSignatureIsIdempotentAndRefusesUnauthorisedKeys) {
  auto md = Signed(ImageRootV1(), {});
  const auto authorised = RootSigners(md.body, nullptr);
  EXPECT_EQ(Must(AddSignature(md, a_, &authorised, "root")), SignOutcome::kAdded);
  const std::string once = Must(md.Serialize());
  EXPECT_EQ(Must(AddSignature(md, a_, &authorised, "root")), SignOutcome::kAlreadySigned);
  EXPECT_EQ(Must(md.Serialize()), once) << "a second signature by the same key changes nothing";
  auto refused = AddSignature(md, t_, &authorised, "root version 1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(refused.error().message().find(t_.KeyId()), std::string::npos);
  EXPECT_EQ(Must(md.Serialize()), once);
}

TEST_F(CeremonyTest, NextImageTargetsAddsRemovesAndCountsVersions) {
  const std::string bytes = "os image v2";
  json image = {{"target_name", "os/citadel-os/2.0.0/rootfs.img"},
                {"target",
                 {{"length", bytes.size()},
                  {"hashes", {{"sha256", crypto::Sha256Hex(bytes)}}},
                  {"custom", {{"citadel", {{"kind", "os"}, {"version", "2.0.0"}}}}}}}};
  TargetsChange change;
  auto first = Must(NextImageTargets(std::nullopt, {image}, {}, WallNow() + kDay, &change));
  EXPECT_EQ(first.body.version, 1);
  ASSERT_TRUE(first.body.targets.contains("os/citadel-os/2.0.0/rootfs.img"));
  EXPECT_EQ(change.added.size(), 1u);
  EXPECT_TRUE(first.Sign(t_));

  // Carrying unknown members of "signed" along, adding the same image again
  // changes nothing, removing works.
  Json with_custom = first.signed_json;
  with_custom["custom"] = {{"note", "kept"}};
  ASSERT_TRUE(first.SetSigned(with_custom));
  auto second = Must(NextImageTargets(first, {image}, {}, WallNow() + kDay, &change));
  EXPECT_EQ(second.body.version, 2);
  EXPECT_EQ(change.unchanged.size(), 1u);
  EXPECT_EQ(second.signed_json["custom"]["note"], "kept");
  auto third = Must(NextImageTargets(second, {}, {"os/citadel-os/2.0.0/rootfs.img"}, WallNow() + kDay, &change));
  EXPECT_EQ(third.body.version, 3);
  EXPECT_TRUE(third.body.targets.empty());
  EXPECT_FALSE(NextImageTargets(third, {}, {"os/nothing/1/x"}, WallNow() + kDay, nullptr));
  EXPECT_FALSE(NextImageTargets(second, {image}, {"os/citadel-os/2.0.0/rootfs.img"}, WallNow() + kDay, nullptr));
}

TEST_F(CeremonyTest, LatestTargetsAreVerifiedBackThroughATargetsKeyRotation) {
  const auto v1 = ImageRootV1();
  const auto v1_md = Signed(v1, {&a_, &b_});
  tuf::SigningKey t2 = Must(tuf::SigningKey::Generate());
  RootChange change;
  change.role = "targets";
  change.remove_key_ids = {t_.KeyId()};
  change.add_keys = {PublicOf(t2)};
  change.expires = WallNow() + kDay;
  const auto v2_md = Signed(Must(NextRoot(RepositoryKind::kImage, v1, change)), {&a_, &b_});
  const std::string v1_document = Must(v1_md.Serialize());
  auto fetch = [&](std::int64_t version) -> Expected<std::string> {
    EXPECT_EQ(version, 1);
    return v1_document;
  };
  auto old_targets = Must(NextImageTargets(std::nullopt, {}, {}, WallNow() + kDay, nullptr));
  ASSERT_TRUE(old_targets.Sign(t_));
  EXPECT_EQ(Must(VerifyLatestTargets(old_targets, v2_md, fetch, 8)), 1);
  auto new_targets = Must(NextImageTargets(old_targets, {}, {}, WallNow() + kDay, nullptr));
  ASSERT_TRUE(new_targets.Sign(t2));
  EXPECT_EQ(Must(VerifyLatestTargets(new_targets, v2_md, fetch, 8)), 2);
  // Targets no root vouches for (a service that signed its own) are refused.
  tuf::SigningKey intruder = Must(tuf::SigningKey::Generate());
  auto forged = Must(NextImageTargets(old_targets, {}, {}, WallNow() + kDay, nullptr));
  ASSERT_TRUE(forged.Sign(intruder));
  auto refused = VerifyLatestTargets(forged, v2_md, fetch, 8);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kCrypto);
}

TEST_F(CeremonyTest, ARootChainThatSkipsTheOldThresholdIsRefused) {
  const auto v1 = ImageRootV1();
  const auto v1_md = Signed(v1, {&a_, &b_});
  tuf::SigningKey x = Must(tuf::SigningKey::Generate());
  tuf::SigningKey y = Must(tuf::SigningKey::Generate());
  RootChange change;
  change.role = "root";
  change.remove_key_ids = {a_.KeyId(), b_.KeyId(), c_.KeyId()};
  change.add_keys = {PublicOf(x), PublicOf(y)};
  change.threshold = 2;
  change.expires = WallNow() + kDay;
  // Fully replaced root keys signed only by the new ones: a service making
  // up its own root.
  const std::string forged = Must(Signed(Must(NextRoot(RepositoryKind::kImage, v1, change)), {&x, &y}).Serialize());
  auto walked = WalkRootChain(v1_md, 2, [&](std::int64_t) -> Expected<std::string> { return forged; });
  ASSERT_FALSE(walked);
  EXPECT_NE(walked.error().message().find("root version 2"), std::string::npos) << walked.error().message();
}

// ---- local commands through RunCli ---------------------------------------------

class LocalCommandsTest : public ::testing::Test {
 protected:
  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "citadel");
    Environment environment = ProcessEnvironmentForMain();
    const std::string config = (dir_.path() / "config.json").string();
    environment.env = [config](std::string_view name) -> std::optional<std::string> {
      if (name == "CITADEL_CONFIG") return config;
      return std::nullopt;
    };
    environment.make_client = [](const http::ClientOptions&) -> Expected<std::unique_ptr<http::Client>> {
      return MakeError(ErrorCode::kUnavailable, "no network in this test");
    };
    environment.out = &out_;
    environment.err = &err_;
    return RunCli(args, environment);
  }

  TempDir dir_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(LocalCommandsTest, KeysCreateWritesA0600KeyAndRefusesToOverwrite) {
  const auto base = dir_.path() / "keys" / "root-1";
  ASSERT_EQ(Run({"keys", "create", base.string(), "--json"}), 0) << err_.str();
  const auto answer = json::parse(out_.str());
  const auto private_key = dir_.path() / "keys" / "root-1.key";
  const auto public_key = dir_.path() / "keys" / "root-1.pub.json";
  EXPECT_EQ(answer["private_key_file"], private_key.string());
  EXPECT_EQ(ModeOf(private_key), 0600u);
  EXPECT_EQ(ModeOf(dir_.path() / "keys"), 0700u);
  auto signing = Must(LoadSigningKey(private_key));
  EXPECT_EQ(answer["key_id"], signing.KeyId());
  EXPECT_EQ(Must(LoadPublicKey(public_key)).key_id, signing.KeyId());
  EXPECT_EQ(out_.str().find("PRIVATE"), std::string::npos) << "the key is never printed";

  const std::string before = Must(ReadFile(private_key));
  EXPECT_EQ(Run({"keys", "create", base.string()}), 5);
  EXPECT_NE(err_.str().find("already exists"), std::string::npos) << err_.str();
  EXPECT_EQ(Must(ReadFile(private_key)), before);
}

TEST_F(LocalCommandsTest, KeysSignAddsSignaturesIdempotentlyAndRefusesUnauthorisedKeys) {
  for (const char* name : {"root-1", "root-2", "root-3", "targets-1", "root-4"}) {
    ASSERT_EQ(Run({"keys", "create", (dir_.path() / name).string()}), 0) << err_.str();
  }
  auto load = [&](const char* name) { return Must(LoadSigningKey(dir_.path() / (std::string(name) + ".key"))); };
  auto root1 = load("root-1");
  auto root2 = load("root-2");
  auto root3 = load("root-3");
  auto root4 = load("root-4");
  auto targets = load("targets-1");
  FakeOnline online;
  const auto v1 =
      Must(BuildInitialRoot(RepositoryKind::kImage, {{PublicOf(root1), PublicOf(root2), PublicOf(root3)}, 2},
                            {{PublicOf(targets)}, 1}, online.online, WallNow() + kDay));
  ASSERT_TRUE(WriteMetadataFile(dir_.path() / "image-root.1.json", Signed(v1, {&root1, &root2})));
  RootChange change;
  change.role = "root";
  change.remove_key_ids = {root1.KeyId()};
  change.add_keys = {PublicOf(root4)};
  change.expires = WallNow() + kDay;
  const auto v2 = Must(NextRoot(RepositoryKind::kImage, v1, change));
  const auto file = dir_.path() / "image-root.2.json";
  ASSERT_TRUE(WriteMetadataFile(file, Signed(v2, {&root4})));

  // root-2: a key of both versions; the previous root is found beside it.
  ASSERT_EQ(Run({"keys", "sign", file.string(), "--key", (dir_.path() / "root-2.key").string()}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Signed " + root2.KeyId()), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("[  ] root version 1"), std::string::npos) << out_.str();
  // root-1 was removed in version 2 but still counts for version 1.
  ASSERT_EQ(Run({"keys", "sign", file.string(), "--key", (dir_.path() / "root-1.key").string(), "--json"}), 0)
      << err_.str();
  auto answer = json::parse(out_.str());
  EXPECT_TRUE(answer["complete"].get<bool>()) << answer.dump();
  auto md = Must(ReadRootFile(file));
  EXPECT_TRUE(v1.VerifyDelegate(tuf::kRootRole, md));
  EXPECT_TRUE(v2.VerifyDelegate(tuf::kRootRole, md));

  // Idempotent: the same key again leaves the file byte for byte.
  const std::string before = Must(ReadFile(file));
  ASSERT_EQ(Run({"keys", "sign", file.string(), "--key", (dir_.path() / "root-2.key").string()}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Already signed by " + root2.KeyId()), std::string::npos) << out_.str();
  EXPECT_EQ(Must(ReadFile(file)), before);

  // A key of neither root is refused, saying so, and changes nothing.
  EXPECT_EQ(Run({"keys", "sign", file.string(), "--key", (dir_.path() / "targets-1.key").string()}), 3);
  EXPECT_NE(err_.str().find("may not sign root version 2"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find(targets.KeyId()), std::string::npos) << err_.str();
  EXPECT_EQ(Must(ReadFile(file)), before);
  // Snapshot/timestamp files are the service's to sign.
  tuf::Timestamp timestamp;
  timestamp.expires = WallNow() + kDay;
  ASSERT_TRUE(WriteMetadataFile(dir_.path() / "timestamp.json", Must(tuf::MakeMetadata(timestamp))));
  EXPECT_NE(
      Run({"keys", "sign", (dir_.path() / "timestamp.json").string(), "--key", (dir_.path() / "root-2.key").string()}),
      0);
}

TEST_F(LocalCommandsTest, EveryCommandTeachesInItsHelp) {
  for (const auto& command : std::vector<std::vector<std::string>>{{"keys", "create"},
                                                                   {"keys", "sign"},
                                                                   {"repo", "init"},
                                                                   {"repo", "push-root"},
                                                                   {"repo", "rotate"},
                                                                   {"repo", "publish"},
                                                                   {"repo", "push-targets"},
                                                                   {"repo", "status"}}) {
    auto args = command;
    args.push_back("--help");
    EXPECT_EQ(Run(args), 0) << command[1];
    EXPECT_NE(out_.str().find("Example:"), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("Next:"), std::string::npos) << out_.str();
  }
}

// ---- against a real citadel-server ---------------------------------------------

class RepositoryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca_key = Must(crypto::PrivateKey::GenerateP256());
    crypto::CertificateSpec spec;
    spec.common_name = "Test Manufacturer";
    spec.is_ca = true;
    auto ca = Must(crypto::IssueCertificate(spec, ca_key.Public(), nullptr, ca_key));
    const auto manufacturer_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(manufacturer_file, ca.Pem()));
    server::ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_.path() / "server";
    options.manufacturer_ca_files = {manufacturer_file};
    options.threads = 2;
    auto service = server::Service::Create(options);
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
    ASSERT_TRUE(service_->Start());
    service_ca_ = Must(ReadFile(options.data_dir / "service-ca.pem"));
    ca_file_ = options.data_dir / "service-ca.pem";
    const auto operator_token = Must(ReadFile(options.data_dir / "operator-token"));
    auto created =
        Call("POST", "/v1/tenants", operator_token.substr(0, operator_token.find('\n')), json{{"name", "Acme"}}.dump());
    ASSERT_EQ(created.status, 201) << created.body;
    const auto tenant = json::parse(created.body);
    tenant_ = tenant["tenant"]["id"];
    token_ = tenant["admin_token"]["token"];
    // A product brings device groups, under which the director root is read.
    auto product = Call("POST", "/v1/tenants/" + tenant_ + "/products", token_, json{{"name", "Thermostat"}}.dump());
    ASSERT_EQ(product.status, 201) << product.body;
    keys_ = dir_.path() / "tuf-keys";
  }

  void TearDown() override {
    if (service_) service_->Stop();
  }

  http::Response Call(const std::string& method, const std::string& path, const std::string& token,
                      const std::string& body = {}, const std::string& content_type = "application/json") {
    http::ClientOptions options;
    options.base_url = "https://127.0.0.1:" + std::to_string(service_->port());
    options.ca_certificate_pem = service_ca_;
    auto client = Must(http::Client::Create(options));
    std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + token}};
    if (!body.empty()) headers.emplace_back("Content-Type", content_type);
    auto response = client->Send(method, path, body, headers);
    EXPECT_TRUE(response) << response.error().message();
    return response ? *response : http::Response{};
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "citadel");
    Environment environment = ProcessEnvironmentForMain();
    std::map<std::string, std::string> env = {
        {"CITADEL_CONFIG", (dir_.path() / "config.json").string()},
        {"CITADEL_SERVER", "https://127.0.0.1:" + std::to_string(service_->port())},
        {"CITADEL_TOKEN", token_},
        {"CITADEL_CA", ca_file_.string()}};
    environment.env = [env](std::string_view name) -> std::optional<std::string> {
      auto found = env.find(std::string(name));
      if (found == env.end()) return std::nullopt;
      return found->second;
    };
    environment.out = &out_;
    environment.err = &err_;
    return RunCli(args, environment);
  }

  json Status() {
    auto status = Call("GET", "/v1/tenants/" + tenant_ + "/repository", token_);
    EXPECT_EQ(status.status, 200) << status.body;
    return json::parse(status.body);
  }

  // Uploads and registers an OS image (no app signature needed).
  json RegisterOsImage(const std::string& bytes, const std::string& version) {
    const std::string sha256 = crypto::Sha256Hex(bytes);
    auto put = Call(
        "PUT", "/v1/tenants/" + tenant_ + "/uploads/" + sha256 + "?offset=0&length=" + std::to_string(bytes.size()),
        token_, bytes, "application/octet-stream");
    EXPECT_EQ(put.status, 200) << put.body;
    auto registered = Call("POST", "/v1/tenants/" + tenant_ + "/images", token_,
                           json{{"sha256", sha256},
                                {"length", bytes.size()},
                                {"kind", "os"},
                                {"component_id", "citadel-os"},
                                {"version", version},
                                {"security_version", 1},
                                {"file_name", "rootfs.img"}}
                               .dump());
    EXPECT_EQ(registered.status, 201) << registered.body;
    return json::parse(registered.body);
  }

  std::string KeyIdOf(const std::string& name) { return Must(LoadSigningKey(keys_ / (name + ".key"))).KeyId(); }

  TempDir dir_;
  std::unique_ptr<server::Service> service_;
  std::string service_ca_;
  fs::path ca_file_;
  std::string tenant_;
  std::string token_;
  fs::path keys_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(RepositoryServiceTest, InitPushesBothRootsAndStatusShowsVersionOne) {
  ASSERT_EQ(Run({"repo", "init", "--keys", keys_.string(), "--root-keys", "3", "--root-threshold", "2", "--json"}), 0)
      << err_.str();
  auto answer = json::parse(out_.str());
  EXPECT_EQ(answer["root_keys"].size(), 3u);
  EXPECT_EQ(answer["targets_keys"].size(), 1u);
  EXPECT_TRUE(answer["roots"]["image"]["pushed"].get<bool>());
  EXPECT_EQ(ModeOf(keys_), 0700u);
  for (const char* name : {"root-1.key", "root-2.key", "root-3.key", "targets-1.key"}) {
    EXPECT_EQ(ModeOf(keys_ / name), 0600u) << name;
  }
  auto status = Status();
  EXPECT_EQ(status["image"]["root"]["version"], 1) << status.dump();
  EXPECT_EQ(status["director"]["root"]["version"], 1) << status.dump();
  // The files devices may be provisioned with are what the service serves.
  auto served = Call("GET", "/v1/repo/" + tenant_ + "/image/1.root.json", token_);
  ASSERT_EQ(served.status, 200);
  auto local = Must(ReadRootFile(keys_ / "image-root.1.json"));
  auto remote = Must(tuf::ParseMetadata<tuf::Root>(served.body));
  EXPECT_EQ(local.signed_bytes, remote.signed_bytes);
  EXPECT_EQ(local.body.roles.at("root").threshold, 2);

  ASSERT_EQ(Run({"repo", "status"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("image"), std::string::npos);
  EXPECT_NE(out_.str().find("No image targets yet"), std::string::npos) << out_.str();

  // Neither a second ceremony in the same directory nor for a set-up tenant.
  EXPECT_EQ(Run({"repo", "init", "--keys", keys_.string()}), 5);
  EXPECT_NE(err_.str().find("already holds keys"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"repo", "init", "--keys", (dir_.path() / "other").string()}), 5);
  EXPECT_NE(err_.str().find("set up already"), std::string::npos) << err_.str();
  EXPECT_FALSE(HoldsKeyFiles(dir_.path() / "other")) << "nothing is made when the service refuses";
}

TEST_F(RepositoryServiceTest, CompromisedRootKeyRotationIsAcceptedForBothRepositories) {
  ASSERT_EQ(Run({"repo", "init", "--keys", keys_.string()}), 0) << err_.str();
  ASSERT_EQ(Run({"keys", "create", (keys_ / "root-4").string()}), 0) << err_.str();
  const std::string compromised = KeyIdOf("root-1");
  for (const char* repository : {"image", "director"}) {
    ASSERT_EQ(Run({"repo", "rotate", "--keys", keys_.string(), "--repository", repository, "--role", "root",
                   "--remove-key", compromised.substr(0, 12), "--add-key", (keys_ / "root-4.pub.json").string(),
                   "--sign-with", (keys_ / "root-2.key").string(), "--sign-with", (keys_ / "root-3.key").string(),
                   "--sign-with", (keys_ / "root-4.key").string(), "--json"}),
              0)
        << repository << ": " << err_.str();
    auto answer = json::parse(out_.str());
    EXPECT_TRUE(answer["pushed"].get<bool>()) << answer.dump();
    EXPECT_EQ(answer["version"], 2);
  }
  auto status = Status();
  EXPECT_EQ(status["image"]["root"]["version"], 2) << status.dump();
  EXPECT_EQ(status["director"]["root"]["version"], 2) << status.dump();
  auto v2 = Must(ReadRootFile(keys_ / "image-root.2.json"));
  const auto& root_ids = v2.body.roles.at("root").keyids;
  EXPECT_EQ(std::count(root_ids.begin(), root_ids.end(), compromised), 0);
}

TEST_F(RepositoryServiceTest, RotationShortOfAThresholdIsWrittenThenFinishedWithKeysSign) {
  ASSERT_EQ(Run({"repo", "init", "--keys", keys_.string()}), 0) << err_.str();
  ASSERT_EQ(Run({"repo", "rotate", "--keys", keys_.string(), "--repository", "image", "--role", "targets",
                 "--threshold", "1", "--sign-with", (keys_ / "root-2.key").string()}),
            0)
      << err_.str();
  const auto file = keys_ / "image-root.2.json";
  EXPECT_TRUE(fs::exists(file));
  EXPECT_NE(out_.str().find("Not pushed: signatures are missing"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("citadel keys sign " + file.string()), std::string::npos) << out_.str();
  EXPECT_EQ(Status()["image"]["root"]["version"], 1);
  // Pushing it now is refused locally, naming what is missing.
  EXPECT_EQ(Run({"repo", "push-root", file.string(), "--repository", "image"}), 1);
  EXPECT_NE(err_.str().find("not signed enough"), std::string::npos) << err_.str();

  ASSERT_EQ(Run({"keys", "sign", file.string(), "--key", (keys_ / "root-3.key").string()}), 0) << err_.str();
  ASSERT_EQ(Run({"repo", "push-root", file.string(), "--repository", "image", "--json"}), 0) << err_.str();
  EXPECT_EQ(json::parse(out_.str())["version"], 2);
  EXPECT_EQ(Status()["image"]["root"]["version"], 2);
  // The same root again is fine (idempotent at the service).
  EXPECT_EQ(Run({"repo", "push-root", file.string(), "--repository", "image"}), 0) << err_.str();
}

TEST_F(RepositoryServiceTest, PublishSignsRegisteredImagesIntoTheImageTargets) {
  ASSERT_EQ(Run({"repo", "init", "--keys", keys_.string()}), 0) << err_.str();
  auto image = RegisterOsImage("citadel os 2.0.0 rootfs", "2.0.0");
  const std::string name = image["target_name"];
  ASSERT_EQ(Run({"repo", "publish", name, "--keys", keys_.string(), "--json"}), 0) << err_.str();
  auto answer = json::parse(out_.str());
  EXPECT_EQ(answer["published"]["targets_version"], 1) << answer.dump();
  EXPECT_EQ(Status()["image"]["targets"]["version"], 1);

  // A second image with --all-unpublished; the first stays listed.
  auto second = RegisterOsImage("citadel os 2.1.0 rootfs", "2.1.0");
  ASSERT_EQ(Run({"repo", "publish", "--all-unpublished", "--keys", keys_.string(), "--json"}), 0) << err_.str();
  answer = json::parse(out_.str());
  EXPECT_EQ(answer["published"]["targets_version"], 2) << answer.dump();
  EXPECT_EQ(answer["added"], json::array({second["target_name"]}));
  EXPECT_EQ(answer["targets"], 2);

  // After a targets key rotation the latest targets (signed by the retired
  // key) still verify, walked back through the roots; the new key signs.
  ASSERT_EQ(Run({"keys", "create", (keys_ / "targets-2").string()}), 0) << err_.str();
  ASSERT_EQ(Run({"repo", "rotate", "--keys", keys_.string(), "--repository", "image", "--role", "targets", "--add-key",
                 (keys_ / "targets-2.pub.json").string(), "--remove-key", KeyIdOf("targets-1")}),
            0)
      << err_.str() << out_.str();
  ASSERT_EQ(Run({"repo", "publish", "--remove", name, "--keys", keys_.string(), "--json"}), 0) << err_.str();
  answer = json::parse(out_.str());
  EXPECT_EQ(answer["published"]["targets_version"], 3) << answer.dump();
  EXPECT_EQ(answer["removed"], json::array({name}));
  EXPECT_EQ(answer["skipped_keys"].size(), 1u) << "targets-1 is retired";

  // An unknown target name says what to do.
  EXPECT_EQ(Run({"repo", "publish", "os/citadel-os/9.9.9/rootfs.img", "--keys", keys_.string()}), 4);
  EXPECT_NE(err_.str().find("citadel image upload"), std::string::npos) << err_.str();
}

}  // namespace
}  // namespace citadel::cli
