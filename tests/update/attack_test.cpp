// Device-level attack tests (issue 4, acceptance 1): the TUF attacks of
// tests/tuf/updater_test.cpp, played against the whole update client — a
// director and an image repository (update_client_fixture.hpp), the app
// installer, the RoT floors, the A/B OS slots and the boot control.
//
// Every test starts from a device that installed and committed app v1
// through the client itself (factory OS in slot A). The service then
// releases v2, an attacker interferes, and a pass runs. Each attack must be
// refused — the pass fails (metadata and transfer attacks: the work stays
// open and is retried), or the target is refused and reported "failed"
// (assignment attacks) — and leave the device exactly as it was: installed
// app, its image file, floors, OS slots, boot state, trusted roots, nothing
// installed or armed. Where the attack can stop, the device then recovers:
// the honest repositories' v2 is installed by the next pass.
//
// Time: the client takes "now" from the fixture's now_ (UpdateClientOptions::
// now_unix_seconds); freeze tests move that, never the machine's clock.
// Slow retrieval runs over real HTTPS with mutual TLS against
// support/file_server on loopback.
#include <sys/inotify.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "boot/boot_control.hpp"
#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/unique_fd.hpp"
#include "crypto/crypto.hpp"
#include "delta/delta.hpp"
#include "http/fetch.hpp"
#include "support/file_server.hpp"
#include "support/test_pki.hpp"
#include "tuf/http_fetcher.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/test_repository.hpp"
#include "update/update_client.hpp"
#include "update/update_client_fixture.hpp"

namespace citadel::update {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::AppV1;
using testing::AppV2;
using testing::Image;
using testing::kApp;
using testing::kImagePath;
using testing::kOs;
using testing::kService;
using testing::OsV2;
using testing::Release;
using tuf::testing::kDay;
using tuf::testing::MemoryFetcher;
using tuf::testing::TestRepository;
using Signer = TestRepository::Signer;

std::string Sha(const Release& release) { return crypto::Sha256Hex(release.image); }

// SHA-256 of a file's bytes; "" when it does not exist.
std::string FileSha256(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  auto bytes = ReadFile(path, 64u << 20);
  return bytes ? crypto::Sha256Hex(*bytes) : "unreadable";
}

// Replaces every occurrence of `from` in `text`; how many.
int ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  int count = 0;
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
    ++count;
  }
  return count;
}

// Replaces role's keys in repo.root (not published) and its signers.
void SetRoleKeys(TestRepository& repo, std::string_view role, const std::vector<Signer>& keys, std::int64_t threshold) {
  auto& entry = repo.root.roles[std::string(role)];
  entry.keyids.clear();
  entry.threshold = threshold;
  for (const auto& key : keys) repo.root.AddKey(key->PublicKey(), key->KeyId(), role);
  repo.signers[std::string(role)] = keys;
}

// What an attack must not change.
struct DeviceState {
  std::string app_sha256;
  std::string app_version;
  std::int64_t app_security_version = 0;
  std::string app_image_file_sha256;  // the installed image file's bytes
  std::uint64_t app_floor = 0;
  std::uint64_t os_floor = 0;
  std::string slot_a_sha256;  // "" when the slot holds nothing
  std::string slot_b_sha256;
  boot::BootState boot;
  int reboots = 0;
  int begin_calls = 0;
  int commit_calls = 0;
  int revert_calls = 0;
  std::string image_root_sha256;  // the trusted root.json of each repository
  std::string director_root_sha256;
};

class AttackTest : public testing::UpdateClientFixture {
 protected:
  void SetUp() override {
    UpdateClientFixture::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    UseOs(factory_os_);
    Reboot(crypto::Sha256Hex(factory_os_));
    ASSERT_FALSE(HasFatalFailure());
    initial_files_ = fetcher_.files();

    // App v1, installed and committed through the client.
    Publish(AppV1());
    Assign({{.release = AppV1(), .deployment_id = "dep-1"}});
    apps_->next_version = "1.0.0";
    apps_->next_security_version = 1;
    auto outcome = Pass();
    ASSERT_TRUE(outcome) << outcome.error().message();
    ASSERT_EQ(InstalledAppSha(), Sha(AppV1()));
    ASSERT_EQ(ReportStates(), (std::vector<std::string>{"downloading", "installing", "committed"}));
    ASSERT_EQ(rot_->ReadCounter(FloorCounterName(kApp)).value(), 1u);
    apps_->next_version = "2.0.0";
    apps_->next_security_version = 2;
    trusted_files_ = fetcher_.files();
    Baseline();
  }

  // The service releases v2 and assigns it to the device.
  void ReleaseV2() {
    Publish(AppV2());
    Assign({{.release = AppV2(), .deployment_id = "dep-2"}});
  }

  std::vector<TestRepository*> Repositories() const { return {director_.get(), image_.get()}; }
  std::string Name(const TestRepository* repo) const {
    return repo == director_.get() ? "director" : "image repository";
  }
  // How a pass names the repository whose refresh failed.
  std::string Refreshing(const TestRepository* repo) const { return "refreshing the " + Name(repo) + ": "; }

