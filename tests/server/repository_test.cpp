// The over-the-air update side of the service, in process: a real HTTPS
// server on loopback, a real SQLite store, real software roots of trust for
// the devices, and the real TUF client (tuf::Updater over HTTPS with the
// device's certificate) reading what the service publishes. Roots and image
// targets are signed in the test with offline keys made here, as a maker's
// CLI would.
#include "server/repository.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/file.hpp"
#include "image/image.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/blob_store.hpp"
#include "server/service.hpp"
#include "support/temp_dir.hpp"
#include "tuf/http_fetcher.hpp"
#include "tuf/updater.hpp"

namespace citadel::server {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;
using store::TufRepository;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::int64_t kDay = 24 * 60 * 60;
constexpr const char* kAppComponent = "1689d8b2-c835-2e27-27ad-e894d6d15fa9";

std::int64_t WallNow() { return ToUnixSeconds(Clock::now()); }

Json Body(const http::Response& response) {
  auto parsed = ParseJsonStrict(response.body);
  return parsed ? *parsed : Json();
}
std::string ProblemType(const http::Response& response) { return Body(response).value("type", std::string()); }
std::string HeaderOf(const http::Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

tuf::SigningKey NewTufKey() {
  auto key = tuf::SigningKey::Generate();
  EXPECT_TRUE(key) << key.error().message();
  return std::move(*key);
}

template <typename T>
std::string SignMetadata(const T& body, const std::vector<const tuf::SigningKey*>& signers) {
  auto md = tuf::MakeMetadata(body);
  EXPECT_TRUE(md) << md.error().message();
  for (const auto* signer : signers) EXPECT_TRUE(md->Sign(*signer));
  return md->Serialize().value();
}

// A manufacturer CA as a factory holds it, to make genuine devices.
struct Manufacturer {
  crypto::PrivateKey key;
  crypto::Certificate cert;

  static Manufacturer Create() {
    auto key = crypto::PrivateKey::GenerateP256();
    crypto::CertificateSpec spec;
    spec.common_name = "Test Manufacturer";
    spec.is_ca = true;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto cert = crypto::IssueCertificate(spec, key->Public(), nullptr, *key);
    return Manufacturer{std::move(*key), *cert};
  }
};

// An enrolled device: its RoT and the client identity it presents.
struct EnrolledDevice {
  std::unique_ptr<rot::SoftwareRootOfTrust> rot;
  std::string id;
  std::string certificate_chain_pem;  // leaf, then the tenant's issuing CA

  http::TlsIdentity Identity() const { return {certificate_chain_pem, &rot->TlsClientKey()}; }
};

class RepositoryTest : public ::testing::Test {
 protected:
  struct Tenant {
    std::string id;
    std::string admin;
    std::string reader;
    std::vector<std::string> groups;  // Development, Field Test, Production
    Json online;                      // the online keys as the service returns them
  };

  void SetUp() override {
    manufacturer_ = std::make_unique<Manufacturer>(Manufacturer::Create());
    auto ca_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file, manufacturer_->cert.Pem()));
    ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_.path() / "server";
    options.manufacturer_ca_files = {ca_file};
    options.threads = 2;
    auto service = Service::Create(options);
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
    ASSERT_TRUE(service_->Start());
    service_ca_ = ReadFile(options.data_dir / "service-ca.pem").value();
    auto token = ReadFile(options.data_dir / "operator-token").value();
    operator_token_ = token.substr(0, token.find('\n'));
    acme_ = CreateTenant("Acme");
    globex_ = CreateTenant("Globex");
  }

  void TearDown() override {
    if (service_) service_->Stop();
  }

  std::string BaseUrl() const { return "https://127.0.0.1:" + std::to_string(service_->port()); }

  http::Response Send(const std::string& method, const std::string& path, const std::string& token,
                      const std::string& body = {}, const std::string& content_type = {}, Headers headers = {},
                      std::optional<http::TlsIdentity> identity = std::nullopt) {
    http::ClientOptions options;
    options.base_url = BaseUrl();
    options.ca_certificate_pem = service_ca_;
    options.client_identity = std::move(identity);
    auto client = http::Client::Create(options);
    EXPECT_TRUE(client) << client.error().message();
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    if (!content_type.empty()) headers.emplace_back("Content-Type", content_type);
    auto response = (*client)->Send(method, path, body, headers);
    EXPECT_TRUE(response) << response.error().message();
    return response ? *response : http::Response{};
  }
  http::Response Call(const std::string& method, const std::string& path, const std::string& token,
                      const Json& body = nullptr) {
    return body.is_null() ? Send(method, path, token) : Send(method, path, token, body.dump(), "application/json");
  }

  Tenant CreateTenant(const std::string& name) {
    auto created = Call("POST", "/v1/tenants", operator_token_, {{"name", name}});
    EXPECT_EQ(created.status, 201) << created.body;
    Tenant tenant{Body(created)["tenant"]["id"].get<std::string>(),
                  Body(created)["admin_token"]["token"].get<std::string>(),
                  "",
                  {},
                  nullptr};
    auto reader =
        Call("POST", "/v1/tenants/" + tenant.id + "/tokens", tenant.admin, {{"name", "r"}, {"role", "reader"}});
    EXPECT_EQ(reader.status, 201) << reader.body;
    tenant.reader = Body(reader)["token"].get<std::string>();
    auto product = Call("POST", "/v1/tenants/" + tenant.id + "/products", tenant.admin, {{"name", "Thermostat"}});
    EXPECT_EQ(product.status, 201) << product.body;
    const Json product_json = Body(product);
    for (const auto& group : product_json["device_groups"]) tenant.groups.push_back(group["id"].get<std::string>());
    auto keys = Call("POST", "/v1/tenants/" + tenant.id + "/repository/online-keys", tenant.admin, Json::object());
    EXPECT_EQ(keys.status, 200) << keys.body;
    tenant.online = Body(keys);
    return tenant;
  }

