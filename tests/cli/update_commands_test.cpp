// The update commands (image upload/list, deployment, device-group
// update-settings, device update-now) driven in-process through RunCli and
// the real HTTPS client against a real citadel-server on loopback: real
// SQLite store, real blob store, TUF roots and image targets signed here
// with offline keys as a maker would, and a real device (software root of
// trust) attested and claimed. A recorder around the real client notes each
// request's method, path, body size and status, so the tests see which
// bytes went over the wire. The argument syntax is tested without a service.
#include "cli/commands_update.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "common/encoding.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "tuf/metadata.hpp"

namespace citadel::cli {
namespace {

namespace fs = std::filesystem;
using citadel::testing::TempDir;
using nlohmann::json;

constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::int64_t kDay = 24 * 60 * 60;
constexpr const char* kApp = "1689d8b2-c835-2e27-27ad-e894d6d15fa9";

template <typename T>
T Must(Expected<T> value, const char* what) {
  EXPECT_TRUE(value) << what << ": " << value.error().message();
  if (!value) std::abort();
  return std::move(*value);
}

// ---- argument syntax (no service) ---------------------------------------------------

TEST(UpdateSyntaxTest, BatchesSpecReadsPercentAtOffset) {
  auto batches = ParseBatchesSpec("10@0,50@1h,100@2h");
  ASSERT_TRUE(batches) << batches.error().message;
  ASSERT_EQ(batches->size(), 3u);
  EXPECT_EQ((*batches)[0].percent, 10);
  EXPECT_EQ((*batches)[0].after_seconds, 0);
  EXPECT_EQ((*batches)[1].percent, 50);
  EXPECT_EQ((*batches)[1].after_seconds, 3600);
  EXPECT_EQ((*batches)[2].after_seconds, 7200);
  auto units = ParseBatchesSpec("1@30,5@45s,20@90m,100@1d");
  ASSERT_TRUE(units) << units.error().message;
  EXPECT_EQ((*units)[0].after_seconds, 30);
  EXPECT_EQ((*units)[1].after_seconds, 45);
  EXPECT_EQ((*units)[2].after_seconds, 5400);
  EXPECT_EQ((*units)[3].after_seconds, 86400);
}

TEST(UpdateSyntaxTest, BatchesSpecRefusesWhatTheServiceWould) {
  for (const char* bad : {"", "50", "50@", "@1h", "0@0", "101@0", "10@0,10@1h", "50@0,20@1h", "10@1h,50@1h", "10@1w",
                          "10@-1", "10@367d", "10@0,,50@1h", "10 @0", "10@0,50@1h,", "1x@0"}) {
    auto parsed = ParseBatchesSpec(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().exit_code, ExitCode::kUsage) << bad;
    EXPECT_NE(parsed.error().hint.find("10@0,50@1h,100@2h"), std::string::npos) << bad;
  }
  std::string seventeen;
  for (int i = 1; i <= 17; ++i) seventeen += (i > 1 ? "," : "") + std::to_string(i) + "@" + std::to_string(i);
  EXPECT_FALSE(ParseBatchesSpec(seventeen));
  EXPECT_TRUE(ParseBatchesSpec("100@366d"));
}

TEST(UpdateSyntaxTest, WindowSpecIsStartAndMinutes) {
  auto window = ParseWindowSpec("02:00/120");
  ASSERT_TRUE(window) << window.error().message;
  EXPECT_EQ(window->start, "02:00");
  EXPECT_EQ(window->duration_minutes, 120);
  EXPECT_TRUE(ParseWindowSpec("23:59/1440"));
  EXPECT_TRUE(ParseWindowSpec("00:00/1"));
  for (const char* bad : {"", "2:00/120", "02:00", "02:00/", "02:00/0", "02:00/1441", "24:00/10", "02:60/10",
                          "02-00/10", "02:00/12x", "02:00/-5", " 02:00/10"}) {
    auto parsed = ParseWindowSpec(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().exit_code, ExitCode::kUsage);
    EXPECT_NE(parsed.error().hint.find("HH:MM/MINUTES"), std::string::npos);
  }
}

TEST(UpdateSyntaxTest, OffsetsReadAsPeopleWriteThem) {
  EXPECT_EQ(FormatOffset(0), "0s");
  EXPECT_EQ(FormatOffset(45), "45s");
  EXPECT_EQ(FormatOffset(3600), "1h");
  EXPECT_EQ(FormatOffset(5400), "1h30m");
  EXPECT_EQ(FormatOffset(2 * 86400 + 61), "2d1m1s");
}

// ---- against a real service ---------------------------------------------------------

struct Sent {
  std::string method;
  std::string path;
  std::size_t body_bytes = 0;
  int status = 0;
};

// The real HTTPS client, noting what it sent and what came back.
class RecordingClient : public http::Client {
 public:
  RecordingClient(std::unique_ptr<http::Client> real, std::vector<Sent>& log) : real_(std::move(real)), log_(log) {}
  Expected<http::Response> Send(std::string_view method, std::string_view path_and_query, std::string_view body,
                                const std::vector<std::pair<std::string, std::string>>& headers) override {
    auto response = real_->Send(method, path_and_query, body, headers);
    log_.push_back({std::string(method), std::string(path_and_query), body.size(), response ? response->status : 0});
    return response;
  }