  std::string DeltaUrl(const Release& from, const Release& to) const {
    return std::string(kService) + std::string(kImagePath) + "/deltas/" + Sha(from) + "/" + Sha(to);
  }
  fs::path DownloadsDir() const { return state_dir() / "update" / "downloads"; }
  std::uint64_t DownloadedBytes() const {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(DownloadsDir(), ec)) {
      if (entry.is_regular_file(ec)) total += entry.file_size(ec);
    }
    return total;
  }

  // The mirror serves exactly `files` (URL -> bytes) from now on.
  void ServeOnly(const std::map<std::string, std::string>& files) {
    std::vector<std::string> urls;
    for (const auto& [url, bytes] : fetcher_.files()) urls.push_back(url);
    for (const auto& url : urls) fetcher_.Remove(url);
    for (const auto& [url, bytes] : files) fetcher_.Put(url, bytes);
  }

  DeviceState Capture() const {
    DeviceState state;
    for (const auto& app : apps_->InstalledApps()) {
      if (app.component_id != kApp) continue;
      state.app_sha256 = app.image_sha256;
      state.app_version = app.version;
      state.app_security_version = app.security_version;
      state.app_image_file_sha256 = FileSha256(app.image_file);
    }
    state.app_floor = rot_->ReadCounter(FloorCounterName(kApp)).value_or(~0ULL);
    state.os_floor = rot_->ReadCounter(FloorCounterName(kOs)).value_or(~0ULL);
    state.slot_a_sha256 = FileSha256(slots_->ImagePath(boot::Slot::kA));
    state.slot_b_sha256 = FileSha256(slots_->ImagePath(boot::Slot::kB));
    state.boot = boot_->ReadState().value_or(boot::BootState{});
    state.reboots = reboots_;
    state.begin_calls = apps_->begin_calls;
    state.commit_calls = apps_->commit_calls;
    state.revert_calls = apps_->revert_calls;
    state.image_root_sha256 = FileSha256(state_dir() / "update" / "image" / "root.json");
    state.director_root_sha256 = FileSha256(state_dir() / "update" / "director" / "root.json");
    return state;
  }

  // What the device runs now is what ExpectUntouched compares with; the
  // reports so far are acknowledged, so the queue holds only new ones.
  void Baseline() {
    auto section = client_->PrepareCheckIn();
    auto reply = Hints();
    reply.acknowledged = static_cast<std::int64_t>(section.report_sequences.size());
    client_->OnCheckIn(section, reply, "chain");
    ASSERT_TRUE(client_->State().reports.empty());
    before_ = Capture();
  }

  void ExpectUntouched() const {
    const DeviceState now = Capture();
    EXPECT_EQ(now.app_sha256, before_.app_sha256) << "the installed app changed";
    EXPECT_EQ(now.app_version, before_.app_version);
    EXPECT_EQ(now.app_security_version, before_.app_security_version);
    EXPECT_EQ(now.app_image_file_sha256, before_.app_image_file_sha256) << "the installed image file changed";
    EXPECT_EQ(now.app_floor, before_.app_floor) << "the app floor moved";
    EXPECT_EQ(now.os_floor, before_.os_floor) << "the OS floor moved";
    EXPECT_EQ(now.slot_a_sha256, before_.slot_a_sha256) << "OS slot A changed";
    EXPECT_EQ(now.slot_b_sha256, before_.slot_b_sha256) << "OS slot B changed";
    EXPECT_TRUE(now.boot == before_.boot) << "the boot state changed";
    EXPECT_EQ(now.reboots, before_.reboots) << "a reboot was requested";
    EXPECT_FALSE(client_->reboot_requested());
    EXPECT_EQ(now.begin_calls, before_.begin_calls) << "an image reached the app installer";
    EXPECT_EQ(now.commit_calls, before_.commit_calls);
    EXPECT_EQ(now.revert_calls, before_.revert_calls);
    EXPECT_EQ(now.image_root_sha256, before_.image_root_sha256) << "the trusted image repository root changed";
    EXPECT_EQ(now.director_root_sha256, before_.director_root_sha256) << "the trusted director root changed";
    const auto state = client_->State();
    for (const auto& [component, item] : state.work) {
      EXPECT_EQ(item.step, WorkStep::kDownloading) << component << " went past downloading";
    }
    for (const auto& report : state.reports) {
      EXPECT_TRUE(report.state == kReportDownloading || report.state == kReportFailed)
          << "reported " << report.state << " for " << report.target_name;
    }
    // Nothing beyond the signed length of what is assigned sits on disk.
    EXPECT_LE(DownloadedBytes(), std::max(AppV2().image.size(), OsV2().image.size()));
  }

  // The pass failed with `code`, its message naming `needle` (and `where`).
  static void ExpectRefused(const Expected<PassOutcome>& outcome, ErrorCode code, std::string_view needle,
                            std::string_view where = {}) {
    if (outcome) {
      ADD_FAILURE() << "the pass accepted the attack (outcome " << static_cast<int>(*outcome) << ")";
      return;
    }
    EXPECT_EQ(outcome.error().code(), code) << outcome.error().message();
    EXPECT_NE(outcome.error().message().find(needle), std::string::npos) << outcome.error().message();
    EXPECT_NE(outcome.error().message().find(where), std::string::npos) << outcome.error().message();
  }

  // The refusal of a target the director assigned: reported "failed".
  void ExpectTargetRefused(const Expected<PassOutcome>& outcome, std::string_view reason) const {
    ASSERT_TRUE(outcome) << outcome.error().message();
    EXPECT_EQ(*outcome, PassOutcome::kDone);
    ASSERT_FALSE(ReportStates().empty());
    EXPECT_EQ(ReportStates().back(), kReportFailed);
    EXPECT_NE(LastReason().find(reason), std::string::npos) << LastReason();
  }

  // Once the attack stopped: v2 committed, its floor raised, the OS as it was.
  void ExpectRecovered(const Expected<PassOutcome>& outcome) const {
    ASSERT_TRUE(outcome) << outcome.error().message();
    EXPECT_EQ(*outcome, PassOutcome::kDone);
    EXPECT_EQ(InstalledAppSha(), Sha(AppV2()));
    EXPECT_EQ(rot_->ReadCounter(FloorCounterName(kApp)).value(), 2u);
    ASSERT_FALSE(ReportStates().empty());
    EXPECT_EQ(ReportStates().back(), kReportCommitted);
    EXPECT_TRUE(client_->State().work.empty());
    const DeviceState now = Capture();
    EXPECT_EQ(now.slot_a_sha256, before_.slot_a_sha256);
    EXPECT_TRUE(now.boot == before_.boot);
  }

  const std::string factory_os_ = Image("os-v1", 64000);
  std::map<std::string, std::string> initial_files_;  // served before v1 was released
  std::map<std::string, std::string> trusted_files_;  // served when v1 was installed
  DeviceState before_;
};