  // Attests, claims into group, attests again: a device with a certificate.
  EnrolledDevice Enroll(const Tenant& tenant, const std::string& group_id, const std::string& label) {
    auto opened = rot::SoftwareRootOfTrust::Open(dir_.path() / label);
    EXPECT_TRUE(opened) << opened.error().message();
    EnrolledDevice device{std::move(*opened), "", ""};
    device.id = device.rot->DeviceId();
    crypto::CertificateSpec spec;
    spec.common_name = device.id;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto leaf =
        crypto::IssueCertificate(spec, device.rot->IdentityPublicKey(), &manufacturer_->cert, manufacturer_->key);
    EXPECT_TRUE(device.rot->StoreManufacturerChain({*leaf, manufacturer_->cert}));
    EXPECT_TRUE(device.rot->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")}));
    EXPECT_TRUE(device.rot->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime binary")}));
    EXPECT_TRUE(device.rot->Extend({2, "config", "device-config", "", crypto::Sha256("{}")}));
    auto attest = [&] {
      auto challenge = protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", Json::object()).body);
      EXPECT_TRUE(challenge);
      auto csr = crypto::CertificateRequest::Create(device.rot->TlsClientKey(), device.id)->Pem();
      auto evidence = protocol::CreateSignedEvidence(*device.rot, challenge->nonce, csr);
      EXPECT_TRUE(evidence);
      auto result = Send("POST", "/v1/attestation", "", *evidence, "application/json");
      EXPECT_EQ(result.status, 200) << result.body;
      return Body(result);
    };
    attest();
    auto claimed = Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/claim", tenant.admin,
                        {{"device_group_id", group_id}});
    EXPECT_EQ(claimed.status, 200) << claimed.body;
    auto certificate = attest().value("certificate", std::string());
    auto chain = Send("GET", "/v1/tenants/" + tenant.id + "/ca-certificates", tenant.admin);
    auto parsed_chain = crypto::ParsePemChain(chain.body);
    EXPECT_TRUE(parsed_chain && !parsed_chain->empty());
    device.certificate_chain_pem = certificate + (*parsed_chain)[0].Pem();
    return device;
  }

  // ---- TUF metadata as a maker signs it offline

  static tuf::Key OnlineKey(const Tenant& tenant, const std::string& repository, const std::string& role) {
    return tuf::Key::FromJson(tenant.online[repository][role]).value();
  }

  // A root listing the service's online keys for the online roles;
  // image_targets is the offline targets key (image repository only).
  static tuf::Root BuildRoot(const Tenant& tenant, TufRepository repository,
                             const std::vector<const tuf::SigningKey*>& root_keys, std::int64_t root_threshold,
                             const tuf::SigningKey* image_targets, std::int64_t version = 1) {
    tuf::Root root;
    root.version = version;
    root.expires = WallNow() + 365 * kDay;
    root.consistent_snapshot = true;
    for (const auto* key : root_keys) root.AddKey(key->PublicKey(), key->KeyId(), tuf::kRootRole);
    root.roles[std::string(tuf::kRootRole)].threshold = root_threshold;
    const std::string name(store::TufRepositoryName(repository));
    for (const auto& [role, json] : tenant.online[name].items()) {
      auto key = tuf::Key::FromJson(json).value();
      root.AddKey(key, key.ComputeKeyId().value(), role);
    }
    if (image_targets != nullptr) root.AddKey(image_targets->PublicKey(), image_targets->KeyId(), tuf::kTargetsRole);
    return root;
  }

  http::Response UploadRoot(const Tenant& tenant, const std::string& repository, const std::string& document) {
    return Send("POST", "/v1/tenants/" + tenant.id + "/repository/" + repository + "/root", tenant.admin, document,
                "application/json");
  }

  // Uploads bytes in chunks of chunk_size.
  void UploadBlob(const Tenant& tenant, const std::string& bytes, std::size_t chunk_size = kMaxUploadChunkBytes) {
    const std::string sha256 = crypto::Sha256Hex(bytes);
    for (std::size_t offset = 0; offset < bytes.size(); offset += chunk_size) {
      auto put = Send("PUT",
                      "/v1/tenants/" + tenant.id + "/uploads/" + sha256 + "?offset=" + std::to_string(offset) +
                          "&length=" + std::to_string(bytes.size()),
                      tenant.admin, bytes.substr(offset, chunk_size), "application/octet-stream");
      ASSERT_EQ(put.status, 200) << put.body;
    }
  }

  // Uploads and registers an OS image; returns the image JSON.
  Json RegisterOsImage(const Tenant& tenant, const std::string& bytes, const std::string& version,
                       std::int64_t security_version = 1) {
    UploadBlob(tenant, bytes);
    auto registered = Call("POST", "/v1/tenants/" + tenant.id + "/images", tenant.admin,
                           {{"sha256", crypto::Sha256Hex(bytes)},
                            {"length", bytes.size()},
                            {"kind", "os"},
                            {"component_id", "citadel-os"},
                            {"version", version},
                            {"security_version", security_version},
                            {"file_name", "rootfs.img"}});
    EXPECT_EQ(registered.status, 201) << registered.body;
    return Body(registered);
  }

  // Offline-signed image targets listing the given registered images.
  static std::string SignImageTargets(const std::vector<Json>& images, std::int64_t version,
                                      const tuf::SigningKey& key) {
    tuf::Targets targets;
    targets.version = version;
    targets.expires = WallNow() + 90 * kDay;
    for (const auto& image : images) {
      auto file = tuf::TargetFile::FromJson(image["target_name"].get<std::string>(), image["target"], "target").value();
      targets.targets.emplace(file.path, file);
    }
    return SignMetadata(targets, {&key});
  }

  http::Response UploadTargets(const Tenant& tenant, const std::string& document) {
    return Send("POST", "/v1/tenants/" + tenant.id + "/repository/image/targets", tenant.admin, document,
                "application/json");
  }

  // Both roots uploaded; returns the offline keys.
  struct Offline {
    tuf::SigningKey root = NewTufKey();
    tuf::SigningKey targets = NewTufKey();
  };
  void InitialiseRepositories(const Tenant& tenant, const Offline& offline) {
    auto image = UploadRoot(
        tenant, "image",
        SignMetadata(BuildRoot(tenant, TufRepository::kImage, {&offline.root}, 1, &offline.targets), {&offline.root}));
    ASSERT_EQ(image.status, 201) << image.body;
    auto director = UploadRoot(
        tenant, "director",
        SignMetadata(BuildRoot(tenant, TufRepository::kDirector, {&offline.root}, 1, nullptr), {&offline.root}));
    ASSERT_EQ(director.status, 201) << director.body;
  }

  std::int64_t TimestampVersion(const Tenant& tenant, TufRepository repository, const std::string& scope) {
    auto latest =
        service_->store().GetLatestRepositoryMetadata(tenant.id, repository, scope, store::TufRole::kTimestamp);
    return latest ? latest->version : 0;
  }

  TempDir dir_;
  std::unique_ptr<Manufacturer> manufacturer_;
  std::unique_ptr<Service> service_;
  std::string service_ca_;
  std::string operator_token_;
  Tenant acme_;
  Tenant globex_;
};

// ------------------------------------------------------------- online keys

TEST_F(RepositoryTest, OnlineKeysAreMadeOnceAndThenReturnedAsTheyAre) {
  const Json& keys = acme_.online;
  for (const auto& [repository, roles] : std::map<std::string, std::vector<std::string>>{
           {"image", {"snapshot", "timestamp"}}, {"director", {"targets", "snapshot", "timestamp"}}}) {
    ASSERT_EQ(keys[repository].size(), roles.size()) << keys.dump();
    for (const auto& role : roles) {
      auto key = tuf::Key::FromJson(keys[repository][role]);
      ASSERT_TRUE(key) << keys.dump();
      EXPECT_TRUE(key->usable());
      EXPECT_EQ(key->scheme(), "ecdsa-sha2-nistp256");
    }
  }
  auto again = Call("POST", "/v1/tenants/" + acme_.id + "/repository/online-keys", acme_.admin, Json::object());
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Body(again), keys);
  EXPECT_NE(globex_.online, keys);  // per tenant

