// Deployments in-process: a real HTTPS service on loopback with a real
// SQLite store, real TUF repositories (roots and image targets signed here
// with offline keys, online roles signed by the service), and real devices
// (software roots of trust) checking in over mutual TLS.
#include "server/deployments.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "common/file.hpp"
#include "protocol/protocol.hpp"
#include "rot/software/software_rot.hpp"
#include "server/service.hpp"
#include "service_fixture.hpp"
#include "tuf/metadata.hpp"

namespace citadel::server {
namespace {

namespace fs = std::filesystem;

using testing::Headers;
using testing::Must;
using Device = testing::EnrolledDevice;

constexpr std::int64_t kDay = 24 * 60 * 60;
constexpr const char* kAppA = "0a0a0a0a-0000-4000-8000-00000000000a";
constexpr const char* kAppB = "0b0b0b0b-0000-4000-8000-00000000000b";

// What a maker holds offline for one tenant, and what it uploaded.
struct Maker {
  tuf::SigningKey image_root = Must(tuf::SigningKey::Generate(), "image root key");
  tuf::SigningKey image_targets = Must(tuf::SigningKey::Generate(), "image targets key");
  tuf::SigningKey director_root = Must(tuf::SigningKey::Generate(), "director root key");
  std::int64_t targets_version = 0;
  std::vector<store::Image> images;
};

struct Tenant : testing::TenantAccess {
  std::unique_ptr<Maker> maker = std::make_unique<Maker>();
};

class DeploymentsTest : public testing::ServiceFixture {
 protected:
  Tenant CreateTenant(const std::string& name) {
    Tenant tenant;
    static_cast<testing::TenantAccess&>(tenant) = CreateTenantAccess(name);
    return tenant;
  }

  std::string AddGroup(const Tenant& tenant, const std::string& name) {
    auto created = Call("POST", "/v1/tenants/" + tenant.id + "/device-groups", tenant.token,
                        {{"product_id", tenant.product_id}, {"name", name}});
    EXPECT_EQ(created.status, 201) << created.body;
    return Body(created)["id"];
  }

  // Online keys, then both roots: the image root keeps its targets key
  // offline; the director's online roles are the service's keys.
  void SetUpRepositories(Tenant& tenant) {
    auto keys = Call("POST", "/v1/tenants/" + tenant.id + "/repository/online-keys", tenant.token, Json::object());
    ASSERT_EQ(keys.status, 200) << keys.body;
    const Json online = Body(keys);
    const std::int64_t expires = Now() + 365 * kDay;

    tuf::Root image;
    image.expires = expires;
    image.AddKey(tenant.maker->image_root.PublicKey(), tenant.maker->image_root.KeyId(), tuf::kRootRole);
    image.AddKey(tenant.maker->image_targets.PublicKey(), tenant.maker->image_targets.KeyId(), tuf::kTargetsRole);
    AddOnlineKey(image, online["image"]["snapshot"], tuf::kSnapshotRole);
    AddOnlineKey(image, online["image"]["timestamp"], tuf::kTimestampRole);
    PostSigned(tenant, "/repository/image/root", image, tenant.maker->image_root);

    tuf::Root director;
    director.expires = expires;
    director.AddKey(tenant.maker->director_root.PublicKey(), tenant.maker->director_root.KeyId(), tuf::kRootRole);
    AddOnlineKey(director, online["director"]["targets"], tuf::kTargetsRole);
    AddOnlineKey(director, online["director"]["snapshot"], tuf::kSnapshotRole);
    AddOnlineKey(director, online["director"]["timestamp"], tuf::kTimestampRole);
    PostSigned(tenant, "/repository/director/root", director, tenant.maker->director_root);
  }

  static void AddOnlineKey(tuf::Root& root, const Json& json, std::string_view role) {
    auto key = Must(tuf::Key::FromJson(json), "online key");
    root.AddKey(key, Must(key.ComputeKeyId(), "key id"), role);
  }

