// UpdateClient logic tests: a director and an image repository built with
// tests/tuf's TestRepository and served from one in-memory fetcher, a fake
// app installer, the real software RoT (floors), the real file boot control
// and file OS slots (the bench: update_client_fixture.hpp). Passes run on the
// test thread (RunPass).
#include "update/update_client.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "boot/boot_control.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "delta/delta.hpp"
#include "rot/software/software_rot.hpp"
#include "support/file_server.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/test_repository.hpp"
#include "update/fake_app_installer.hpp"
#include "update/update_client_fixture.hpp"

namespace citadel::update {
namespace {

namespace fs = std::filesystem;
using testing::AppV1;
using testing::AppV2;
using testing::Image;
using testing::kApp;
using testing::kImagePath;
using testing::kOs;
using testing::kService;
using testing::OsV2;
using testing::Release;
using tuf::testing::MemoryFetcher;
using tuf::testing::TestRepository;

class UpdateClientTest : public testing::UpdateClientFixture {};

TEST_F(UpdateClientTest, AppUpdateCommitsRaisesTheFloorAndReports) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV1());
  Publish(AppV2());
  Assign({{.release = AppV2()}, {.release = AppV1(), .role = "baseline", .deployment_id = "dep-0"}});
  NewClient();

  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDone);
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
  EXPECT_EQ(apps_->commit_calls, 1);
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kApp)).value(), 2u);
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "committed"}));
  EXPECT_TRUE(client_->State().work.empty());
  EXPECT_EQ(client_->State().reports.front().deployment_id, "dep-1");
  EXPECT_EQ(client_->State().reports.front().target_name, AppV2().name());

  // The installed section reports the new image.
  auto section = client_->PrepareCheckIn();
  ASSERT_EQ(section.update.installed.size(), 1u);
  EXPECT_EQ(section.update.installed[0].sha256, crypto::Sha256Hex(AppV2().image));
  EXPECT_EQ(section.update.reports.size(), 3u);
  protocol::CheckIn check_in{.os_version = "1", .runtime_version = "1", .update = section.update};
  auto parsed = protocol::ParseCheckIn(protocol::CheckInToJson(check_in).dump());
  ASSERT_TRUE(parsed) << parsed.error().message();

  // Nothing moved: an idle pass fetches nothing.
  fetcher_.ClearLog();
  outcome = Pass();
  ASSERT_TRUE(outcome);
  EXPECT_EQ(*outcome, PassOutcome::kIdle);
  EXPECT_TRUE(fetcher_.requests().empty());
}

TEST_F(UpdateClientTest, ReportsPersistUntilAcknowledged) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  NewClient();
  ASSERT_TRUE(Pass());
  ASSERT_EQ(client_->State().reports.size(), 3u);

  // A restart keeps the queue.
  NewClient();
  auto section = client_->PrepareCheckIn();
  ASSERT_EQ(section.update.reports.size(), 3u);
  EXPECT_EQ(section.update.reports[2].state, "committed");

  // The reply acknowledges the first two; the third is sent again.
  auto reply = Hints();
  reply.acknowledged = 2;
  client_->OnCheckIn(section, reply, "chain");
  ASSERT_EQ(client_->State().reports.size(), 1u);
  EXPECT_EQ(client_->State().reports[0].state, "committed");
  NewClient();
  EXPECT_EQ(client_->PrepareCheckIn().update.reports.size(), 1u);

  // A report queued after the check-in body was built is not dropped by
  // that check-in's acknowledgement.
  section = client_->PrepareCheckIn();
  reply.acknowledged = 5;
  client_->OnCheckIn(section, reply, "chain");
  EXPECT_TRUE(client_->State().reports.empty());
}