  // Admin only; the status names the key ids.
  auto reader = Call("POST", "/v1/tenants/" + acme_.id + "/repository/online-keys", acme_.reader, Json::object());
  EXPECT_EQ(reader.status, 403) << reader.body;
  auto status = Call("GET", "/v1/tenants/" + acme_.id + "/repository", acme_.reader);
  ASSERT_EQ(status.status, 200) << status.body;
  EXPECT_EQ(Body(status)["image"]["online_key_ids"]["timestamp"].get<std::string>(),
            OnlineKey(acme_, "image", "timestamp").ComputeKeyId().value());
  EXPECT_TRUE(Body(status)["image"]["root"].is_null());

  // The private halves are sealed in the store, never in the clear.
  auto stored = service_->store().GetRepositoryKey(acme_.id, TufRepository::kImage, store::TufRole::kTimestamp);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->sealed_private_key.find("PRIVATE"), std::string::npos);
}

// ------------------------------------------------------------------- roots

TEST_F(RepositoryTest, RootVersionOneSignedByItsThresholdIsAccepted) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  auto status = Body(Call("GET", "/v1/tenants/" + acme_.id + "/repository", acme_.reader));
  EXPECT_EQ(status["image"]["root"]["version"], 1);
  EXPECT_EQ(status["director"]["root"]["version"], 1);
  // The same upload again is accepted as it is (a retry), not stored twice.
  auto image_root =
      service_->store().GetRepositoryMetadata(acme_.id, TufRepository::kImage, "", store::TufRole::kRoot, 1);
  ASSERT_TRUE(image_root);
  EXPECT_EQ(UploadRoot(acme_, "image", image_root->document).status, 200);
}

TEST_F(RepositoryTest, RootBelowItsOwnThresholdIsRefused) {
  Offline offline;
  tuf::SigningKey second = NewTufKey();
  auto root = BuildRoot(acme_, TufRepository::kImage, {&offline.root, &second}, 2, &offline.targets);
  auto refused = UploadRoot(acme_, "image", SignMetadata(root, {&offline.root}));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(ProblemType(refused), "urn:citadel:problem:invalid-root");
  EXPECT_NE(Body(refused)["detail"].get<std::string>().find("its own root keys"), std::string::npos) << refused.body;
  EXPECT_EQ(UploadRoot(acme_, "image", SignMetadata(root, {&offline.root, &second})).status, 201);
}