  template <typename T>
  void PostSigned(const Tenant& tenant, const std::string& path, const T& body, const tuf::SigningKey& key) {
    auto metadata = Must(tuf::MakeMetadata(body), "metadata");
    ASSERT_TRUE(metadata.Sign(key));
    auto text = Must(metadata.Serialize(), "serialising");
    auto response =
        Must(Client()->Send("POST", "/v1/tenants/" + tenant.id + path, text,
                            {{"Authorization", "Bearer " + tenant.token}, {"Content-Type", "application/json"}}),
             "posting metadata");
    ASSERT_EQ(response.status, 201) << path << ": " << response.body;
  }

  // An image the tenant uploaded (recorded as the upload route records it)
  // and signed into a new version of its image targets.
  std::string Release(Tenant& tenant, store::ImageKind kind, const std::string& component, const std::string& version,
                      std::int64_t security_version = 1) {
    const std::string bytes = component + " " + version + " image bytes";
    store::Image image;
    image.tenant_id = tenant.id;
    image.sha256 = HexEncode(crypto::Sha256(bytes));
    image.length = static_cast<std::int64_t>(bytes.size());
    image.kind = kind;
    image.component_id = component;
    image.version = version;
    image.security_version = security_version;
    image.target_name = (kind == store::ImageKind::kApp ? "apps/" : "os/") + component + "/" + version +
                        (kind == store::ImageKind::kApp ? "/app.img" : "/os.img");
    image.uploaded_at = Now();
    image.uploaded_by = "token:test";
    EXPECT_TRUE(Store().AddImage(image));
    tenant.maker->images.push_back(image);

    tuf::Targets targets;
    targets.version = ++tenant.maker->targets_version;
    targets.expires = Now() + 90 * kDay;
    for (const auto& i : tenant.maker->images) {
      tuf::TargetFile file;
      file.path = i.target_name;
      file.length = i.length;
      file.hashes = {{"sha256", i.sha256}};
      file.custom = ImageTargetCustom(i);
      targets.targets.emplace(file.path, file);
    }
    PostSigned(tenant, "/repository/image/targets", targets, tenant.maker->image_targets);
    return image.target_name;
  }

  Json Deploy(const Tenant& tenant, const Json& body, int expected_status = 201) {
    auto response = Call("POST", "/v1/tenants/" + tenant.id + "/deployments", tenant.token, body);
    EXPECT_EQ(response.status, expected_status) << response.body;
    return Body(response);
  }

  Json Change(const Tenant& tenant, const std::string& id, const std::string& action, const Json& body,
              int expected_status = 200) {
    auto response = Call("POST", "/v1/tenants/" + tenant.id + "/deployments/" + id + "/" + action, tenant.token, body);
    EXPECT_EQ(response.status, expected_status) << action << ": " << response.body;
    return Body(response);
  }

  // The group's latest published director targets, as a device reads them.
  tuf::Metadata<tuf::Targets> Director(const Tenant& tenant, const std::string& group_id) {
    auto stored = Must(Store().GetLatestRepositoryMetadata(tenant.id, store::TufRepository::kDirector, group_id,
                                                           store::TufRole::kTargets),
                       "director targets");
    return Must(tuf::ParseMetadata<tuf::Targets>(stored.document), "parsing director targets");
  }

  static Json Citadel(const tuf::Metadata<tuf::Targets>& director, const std::string& target) {
    auto it = director.body.targets.find(target);
    if (it == director.body.targets.end()) return nullptr;
    return it->second.custom["citadel"];
  }

  protocol::CheckInReply CheckIn(const Device& device, std::optional<protocol::CheckInUpdate> update = {}) {
    protocol::CheckIn check_in{
        .os_version = "1.0.0", .runtime_version = "0.1.0", .uptime_seconds = 1, .free_memory_kb = 1};
    check_in.update = std::move(update);
    auto client = Client(http::TlsIdentity{device.chain_pem, &device.rot->TlsClientKey()});
    auto response = Must(client->Send("POST", "/v1/device/check-in", protocol::CheckInToJson(check_in).dump(),
                                      {{"Content-Type", "application/json"}}),
                         "check-in");
    EXPECT_EQ(response.status, 200) << response.body;
    return Must(protocol::ParseCheckInReply(response.body), "check-in reply");
  }