// ---------------------------------------------------------------------------
// Rollback

TEST_F(AttackTest, TimestampRollbackIsRefused) {
  ReleaseV2();
  for (TestRepository* repo : Repositories()) {
    SCOPED_TRACE(Name(repo));
    // A mirror replays timestamp v1: validly signed, older than the trusted one.
    const std::string url = repo->MetadataUrl("timestamp");
    fetcher_.SetFault(url, {.serve_instead = repo->Published("timestamp", 1)});
    ExpectRefused(Pass(), ErrorCode::kConflict, "timestamp version 1 is older than trusted", Refreshing(repo));
    ExpectUntouched();
    fetcher_.ClearFault(url);
  }
  ExpectRecovered(Pass());
}

TEST_F(AttackTest, SnapshotRollbackIsRefused) {
  ReleaseV2();
  for (TestRepository* repo : Repositories()) {
    SCOPED_TRACE(Name(repo));
    // The online timestamp key signs a timestamp pointing at snapshot v1.
    repo->timestamp.snapshot_meta.version = 1;
    ASSERT_TRUE(repo->Bump("timestamp"));
    ExpectRefused(Pass(), ErrorCode::kConflict, "timestamp lists snapshot version 1, older than trusted",
                  Refreshing(repo));
    ExpectUntouched();

    // Without keys: snapshot v1 served under the name of the newest one.
    ASSERT_TRUE(repo->UpdateSnapshot());
    const std::string url = repo->MetadataUrl("snapshot", repo->LatestVersion("snapshot"));
    fetcher_.SetFault(url, {.serve_instead = repo->Published("snapshot", 1)});
    ExpectRefused(Pass(), ErrorCode::kConflict, "snapshot", Refreshing(repo));
    ExpectUntouched();
    fetcher_.ClearFault(url);
  }
  ExpectRecovered(Pass());
}

TEST_F(AttackTest, TargetsRollbackIsRefused) {
  ReleaseV2();
  for (TestRepository* repo : Repositories()) {
    SCOPED_TRACE(Name(repo));
    // The online snapshot and timestamp keys list targets v1 again (the
    // director: an assignment without v1; the image repository: the
    // releases before v1).
    repo->snapshot.meta["targets.json"] = tuf::MetaFile{1, std::nullopt, {}};
    ASSERT_TRUE(repo->Bump("snapshot"));
    ASSERT_TRUE(repo->UpdateTimestamp());
    ExpectRefused(Pass(), ErrorCode::kConflict, "\"targets.json\" version 1, older than trusted", Refreshing(repo));
    ExpectUntouched();

    // Without keys: targets v1 served under the name of the newest one.
    ASSERT_TRUE(repo->UpdateSnapshot());
    const std::string url = repo->MetadataUrl("targets", repo->LatestVersion("targets"));
    fetcher_.SetFault(url, {.serve_instead = repo->Published("targets", 1)});
    ExpectRefused(Pass(), ErrorCode::kConflict, "\"targets\" version 1 is not the version", Refreshing(repo));
    ExpectUntouched();
    fetcher_.ClearFault(url);
  }
  ExpectRecovered(Pass());
}

// A genuinely signed older release (not a metadata rollback): the floor in
// the RoT refuses it, whoever assigns it.
TEST_F(AttackTest, DowngradeToAnOlderSignedReleaseIsRefused) {
  const Release v0{.version = "0.9.0", .security_version = 0, .image = Image("app-v0")};
  Publish(v0);
  Assign({{.release = v0, .deployment_id = "dep-old"}});
  ExpectTargetRefused(Pass(), "security version 0 is below this device's floor 1");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(v0)), 0u);

  ReleaseV2();
  ExpectRecovered(Pass());
}

// ---------------------------------------------------------------------------
// Freeze