TEST_F(RepositoryTest, RootWhoseOnlineRolesAreNotTheServiceKeysIsRefused) {
  Offline offline;
  tuf::SigningKey own_timestamp = NewTufKey();
  auto root = BuildRoot(acme_, TufRepository::kImage, {&offline.root}, 1, &offline.targets);
  root.roles["timestamp"] = {};
  root.AddKey(own_timestamp.PublicKey(), own_timestamp.KeyId(), "timestamp");
  auto refused = UploadRoot(acme_, "image", SignMetadata(root, {&offline.root}));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("roles.timestamp must list exactly the service's online"), std::string::npos)
      << refused.body;

  // A director root must hand its targets role to the service as well.
  auto director = BuildRoot(acme_, TufRepository::kDirector, {&offline.root}, 1, nullptr);
  director.roles["targets"] = {};
  director.AddKey(offline.targets.PublicKey(), offline.targets.KeyId(), "targets");
  refused = UploadRoot(acme_, "director", SignMetadata(director, {&offline.root}));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("roles.targets must list exactly"), std::string::npos) << refused.body;

  // Another tenant's online keys are not this tenant's.
  auto foreign = BuildRoot(globex_, TufRepository::kImage, {&offline.root}, 1, &offline.targets);
  EXPECT_EQ(UploadRoot(acme_, "image", SignMetadata(foreign, {&offline.root})).status, 400);
}

TEST_F(RepositoryTest, ImageRootWithAnOnlineTargetsKeyIsRefused) {
  Offline offline;
  auto root = BuildRoot(acme_, TufRepository::kImage, {&offline.root}, 1, nullptr);
  auto online = OnlineKey(acme_, "image", "snapshot");
  root.AddKey(online, online.ComputeKeyId().value(), "targets");
  auto refused = UploadRoot(acme_, "image", SignMetadata(root, {&offline.root}));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("must be kept offline"), std::string::npos) << refused.body;
}

TEST_F(RepositoryTest, RootRotationIsSignedByTheOldAndTheNewRoot) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  tuf::SigningKey new_root = NewTufKey();
  auto v2 = BuildRoot(acme_, TufRepository::kImage, {&new_root}, 1, &offline.targets, 2);

  auto only_new = UploadRoot(acme_, "image", SignMetadata(v2, {&new_root}));
  EXPECT_EQ(only_new.status, 400) << only_new.body;
  EXPECT_NE(only_new.body.find("root version 1"), std::string::npos) << only_new.body;
  auto only_old = UploadRoot(acme_, "image", SignMetadata(v2, {&offline.root}));
  EXPECT_EQ(only_old.status, 400) << only_old.body;
  auto skipped = BuildRoot(acme_, TufRepository::kImage, {&new_root}, 1, &offline.targets, 3);
  EXPECT_EQ(UploadRoot(acme_, "image", SignMetadata(skipped, {&offline.root, &new_root})).status, 400);

  auto rotated = UploadRoot(acme_, "image", SignMetadata(v2, {&offline.root, &new_root}));
  ASSERT_EQ(rotated.status, 201) << rotated.body;
  EXPECT_EQ(Body(rotated)["version"], 2);
  // Every version stays servable for devices walking the chain.
  for (int version : {1, 2}) {
    auto file = Send("GET", "/v1/repo/" + acme_.id + "/image/" + std::to_string(version) + ".root.json", acme_.reader);
    EXPECT_EQ(file.status, 200) << file.body;
  }
}

// ------------------------------------------------------ targets and files

TEST_F(RepositoryTest, TargetsUploadPublishesSnapshotAndTimestampThatATufClientAccepts) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  const std::string os_bytes(300'000, 'o');
  Json image = RegisterOsImage(acme_, os_bytes, "2.0.0");
  EXPECT_EQ(image["target_name"], "os/citadel-os/2.0.0/rootfs.img");

  auto published = UploadTargets(acme_, SignImageTargets({image}, 1, offline.targets));
  ASSERT_EQ(published.status, 201) << published.body;
  EXPECT_EQ(Body(published)["targets_version"], 1);
  EXPECT_EQ(Body(published)["snapshot_version"], 1);
  EXPECT_EQ(Body(published)["timestamp_version"], 1);
  auto latest = service_->repository().LatestImageTargets(acme_.id);
  ASSERT_TRUE(latest);
  EXPECT_TRUE(latest->targets.contains("os/citadel-os/2.0.0/rootfs.img"));

  // A device of the tenant runs the TUF client workflow over mutual TLS and
  // downloads the image under its consistent-snapshot name.
  auto device = Enroll(acme_, acme_.groups[0], "device");
  http::DownloaderOptions download;
  download.ca_certificate_pem = service_ca_;
  download.client_identity = device.Identity();
  auto fetcher = tuf::HttpFetcher::Create(download);
  ASSERT_TRUE(fetcher) << fetcher.error().message();
  const fs::path metadata = dir_.path() / "device-metadata";
  auto root = Send("GET", "/v1/repo/" + acme_.id + "/image/1.root.json", "", {}, {}, {}, device.Identity());
  ASSERT_EQ(root.status, 200) << root.body;
  ASSERT_TRUE(tuf::Updater::InitTrustedRoot(metadata, root.body));
  tuf::Updater updater(tuf::UpdaterConfig{.metadata_dir = metadata,
                                          .metadata_base_url = BaseUrl() + "/v1/repo/" + acme_.id + "/image",
                                          .target_base_url = BaseUrl() + "/v1/repo/" + acme_.id + "/image/targets"},
                       **fetcher);
  auto refreshed = updater.Refresh();
  ASSERT_TRUE(refreshed) << refreshed.error().message();
  auto info = updater.GetTargetInfo("os/citadel-os/2.0.0/rootfs.img");
  ASSERT_TRUE(info) << info.error().message();
  auto downloaded = updater.DownloadTarget(*info, dir_.path() / "rootfs.img");
  ASSERT_TRUE(downloaded) << downloaded.error().message();
  EXPECT_EQ(ReadFile(dir_.path() / "rootfs.img", 1 << 20).value(), os_bytes);

  // The same files for a reader token; nothing for anyone else.
  const std::string target_path =
      "/v1/repo/" + acme_.id + "/image/targets/os/citadel-os/2.0.0/" + crypto::Sha256Hex(os_bytes) + ".rootfs.img";
  for (const std::string file : {"timestamp.json", "1.snapshot.json", "1.targets.json", "1.root.json"}) {
    const std::string path = "/v1/repo/" + acme_.id + "/image/" + file;
    EXPECT_EQ(Send("GET", path, acme_.reader).status, 200) << file;
    EXPECT_EQ(Send("GET", path, globex_.reader).status, 404) << file;
    EXPECT_EQ(Send("GET", path, "").status, 401) << file;
  }
  EXPECT_EQ(Send("GET", target_path, acme_.reader).body, os_bytes);
  EXPECT_EQ(Send("GET", target_path, globex_.admin).status, 404);
  EXPECT_EQ(Send("GET", target_path, "").status, 401);
  auto stranger = Enroll(globex_, globex_.groups[0], "stranger");
  EXPECT_EQ(Send("GET", target_path, "", {}, {}, {}, stranger.Identity()).status, 404);
  EXPECT_EQ(Send("GET", "/v1/repo/" + acme_.id + "/image/timestamp.json", "", {}, {}, {}, stranger.Identity()).status,
            404);

  // Names are matched strictly.
  for (const std::string file : {"01.root.json", "0.root.json", "root.json", "1.timestamp.json", "1.root.json.bak",
                                 "-1.root.json", "2.root.json"}) {
    EXPECT_EQ(Send("GET", "/v1/repo/" + acme_.id + "/image/" + file, acme_.reader).status, 404) << file;
  }
  const std::string wrong_name =
      "/v1/repo/" + acme_.id + "/image/targets/os/citadel-os/2.0.1/" + crypto::Sha256Hex(os_bytes) + ".rootfs.img";
  EXPECT_EQ(Send("GET", wrong_name, acme_.reader).status, 404);
}