TEST_F(UpdateClientTest, ThreadRunsAfterCheckInsAndSettlesOnceAcknowledged) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  std::atomic<int> settled{0};
  auto options = Options();
  options.on_settled = [&settled] { ++settled; };
  NewClient(std::move(options));
  client_->Start();
  auto first = client_->PrepareCheckIn();
  client_->OnCheckIn(first, Hints(), "chain");
  // Bounded wait for the pass on the client's thread.
  for (int i = 0; i < 1000 && client_->passes_completed() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "committed"}));
  EXPECT_EQ(settled, 0);  // reports are not acknowledged yet

  auto second = client_->PrepareCheckIn();
  auto reply = Hints();
  reply.acknowledged = static_cast<std::int64_t>(second.update.reports.size());
  client_->OnCheckIn(second, reply, "chain");
  EXPECT_EQ(settled, 1);
  EXPECT_TRUE(client_->StopAndWait(std::chrono::seconds(10)));
}

TEST_F(UpdateClientTest, CheckInSectionFitsTheProtocol) {
  apps_->Install(std::string(kApp), "", 0, AppV1().image);               // a manifest without Version
  apps_->Install("x" + std::string(200, 'y'), "1.0", 0, AppV1().image);  // no component id is this long
  NewClient();
  auto section = client_->PrepareCheckIn();
  ASSERT_EQ(section.update.installed.size(), 1u);
  EXPECT_EQ(section.update.installed[0].component_id, kApp);
  EXPECT_EQ(section.update.installed[0].version, "unknown");
  protocol::CheckIn check_in{.os_version = "1", .runtime_version = "1", .update = section.update};
  EXPECT_TRUE(protocol::ParseCheckIn(protocol::CheckInToJson(check_in).dump()));
}

TEST_F(UpdateClientTest, DeviceOutsideTheRolloutGetsTheBaseline) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV1());
  Publish(AppV2());
  Assign({{.release = AppV2(), .percent = 50}, {.release = AppV1(), .role = "baseline", .deployment_id = "dep-0"}});
  in_rollout_ = false;
  NewClient();
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(apps_->begin_calls, 0);
  EXPECT_TRUE(client_->State().reports.empty());
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), 0u);
}

TEST_F(UpdateClientTest, BaselineIsInstalledWhenTheDeviceRunsSomethingElse) {
  const Release v0{.version = "0.9.0", .security_version = 0, .image = Image("app-v0")};
  apps_->Install(std::string(kApp), "0.9.0", 0, v0.image);
  Publish(AppV1());
  Publish(AppV2());
  Assign({{.release = AppV2(), .percent = 0}, {.release = AppV1(), .role = "baseline", .deployment_id = "dep-0"}});
  apps_->next_version = "1.0.0";
  apps_->next_security_version = 1;
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(client_->State().reports.back().deployment_id, "dep-0");
}

TEST_F(UpdateClientTest, PausedDeploymentReachesOnlyDevicesThatRunIt) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV1());
  Publish(AppV2());
  Assign({{.release = AppV2(), .paused = true}, {.release = AppV1(), .role = "baseline", .deployment_id = "dep-0"}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(apps_->begin_calls, 0);

  // A device that already runs the paused target keeps it (no baseline
  // "downgrade").
  apps_->Install(std::string(kApp), "2.0.0", 2, AppV2().image);
  ASSERT_TRUE(Pass(/*update_now=*/true));
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
  EXPECT_EQ(apps_->begin_calls, 0);
}

TEST_F(UpdateClientTest, MaintenanceWindowDefersUnlessUpdateNow) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  // now_ is 00:00 UTC; the window opens at 02:00 for an hour.
  Assign({{.release = AppV2()}}, Json{{"start", "02:00"}, {"duration_minutes", 60}});
  NewClient();
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDeferred);
  EXPECT_EQ(apps_->begin_calls, 0);
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), 0u);

  // Inside the window the same assignment is carried out.
  now_ += 2 * 3600 + 60;
  outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDone);
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
}

TEST_F(UpdateClientTest, UpdateNowIgnoresTheWindow) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}}, Json{{"start", "02:00"}, {"duration_minutes", 60}});
  NewClient();
  auto outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDone);
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
}