TEST_F(AttackTest, FreezeWithExpiredMetadataIsRefused) {
  // The director signs assignments for two days (the service re-signs them
  // before then); a mirror keeps serving one past its expiry.
  director_->targets["targets"].expires = now_ + 2 * kDay;
  ReleaseV2();
  now_ += 3 * kDay;
  ExpectRefused(Pass(), ErrorCode::kExpired, "\"targets\" version", Refreshing(director_.get()));
  ExpectUntouched();

  // The director is fresh again; the image repository's timestamp is the
  // one a mirror froze, a day past its expiry.
  director_->targets["targets"].expires = now_ + 30 * kDay;
  Assign({{.release = AppV2(), .deployment_id = "dep-2"}});
  image_->timestamp.expires = now_ + kDay;
  ASSERT_TRUE(image_->UpdateTimestamp());
  now_ += 2 * kDay;
  ExpectRefused(Pass(), ErrorCode::kExpired, "timestamp version", Refreshing(image_.get()));
  ExpectUntouched();

  image_->timestamp.expires = now_ + 30 * kDay;
  ASSERT_TRUE(image_->UpdateTimestamp());
  ExpectRecovered(Pass());
}

// ---------------------------------------------------------------------------
// Mix-and-match, arbitrary images

TEST_F(AttackTest, MixAndMatchIsRefused) {
  Publish(AppV2());
  // A director with a compromised online key assigns other bytes under the
  // name the image repository signed; the mirror serves them.
  Release forged = AppV2();
  forged.image = Image("forged");
  fetcher_.Put(TargetUrl(forged), forged.image);
  Assign({{.release = forged, .deployment_id = "dep-evil"}});
  ExpectTargetRefused(Pass(), "hashes differ");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);

  // The genuine bytes, claiming a security version the image repository
  // did not sign (it would raise the floor past every real release).
  Release claimed = AppV2();
  claimed.security_version = 9;
  Assign({{.release = claimed, .deployment_id = "dep-evil"}});
  ExpectTargetRefused(Pass(), "security version differ");
  ExpectUntouched();

  // The honest assignment of the same bytes: a refused image waits for
  // "update now" (UpdateState::refused is keyed by the image's SHA-256).
  Assign({{.release = AppV2(), .deployment_id = "dep-2"}});
  ExpectRecovered(Pass(/*update_now=*/true));
}

TEST_F(AttackTest, ImageNotInTheImageRepositoryIsRefused) {
  // The director assigns an image the image repository never signed; the
  // mirror serves it at the content-addressed name.
  const Release rogue{.version = "6.6.6", .security_version = 6, .image = Image("rogue")};
  fetcher_.Put(TargetUrl(rogue), rogue.image);
  Assign({{.release = rogue, .deployment_id = "dep-evil"}});
  ExpectTargetRefused(Pass(), "the image repository does not sign this target");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(rogue)), 0u);

  // The image repository signs v3, the director does not assign it: the
  // device installs only what the director assigns.
  const Release v3{.version = "3.0.0", .security_version = 3, .image = Image("app-v3")};
  Publish(v3);
  Assign({{.release = AppV1(), .deployment_id = "dep-1"}});
  const std::size_t reports = client_->State().reports.size();
  auto outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  ExpectUntouched();
  EXPECT_EQ(client_->State().reports.size(), reports);
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(v3)), 0u);

  ReleaseV2();
  ExpectRecovered(Pass());
}

// ---------------------------------------------------------------------------
// Wrong hash, endless data, slow retrieval

TEST_F(AttackTest, WrongHashIsRefused) {
  ReleaseV2();
  const std::string target = TargetUrl(AppV2());
  std::string altered = AppV2().image;
  altered[1000] = altered[1000] == 'x' ? 'y' : 'x';
  fetcher_.SetFault(target, {.serve_instead = altered});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "sha256");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(target), altered.size());
  EXPECT_EQ(DownloadedBytes(), 0u);  // the failed download is not kept

  // A well-formed delta from the installed v1 that rebuilds the altered
  // image (consistent in itself, not with the signed target): refused, and
  // the full image is altered too.
  const fs::path work = temp_.path() / "delta";
  fs::create_directories(work);
  ASSERT_TRUE(WriteFileAtomic(work / "v1", AppV1().image));
  ASSERT_TRUE(WriteFileAtomic(work / "altered", altered));
  ASSERT_TRUE(delta::CreateDelta(work / "v1", work / "altered", work / "delta", {.level = 3}));
  const std::string delta_url = DeltaUrl(AppV1(), AppV2());
  fetcher_.Put(delta_url, ReadFile(work / "delta").value());
  ExpectRefused(Pass(), ErrorCode::kCrypto, "sha256");
  ExpectUntouched();
  EXPECT_GT(fetcher_.bytes_sent(delta_url), 0u);
  EXPECT_EQ(DownloadedBytes(), 0u);

  // The mirror serves the genuine image again (the delta stays altered):
  // the delta is refused, the full image installs.
  fetcher_.ClearFault(target);
  ExpectRecovered(Pass());
}

