// UpdateClientFixture: the update client's test bench, shared by its logic
// tests (update_client_test.cpp) and the device-level attack tests
// (attack_test.cpp). A director and an image repository built with tests/tuf's
// TestRepository are served from one in-memory fetcher (the same URLs the
// service lays out), with a fake app installer, the real software RoT
// (floors), and on demand the real file boot control and file OS slots.
// Passes run on the test thread (RunPass).
//
//   Publish(release)   signs the image in the image repository and serves it
//   Assign({...})      the director's signed assignment for this device
//   NewClient()        a client over the same state (a restart)
//   Pass(update_now)   a check-in with the current hints, then RunPass()
//
// Threading: one test thread (the client's own thread only when a test
// calls Start()).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boot/boot_control.hpp"
#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "rot/software/software_rot.hpp"
#include "support/temp_dir.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/test_repository.hpp"
#include "update/fake_app_installer.hpp"
#include "update/update_client.hpp"

namespace citadel::update::testing {

inline constexpr std::string_view kService = "http://127.0.0.1";
inline constexpr std::string_view kImagePath = "/v1/repo/t1/image";
inline constexpr std::string_view kDirectorPath = "/v1/repo/t1/director/g1";
inline constexpr std::string_view kApp = "0f8fad5b-d9cb-469f-a165-70867728950e";
inline constexpr std::string_view kOs = "citadel-os";
inline constexpr std::string_view kDevice = "device-1";

// The client owns (and destroys) the fetchers it makes; the test keeps the
// MemoryFetcher it inspects, so the client gets one forwarding to it.
class ForwardingFetcher final : public tuf::Fetcher {
 public:
  explicit ForwardingFetcher(tuf::Fetcher& inner) : inner_(inner) {}
  Expected<tuf::FetchResult> Fetch(const tuf::FetchRequest& request, const tuf::FetchSink& sink) override {
    return inner_.Fetch(request, sink);
  }