  static std::int64_t Now() { return ToUnixSeconds(Clock::now()); }
};

TEST_F(DeploymentsTest, At50PercentTheDirectorListsCurrentAndBaseline) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string v1 = Release(tenant, store::ImageKind::kApp, kAppA, "1.0.0");
  const std::string v2 = Release(tenant, store::ImageKind::kApp, kAppA, "2.0.0", 2);

  Json first = Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"percent", 100}});
  Json second = Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v2}}, {"percent", 50}});
  EXPECT_EQ(second["percent"], 50);
  EXPECT_EQ(second["state"], "active");

  auto director = Director(tenant, tenant.group_id);
  ASSERT_EQ(director.body.targets.size(), 2u);
  Json current = Citadel(director, v2);
  EXPECT_EQ(current["role"], "current");
  EXPECT_EQ(current["deployment_id"], second["id"]);
  EXPECT_EQ(current["percent"], 50);
  EXPECT_EQ(current["paused"], false);
  EXPECT_EQ(current["kind"], "app");
  EXPECT_EQ(current["component_id"], kAppA);
  EXPECT_EQ(current["version"], "2.0.0");
  EXPECT_EQ(current["security_version"], 2);
  Json baseline = Citadel(director, v1);
  EXPECT_EQ(baseline["role"], "baseline");
  EXPECT_EQ(baseline["deployment_id"], first["id"]);
  EXPECT_EQ(baseline["percent"], 100);
  // The director's entry matches the image repository's (mix-and-match).
  auto image_targets =
      Must(Store().GetLatestRepositoryMetadata(tenant.id, store::TufRepository::kImage, "", store::TufRole::kTargets),
           "image targets");
  auto image = Must(tuf::ParseMetadata<tuf::Targets>(image_targets.document), "parsing image targets");
  EXPECT_EQ(director.body.targets.at(v2).length, image.body.targets.at(v2).length);
  EXPECT_EQ(director.body.targets.at(v2).hashes, image.body.targets.at(v2).hashes);
  EXPECT_EQ(director.signed_json["custom"]["citadel"]["device_group_id"], tenant.group_id);
  EXPECT_TRUE(director.signed_json["custom"]["citadel"]["maintenance_window"].is_null());

  auto listed = Call("GET", "/v1/tenants/" + tenant.id + "/deployments?state=superseded", tenant.token);
  ASSERT_EQ(Body(listed)["deployments"].size(), 1u);
  EXPECT_EQ(Body(listed)["deployments"][0]["id"], first["id"]);
}

TEST_F(DeploymentsTest, PauseResumeRollbackAndPercentOnlyUp) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string v1 = Release(tenant, store::ImageKind::kApp, kAppA, "1.0.0");
  const std::string v2 = Release(tenant, store::ImageKind::kApp, kAppA, "2.0.0");
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"percent", 100}});
  const std::string id =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v2}}, {"percent", 20}})["id"];

  EXPECT_EQ(Change(tenant, id, "pause", Json::object())["state"], "paused");
  EXPECT_EQ(Citadel(Director(tenant, tenant.group_id), v2)["paused"], true);
  Change(tenant, id, "pause", Json::object(), 409);
  // A paused deployment may still be raised; it stays paused.
  EXPECT_EQ(Change(tenant, id, "percent", {{"percent", 40}})["percent"], 40);
  EXPECT_EQ(Change(tenant, id, "resume", Json::object())["state"], "active");
  auto resumed = Citadel(Director(tenant, tenant.group_id), v2);
  EXPECT_EQ(resumed["paused"], false);
  EXPECT_EQ(resumed["percent"], 40);
  Change(tenant, id, "resume", Json::object(), 409);

  Json down = Change(tenant, id, "percent", {{"percent", 30}}, 409);
  EXPECT_EQ(down["type"], "urn:citadel:problem:deployment-conflict");
  Change(tenant, id, "percent", {{"percent", 101}}, 400);
  EXPECT_EQ(Change(tenant, id, "percent", {{"percent", 60}})["percent"], 60);

  EXPECT_EQ(Change(tenant, id, "rollback", Json::object())["state"], "rolled-back");
  auto director = Director(tenant, tenant.group_id);
  EXPECT_TRUE(Citadel(director, v2).is_null()) << "rolled back: the current target is gone";
  EXPECT_EQ(Citadel(director, v1)["role"], "baseline");
  Change(tenant, id, "rollback", Json::object(), 409);
  Change(tenant, id, "resume", Json::object(), 409);
  Change(tenant, id, "percent", {{"percent", 100}}, 409);
}