TEST_F(UpdateClientTest, MixAndMatchIsRefusedAndReported) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  // The director assigns other bytes under the name the image repository
  // signed (a compromised online director key).
  Release forged = AppV2();
  forged.image = Image("forged");
  fetcher_.Put(TargetUrl(forged), forged.image);
  Assign({{.release = forged}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(apps_->begin_calls, 0);
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_NE(LastReason().find("hashes differ"), std::string::npos) << LastReason();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);

  // Refused once: the same assignment is not retried (or re-reported).
  ASSERT_TRUE(Pass(/*update_now=*/false));
  EXPECT_EQ(client_->State().reports.size(), 1u);
}

TEST_F(UpdateClientTest, MixAndMatchOnTheSecurityVersionIsRefused) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Release claimed = AppV2();
  claimed.security_version = 7;  // same bytes, another identity
  Assign({{.release = claimed}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_NE(LastReason().find("security version"), std::string::npos) << LastReason();
}

TEST_F(UpdateClientTest, TargetTheImageRepositoryDoesNotSignIsRefused) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Assign({{.release = AppV2()}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_NE(LastReason().find("does not sign"), std::string::npos) << LastReason();
}

TEST_F(UpdateClientTest, TargetBelowTheFloorIsRefused) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rot_->IncrementCounter(FloorCounterName(kApp)));
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(apps_->begin_calls, 0);
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_EQ(LastReason(), "security version 2 is below this device's floor 3");
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kApp)).value(), 3u);
}

TEST_F(UpdateClientTest, AlreadyInstalledTargetIsNotFetched) {
  apps_->Install(std::string(kApp), "2.0.0", 2, AppV2().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  NewClient();
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDone);
  EXPECT_EQ(apps_->begin_calls, 0);
  EXPECT_TRUE(client_->State().reports.empty());
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), 0u);
}

TEST_F(UpdateClientTest, DeltaFromTheInstalledImageIsUsed) {
  // A large image with a small change: the delta is a fraction of it.
  Release v1 = AppV1();
  v1.image = Image("big", 400000);
  Release v2 = AppV2();
  v2.image = v1.image;
  v2.image.replace(1000, 11, "changed....");
  apps_->Install(std::string(kApp), "1.0.0", 1, v1.image);
  Publish(v2);
  const fs::path work = temp_.path() / "delta";
  fs::create_directories(work);
  ASSERT_TRUE(WriteFileAtomic(work / "v1", v1.image));
  ASSERT_TRUE(WriteFileAtomic(work / "v2", v2.image));
  auto made = delta::CreateDelta(work / "v1", work / "v2", work / "delta", {.level = 3});
  ASSERT_TRUE(made) << made.error().message();
  const std::string delta_url = std::string(kService) + std::string(kImagePath) + "/deltas/" +
                                crypto::Sha256Hex(v1.image) + "/" + crypto::Sha256Hex(v2.image);
  fetcher_.Put(delta_url, ReadFile(work / "delta").value());
  Assign({{.release = v2}});
  NewClient();

  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(v2.image));
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(v2)), 0u);
  EXPECT_GT(fetcher_.bytes_sent(delta_url), 0u);
  EXPECT_LT(fetcher_.bytes_sent(delta_url), v2.image.size() / 20);
}

TEST_F(UpdateClientTest, BrokenDeltaFallsBackToTheFullImage) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  const std::string delta_url = std::string(kService) + std::string(kImagePath) + "/deltas/" +
                                crypto::Sha256Hex(AppV1().image) + "/" + crypto::Sha256Hex(AppV2().image);
  fetcher_.Put(delta_url, "CITDELTA but not really a delta");
  Assign({{.release = AppV2()}});
  NewClient();
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
  EXPECT_GT(fetcher_.bytes_sent(delta_url), 0u);
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), AppV2().image.size());
  EXPECT_FALSE(fs::exists(state_dir() / "update" / "downloads" / (crypto::Sha256Hex(AppV2().image) + ".delta")));
}