TEST_F(RepositoryTest, TargetsListingAnUnknownOrMismatchingImageAreRefused) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  Json image = RegisterOsImage(acme_, std::string(1000, 'a'), "1.0.0");

  auto refuse = [&](const tuf::Targets& targets, const std::string& expected) {
    auto refused = UploadTargets(acme_, SignMetadata(targets, {&offline.targets}));
    EXPECT_EQ(refused.status, 400) << refused.body;
    EXPECT_NE(refused.body.find(expected), std::string::npos) << refused.body;
  };
  auto base = [&] {
    tuf::Targets targets;
    targets.version = 1;
    targets.expires = WallNow() + 90 * kDay;
    auto file = tuf::TargetFile::FromJson(image["target_name"].get<std::string>(), image["target"], "t").value();
    targets.targets.emplace(file.path, file);
    return targets;
  };
  {
    auto targets = base();
    auto extra = tuf::TargetFile::FromData("os/citadel-os/9.9.9/rootfs.img", "not uploaded");
    targets.targets.emplace(extra.path, extra);
    refuse(targets, "is not an uploaded image");
  }
  {
    auto targets = base();
    targets.targets.begin()->second.length += 1;
    refuse(targets, "differs from the uploaded image");
  }
  {
    auto targets = base();
    targets.targets.begin()->second.hashes["sha256"] = std::string(64, '0');
    refuse(targets, "hashes.sha256");
  }
  {
    auto targets = base();
    targets.targets.begin()->second.hashes["sha512"] = std::string(128, '0');  // wrong, checked on the blob
    refuse(targets, "sha512");
  }
  {
    auto targets = base();
    targets.targets.begin()->second.custom["citadel"]["security_version"] = 7;
    refuse(targets, "custom.citadel");
  }
  {
    auto targets = base();
    targets.version = 2;
    refuse(targets, "version must be 1");
  }
  {
    auto targets = base();
    tuf::SigningKey impostor = NewTufKey();
    auto refused = UploadTargets(acme_, SignMetadata(targets, {&impostor}));
    EXPECT_EQ(refused.status, 400) << refused.body;
  }
  // Correct hashes of every kind are accepted.
  auto targets = base();
  auto full = tuf::TargetFile::FromData(image["target_name"].get<std::string>(), std::string(1000, 'a'),
                                        image["target"]["custom"]);
  targets.targets.begin()->second = full;
  auto accepted = UploadTargets(acme_, SignMetadata(targets, {&offline.targets}));
  EXPECT_EQ(accepted.status, 201) << accepted.body;
}

TEST_F(RepositoryTest, TimestampIsResignedWhenLessThanHalfItsLifetimeRemains) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  Json image = RegisterOsImage(acme_, "image bytes", "1.0.0");
  ASSERT_EQ(UploadTargets(acme_, SignImageTargets({image}, 1, offline.targets)).status, 201);
  Repository& repository = service_->repository();
  const std::int64_t now = WallNow();

  auto fresh = repository.Refresh(acme_.id, TufRepository::kImage, "", now + kDay / 2 - 60);
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_EQ(fresh->timestamp, 1);
  EXPECT_EQ(fresh->snapshot, 1);

  auto half = repository.Refresh(acme_.id, TufRepository::kImage, "", now + kDay / 2 + 60);
  ASSERT_TRUE(half);
  EXPECT_EQ(half->timestamp, 2);
  EXPECT_EQ(half->snapshot, 1);  // 7 days: not yet
  auto timestamp = tuf::ParseMetadata<tuf::Timestamp>(
      service_->store()
          .GetLatestRepositoryMetadata(acme_.id, TufRepository::kImage, "", store::TufRole::kTimestamp)
          ->document);
  ASSERT_TRUE(timestamp);
  EXPECT_EQ(timestamp->body.expires, now + kDay / 2 + 60 + kDay);
  EXPECT_EQ(timestamp->body.snapshot_meta.version, 1);

  auto days_later = repository.Refresh(acme_.id, TufRepository::kImage, "", now + 4 * kDay);
  ASSERT_TRUE(days_later);
  EXPECT_EQ(days_later->snapshot, 2);
  EXPECT_EQ(days_later->timestamp, 3);
  // The HTTP route serves what is current now (and re-signs nothing more).
  auto served = Send("GET", "/v1/repo/" + acme_.id + "/image/timestamp.json", acme_.reader);
  ASSERT_EQ(served.status, 200);
  EXPECT_EQ(Body(served)["signed"]["version"], 3);
}