TEST_F(AttackTest, EndlessDataIsRefused) {
  ReleaseV2();
  const tuf::UpdaterConfig bounds{};  // the client's TUF updaters use the defaults
  struct Case {
    std::string what;
    std::vector<std::string> urls;  // all endless at once
    std::uint64_t bound;            // most bytes any one of them may send
  };
  const std::vector<Case> cases = {
      {"director timestamp", {director_->MetadataUrl("timestamp")}, bounds.timestamp_max_length},
      {"director targets",
       {director_->MetadataUrl("targets", director_->LatestVersion("targets"))},
       bounds.targets_max_length},
      {"image repository root", {image_->MetadataUrl("root", image_->root.version + 1)}, bounds.root_max_length},
      {"image repository snapshot",
       {image_->MetadataUrl("snapshot", image_->LatestVersion("snapshot"))},
       bounds.snapshot_max_length},
      {"image and delta", {TargetUrl(AppV2()), DeltaUrl(AppV1(), AppV2())}, AppV2().image.size()},
  };
  for (const auto& attack : cases) {
    SCOPED_TRACE(attack.what);
    for (const auto& url : attack.urls) fetcher_.SetFault(url, {.endless = true});
    fetcher_.ClearLog();
    ExpectRefused(Pass(), ErrorCode::kTooLarge, "");
    ExpectUntouched();
    for (const auto& url : attack.urls) {
      EXPECT_GT(fetcher_.bytes_sent(url), 0u) << url;
      EXPECT_LE(fetcher_.bytes_sent(url), attack.bound) << url;
    }
    fetcher_.ClearFaults();
  }

  // A finite image one byte longer than its signed length.
  fetcher_.SetFault(TargetUrl(AppV2()), {.serve_instead = AppV2().image + "!"});
  ExpectRefused(Pass(), ErrorCode::kTooLarge, "");
  ExpectUntouched();
  fetcher_.ClearFaults();

  ExpectRecovered(Pass());
}