TEST_F(DeploymentsTest, SupersedeKeepsTheBaselineOnlyWhenItReached100Percent) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string v1 = Release(tenant, store::ImageKind::kApp, kAppA, "1.0.0");
  const std::string v2 = Release(tenant, store::ImageKind::kApp, kAppA, "2.0.0");
  const std::string v3 = Release(tenant, store::ImageKind::kApp, kAppA, "3.0.0");
  const std::string b1 = Release(tenant, store::ImageKind::kApp, kAppB, "1.0.0");
  const std::string first =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"percent", 100}})["id"];
  const std::string second =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v2}}, {"percent", 30}})["id"];
  // v2 never reached 100%: superseding it leaves v1 the baseline.
  const std::string third =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v3}}, {"percent", 10}})["id"];
  auto director = Director(tenant, tenant.group_id);
  EXPECT_EQ(Citadel(director, v3)["role"], "current");
  EXPECT_EQ(Citadel(director, v1)["role"], "baseline");
  EXPECT_TRUE(Citadel(director, v2).is_null());
  auto state = [&](const std::string& id) {
    return Body(Call("GET", "/v1/tenants/" + tenant.id + "/deployments/" + id, tenant.token))["state"];
  };
  EXPECT_EQ(state(first), "superseded");
  EXPECT_EQ(state(second), "superseded");
  EXPECT_EQ(state(third), "active");

  // Another component is independent of A's deployments.
  const std::string other =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {b1}}, {"percent", 50}})["id"];
  EXPECT_EQ(state(third), "active");
  EXPECT_EQ(Citadel(Director(tenant, tenant.group_id), b1)["role"], "current");

  // Superseding a deployment below 100% without naming all its components
  // would end that rollout silently: refused.
  const std::string both =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v3, b1}}, {"percent", 10}}, 201)["id"];
  EXPECT_EQ(state(third), "superseded");
  EXPECT_EQ(state(other), "superseded");
  Json refused = Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v2}}, {"percent", 100}}, 409);
  EXPECT_EQ(refused["type"], "urn:citadel:problem:deployment-conflict");
  EXPECT_EQ(state(both), "active");

  // Two targets of one component, unknown targets and OS images in a group
  // are refused.
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1, v2}}, {"percent", 10}}, 400);
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {"apps/x/1/app.img"}}, {"percent", 10}}, 400);
  const std::string os = Release(tenant, store::ImageKind::kOs, "citadel-os", "2026.1");
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {os}}, {"percent", 10}}, 400);
  Deploy(tenant, {{"os_feed", "retail"}, {"targets", {v1}}, {"percent", 10}}, 400);
  Deploy(tenant, {{"os_feed", "Retail!"}, {"targets", {os}}, {"percent", 10}}, 400);
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}}, 400);
  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"os_feed", "retail"}, {"targets", {v1}}, {"percent", 1}}, 400);
}