 private:
  std::unique_ptr<http::Client> real_;
  std::vector<Sent>& log_;
};

class UpdateCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca_file = dir_.path() / "manufacturer-ca.pem";
    ASSERT_TRUE(WriteFileAtomic(ca_file, manufacturer_.Pem()));
    server::ServiceOptions options;
    options.port = 0;
    options.data_dir = dir_.path() / "server";
    options.manufacturer_ca_files = {ca_file};
    options.threads = 2;
    service_ = Must(server::Service::Create(options), "creating the service");
    ASSERT_TRUE(service_->Start());
    service_ca_file_ = options.data_dir / "service-ca.pem";
    service_ca_ = Must(ReadFile(service_ca_file_), "service CA");
    auto token = Must(ReadFile(options.data_dir / "operator-token"), "operator token");
    const std::string operator_token = token.substr(0, token.find('\n'));

    auto created = Call("POST", "/v1/tenants", operator_token, {{"name", "Acme"}});
    ASSERT_EQ(created.status, 201) << created.body;
    tenant_ = Body(created)["tenant"]["id"];
    token_ = Body(created)["admin_token"]["token"];
    auto product = Call("POST", Tenant("/products"), token_, {{"name", "Thermostat"}});
    ASSERT_EQ(product.status, 201) << product.body;
    group_ = Body(product)["device_groups"][0]["id"];
  }

  void TearDown() override { service_->Stop(); }

  std::string BaseUrl() const { return "https://127.0.0.1:" + std::to_string(service_->port()); }
  std::string Tenant(const std::string& suffix) const { return "/v1/tenants/" + tenant_ + suffix; }

  // ---- direct HTTP, for what the test sets up around the CLI

  http::Response Send(const std::string& method, const std::string& path, const std::string& token,
                      const std::string& body, const std::string& content_type) {
    http::ClientOptions options;
    options.base_url = BaseUrl();
    options.ca_certificate_pem = service_ca_;
    auto client = Must(http::Client::Create(options), "client");
    std::vector<std::pair<std::string, std::string>> headers;
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    if (!content_type.empty()) headers.emplace_back("Content-Type", content_type);
    return Must(client->Send(method, path, body, headers), "request");
  }
  http::Response Call(const std::string& method, const std::string& path, const std::string& token, const json& body) {
    return Send(method, path, token, body.dump(), "application/json");
  }
  static json Body(const http::Response& response) { return json::parse(response.body, nullptr, false); }