// A delta is bounded by the signed length on the wire, but what it rebuilds
// is declared by its own (unsigned) header: a small delta of a huge image
// must not be rebuilt (written out and buffered in full) before the final
// check against the signed target catches it.
TEST_F(AttackTest, DeltaOfAnImageLargerThanTheSignedOneIsNotRebuilt) {
  ReleaseV2();
  constexpr std::size_t kBombBytes = 8u << 20;
  const fs::path work = temp_.path() / "bomb";
  fs::create_directories(work);
  ASSERT_TRUE(WriteFileAtomic(work / "v1", AppV1().image));
  ASSERT_TRUE(WriteFileAtomic(work / "huge", std::string(kBombBytes, '\0')));
  auto made = delta::CreateDelta(work / "v1", work / "huge", work / "delta", {.level = 1});
  ASSERT_TRUE(made) << made.error().message();
  ASSERT_LT(made->delta_length, AppV2().image.size());  // passes the transfer bound
  fetcher_.Put(DeltaUrl(AppV1(), AppV2()), ReadFile(work / "delta").value());

  // Every file the client creates in its downloads directory.
  UniqueFd watch(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  ASSERT_TRUE(watch);
  ASSERT_GE(::inotify_add_watch(watch.get(), DownloadsDir().c_str(), IN_CREATE | IN_MOVED_TO), 0);

  ExpectRecovered(Pass());  // the full image, after the delta is refused
  EXPECT_GT(fetcher_.bytes_sent(DeltaUrl(AppV1(), AppV2())), 0u);
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), AppV2().image.size());

  std::vector<std::string> created;
  alignas(inotify_event) std::array<char, 64 * 1024> buffer{};
  for (int reads = 0; reads < 1000; ++reads) {
    const ssize_t n = ::read(watch.get(), buffer.data(), buffer.size());
    if (n <= 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      if (event->len > 0) created.emplace_back(event->name);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
  ASSERT_FALSE(created.empty());  // the watch works: the full download was seen
  for (const auto& name : created) {
    EXPECT_EQ(name.find(".rebuilt"), std::string::npos) << "the delta was rebuilt into " << name;
  }
}

// The production factory (MutualTlsFetcherFactory) uses http::Downloader's
// bounds: 1 KiB/s over 10 s, 30 s of silence. The client takes any factory;
// this one is the same HttpFetcher over mutual TLS with shorter bounds, so
// the test runs in seconds.
FetcherFactory ShortBoundMutualTlsFetchers(std::string service_ca_pem, const crypto::PrivateKey& tls_key) {
  return [ca = std::move(service_ca_pem),
          key = &tls_key](const std::string& chain_pem) -> Expected<std::unique_ptr<tuf::Fetcher>> {
    http::DownloaderOptions options;
    options.ca_certificate_pem = ca;
    options.client_identity = http::TlsIdentity{chain_pem, key};
    options.connect_timeout = 2s;
    options.read_timeout = 400ms;
    options.minimum_bytes_per_second = 4096;
    options.speed_window = 1s;
    CITADEL_TRY(auto fetcher, tuf::HttpFetcher::Create(std::move(options)));
    return std::unique_ptr<tuf::Fetcher>(std::move(fetcher));
  };
}

TEST_F(AttackTest, SlowRetrievalIsRefused) {
  ReleaseV2();
  // The repositories as static files on an HTTPS server that requires the
  // device's certificate.
  const fs::path root = temp_.path() / "www";
  for (const auto& [url, bytes] : fetcher_.files()) {
    ASSERT_EQ(url.rfind(kService, 0), 0u) << url;
    const fs::path path = root / url.substr(kService.size() + 1);
    fs::create_directories(path.parent_path());
    ASSERT_TRUE(WriteFileAtomic(path, bytes));
  }
  citadel::testing::LoopbackServerPki server_pki;
  const auto device_ca_key = citadel::testing::GenerateTestKey();
  const auto device_ca = citadel::testing::IssueTestCa("device CA", device_ca_key);
  const auto device_key = citadel::testing::GenerateTestKey();
  const auto device_certificate = citadel::testing::IssueTestLeaf("device", device_key, device_ca, device_ca_key,
                                                                  crypto::ExtendedKeyUsage::kClientAuth, {});
  const std::string chain = device_certificate.Pem() + device_ca.Pem();
  auto server = citadel::testing::FileServer::Start(
      {.root = root, .tls = server_pki.Identity(), .client_ca_pem = device_ca.Pem()});
  ASSERT_TRUE(server) << server.error().message();
  fetchers_ = ShortBoundMutualTlsFetchers(server_pki.ca.Pem(), device_key);
  auto options = Options();
  options.service_url = (*server)->BaseUrl();
  NewClient(std::move(options));
  auto pass = [&] {
    client_->OnCheckIn(client_->PrepareCheckIn(), Hints(), chain);
    return client_->RunPass();
  };

  const auto path_of = [](const std::string& url) { return url.substr(kService.size()); };
  // A slow-retrieval bound ended the transfer (which one depends on timing).
  const auto expect_slow = [](const Expected<PassOutcome>& outcome, std::string_view where) {
    ExpectRefused(outcome, ErrorCode::kUnavailable, "", where);
    if (outcome) return;
    const std::string& message = outcome.error().message();
    EXPECT_TRUE(message.find("too slow") != std::string::npos || message.find("timed out") != std::string::npos)
        << message;
  };
  struct Case {
    std::string what;
    std::string path;
    std::string where;  // in the pass's error
  };
  const std::vector<Case> cases = {
      {"director timestamp", path_of(director_->MetadataUrl("timestamp")), Refreshing(director_.get())},
      {"image repository snapshot", path_of(image_->MetadataUrl("snapshot", image_->LatestVersion("snapshot"))),
       Refreshing(image_.get())},
      {"image", path_of(TargetUrl(AppV2())), "downloading " + AppV2().name()},
  };
  for (const auto& attack : cases) {
    SCOPED_TRACE(attack.what);
    // 10 bytes a second, never silent for long: the speed bound ends it.
    (*server)->SetFault(attack.path, citadel::testing::FileServerFault::Slow(100ms, 1));
    const auto started = std::chrono::steady_clock::now();
    expect_slow(pass(), attack.where);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
    EXPECT_GT((*server)->BodyBytesSent(attack.path), 0u);
    ExpectUntouched();
    (*server)->ClearFaults();
  }

  // A server that goes silent mid-body: the read timeout ends it.
  const std::string target = path_of(TargetUrl(AppV2()));
  (*server)->SetFault(target, citadel::testing::FileServerFault::Slow(5s, 4096));
  const auto started = std::chrono::steady_clock::now();
  expect_slow(pass(), "downloading " + AppV2().name());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  ExpectUntouched();
  (*server)->ClearFaults();

  ExpectRecovered(pass());
}

// ---------------------------------------------------------------------------
// Threshold, root rotation

TEST_F(AttackTest, ThresholdNotMetIsRefused) {
  // The image repository requires 2 targets keys, the director 2 timestamp
  // keys (root v2 of each); the device follows.
  ASSERT_TRUE(image_->AddKey("targets"));
  image_->root.roles["targets"].threshold = 2;
  ASSERT_TRUE(image_->Bump("root"));
  ASSERT_TRUE(image_->Bump("targets"));
  ASSERT_TRUE(image_->UpdateSnapshot());
  ASSERT_TRUE(director_->AddKey("timestamp"));
  director_->root.roles["timestamp"].threshold = 2;
  ASSERT_TRUE(director_->Bump("root"));
  ASSERT_TRUE(director_->UpdateTimestamp());
  auto outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  Baseline();

  // One image repository targets key leaked: the forged image is signed by
  // it alone (and assigned by a director with a compromised online key).
  const auto targets_keys = image_->signers["targets"];
  image_->signers["targets"] = {targets_keys.front()};
  Release forged = AppV2();
  forged.image = Image("forged");
  Publish(forged);
  Assign({{.release = forged, .deployment_id = "dep-evil"}});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "threshold not met");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);
  image_->signers["targets"] = targets_keys;

  // One director timestamp key leaked.
  const auto timestamp_keys = director_->signers["timestamp"];
  director_->signers["timestamp"] = {timestamp_keys.front()};
  Publish(AppV2());
  Assign({{.release = AppV2(), .deployment_id = "dep-2"}});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "threshold not met");
  ExpectUntouched();

  director_->signers["timestamp"] = timestamp_keys;
  ASSERT_TRUE(director_->UpdateTimestamp());
  ExpectRecovered(Pass());
}

TEST_F(AttackTest, RootRotationIsFollowed) {
  // Image repository: two root key rotations (each new root signed by the
  // old and the new key), then a new targets key (root v4).
  const auto old_targets_keys = image_->signers["targets"];
  for (int i = 0; i < 2; ++i) {
    const auto previous = image_->signers["root"];
    ASSERT_TRUE(image_->RotateKeys("root"));
    image_->signers["root"].insert(image_->signers["root"].end(), previous.begin(), previous.end());
    ASSERT_TRUE(image_->Bump("root"));
    image_->signers["root"].resize(1);
  }
  ASSERT_TRUE(image_->RotateKeys("targets"));
  ASSERT_TRUE(image_->Bump("root"));
  // Director: root and targets keys rotated at once (root v2).
  const auto previous = director_->signers["root"];
  ASSERT_TRUE(director_->RotateKeys("root"));
  ASSERT_TRUE(director_->RotateKeys("targets"));
  director_->signers["root"].insert(director_->signers["root"].end(), previous.begin(), previous.end());
  ASSERT_TRUE(director_->Bump("root"));
  director_->signers["root"].resize(1);

  ReleaseV2();  // signed by the new keys
  ExpectRecovered(Pass());
  EXPECT_EQ(ReadFile(state_dir() / "update" / "image" / "root.json").value(), image_->PublishedRoot(4));
  EXPECT_EQ(ReadFile(state_dir() / "update" / "director" / "root.json").value(), director_->PublishedRoot(2));
  Baseline();

  // The rotated-away image targets key (say it leaked) signs nothing the
  // device accepts any more.
  const Release forged{.version = "3.0.0", .security_version = 3, .image = Image("forged")};
  image_->signers["targets"] = old_targets_keys;
  Publish(forged);
  Assign({{.release = forged, .deployment_id = "dep-evil"}});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "threshold not met");
  ExpectUntouched();
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);
}