TEST_F(DeploymentsTest, BatchesAdvanceWithTimeAndPausedTimeDoesNotCount) {
  store::Deployment d;
  d.id = "dep_x";
  d.state = store::DeploymentState::kActive;
  d.batches_json = R"([{"percent":10,"after_seconds":0},{"percent":50,"after_seconds":3600},)"
                   R"({"percent":100,"after_seconds":7200}])";
  d.created_at = d.updated_at = 1000;
  d.percent = 10;
  EXPECT_EQ(EffectivePercent(d, 1000), 10);
  EXPECT_EQ(EffectivePercent(d, 1000 + 3599), 10);
  EXPECT_EQ(EffectivePercent(d, 1000 + 3600), 50);
  EXPECT_EQ(EffectivePercent(d, 1000 + 7200), 100);
  // Paused at 50% (the percent reached is recorded), resumed much later:
  // the next batch is 3600 s (7200 - 3600) after the resume.
  d.percent = 50;
  d.state = store::DeploymentState::kPaused;
  d.updated_at = 1000 + 4000;
  EXPECT_EQ(EffectivePercent(d, 1000 + 100000), 50);
  d.state = store::DeploymentState::kActive;
  d.updated_at = 200000;
  EXPECT_EQ(EffectivePercent(d, 200000 + 3599), 50);
  EXPECT_EQ(EffectivePercent(d, 200000 + 3600), 100);

  // Over the API: a schedule starting at 0 s applies its first batch at once.
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string v1 = Release(tenant, store::ImageKind::kApp, kAppA, "1.0.0");
  Json batches = Json::array({{{"percent", 5}, {"after_seconds", 0}}, {{"percent", 100}, {"after_seconds", 3600}}});
  Json created = Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"batches", batches}});
  EXPECT_EQ(created["percent"], 5);
  EXPECT_EQ(created["batches"], batches);
  EXPECT_EQ(Citadel(Director(tenant, tenant.group_id), v1)["percent"], 5);
  auto stored = Must(Store().GetDeployment(tenant.id, created["id"].get<std::string>()), "deployment");
  EXPECT_EQ(EffectivePercent(stored, stored.updated_at + 3599), 5);
  EXPECT_EQ(EffectivePercent(stored, stored.updated_at + 3600), 100);
  // The service advances the schedule when it computes the director: an
  // hour later (injected), the same group publishes 100% as a new version.
  DeploymentService service(Store(), service_->repository());
  const std::int64_t before = Must(service.EnsureDirector(tenant.id, tenant.group_id, stored.updated_at), "ensure");
  EXPECT_EQ(Must(service.EnsureDirector(tenant.id, tenant.group_id, stored.updated_at + 60), "ensure"), before);
  auto later = Must(service.DirectorTargetsFor(tenant.id, tenant.group_id, stored.updated_at + 3600), "director");
  ASSERT_EQ(later.targets.size(), 1u);
  EXPECT_EQ(later.targets[0].custom["citadel"]["percent"], 100);
  EXPECT_GT(Must(service.EnsureDirector(tenant.id, tenant.group_id, stored.updated_at + 3600), "ensure"), before);
  EXPECT_EQ(Citadel(Director(tenant, tenant.group_id), v1)["percent"], 100);

  Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"batches", Json::array()}}, 400);
  Deploy(
      tenant,
      {{"device_group_id", tenant.group_id},
       {"targets", {v1}},
       {"batches", Json::array({{{"percent", 50}, {"after_seconds", 0}}, {{"percent", 40}, {"after_seconds", 10}}})}},
      400);
  Deploy(tenant,
         {{"device_group_id", tenant.group_id},
          {"targets", {v1}},
          {"percent", 5},
          {"batches", Json::array({{{"percent", 50}, {"after_seconds", 0}}})}},
         400);
}

TEST_F(DeploymentsTest, OsFeedDeploymentReachesOnlyTheGroupsFollowingTheFeed) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string eval_group = AddGroup(tenant, "Eval");
  auto patched = Call("PATCH", "/v1/tenants/" + tenant.id + "/device-groups/" + eval_group, tenant.token,
                      {{"os_feed", "retail-eval"}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Body(patched)["os_feed"], "retail-eval");

  const std::string os = Release(tenant, store::ImageKind::kOs, "citadel-os", "2026.2");
  Json deployed = Deploy(tenant, {{"os_feed", "retail-eval"}, {"targets", {os}}, {"percent", 100}});
  EXPECT_EQ(deployed["os_feed"], "retail-eval");
  EXPECT_TRUE(deployed["device_group_id"].is_null());
  EXPECT_EQ(Citadel(Director(tenant, eval_group), os)["role"], "current");
  EXPECT_EQ(Citadel(Director(tenant, eval_group), os)["kind"], "os");
  // The retail group follows another feed; its director (published at its
  // first device check-in or change) does not name the image.
  DeploymentService service(Store(), service_->repository());
  auto retail = service.DirectorTargetsFor(tenant.id, tenant.group_id, Now());
  ASSERT_TRUE(retail) << retail.error().message();
  EXPECT_TRUE(retail->targets.empty());

  // Moving the group to the feed brings the OS target with it.
  ASSERT_EQ(Call("PATCH", "/v1/tenants/" + tenant.id + "/device-groups/" + tenant.group_id, tenant.token,
                 {{"os_feed", "retail-eval"}})
                .status,
            200);
  EXPECT_EQ(Citadel(Director(tenant, tenant.group_id), os)["role"], "current");
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + tenant.id + "/device-groups/" + tenant.group_id, tenant.token,
                 {{"os_feed", "UPPER"}})
                .status,
            400);
}