// ----------------------------------------------------------------- uploads

TEST_F(RepositoryTest, ChunkedUploadResumesAtTheReportedOffsetAndAWrongDigestIsRefused) {
  const std::string bytes = std::string(100, 'x') + std::string(100, 'y') + std::string(56, 'z');
  const std::string sha256 = crypto::Sha256Hex(bytes);
  auto put = [&](const std::string& digest, std::size_t offset, const std::string& chunk, std::size_t length) {
    return Send("PUT",
                "/v1/tenants/" + acme_.id + "/uploads/" + digest + "?offset=" + std::to_string(offset) +
                    "&length=" + std::to_string(length),
                acme_.admin, chunk, "application/octet-stream");
  };
  auto first = put(sha256, 0, bytes.substr(0, 100), bytes.size());
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Body(first), (Json{{"received", 100}, {"complete", false}}));

  // A cut: the client resends from where it thinks it was; the service
  // says where it really is.
  auto wrong = put(sha256, 200, bytes.substr(200), bytes.size());
  EXPECT_EQ(wrong.status, 409) << wrong.body;
  EXPECT_EQ(Body(wrong)["received"], 100);
  EXPECT_EQ(ProblemType(wrong), "urn:citadel:problem:upload-offset-mismatch");

  ASSERT_EQ(put(sha256, 100, bytes.substr(100, 100), bytes.size()).status, 200);
  auto last = put(sha256, 200, bytes.substr(200), bytes.size());
  ASSERT_EQ(last.status, 200) << last.body;
  EXPECT_EQ(Body(last), (Json{{"received", bytes.size()}, {"complete", true}}));
  EXPECT_EQ(service_->blobs().Size(acme_.id, sha256).value(), bytes.size());
  // Idempotent once complete; not visible to another tenant.
  EXPECT_EQ(Body(put(sha256, 0, bytes.substr(0, 10), bytes.size()))["complete"], true);
  EXPECT_FALSE(service_->blobs().Size(globex_.id, sha256));

  // Bytes that do not hash to the name: refused, the partial upload gone.
  const std::string claimed = crypto::Sha256Hex("something else");
  ASSERT_EQ(put(claimed, 0, "abc", 6).status, 200);
  auto mismatch = put(claimed, 3, "def", 6);
  EXPECT_EQ(mismatch.status, 400) << mismatch.body;
  EXPECT_EQ(ProblemType(mismatch), "urn:citadel:problem:upload-digest-mismatch");
  EXPECT_EQ(Body(put(claimed, 3, "def", 6))["received"], 0);

  // Bounds and roles.
  EXPECT_EQ(put(sha256, 0, "x", kMaxBlobBytes + 1).status, 400);
  EXPECT_EQ(put(sha256, 250, "toolong", bytes.size()).status, 400);
  EXPECT_EQ(put("ABC", 0, "x", 1).status, 400);
  EXPECT_EQ(Send("PUT", "/v1/tenants/" + acme_.id + "/uploads/" + sha256 + "?offset=0&length=1", acme_.reader, "x",
                 "application/octet-stream")
                .status,
            403);
  EXPECT_EQ(Send("PUT", "/v1/tenants/" + acme_.id + "/uploads/" + sha256 + "?offset=0&length=1", acme_.admin, "x",
                 "text/plain")
                .status,
            415);
}

TEST_F(RepositoryTest, TargetFilesHonourRangeRequests) {
  Offline offline;
  InitialiseRepositories(acme_, offline);
  std::string bytes;
  for (int i = 0; i < 5000; ++i) bytes += std::to_string(i) + ",";
  Json image = RegisterOsImage(acme_, bytes, "3.0.0");
  const std::string path =
      "/v1/repo/" + acme_.id + "/image/targets/os/citadel-os/3.0.0/" + crypto::Sha256Hex(bytes) + ".rootfs.img";
  const std::string size = std::to_string(bytes.size());

  auto whole = Send("GET", path, acme_.reader);
  ASSERT_EQ(whole.status, 200);
  EXPECT_EQ(whole.body, bytes);
  EXPECT_EQ(HeaderOf(whole, "accept-ranges"), "bytes");

  auto tail = Send("GET", path, acme_.reader, {}, {}, {{"Range", "bytes=1000-"}});
  ASSERT_EQ(tail.status, 206);
  EXPECT_EQ(tail.body, bytes.substr(1000));
  EXPECT_EQ(HeaderOf(tail, "content-range"), "bytes 1000-" + std::to_string(bytes.size() - 1) + "/" + size);

  auto middle = Send("GET", path, acme_.reader, {}, {}, {{"Range", "bytes=10-19"}});
  ASSERT_EQ(middle.status, 206);
  EXPECT_EQ(middle.body, bytes.substr(10, 10));

  auto beyond = Send("GET", path, acme_.reader, {}, {}, {{"Range", "bytes=" + size + "-"}});
  EXPECT_EQ(beyond.status, 416);
  EXPECT_EQ(HeaderOf(beyond, "content-range"), "bytes */" + size);
}