TEST_F(AttackTest, CompromisedKeyRootRotationIsRefused) {
  // Both repositories move to a root threshold of 2: the original key K1
  // and a new K2 (root v2, signed by both).
  std::map<const TestRepository*, Signer> first_key;
  std::map<const TestRepository*, Signer> second_key;
  for (TestRepository* repo : Repositories()) {
    first_key[repo] = repo->signers["root"].front();
    auto second = repo->NewSigner();
    ASSERT_TRUE(second);
    second_key[repo] = *second;
    SetRoleKeys(*repo, "root", {first_key[repo], *second}, 2);
    ASSERT_TRUE(repo->Bump("root"));
  }
  auto outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(ReadFile(state_dir() / "update" / "image" / "root.json").value(), image_->PublishedRoot(2));
  Baseline();

  // K1 leaks. The attacker's root v3 trusts K1 and the attacker's own key
  // (threshold 1) and the attacker's targets key; it is signed by both —
  // one of the two signatures root v2 requires.
  for (TestRepository* repo : Repositories()) {
    SCOPED_TRACE(Name(repo));
    const tuf::Root honest_root = repo->root;
    const auto honest_signers = repo->signers;
    const auto honest_targets = repo->targets;
    auto attacker = repo->NewSigner();
    auto attacker_targets = repo->NewSigner();
    ASSERT_TRUE(attacker && attacker_targets);
    SetRoleKeys(*repo, "root", {first_key[repo], *attacker}, 1);
    SetRoleKeys(*repo, "targets", {*attacker_targets}, 1);
    ASSERT_TRUE(repo->Bump("root"));
    Release forged = AppV2();
    forged.image = Image("forged");
    if (repo == image_.get()) Publish(forged);
    Assign({{.release = forged, .deployment_id = "dep-evil"}});
    ExpectRefused(Pass(), ErrorCode::kCrypto, "keys of the trusted root", Refreshing(repo));
    ExpectUntouched();
    EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);
    // Off the mirror again, so the other repository's turn meets only its
    // own attack.
    fetcher_.Remove(repo->MetadataUrl("root", 3));
    repo->root = honest_root;
    repo->signers = honest_signers;
    repo->targets = honest_targets;
  }

  // Legitimate root v3 rotates K1 away: K2 and a new K3, threshold 2
  // (signed by K1 and K2 for v2, K2 and K3 for itself). It replaces the
  // attacker's v3 on the mirror.
  for (TestRepository* repo : Repositories()) {
    auto third = repo->NewSigner();
    ASSERT_TRUE(third);
    SetRoleKeys(*repo, "root", {second_key[repo], *third}, 2);
    repo->signers["root"].push_back(first_key[repo]);
    ASSERT_TRUE(repo->Bump("root"));
    repo->signers["root"].pop_back();
  }
  // Both re-sign their targets (over the attacker's versions on the mirror).
  ASSERT_TRUE(image_->Bump("targets"));
  ASSERT_TRUE(image_->UpdateSnapshot());
  Assign({{.release = AppV1(), .deployment_id = "dep-1"}});
  outcome = Pass(/*update_now=*/true);
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(ReadFile(state_dir() / "update" / "image" / "root.json").value(), image_->PublishedRoot(3));
  EXPECT_EQ(ReadFile(state_dir() / "update" / "director" / "root.json").value(), director_->PublishedRoot(3));
  Baseline();

  // The rotated-away K1 signs a root v4 of the attacker's: refused.
  for (TestRepository* repo : Repositories()) {
    SCOPED_TRACE(Name(repo));
    const tuf::Root honest_root = repo->root;
    const auto honest_signers = repo->signers;
    auto attacker = repo->NewSigner();
    ASSERT_TRUE(attacker);
    SetRoleKeys(*repo, "root", {first_key[repo], *attacker}, 1);
    ASSERT_TRUE(repo->Bump("root"));
    ExpectRefused(Pass(/*update_now=*/true), ErrorCode::kCrypto, "keys of the trusted root", Refreshing(repo));
    ExpectUntouched();
    fetcher_.Remove(repo->MetadataUrl("root", 4));
    repo->root = honest_root;
    repo->signers = honest_signers;
  }
  // The honest roots v4 (the mirror serves the service's files again).
  for (TestRepository* repo : Repositories()) ASSERT_TRUE(repo->Bump("root"));
  ReleaseV2();
  ExpectRecovered(Pass());
}

// ---------------------------------------------------------------------------
// Malicious mirror