TEST_F(DeploymentsTest, MaintenanceWindowIsInTheDirectorMetadata) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string group = "/v1/tenants/" + tenant.id + "/device-groups/" + tenant.group_id;
  Json window{{"start", "02:00"}, {"duration_minutes", 120}};
  auto patched = Call("PATCH", group, tenant.token, {{"maintenance_window", window}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Body(patched)["maintenance_window"], window);
  EXPECT_EQ(Body(patched)["os_feed"], "retail");
  EXPECT_EQ(Director(tenant, tenant.group_id).signed_json["custom"]["citadel"]["maintenance_window"], window);

  for (const Json& bad :
       {Json{{"start", "24:00"}, {"duration_minutes", 10}}, Json{{"start", "2:00"}, {"duration_minutes", 10}},
        Json{{"start", "02:00"}, {"duration_minutes", 0}}, Json{{"start", "02:00"}, {"duration_minutes", 1441}},
        Json{{"start", "02:00"}, {"duration_minutes", 10}, {"x", 1}}}) {
    EXPECT_EQ(Call("PATCH", group, tenant.token, {{"maintenance_window", bad}}).status, 400) << bad.dump();
  }
  ASSERT_EQ(Call("PATCH", group, tenant.token, {{"maintenance_window", nullptr}}).status, 200);
  EXPECT_TRUE(Director(tenant, tenant.group_id).signed_json["custom"]["citadel"]["maintenance_window"].is_null());
}

TEST_F(DeploymentsTest, CheckInReportsShowInProgressAndResentReportsCountOnce) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  const std::string v1 = Release(tenant, store::ImageKind::kApp, kAppA, "1.0.0");
  auto d1 = Enroll(tenant, tenant.group_id, "d1");
  auto d2 = Enroll(tenant, tenant.group_id, "d2");
  const std::string id =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {v1}}, {"percent", 50}})["id"];

  protocol::CheckInUpdate update;
  update.reports.push_back({id, v1, "downloading", "", "2026-01-01T00:00:00Z"});
  update.reports.push_back({id, v1, "committed", "", "2026-01-01T00:10:00Z"});
  auto reply = CheckIn(d1, update);
  ASSERT_TRUE(reply.update.has_value());
  EXPECT_EQ(reply.update->acknowledged, 2);
  EXPECT_EQ(reply.update->image_repository, "/v1/repo/" + tenant.id + "/image");
  EXPECT_EQ(reply.update->director, "/v1/repo/" + tenant.id + "/director/" + tenant.group_id);
  EXPECT_GE(reply.update->director_timestamp_version, 1);
  EXPECT_FALSE(reply.update->update_now);
  // Re-sent (the reply was lost): acknowledged again, counted once; an
  // older state arriving late does not take the device backwards.
  EXPECT_EQ(CheckIn(d1, update).update->acknowledged, 2);
  protocol::CheckInUpdate failed;
  failed.reports.push_back({id, v1, "failed", "crash-loop", "2026-01-01T00:05:00Z"});
  EXPECT_EQ(CheckIn(d2, failed).update->acknowledged, 1);

  auto shown = Body(Call("GET", "/v1/tenants/" + tenant.id + "/deployments/" + id, tenant.token));
  EXPECT_EQ(shown["progress"]["committed"], 1);
  EXPECT_EQ(shown["progress"]["failed"], 1);
  EXPECT_EQ(shown["progress"]["downloading"], 0);
  EXPECT_EQ(shown["progress"]["eligible"], 1);  // 2 devices x 50%

  // An idle check-in: the director did not change, nor its timestamp.
  const std::int64_t version = reply.update->director_timestamp_version;
  EXPECT_EQ(CheckIn(d1).update->director_timestamp_version, version);
  // A device without the update client still gets the pointer.
  EXPECT_EQ(CheckIn(d2).update->acknowledged, 0);
}