 private:
  tuf::Fetcher& inner_;
};

// Deterministic image bytes, distinct per label.
inline std::string Image(std::string_view label, std::size_t size = 20000) {
  std::string image;
  image.reserve(size);
  for (std::size_t i = 0; image.size() < size; ++i) image += std::string(label) + ":" + std::to_string(i) + ";";
  image.resize(size);
  return image;
}

struct Release {
  std::string kind = "app";
  std::string component = std::string(kApp);
  std::string version = "2.0.0";
  std::int64_t security_version = 2;
  std::string image;
  std::string name() const {
    return (kind == "app" ? "apps/" : "os/retail/") + component + "/" + version + "/" +
           (kind == "app" ? "app.img" : "os.img");
  }
  Json Identity() const {
    return Json{
        {"kind", kind}, {"component_id", component}, {"version", version}, {"security_version", security_version}};
  }
};

struct Assigned {
  Release release;
  std::string role = "current";
  std::string deployment_id = "dep-1";
  std::int64_t percent = 100;
  bool paused = false;
};

class UpdateClientFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    tuf::testing::RepositoryOptions image_options;
    image_options.metadata_url = std::string(kService) + std::string(kImagePath);
    image_options.targets_url = image_options.metadata_url + "/targets";
    image_ = tuf::testing::TestRepository::Create(fetcher_, image_options).value();
    tuf::testing::RepositoryOptions director_options;
    director_options.metadata_url = std::string(kService) + std::string(kDirectorPath);
    director_options.targets_url = director_options.metadata_url + "/targets";
    director_ = tuf::testing::TestRepository::Create(fetcher_, director_options).value();
    auto rot = rot::SoftwareRootOfTrust::Open(temp_.path() / "rot");
    ASSERT_TRUE(rot) << rot.error().message();
    rot_ = std::move(*rot);
    apps_ = std::make_unique<FakeAppInstaller>(temp_.path() / "apps");
  }

  std::filesystem::path state_dir() const { return temp_.path() / "state"; }

  // Signs and serves `release` in the image repository (and under its
  // consistent-snapshot target URL).
  void Publish(const Release& release) {
    image_->AddTarget("targets", release.name(), release.image, Json{{"citadel", release.Identity()}});
    ASSERT_TRUE(image_->Bump("targets"));
    ASSERT_TRUE(image_->UpdateSnapshot());
    fetcher_.Put(TargetUrl(release), release.image);
  }

  // The repository's consistent-snapshot name: targets/<dir>/<sha256>.<basename>.
  std::string TargetUrl(const Release& release) const {
    const std::string name = release.name();
    const auto slash = name.rfind('/');
    return std::string(kService) + std::string(kImagePath) + "/targets/" + name.substr(0, slash + 1) +
           crypto::Sha256Hex(release.image) + "." + name.substr(slash + 1);
  }

  // Replaces the director's assignment (targets and signed custom).
  void Assign(const std::vector<Assigned>& assigned, Json window = nullptr) {
    auto& targets = director_->targets["targets"];
    targets.targets.clear();
    for (const auto& entry : assigned) {
      Json citadel = entry.release.Identity();
      citadel["deployment_id"] = entry.deployment_id;
      citadel["percent"] = entry.percent;
      citadel["paused"] = entry.paused;
      citadel["role"] = entry.role;
      targets.targets[entry.release.name()] =
          tuf::TargetFile::FromData(entry.release.name(), entry.release.image, Json{{"citadel", citadel}});
    }
    ASSERT_TRUE(director_->Bump("targets"));
    // Targets' typed body has no signed custom: re-sign the published bytes
    // with it added, the way the service does.
    auto metadata = tuf::MakeMetadata(targets).value();
    Json signed_json = metadata.signed_json;
    signed_json["custom"] = Json{{"citadel", {{"device_group_id", "g1"}, {"maintenance_window", window}}}};
    ASSERT_TRUE(metadata.SetSigned(signed_json));
    for (const auto& signer : director_->signers["targets"]) ASSERT_TRUE(metadata.Sign(*signer));
    const std::string bytes = metadata.Serialize().value();
    director_->ServeMetadata("targets", targets.version, bytes);
    director_->ServeMetadata("targets", std::nullopt, bytes);
    ASSERT_TRUE(director_->UpdateSnapshot());
  }

  protocol::CheckInUpdateReply Hints(bool update_now = false) const {
    protocol::CheckInUpdateReply hints;
    hints.image_repository = std::string(kImagePath);
    hints.director = std::string(kDirectorPath);
    hints.director_timestamp_version = director_->timestamp.version;
    hints.update_now = update_now;
    return hints;
  }

  UpdateClientOptions Options() {
    UpdateClientOptions options;
    options.state_dir = state_dir();
    options.device_id = std::string(kDevice);
    options.service_url = std::string(kService);
    options.os_component_id = std::string(kOs);
    options.trial_poll_interval = std::chrono::milliseconds(1);
    options.trial_timeout = std::chrono::seconds(600);
    options.now_unix_seconds = [this] { return now_; };
    options.in_rollout = [this](std::string_view, std::string_view, std::int64_t percent) {
      return in_rollout_ && percent > 0;
    };
    options.request_reboot = [this] { ++reboots_; };
    return options;
  }

  void NewClient(UpdateClientOptions options) {
    client_.reset();
    UpdateDependencies dependencies;
    dependencies.rot = rot_.get();
    dependencies.apps = apps_.get();
    dependencies.boot = boot_.get();
    dependencies.os_slots = slots_.get();
    dependencies.fetchers = [this](const std::string&) -> Expected<std::unique_ptr<tuf::Fetcher>> {
      return std::unique_ptr<tuf::Fetcher>(new ForwardingFetcher(fetcher_));
    };
    if (fetchers_) dependencies.fetchers = fetchers_;
    auto client = UpdateClient::Create(std::move(options), std::move(dependencies));
    ASSERT_TRUE(client) << client.error().message();
    client_ = std::move(*client);
    ASSERT_TRUE(client_->Recover());
  }
  void NewClient() { NewClient(Options()); }

  // A check-in whose reply carries `hints` and acknowledges nothing.
  void CheckIn(const std::optional<protocol::CheckInUpdateReply>& hints) {
    client_->OnCheckIn(client_->PrepareCheckIn(), hints, "chain");
  }

  Expected<PassOutcome> Pass(bool update_now = false) {
    CheckIn(Hints(update_now));
    return client_->RunPass();
  }

  // The device's OS: file boot control and slots, slot A holding `factory`.
  void UseOs(const std::string& factory) {
    auto boot = boot::Open("file:" + (temp_.path() / "boot").string());
    ASSERT_TRUE(boot) << boot.error().message();
    boot_ = std::move(*boot);
    auto slots = FileOsSlots::Open(temp_.path() / "os");
    ASSERT_TRUE(slots) << slots.error().message();
    slots_ = std::move(*slots);
    ASSERT_TRUE(WriteFileAtomic(slots_->ImagePath(boot::Slot::kA), factory));
  }

  // A power-on: the file backend plays the bootloader, then a new client.
  boot::Slot Reboot(const std::string& booted_image_sha256 = {}) {
    client_.reset();
    auto slot = BootAtStart(*boot_);
    EXPECT_TRUE(slot) << slot.error().message();
    auto options = Options();
    options.booted_os_sha256 = booted_image_sha256;
    NewClient(std::move(options));
    return slot.value_or(boot::Slot::kA);
  }

  std::vector<std::string> ReportStates() const {
    std::vector<std::string> states;
    for (const auto& report : client_->State().reports) states.push_back(report.state);
    return states;
  }
  std::string LastReason() const {
    auto state = client_->State();
    return state.reports.empty() ? std::string() : state.reports.back().reason;
  }
  std::string InstalledAppSha() const {
    for (const auto& app : apps_->InstalledApps()) {
      if (app.component_id == kApp) return app.image_sha256;
    }
    return {};
  }

  citadel::testing::TempDir temp_{"update-client"};
  tuf::testing::MemoryFetcher fetcher_;
  std::unique_ptr<tuf::testing::TestRepository> image_;
  std::unique_ptr<tuf::testing::TestRepository> director_;
  std::unique_ptr<rot::RootOfTrust> rot_;
  std::unique_ptr<FakeAppInstaller> apps_;
  std::unique_ptr<boot::BootControl> boot_;
  std::unique_ptr<FileOsSlots> slots_;
  std::unique_ptr<UpdateClient> client_;
  std::int64_t now_ = tuf::testing::kRepositoryNow;  // 2030-01-01T00:00:00Z
  bool in_rollout_ = true;
  int reboots_ = 0;
  FetcherFactory fetchers_;  // set: instead of the in-memory fetcher
};

inline Release AppV1() { return Release{.version = "1.0.0", .security_version = 1, .image = Image("app-v1")}; }
inline Release AppV2() { return Release{.version = "2.0.0", .security_version = 2, .image = Image("app-v2")}; }
inline Release OsV2() {
  return Release{.kind = "os",
                 .component = std::string(kOs),
                 .version = "2.0.0",
                 .security_version = 5,
                 .image = Image("os-v2", 64000)};
}

}  // namespace citadel::update::testing