TEST_F(UpdateClientTest, CutDownloadResumesOnTheNextPass) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  fetcher_.SetFault(TargetUrl(AppV2()), {.cut_after = 5000});
  NewClient();
  auto outcome = Pass();
  ASSERT_FALSE(outcome);
  ASSERT_EQ(client_->State().work.size(), 1u);
  EXPECT_EQ(client_->State().work.begin()->second.step, WorkStep::kDownloading);

  fetcher_.ClearFaults();
  fetcher_.ClearLog();
  NewClient();  // across a restart, too
  outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), AppV2().image.size() - 5000);
  // "downloading" was reported once, not once per attempt.
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "committed"}));
}

TEST_F(UpdateClientTest, CrashLoopingAppIsRevertedAndReported) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  apps_->health_script = {TrialHealth::kRunning, TrialHealth::kRunning, TrialHealth::kCrashLoop};
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(apps_->revert_calls, 1);
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "failed"}));
  EXPECT_EQ(LastReason(), "crash-loop");
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kApp)).value(), 0u);  // no commit, no floor

  // Not retried while the director assigns the same target; update_now does.
  ASSERT_TRUE(Pass());
  EXPECT_EQ(apps_->begin_calls, 1);
  apps_->health_script = {TrialHealth::kHealthy};
  ASSERT_TRUE(Pass(/*update_now=*/true));
  EXPECT_EQ(apps_->begin_calls, 2);
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
}

TEST_F(UpdateClientTest, TrialThatNeverGetsHealthyTimesOut) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  apps_->health_script = {TrialHealth::kRunning};
  auto options = Options();
  options.trial_timeout = std::chrono::seconds(0);
  NewClient(std::move(options));
  ASSERT_TRUE(Pass());
  EXPECT_EQ(apps_->revert_calls, 1);
  EXPECT_NE(LastReason().find("not healthy within"), std::string::npos) << LastReason();
}

TEST_F(UpdateClientTest, InstallerRefusalIsReported) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  apps_->refuse_reason = "image signature: not signed by a publisher key of this tenant";
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "failed"}));
  EXPECT_EQ(LastReason(), *apps_->refuse_reason);
}

TEST_F(UpdateClientTest, TrialInterruptedByARestartIsResumed) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  apps_->health_script = {TrialHealth::kRunning};
  auto options = Options();
  options.trial_timeout = std::chrono::seconds(3600);
  NewClient(options);
  // Stop the pass while it polls the trial, as a shutdown would.
  std::thread stopper([&] {
    for (int i = 0; i < 2000 && apps_->begin_calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    client_->Stop();
  });
  EXPECT_FALSE(Pass());
  stopper.join();
  ASSERT_EQ(client_->State().work.size(), 1u);
  EXPECT_EQ(client_->State().work.begin()->second.step, WorkStep::kTrial);

  apps_->health_script = {TrialHealth::kHealthy};
  NewClient(options);
  CheckIn(std::nullopt);  // no repository needed to finish a trial
  auto outcome = client_->RunPass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(apps_->begin_calls, 1);
  EXPECT_EQ(apps_->commit_calls, 1);
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "committed"}));
}

TEST_F(UpdateClientTest, FirstRootIsFetchedOnceOrTakenFromTheFactory) {
  Publish(AppV2());
  Assign({});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_TRUE(fs::exists(state_dir() / "update" / "image" / "root.json"));
  EXPECT_TRUE(fs::exists(state_dir() / "update" / "director" / "root.json"));
  const std::string first_root = std::string(kService) + std::string(kImagePath) + "/1.root.json";
  auto urls = fetcher_.requested_urls();
  EXPECT_EQ(std::count(urls.begin(), urls.end(), first_root), 1);

  // A factory-provisioned root is used instead of the service's.
  fs::remove_all(state_dir());
  fetcher_.Remove(first_root);
  fetcher_.ClearLog();
  ASSERT_TRUE(WriteFileAtomic(temp_.path() / "image-root.json", image_->PublishedRoot(1)));
  auto options = Options();
  options.image_root = temp_.path() / "image-root.json";
  NewClient(options);
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  urls = fetcher_.requested_urls();
  EXPECT_EQ(std::count(urls.begin(), urls.end(), first_root), 0);
}