// ------------------------------------------------------------- app images

// An app image as `citadel image pack` makes it: a manifest, a small binary
// that changes between versions, and a large data file that does not.
std::string PackApp(const fs::path& dir, const crypto::PrivateKey& publisher, const std::string& version,
                    std::int64_t security_version) {
  const fs::path app = dir / ("app-" + version);
  Json manifest = {{"SchemaVersion", 1},           {"Name", "Thermostat"},     {"ComponentId", kAppComponent},
                   {"EntryPoint", "/bin/app"},     {"CmdArgs", Json::array()}, {"Capabilities", Json::object()},
                   {"ApplicationType", "Default"}, {"Version", version},       {"SecurityVersion", security_version}};
  EXPECT_TRUE(EnsureDirectory(app / "bin"));
  EXPECT_TRUE(EnsureDirectory(app / "share"));
  EXPECT_TRUE(WriteFileAtomic(app / "app_manifest.json", manifest.dump()));
  EXPECT_TRUE(WriteFileAtomic(app / "bin" / "app", "thermostat " + version + "\n", 0755));
  std::string data(256 * 1024, '\0');
  std::uint32_t state = 12345;  // the same pseudo-random bytes in every version
  for (char& c : data) {
    state = state * 1664525u + 1013904223u;
    c = static_cast<char>(state >> 24);
  }
  EXPECT_TRUE(WriteFileAtomic(app / "share" / "data.bin", data));
  auto packed = image::PackImage(app, publisher);
  EXPECT_TRUE(packed) << packed.error().message();
  return std::string(packed->begin(), packed->end());
}

TEST_F(RepositoryTest, AppImagesAreCheckedAgainstTheirSignatureAndManifestAndGetADelta) {
  auto publisher = crypto::PrivateKey::GenerateP256().value();
  auto key = Call("POST", "/v1/tenants/" + acme_.id + "/publisher-keys", acme_.admin,
                  {{"name", "release"}, {"public_key_pem", publisher.Public().Pem()}});
  ASSERT_EQ(key.status, 201) << key.body;
  auto register_app = [&](const std::string& bytes, const std::string& version, std::int64_t security_version) {
    return Call("POST", "/v1/tenants/" + acme_.id + "/images", acme_.admin,
                {{"sha256", crypto::Sha256Hex(bytes)},
                 {"length", bytes.size()},
                 {"kind", "app"},
                 {"component_id", kAppComponent},
                 {"version", version},
                 {"security_version", security_version},
                 {"file_name", "thermostat.img"}});
  };

  const std::string v1 = PackApp(dir_.path(), publisher, "1.0.0", 1);
  UploadBlob(acme_, v1, 64 * 1024);
  auto first = register_app(v1, "1.0.0", 1);
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(Body(first)["target_name"], std::string("apps/") + kAppComponent + "/1.0.0/thermostat.img");
  EXPECT_TRUE(Body(first)["delta"].is_null());
  EXPECT_EQ(register_app(v1, "1.0.0", 1).status, 200);  // idempotent

  // The request must say what the signed manifest says.
  const std::string v2 = PackApp(dir_.path(), publisher, "1.1.0", 2);
  UploadBlob(acme_, v2);
  auto mismatch = register_app(v2, "1.2.0", 2);
  EXPECT_EQ(mismatch.status, 400) << mismatch.body;
  EXPECT_EQ(ProblemType(mismatch), "urn:citadel:problem:invalid-image");
  EXPECT_EQ(register_app(v2, "1.1.0", 1).status, 400);

  // Only images signed by an active publisher key of the tenant.
  auto stranger = crypto::PrivateKey::GenerateP256().value();
  const std::string unsigned_image = PackApp(dir_.path() / "other", stranger, "1.1.0", 2);
  UploadBlob(acme_, unsigned_image);
  auto untrusted = register_app(unsigned_image, "1.1.0", 2);
  EXPECT_EQ(untrusted.status, 400) << untrusted.body;
  EXPECT_NE(untrusted.body.find("publisher key"), std::string::npos) << untrusted.body;

  // Registered: a delta from 1.0.0 is made and served.
  auto second = register_app(v2, "1.1.0", 2);
  ASSERT_EQ(second.status, 201) << second.body;
  const Json delta = Body(second)["delta"];
  ASSERT_TRUE(delta.is_object()) << second.body;
  EXPECT_EQ(delta["from_sha256"], crypto::Sha256Hex(v1));
  EXPECT_LT(delta["length"].get<std::int64_t>(), static_cast<std::int64_t>(v2.size()) / 4);
  auto served =
      Send("GET", "/v1/repo/" + acme_.id + "/image/deltas/" + crypto::Sha256Hex(v1) + "/" + crypto::Sha256Hex(v2),
           acme_.reader);
  ASSERT_EQ(served.status, 200);
  EXPECT_EQ(crypto::Sha256Hex(served.body), delta["delta_sha256"].get<std::string>());
  EXPECT_EQ(Send("GET", "/v1/repo/" + acme_.id + "/image/deltas/" + crypto::Sha256Hex(v2) + "/" + crypto::Sha256Hex(v1),
                 acme_.reader)
                .status,
            404);

  auto listed = Call("GET", "/v1/tenants/" + acme_.id + "/images?component=" + kAppComponent, acme_.reader);
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(Body(listed)["images"].size(), 2u);
  // Not uploaded: nothing to register.
  EXPECT_EQ(register_app("never uploaded", "9.0.0", 1).status, 409);
}