  // ---- the CLI

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    sent_.clear();
    args.insert(args.begin(), "citadel");
    Environment environment = ProcessEnvironmentForMain();
    std::map<std::string, std::string> env = {{"CITADEL_SERVER", BaseUrl()},
                                              {"CITADEL_TOKEN", token_},
                                              {"CITADEL_CA", service_ca_file_.string()},
                                              {"CITADEL_CONFIG", (dir_.path() / "config.json").string()}};
    environment.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    environment.out = &out_;
    environment.err = &err_;
    environment.make_client = [this](http::ClientOptions options) -> Expected<std::unique_ptr<http::Client>> {
      CITADEL_TRY(auto real, http::Client::Create(std::move(options)));
      return std::make_unique<RecordingClient>(std::move(real), sent_);
    };
    return RunCli(args, environment);
  }

  json OutJson() const {
    auto parsed = json::parse(out_.str(), nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << out_.str();
    return parsed;
  }

  std::vector<Sent> SentWith(const std::string& method, const std::string& path_prefix) const {
    std::vector<Sent> matching;
    for (const auto& sent : sent_) {
      if (sent.method == method && sent.path.starts_with(path_prefix)) matching.push_back(sent);
    }
    return matching;
  }

  // ---- what a maker has

  // A publisher key registered with the tenant.
  crypto::PrivateKey RegisteredPublisherKey() {
    auto key = citadel::testing::GenerateTestKey();
    auto registered =
        Call("POST", Tenant("/publisher-keys"), token_, {{"name", "release"}, {"public_key_pem", key.Public().Pem()}});
    EXPECT_EQ(registered.status, 201) << registered.body;
    return key;
  }

  static std::string RandomText(std::size_t bytes) { return std::string(AsText(crypto::RandomBytes(bytes))); }

  // A signed app image carrying `payload` (random bytes do not compress);
  // the manifest's Version is left out when empty.
  fs::path PackApp(const crypto::PrivateKey& key, const std::string& version, const std::string& payload,
                   const std::string& file_name = "blink.img") {
    const fs::path app = dir_.path() / ("app-" + file_name);
    fs::create_directories(app / "bin");
    json manifest = {{"SchemaVersion", 1},           {"Name", "Blink"},
                     {"ComponentId", kApp},          {"EntryPoint", "/bin/app"},
                     {"ApplicationType", "Default"}, {"Capabilities", json::object()},
                     {"SecurityVersion", 3}};
    if (!version.empty()) manifest["Version"] = version;
    std::ofstream(app / "app_manifest.json") << manifest.dump();
    EXPECT_TRUE(WriteFileAtomic(app / "bin" / "app", payload));
    auto packed = Must(image::PackImage(app, key), "packing");
    fs::path file = dir_.path() / file_name;
    EXPECT_TRUE(WriteFileAtomic(file, AsText(packed)));
    return file;
  }

  fs::path WriteOsImage(const std::string& name, std::size_t bytes) {
    fs::path file = dir_.path() / name;
    fs::create_directories(file.parent_path());
    EXPECT_TRUE(WriteFileAtomic(file, RandomText(bytes)));
    return file;
  }

  // Online keys and both roots, signed with offline keys made here.
  void SetUpRepositories() {
    auto keys = Call("POST", Tenant("/repository/online-keys"), token_, json::object());
    ASSERT_EQ(keys.status, 200) << keys.body;
    const json online = Body(keys);
    const std::int64_t expires = ToUnixSeconds(Clock::now()) + 365 * kDay;
    tuf::Root image;
    image.expires = expires;
    image.AddKey(image_root_.PublicKey(), image_root_.KeyId(), tuf::kRootRole);
    image.AddKey(image_targets_.PublicKey(), image_targets_.KeyId(), tuf::kTargetsRole);
    AddOnlineKey(image, online["image"]["snapshot"], tuf::kSnapshotRole);
    AddOnlineKey(image, online["image"]["timestamp"], tuf::kTimestampRole);
    PostSigned("/repository/image/root", image, image_root_);
    tuf::Root director;
    director.expires = expires;
    director.AddKey(director_root_.PublicKey(), director_root_.KeyId(), tuf::kRootRole);
    AddOnlineKey(director, online["director"]["targets"], tuf::kTargetsRole);
    AddOnlineKey(director, online["director"]["snapshot"], tuf::kSnapshotRole);
    AddOnlineKey(director, online["director"]["timestamp"], tuf::kTimestampRole);
    PostSigned("/repository/director/root", director, director_root_);
  }

  static void AddOnlineKey(tuf::Root& root, const json& key_json, std::string_view role) {
    auto key = Must(tuf::Key::FromJson(key_json), "online key");
    root.AddKey(key, Must(key.ComputeKeyId(), "key id"), role);
  }

  template <typename T>
  void PostSigned(const std::string& path, const T& body, const tuf::SigningKey& key) {
    auto metadata = Must(tuf::MakeMetadata(body), "metadata");
    ASSERT_TRUE(metadata.Sign(key));
    auto posted = Send("POST", Tenant(path), token_, Must(metadata.Serialize(), "serialising"), "application/json");
    ASSERT_EQ(posted.status, 201) << path << ": " << posted.body;
  }

  // What `citadel repo publish` does: the images (as the service describes
  // them) signed into the next version of the image targets.
  void Publish(const std::vector<json>& images) {
    tuf::Targets targets;
    targets.version = ++targets_version_;
    targets.expires = ToUnixSeconds(Clock::now()) + 90 * kDay;
    for (const auto& image : images) {
      auto file = Must(tuf::TargetFile::FromJson(image["target_name"], image["target"], "target"), "target");
      targets.targets.emplace(file.path, file);
    }
    PostSigned("/repository/image/targets", targets, image_targets_);
  }

  // A genuine device, attested once and claimed into `group`.
  std::string ClaimDevice(const std::string& group) {
    auto rot = Must(rot::SoftwareRootOfTrust::Open(dir_.path() / "device"), "device RoT");
    std::string id = rot->DeviceId();
    crypto::CertificateSpec spec;
    spec.common_name = id;
    auto leaf = Must(crypto::IssueCertificate(spec, rot->IdentityPublicKey(), &manufacturer_, manufacturer_key_),
                     "manufacturer certificate");
    EXPECT_TRUE(rot->StoreManufacturerChain({leaf, manufacturer_}));
    EXPECT_TRUE(rot->Extend({0, "os", "citadel-os", "1.0.0", crypto::Sha256("os image")}));
    EXPECT_TRUE(rot->Extend({1, "runtime", "citadeld", "0.1.0", crypto::Sha256("runtime")}));
    auto challenge =
        Must(protocol::ParseChallenge(Call("POST", "/v1/attestation/challenge", "", json::object()).body), "challenge");
    auto csr = Must(crypto::CertificateRequest::Create(rot->TlsClientKey(), id), "CSR");
    auto evidence = Must(protocol::CreateSignedEvidence(*rot, challenge.nonce, csr.Pem()), "evidence");
    auto attested = Send("POST", "/v1/attestation", "", evidence, "application/json");
    EXPECT_EQ(attested.status, 200) << attested.body;
    auto claimed = Call("POST", Tenant("/devices/" + id + "/claim"), token_, {{"device_group_id", group}});
    EXPECT_EQ(claimed.status, 200) << claimed.body;
    return id;
  }

  TempDir dir_;
  crypto::PrivateKey manufacturer_key_ = citadel::testing::GenerateTestKey();
  crypto::Certificate manufacturer_ = citadel::testing::IssueTestCa("Test Manufacturer", manufacturer_key_);
  tuf::SigningKey image_root_ = Must(tuf::SigningKey::Generate(), "image root key");
  tuf::SigningKey image_targets_ = Must(tuf::SigningKey::Generate(), "image targets key");
  tuf::SigningKey director_root_ = Must(tuf::SigningKey::Generate(), "director root key");
  std::int64_t targets_version_ = 0;
  std::unique_ptr<server::Service> service_;
  fs::path service_ca_file_;
  std::string service_ca_;
  std::string tenant_;
  std::string token_;
  std::string group_;
  std::vector<Sent> sent_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(UpdateCommandsTest, EveryCommandTeachesWithAnExampleAndTheNextStep) {
  const std::vector<std::vector<std::string>> commands = {
      {"image", "upload"},       {"image", "list"},
      {"deployment", "create"},  {"deployment", "list"},
      {"deployment", "show"},    {"deployment", "pause"},
      {"deployment", "resume"},  {"deployment", "rollback"},
      {"deployment", "percent"}, {"device-group", "update-settings"},
      {"device", "update-now"}};
  for (auto args : commands) {
    std::string name = "citadel";
    for (const auto& word : args) name += " " + word;
    args.push_back("--help");
    EXPECT_EQ(Run(args), 0) << name;
    EXPECT_NE(out_.str().find("Example:\n  " + name), std::string::npos) << name << ":\n" << out_.str();
    EXPECT_NE(out_.str().find("Next"), std::string::npos) << name << ":\n" << out_.str();
  }
  // The image group still has its local commands.
  EXPECT_EQ(Run({"image", "--help"}), 0);
  for (const char* command : {"pack", "show", "upload", "list"}) {
    EXPECT_NE(out_.str().find(command), std::string::npos) << command;
  }
  EXPECT_TRUE(sent_.empty());
}

TEST_F(UpdateCommandsTest, ImageUploadSendsChunksRegistersAndIsIdempotent) {
  auto key = RegisteredPublisherKey();
  const std::string payload = RandomText(5 * kMiB / 2);
  const fs::path file = PackApp(key, "2.0.0", payload);
  const std::string bytes = Must(ReadFile(file, 8 * kMiB), "image");
  ASSERT_GT(bytes.size(), 2 * kMiB);
  const std::string sha256 = crypto::Sha256Hex(bytes);
  const std::string target = std::string("apps/") + kApp + "/2.0.0/blink.img";

  ASSERT_EQ(Run({"image", "upload", file.string()}), 0) << err_.str();
  // A question first (nothing sent), then three chunks of at most 1 MiB.
  auto puts = SentWith("PUT", Tenant("/uploads/" + sha256));
  ASSERT_EQ(puts.size(), 4u);
  EXPECT_EQ(puts[0].body_bytes, 0u);
  std::size_t total = 0;
  for (std::size_t i = 1; i < puts.size(); ++i) {
    EXPECT_EQ(puts[i].status, 200);
    EXPECT_LE(puts[i].body_bytes, kMiB);
    EXPECT_NE(puts[i].path.find("offset=" + std::to_string(total) + "&length=" + std::to_string(bytes.size())),
              std::string::npos)
        << puts[i].path;
    total += puts[i].body_bytes;
  }
  EXPECT_EQ(total, bytes.size());
  auto registered = SentWith("POST", Tenant("/images"));
  ASSERT_EQ(registered.size(), 1u);
  EXPECT_EQ(registered[0].status, 201);
  const std::string text = out_.str();
  for (const std::string& expected :
       std::vector<std::string>{"Uploaded " + target, sha256, std::to_string(bytes.size()) + " bytes",
                                "security version 3", "Delta", "citadel repo publish " + target + " --keys DIR"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " in:\n" << text;
  }
  // Not a terminal: one summary line instead of a bar.
  EXPECT_NE(err_.str().find("blink.img: 2."), std::string::npos) << err_.str();
  EXPECT_EQ(err_.str().find('\r'), std::string::npos);

  // Again: the service has it; nothing is sent, and it says so.
  ASSERT_EQ(Run({"image", "upload", file.string(), "--json"}), 0) << err_.str();
  puts = SentWith("PUT", Tenant("/uploads/"));
  ASSERT_EQ(puts.size(), 1u);
  EXPECT_EQ(puts[0].body_bytes, 0u);
  EXPECT_EQ(SentWith("POST", Tenant("/images"))[0].status, 200);
  json image = OutJson();
  EXPECT_EQ(image["target_name"], target);
  EXPECT_EQ(image["sha256"], sha256);
  EXPECT_EQ(image["kind"], "app");
  EXPECT_EQ(image["version"], "2.0.0");
  EXPECT_EQ(image["security_version"], 3);
  EXPECT_EQ(err_.str(), "") << "--json prints no progress";
  ASSERT_EQ(Run({"image", "upload", file.string()}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Already uploaded " + target), std::string::npos) << out_.str();

  // A later version with a small change: the service makes a delta from
  // the earlier one, and the output says how large it is.
  std::string changed = payload;
  changed.replace(kMiB, 16, "a small change..");
  const fs::path v3 = PackApp(key, "3.0.0", changed, "blink-3.img");
  ASSERT_EQ(Run({"image", "upload", v3.string()}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Uploaded apps/" + std::string(kApp) + "/3.0.0/blink-3.img"), std::string::npos)
      << out_.str();
  EXPECT_NE(out_.str().find("from " + sha256.substr(0, 12) + ": "), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("% of the image)"), std::string::npos) << out_.str();
}

TEST_F(UpdateCommandsTest, AnInterruptedUploadResumesWhereTheServiceIs) {
  const fs::path file = WriteOsImage("rootfs.img", 5 * kMiB / 2);
  const std::string bytes = Must(ReadFile(file, 8 * kMiB), "image");
  const std::string sha256 = crypto::Sha256Hex(bytes);
  // An earlier upload got 1.5 MiB across and was cut.
  const std::size_t cut = 3 * kMiB / 2;
  for (std::size_t offset = 0; offset < cut; offset += kMiB) {
    auto put = Send(
        "PUT",
        Tenant("/uploads/" + sha256 + "?offset=" + std::to_string(offset) + "&length=" + std::to_string(bytes.size())),
        token_, bytes.substr(offset, std::min(kMiB, cut - offset)), "application/octet-stream");
    ASSERT_EQ(put.status, 200) << put.body;
  }

  ASSERT_EQ(Run({"image", "upload", file.string(), "--os", "--name", "citadel-os", "--version", "2.0.0"}), 0)
      << err_.str();
  auto puts = SentWith("PUT", Tenant("/uploads/" + sha256));
  ASSERT_GE(puts.size(), 2u);
  EXPECT_EQ(puts[0].status, 409);  // the question, answered with where the service is
  EXPECT_EQ(puts[0].body_bytes, 0u);
  std::size_t total = 0;
  for (const auto& put : puts) total += put.body_bytes;
  EXPECT_EQ(total, bytes.size() - cut) << "only the rest is sent";
  EXPECT_NE(puts[1].path.find("offset=" + std::to_string(cut)), std::string::npos) << puts[1].path;
  EXPECT_NE(err_.str().find("Resuming the upload of rootfs.img at 1.5 MiB of 2.5 MiB"), std::string::npos)
      << err_.str();
  EXPECT_NE(out_.str().find("Uploaded os/citadel-os/2.0.0/rootfs.img"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("1.0 MiB sent, 1.5 MiB were already at the service"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("security version 0"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("--os-feed FEED --images os/citadel-os/2.0.0/rootfs.img"), std::string::npos) << out_.str();

  // The service holds the complete, verified image.
  auto stored = Send("GET", Tenant("/images?component=citadel-os"), token_, "", "");
  ASSERT_EQ(stored.status, 200) << stored.body;
  ASSERT_EQ(Body(stored)["images"].size(), 1u);
  EXPECT_EQ(Body(stored)["images"][0]["sha256"], sha256);
}

TEST_F(UpdateCommandsTest, ImageUploadRefusalsSayWhatToDo) {
  auto key = RegisteredPublisherKey();
  const fs::path app = PackApp(key, "2.0.0", RandomText(1000));
  const fs::path os = WriteOsImage("rootfs.img", 1000);
  // Nothing is sent before the image is understood.
  const auto refused_locally = [&](std::vector<std::string> args, int code, const std::string& expected) {
    args.insert(args.begin(), {"image", "upload"});
    EXPECT_EQ(Run(args), code) << args[2];
    EXPECT_NE(err_.str().find(expected), std::string::npos) << expected << " in:\n" << err_.str();
    EXPECT_TRUE(sent_.empty()) << args[2];
  };
  refused_locally({os.string(), "--os", "--version", "2.0.0"}, 2, "--name and --version");
  refused_locally({os.string(), "--os", "--name", "citadel os", "--version", "2.0.0"}, 2, "e.g. citadel-os");
  refused_locally({app.string(), "--version", "9.9.9"}, 2, "signed manifest");
  refused_locally({os.string()}, 2, "--os --name NAME --version V");  // not an app image
  refused_locally({PackApp(key, "", RandomText(1000), "noversion.img").string()}, 2, "\"Version\"");
  refused_locally({(dir_.path() / "missing.img").string()}, 4, "missing.img");
  refused_locally({WriteOsImage("bad name!.img", 10).string(), "--os", "--name", "x", "--version", "1"}, 2,
                  "rename the file");

  // Signed by a key the tenant never registered: the service refuses it.
  auto stranger = citadel::testing::GenerateTestKey();
  EXPECT_EQ(Run({"image", "upload", PackApp(stranger, "2.0.0", RandomText(1000), "stranger.img").string()}), 1);
  EXPECT_NE(err_.str().find("citadel publisher-key register"), std::string::npos) << err_.str();

  // The same name for other bytes.
  ASSERT_EQ(Run({"image", "upload", os.string(), "--os", "--name", "citadel-os", "--version", "2.0.0"}), 0)
      << err_.str();
  const fs::path other = WriteOsImage("other/rootfs.img", 2000);
  EXPECT_EQ(Run({"image", "upload", other.string(), "--os", "--name", "citadel-os", "--version", "2.0.0"}), 5);
  EXPECT_NE(err_.str().find("another --version"), std::string::npos) << err_.str();
}

TEST_F(UpdateCommandsTest, ImageListShowsTheImagesUpToTheLimit) {
  for (const char* version : {"1.0.0", "1.1.0", "1.2.0"}) {
    const fs::path file = WriteOsImage(std::string("v") + version + "/rootfs.img", 100);
    ASSERT_EQ(Run({"image", "upload", file.string(), "--os", "--name", "citadel-os", "--version", version}), 0)
        << err_.str();
  }
  ASSERT_EQ(Run({"image", "list", "--json"}), 0) << err_.str();
  ASSERT_EQ(OutJson()["images"].size(), 3u);
  EXPECT_EQ(OutJson()["images"][0]["target_name"], "os/citadel-os/1.0.0/rootfs.img");
  EXPECT_TRUE(OutJson()["next"].is_null());

  ASSERT_EQ(Run({"image", "list", "--limit", "2", "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["images"].size(), 2u);
  EXPECT_EQ(OutJson()["next"], "os/citadel-os/1.1.0/rootfs.img");
  ASSERT_EQ(sent_.size(), 2u);  // GET /v1/tenants, then one page
  EXPECT_NE(sent_[1].path.find("limit=2"), std::string::npos) << sent_[1].path;

  ASSERT_EQ(Run({"image", "list", "--limit", "2"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("TARGET NAME"), std::string::npos);
  EXPECT_NE(out_.str().find("os/citadel-os/1.1.0/rootfs.img"), std::string::npos) << out_.str();
  EXPECT_EQ(out_.str().find("1.2.0"), std::string::npos) << out_.str();
  EXPECT_NE(err_.str().find("larger --limit"), std::string::npos) << err_.str();

  ASSERT_EQ(Run({"image", "list", "--component", "no-such-os"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("citadel image upload FILE"), std::string::npos) << out_.str();
}

TEST_F(UpdateCommandsTest, DeploymentRoundTrip) {
  SetUpRepositories();
  auto key = RegisteredPublisherKey();
  ASSERT_EQ(Run({"image", "upload", PackApp(key, "2.0.0", RandomText(1000)).string(), "--json"}), 0) << err_.str();
  const json image = OutJson();
  const std::string target = image["target_name"];

  // Not signed into the image targets yet.
  EXPECT_EQ(Run({"deployment", "create", "--device-group", group_, "--images", target, "--percent", "50"}), 5);
  EXPECT_NE(err_.str().find("publish first"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("citadel repo publish"), std::string::npos) << err_.str();
  Publish({image});
  ClaimDevice(group_);

  EXPECT_EQ(Run({"deployment", "create", "--images", target}), 2);  // no scope
  EXPECT_EQ(Run({"deployment", "create", "--device-group", group_, "--os-feed", "retail", "--images", target}), 2);
  ASSERT_EQ(Run({"deployment", "create", "--device-group", group_, "--images", target, "--percent", "50", "--json"}), 0)
      << err_.str();
  const json created = OutJson();
  const std::string id = created["id"];
  EXPECT_EQ(created["state"], "active");
  EXPECT_EQ(created["percent"], 50);
  EXPECT_EQ(created["device_group_id"], group_);
  EXPECT_EQ(created["targets"], json::array({target}));

  ASSERT_EQ(Run({"deployment", "show", id}), 0) << err_.str();
  for (const std::string& expected :
       std::vector<std::string>{"50%", "device group " + group_, target, "active", "pending-reboot", "committed",
                                "failed", "citadel deployment pause " + id}) {
    EXPECT_NE(out_.str().find(expected), std::string::npos) << expected << " in:\n" << out_.str();
  }
  ASSERT_EQ(Run({"deployment", "show", id, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["progress"]["eligible"], 0);  // one device at 50%, rounded down
  EXPECT_EQ(OutJson()["progress"]["committed"], 0);

  ASSERT_EQ(Run({"deployment", "pause", id, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["state"], "paused");
  EXPECT_EQ(Run({"deployment", "pause", id}), 5);
  EXPECT_NE(err_.str().find("only an active deployment can be paused"), std::string::npos) << err_.str();
  ASSERT_EQ(Run({"deployment", "resume", id}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Resumed deployment " + id + " (active, 50%)"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"deployment", "percent", id, "100", "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["percent"], 100);
  EXPECT_EQ(Run({"deployment", "percent", id, "10"}), 5);
  EXPECT_NE(err_.str().find("only goes up"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"deployment", "percent", id, "101"}), 2);
  ASSERT_EQ(Run({"deployment", "show", id, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson()["progress"]["eligible"], 1);

  ASSERT_EQ(Run({"deployment", "list", "--device-group", group_, "--state", "active,paused", "--json"}), 0)
      << err_.str();
  ASSERT_EQ(OutJson()["deployments"].size(), 1u);
  EXPECT_EQ(OutJson()["deployments"][0]["id"], id);
  ASSERT_EQ(Run({"deployment", "rollback", id}), 0) << err_.str();
  EXPECT_NE(out_.str().find("Rolled back deployment " + id + " (rolled-back"), std::string::npos) << out_.str();
  EXPECT_EQ(Run({"deployment", "rollback", id}), 5);
  ASSERT_EQ(Run({"deployment", "list", "--state", "rolled-back"}), 0) << err_.str();
  EXPECT_NE(out_.str().find(id), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("rolled-back"), std::string::npos) << out_.str();
  EXPECT_EQ(Run({"deployment", "show", "dep_missing"}), 4);
  EXPECT_NE(err_.str().find("citadel deployment list"), std::string::npos) << err_.str();

  // A batch schedule.
  ASSERT_EQ(Run({"deployment", "create", "--device-group", group_, "--images", target, "--batches", "10@0,50@1h,100@2h",
                 "--json"}),
            0)
      << err_.str();
  const json staged = OutJson();
  EXPECT_EQ(staged["percent"], 10);
  EXPECT_EQ(staged["batches"], json::parse(R"([{"percent":10,"after_seconds":0},{"percent":50,"after_seconds":3600},
                                              {"percent":100,"after_seconds":7200}])"));
  ASSERT_EQ(Run({"deployment", "show", staged["id"].get<std::string>()}), 0) << err_.str();
  EXPECT_NE(out_.str().find("10% at once, 50% after 1h, 100% after 2h"), std::string::npos) << out_.str();
  EXPECT_EQ(Run({"deployment", "create", "--device-group", group_, "--images", target, "--batches", "50@1h,10@2h"}), 2);
  EXPECT_EQ(Run({"deployment", "create", "--device-group", group_, "--images", target, "--percent", "5", "--batches",
                 "10@0"}),
            2);
}

TEST_F(UpdateCommandsTest, UpdateSettingsRoundTrip) {
  ASSERT_EQ(Run({"device-group", "update-settings", group_, "--os-feed", "retail-eval", "--maintenance-window",
                 "02:00/120", "--json"}),
            0)
      << err_.str();
  EXPECT_EQ(OutJson()["os_feed"], "retail-eval");
  EXPECT_EQ(OutJson()["maintenance_window"], json({{"start", "02:00"}, {"duration_minutes", 120}}));
  auto patches = SentWith("PATCH", Tenant("/device-groups/" + group_));
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].status, 200);

  // The group routes show the settings too.
  ASSERT_EQ(Run({"device-group", "list", "--json"}), 0) << err_.str();
  bool found = false;
  const json groups = OutJson()["device_groups"];
  ASSERT_EQ(groups.size(), 3u);
  for (const auto& group : groups) {
    if (group["id"] != group_) {
      EXPECT_EQ(group["os_feed"], "retail");
      EXPECT_TRUE(group["maintenance_window"].is_null());
      continue;
    }
    found = true;
    EXPECT_EQ(group["os_feed"], "retail-eval");
    EXPECT_EQ(group["maintenance_window"]["start"], "02:00");
  }
  EXPECT_TRUE(found);

  ASSERT_EQ(Run({"device-group", "update-settings", group_, "--no-maintenance-window"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("any time"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("retail-eval"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("citadel deployment create --os-feed retail-eval"), std::string::npos) << out_.str();

  EXPECT_EQ(Run({"device-group", "update-settings", group_}), 2);
  EXPECT_NE(err_.str().find("nothing to change"), std::string::npos);
  EXPECT_EQ(Run({"device-group", "update-settings", group_, "--maintenance-window", "25:00/10"}), 2);
  EXPECT_EQ(
      Run({"device-group", "update-settings", group_, "--maintenance-window", "02:00/10", "--no-maintenance-window"}),
      2);
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(Run({"device-group", "update-settings", group_, "--os-feed", "Not A Feed"}), 1);  // the service: 400
  EXPECT_NE(err_.str().find("os_feed"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"device-group", "update-settings", "grp_missing", "--os-feed", "retail"}), 4);
  EXPECT_NE(err_.str().find("citadel device-group list"), std::string::npos) << err_.str();
}

TEST_F(UpdateCommandsTest, UpdateNowAsksTheDeviceToInstallAtItsNextCheckIn) {
  const std::string device = ClaimDevice(group_);
  ASSERT_EQ(Run({"device", "update-now", device}), 0) << err_.str();
  auto posts = SentWith("POST", Tenant("/devices/" + device + "/update-now"));
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].status, 202);
  EXPECT_NE(out_.str().find("next check-in"), std::string::npos) << out_.str();
  ASSERT_EQ(Run({"device", "update-now", device, "--json"}), 0) << err_.str();
  EXPECT_EQ(OutJson(), json({{"device_id", device}, {"update_now", true}}));

  EXPECT_EQ(Run({"device", "update-now", std::string(64, 'a')}), 4);
  EXPECT_NE(err_.str().find("claimed by this tenant"), std::string::npos) << err_.str();
  EXPECT_EQ(Run({"device", "update-now", "3f2a9c"}), 2);
}

}  // namespace
}  // namespace citadel::cli