TEST_F(UpdateClientTest, ForeignFactoryRootRefusesTheRepository) {
  MemoryFetcher other_fetcher;
  auto other = TestRepository::Create(other_fetcher).value();
  ASSERT_TRUE(WriteFileAtomic(temp_.path() / "image-root.json", other->PublishedRoot(1)));
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  auto options = Options();
  options.image_root = temp_.path() / "image-root.json";
  NewClient(options);
  EXPECT_FALSE(Pass());
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV1().image));
}

// The production fetcher (tuf::HttpFetcher over http::Downloader, mutual
// TLS, pinned CA) against a static HTTPS server holding the repositories as
// the service lays them out.
TEST_F(UpdateClientTest, UpdatesOverMutualTlsFromStaticFiles) {
  apps_->Install(std::string(kApp), "1.0.0", 1, AppV1().image);
  Publish(AppV2());
  Assign({{.release = AppV2()}});
  // Every file the repositories published, at its path on the service.
  const fs::path root = temp_.path() / "www";
  auto put = [&](const std::string& url, const std::string& bytes) {
    ASSERT_EQ(url.rfind(kService, 0), 0u) << url;
    const fs::path path = root / url.substr(kService.size() + 1);
    fs::create_directories(path.parent_path());
    ASSERT_TRUE(WriteFileAtomic(path, bytes));
  };
  for (TestRepository* repo : {image_.get(), director_.get()}) {
    for (const char* role : {"root", "timestamp", "snapshot", "targets"}) {
      for (std::int64_t version = 1; version <= repo->LatestVersion(role); ++version) {
        put(repo->MetadataUrl(role, version), repo->Published(role, version));
      }
      if (std::string_view(role) != "root") put(repo->MetadataUrl(role), repo->Published(role));
    }
  }
  put(TargetUrl(AppV2()), AppV2().image);

  citadel::testing::LoopbackServerPki server_pki;
  const auto device_ca_key = citadel::testing::GenerateTestKey();
  const auto device_ca = citadel::testing::IssueTestCa("device CA", device_ca_key);
  const auto device_key = citadel::testing::GenerateTestKey();
  const auto device_certificate = citadel::testing::IssueTestLeaf("device", device_key, device_ca, device_ca_key,
                                                                  crypto::ExtendedKeyUsage::kClientAuth, {});
  auto server = citadel::testing::FileServer::Start(
      {.root = root, .tls = server_pki.Identity(), .client_ca_pem = device_ca.Pem()});
  ASSERT_TRUE(server) << server.error().message();

  fetchers_ = MutualTlsFetcherFactory(server_pki.ca.Pem(), device_key);
  auto options = Options();
  options.service_url = (*server)->BaseUrl();
  NewClient(std::move(options));
  client_->OnCheckIn(client_->PrepareCheckIn(), Hints(), device_certificate.Pem() + device_ca.Pem());
  auto outcome = client_->RunPass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(InstalledAppSha(), crypto::Sha256Hex(AppV2().image));
  const std::string target = TargetUrl(AppV2()).substr(kService.size());
  EXPECT_EQ((*server)->BodyBytesSent(target), AppV2().image.size());

  // Without the device certificate the service is not reachable.
  client_.reset();
  fs::remove_all(state_dir());
  auto anonymous = Options();
  anonymous.service_url = (*server)->BaseUrl();
  NewClient(std::move(anonymous));
  client_->OnCheckIn(client_->PrepareCheckIn(), Hints(), "");
  EXPECT_FALSE(client_->RunPass());
}

// ---------------------------------------------------------------------------
// OS