TEST_F(AttackTest, MirrorServingStaleFilesIsRefused) {
  ReleaseV2();
  const auto honest = fetcher_.files();

  // The repositories as they were before v1: every file validly signed,
  // every one older than what the device trusts.
  ServeOnly(initial_files_);
  ExpectRefused(Pass(), ErrorCode::kConflict, "older than trusted");
  ExpectUntouched();

  // Exactly what the device already trusts, while the service moved on to
  // v2: the device cannot tell yet (nothing new to act on) ...
  ServeOnly(trusted_files_);
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  ExpectUntouched();
  EXPECT_TRUE(client_->State().reports.empty());
  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(AppV2())), 0u);
  // ... until that metadata expires.
  now_ += 31 * kDay;
  ExpectRefused(Pass(), ErrorCode::kExpired, "expired");
  ExpectUntouched();

  // The honest mirror again, with everything the service re-signed since.
  ServeOnly(honest);
  for (TestRepository* repo : Repositories()) {
    const std::int64_t expires = now_ + 30 * kDay;
    repo->root.expires = expires;
    repo->timestamp.expires = expires;
    repo->snapshot.expires = expires;
    repo->targets["targets"].expires = expires;
    ASSERT_TRUE(repo->Bump("root"));
  }
  ASSERT_TRUE(image_->Bump("targets"));
  ASSERT_TRUE(image_->UpdateSnapshot());
  Assign({{.release = AppV2(), .deployment_id = "dep-2"}});
  ExpectRecovered(Pass());
}

TEST_F(AttackTest, MirrorServingAlteredFilesIsRefused) {
  ReleaseV2();
  Release forged = AppV2();
  forged.image = Image("forged");
  fetcher_.Put(TargetUrl(forged), forged.image);

  // The director's newest targets, assigning the forged image's hash (the
  // signature left as it was).
  const std::int64_t director_targets = director_->LatestVersion("targets");
  std::string altered = director_->Published("targets", director_targets);
  ASSERT_GT(ReplaceAll(altered, Sha(AppV2()), Sha(forged)), 0);
  fetcher_.SetFault(director_->MetadataUrl("targets", director_targets), {.serve_instead = altered});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "signature");
  ExpectUntouched();
  fetcher_.ClearFaults();

  // The image repository's newest snapshot, listing another targets version.
  const std::int64_t snapshot = image_->LatestVersion("snapshot");
  altered = image_->Published("snapshot", snapshot);
  const std::string listed = "\"targets.json\":{\"version\":" + std::to_string(image_->LatestVersion("targets")) + "}";
  ASSERT_EQ(ReplaceAll(altered, listed, "\"targets.json\":{\"version\":99}"), 1);
  fetcher_.SetFault(image_->MetadataUrl("snapshot", snapshot), {.serve_instead = altered});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "signature");
  ExpectUntouched();
  fetcher_.ClearFaults();

  // A "next root" of the image repository: the trusted one with a new
  // version and the root key as its targets key, the old signatures kept.
  auto next_root = ParseJsonStrict(image_->PublishedRoot(1));
  ASSERT_TRUE(next_root);
  (*next_root)["signed"]["version"] = 2;
  (*next_root)["signed"]["roles"]["targets"]["keyids"] = (*next_root)["signed"]["roles"]["root"]["keyids"];
  fetcher_.SetFault(image_->MetadataUrl("root", 2), {.serve_instead = next_root->dump()});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "keys of the trusted root");
  ExpectUntouched();
  fetcher_.ClearFaults();

  // The image itself, altered (same length).
  fetcher_.SetFault(TargetUrl(AppV2()), {.serve_instead = forged.image});
  ExpectRefused(Pass(), ErrorCode::kCrypto, "sha256");
  ExpectUntouched();
  fetcher_.ClearFaults();

  EXPECT_EQ(fetcher_.bytes_sent(TargetUrl(forged)), 0u);
  ExpectRecovered(Pass());
}

// ---------------------------------------------------------------------------
// OS images

TEST_F(AttackTest, AttackedOsImageNeverReachesTheSlot) {
  Publish(OsV2());
  Assign({{.release = AppV1(), .deployment_id = "dep-1"}, {.release = OsV2(), .deployment_id = "dep-os"}});
  const std::string url = TargetUrl(OsV2());
  std::string altered = OsV2().image;
  altered[5000] = altered[5000] == 'x' ? 'y' : 'x';
  const std::vector<std::pair<std::string, MemoryFetcher::Fault>> attacks = {
      {"wrong hash", {.serve_instead = altered}},
      {"endless", {.endless = true}},
      {"longer than signed", {.serve_instead = OsV2().image + "!"}},
  };
  for (const auto& [what, fault] : attacks) {
    SCOPED_TRACE(what);
    fetcher_.SetFault(url, fault);
    EXPECT_FALSE(Pass());
    ExpectUntouched();  // slot B never written, no trial armed, no reboot
    fetcher_.ClearFaults();
  }

  // The genuine image: written to slot B and armed.
  auto outcome = Pass();
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(*outcome, PassOutcome::kRebootRequested);
  EXPECT_EQ(ReadFile(slots_->ImagePath(boot::Slot::kB)).value(), OsV2().image);
  auto boot = boot_->ReadState().value();
  ASSERT_TRUE(boot.trial);
  EXPECT_EQ(boot.trial->slot, boot::Slot::kB);
  EXPECT_EQ(InstalledAppSha(), Sha(AppV1()));
}

}  // namespace
}  // namespace citadel::update