TEST_F(DeploymentsTest, UpdateNowIsDeliveredOnce) {
  auto tenant = CreateTenant("Acme");
  SetUpRepositories(tenant);
  auto device = Enroll(tenant, tenant.group_id, "d1");
  EXPECT_FALSE(CheckIn(device).update->update_now);
  auto requested =
      Call("POST", "/v1/tenants/" + tenant.id + "/devices/" + device.id + "/update-now", tenant.token, Json::object());
  EXPECT_EQ(requested.status, 202) << requested.body;
  EXPECT_TRUE(CheckIn(device).update->update_now);
  EXPECT_FALSE(CheckIn(device).update->update_now);

  auto other = CreateTenant("Other");
  EXPECT_EQ(
      Call("POST", "/v1/tenants/" + other.id + "/devices/" + device.id + "/update-now", other.token, Json::object())
          .status,
      404);
}

TEST_F(DeploymentsTest, TenantsAreIsolated) {
  auto a = CreateTenant("A");
  auto b = CreateTenant("B");
  SetUpRepositories(a);
  SetUpRepositories(b);
  const std::string a_v1 = Release(a, store::ImageKind::kApp, kAppA, "1.0.0");
  const std::string b_v1 = Release(b, store::ImageKind::kApp, kAppB, "1.0.0");
  const std::string a_id = Deploy(a, {{"device_group_id", a.group_id}, {"targets", {a_v1}}, {"percent", 10}})["id"];

  const std::string base = "/v1/tenants/" + b.id + "/deployments/" + a_id;
  EXPECT_EQ(Call("GET", base, b.token).status, 404);
  EXPECT_EQ(Call("POST", base + "/pause", b.token, Json::object()).status, 404);
  EXPECT_EQ(Call("POST", base + "/rollback", b.token, Json::object()).status, 404);
  EXPECT_EQ(Call("POST", base + "/percent", b.token, {{"percent", 90}}).status, 404);
  EXPECT_EQ(Call("GET", "/v1/tenants/" + a.id + "/deployments/" + a_id, b.token).status, 404);
  EXPECT_EQ(Body(Call("GET", "/v1/tenants/" + b.id + "/deployments", b.token))["deployments"].size(), 0u);
  // B cannot deploy to A's group, nor A's targets.
  Deploy(b, {{"device_group_id", a.group_id}, {"targets", {b_v1}}, {"percent", 10}}, 404);
  Deploy(b, {{"device_group_id", b.group_id}, {"targets", {a_v1}}, {"percent", 10}}, 400);
  EXPECT_EQ(Call("PATCH", "/v1/tenants/" + b.id + "/device-groups/" + a.group_id, b.token, {{"os_feed", "x"}}).status,
            404);

  // A device of B reporting on A's deployment: dropped, acknowledged.
  auto device = Enroll(b, b.group_id, "d1");
  protocol::CheckInUpdate update;
  update.reports.push_back({a_id, a_v1, "committed", "", "2026-01-01T00:00:00Z"});
  EXPECT_EQ(CheckIn(device, update).update->acknowledged, 1);
  auto shown = Body(Call("GET", "/v1/tenants/" + a.id + "/deployments/" + a_id, a.token));
  EXPECT_EQ(shown["progress"]["committed"], 0);
  // Readers see, contributors change.
  EXPECT_EQ(Call("POST", "/v1/tenants/" + a.id + "/deployments/" + a_id + "/pause", "", Json::object()).status, 401);
}

TEST_F(DeploymentsTest, NoRepositoriesNoUpdateMemberAndNoDeployments) {
  auto tenant = CreateTenant("Acme");
  auto device = Enroll(tenant, tenant.group_id, "d1");
  EXPECT_FALSE(CheckIn(device).update.has_value());
  Json refused =
      Deploy(tenant, {{"device_group_id", tenant.group_id}, {"targets", {"apps/x/1/a.img"}}, {"percent", 1}}, 409);
  EXPECT_EQ(refused["type"], "urn:citadel:problem:no-image-targets");
}

}  // namespace
}  // namespace citadel::server