TEST_F(UpdateClientTest, OsUpdateCommitsAfterTheFirstCheckInOnTheNewSlot) {
  const std::string factory = Image("os-v1", 64000);
  UseOs(factory);
  Reboot(crypto::Sha256Hex(factory));
  Publish(OsV2());
  Assign({{.release = OsV2()}});

  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kRebootRequested);
  EXPECT_EQ(reboots_, 1);
  EXPECT_TRUE(client_->reboot_requested());
  EXPECT_EQ(ReadFile(slots_->ImagePath(boot::Slot::kB)).value(), OsV2().image);
  auto boot = boot_->ReadState().value();
  ASSERT_TRUE(boot.trial);
  EXPECT_EQ(boot.trial->slot, boot::Slot::kB);
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "pending-reboot"}));
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kOs)).value(), 0u);

  // The reboot: slot B boots on trial; nothing is committed before a
  // check-in succeeded on it.
  EXPECT_EQ(Reboot(crypto::Sha256Hex(OsV2().image)), boot::Slot::kB);
  EXPECT_EQ(client_->State().work.begin()->second.step, WorkStep::kOsTrial);
  EXPECT_TRUE(boot_->ReadState().value().trial);
  auto section = client_->PrepareCheckIn();
  ASSERT_EQ(section.update.installed.size(), 1u);  // no apps installed
  EXPECT_EQ(section.update.installed[0].kind, "os");
  EXPECT_EQ(section.update.installed[0].version, "2.0.0");
  EXPECT_EQ(section.update.installed[0].sha256, crypto::Sha256Hex(OsV2().image));
  outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  boot = boot_->ReadState().value();
  EXPECT_FALSE(boot.trial);
  EXPECT_EQ(boot.primary, boot::Slot::kB);
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kOs)).value(), 5u);
  EXPECT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "pending-reboot", "committed"}));
  EXPECT_TRUE(client_->State().work.empty());
  // Now it runs v2: the same assignment is "already installed".
  outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kDone);
}

TEST_F(UpdateClientTest, OsTrialThatNeverChecksInFallsBackAndIsReported) {
  const std::string factory = Image("os-v1", 64000);
  UseOs(factory);
  Reboot(crypto::Sha256Hex(factory));
  Publish(OsV2());
  Assign({{.release = OsV2()}});
  ASSERT_TRUE(Pass());

  // Three boots of B without a successful check-in, then the bootloader
  // returns to A.
  boot::Slot slot = boot::Slot::kB;
  for (int boots = 0; boots < 4 && slot == boot::Slot::kB; ++boots) slot = Reboot();
  EXPECT_EQ(slot, boot::Slot::kA);
  auto boot = boot_->ReadState().value();
  EXPECT_FALSE(boot.last_failure);  // acknowledged once reported
  EXPECT_EQ(boot.primary, boot::Slot::kA);
  auto states = ReportStates();
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back(), "failed");
  EXPECT_NE(LastReason().find("did not become healthy"), std::string::npos) << LastReason();
  EXPECT_EQ(client_->State().refused.at(std::string(kOs)), crypto::Sha256Hex(OsV2().image));
  EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kOs)).value(), 0u);
}

TEST_F(UpdateClientTest, OsTargetForAnotherOsIsRefused) {
  UseOs(Image("os-v1"));
  Reboot();
  Release other = OsV2();
  other.component = "other-os";
  Publish(other);
  Assign({{.release = other}});
  ASSERT_TRUE(Pass());
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_NE(LastReason().find("runs OS citadel-os"), std::string::npos) << LastReason();
}

TEST_F(UpdateClientTest, OsTargetWithoutSlotsIsRefused) {
  Publish(OsV2());
  Assign({{.release = OsV2()}});
  NewClient();
  ASSERT_TRUE(Pass());
  EXPECT_EQ(ReportStates(), std::vector<std::string>{"failed"});
  EXPECT_NE(LastReason().find("no OS slots"), std::string::npos) << LastReason();
}

}  // namespace
}  // namespace citadel::update