TEST_F(RepositoryTest, OsImagesGetADeltaFromTheLatestEarlierOs) {
  std::string v1(512 * 1024, '\0');
  for (std::size_t i = 0; i < v1.size(); ++i) v1[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::string v2 = v1;
  v2.replace(100000, 64, std::string(64, 'x'));
  Json first = RegisterOsImage(acme_, v1, "1.0.0");
  EXPECT_TRUE(first["delta"].is_null());
  Json second = RegisterOsImage(acme_, v2, "1.1.0");
  ASSERT_TRUE(second["delta"].is_object()) << second.dump();
  EXPECT_EQ(second["delta"]["from_sha256"], crypto::Sha256Hex(v1));
  EXPECT_LT(second["delta"]["length"].get<std::int64_t>(), static_cast<std::int64_t>(v2.size()) / 20);
  auto served =
      Send("GET", "/v1/repo/" + acme_.id + "/image/deltas/" + crypto::Sha256Hex(v1) + "/" + crypto::Sha256Hex(v2),
           acme_.reader);
  ASSERT_EQ(served.status, 200);
  EXPECT_EQ(crypto::Sha256Hex(served.body), second["delta"]["delta_sha256"].get<std::string>());
}

// ---------------------------------------------------------------- director

TEST_F(RepositoryTest, DirectorTargetsArePublishedWhenTheyChangeOrAgeAndServedToTheirGroup) {
  Repository& repository = service_->repository();
  const std::string& group = acme_.groups[0];
  const std::int64_t now = WallNow();
  DirectorTarget target{"apps/x/1.0.0/app.img",
                        1234,
                        {{"sha256", std::string(64, 'a')}},
                        Json{{"citadel", {{"deployment_id", "dep1"}, {"percent", 50}, {"role", "current"}}}}};
  const Json custom = {{"citadel", {{"device_group_id", group}, {"maintenance_window", nullptr}}}};

  auto early = repository.PublishDirectorTargets(acme_.id, group, {target}, custom, now);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code(), ErrorCode::kFailedPrecondition);
  Offline offline;
  InitialiseRepositories(acme_, offline);

  auto publish = [&](const std::vector<DirectorTarget>& targets, const Json& with_custom, std::int64_t at) {
    auto version = repository.PublishDirectorTargets(acme_.id, group, targets, with_custom, at);
    EXPECT_TRUE(version) << version.error().message();
    return version.value_or(-1);
  };
  auto targets_version = [&] {
    return service_->store()
        .GetLatestRepositoryMetadata(acme_.id, TufRepository::kDirector, group, store::TufRole::kTargets)
        ->version;
  };
  EXPECT_EQ(publish({target}, custom, now), 1);
  EXPECT_EQ(publish({target}, custom, now + 60), 1);             // unchanged: nothing new
  EXPECT_EQ(publish({target}, custom, now + kDay / 2 - 60), 1);  // still more than half its life
  EXPECT_EQ(targets_version(), 1);

  DirectorTarget changed = target;
  changed.custom["citadel"]["percent"] = 100;
  EXPECT_EQ(publish({changed}, custom, now + 120), 2);
  EXPECT_EQ(targets_version(), 2);
  Json other_custom = custom;
  other_custom["citadel"]["maintenance_window"] = {{"start", "02:00"}, {"duration_minutes", 120}};
  EXPECT_EQ(publish({changed}, other_custom, now + 180), 3);
  EXPECT_EQ(publish({changed}, other_custom, now + 180 + kDay / 2 + 60), 4);  // aged: re-signed
  EXPECT_EQ(targets_version(), 4);

  // Only the tenant's groups.
  auto foreign = repository.PublishDirectorTargets(acme_.id, globex_.groups[0], {target}, custom, now);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code(), ErrorCode::kNotFound);

  // A device of the group reads its director with the TUF client; a device
  // of another group, or of another tenant, does not.
  auto device = Enroll(acme_, group, "member");
  auto outsider = Enroll(acme_, acme_.groups[1], "outsider");
  const std::string base = "/v1/repo/" + acme_.id + "/director/" + group;
  EXPECT_EQ(Send("GET", base + "/timestamp.json", "", {}, {}, {}, outsider.Identity()).status, 404);
  EXPECT_EQ(Send("GET", base + "/1.root.json", "", {}, {}, {}, outsider.Identity()).status, 404);
  EXPECT_EQ(Send("GET", base + "/timestamp.json", globex_.reader).status, 404);
  EXPECT_EQ(Send("GET", base + "/4.targets.json", acme_.reader).status, 200);
  EXPECT_EQ(Send("GET", "/v1/repo/" + acme_.id + "/director/grp_nonexistent/1.root.json", acme_.reader).status, 404);

  http::DownloaderOptions download;
  download.ca_certificate_pem = service_ca_;
  download.client_identity = device.Identity();
  auto fetcher = tuf::HttpFetcher::Create(download);
  ASSERT_TRUE(fetcher) << fetcher.error().message();
  auto root = Send("GET", base + "/1.root.json", "", {}, {}, {}, device.Identity());
  ASSERT_EQ(root.status, 200) << root.body;
  const fs::path metadata = dir_.path() / "director-metadata";
  ASSERT_TRUE(tuf::Updater::InitTrustedRoot(metadata, root.body));
  tuf::Updater updater(tuf::UpdaterConfig{.metadata_dir = metadata, .metadata_base_url = BaseUrl() + base}, **fetcher);
  auto refreshed = updater.Refresh();
  ASSERT_TRUE(refreshed) << refreshed.error().message();
  auto info = updater.GetTargetInfo("apps/x/1.0.0/app.img");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->custom["citadel"]["percent"], 100);
  EXPECT_EQ(updater.trusted()->targets()->signed_json.at("custom"), other_custom);
}

}  // namespace
}  // namespace citadel::server
