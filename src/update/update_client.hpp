// UpdateClient: the device's over-the-air update client (issue 4;
// docs/ARCHITECTURE.md, "Device: UpdateClient"). It installs an image only
// when the director assigns it to this device AND the image repository
// signs the same bytes with the same identity (Uptane's mix-and-match
// defence), never below the component's floor, and reports every step.
//
// Repositories (docs/PROTOCOL.md, "Updates"): two TUF clients, each with its
// own metadata directory —
//   director          STATE/update/director, SERVICE + reply.update.director
//   image repository  STATE/update/image,    SERVICE + reply.update.image_repository
// Targets are fetched from IMAGE/targets/<sha256>.<basename> (the service's
// content-addressed layout), deltas from IMAGE/deltas/<from>/<to>.
//
// Trusted roots (the TUF root of trust of each repository). When
// STATE/update/<repo>/root.json is missing, the client installs one with
// Updater::InitTrustedRoot, from (in this order):
//   1. a root provisioned at the factory (options.image_root /
//      director_root: files written when the device was made), or
//   2. trust on first use: `1.root.json` fetched from the service over
//      mutual TLS, the service authenticated by the pinned service CA.
// Choice: 2 is the default because the service is already the device's
// anchor for identity (the pinned CA) and a maker who wants more provisions
// the roots (1). From then on only the signed rotation chain moves the root.
// When the service names another image repository (the device moved to
// another tenant) both metadata directories are reset and the roots are
// installed again; when only the director path changes (another group) the
// director's timestamp, snapshot and targets are dropped (their versions are
// per group) and its root (one chain per tenant) is kept.
//
// A pass (RunPass), run on the client's own thread after check-ins:
//   1. after the first successful check-in of this boot: BootControl::Commit
//      (commits an OS trial slot — reported "committed" — or re-arms the
//      primary);
//   2. work that needs no repository continues: an app trial is polled to
//      its end, an OS update that armed its trial asks for the reboot again;
//   3. skipped when the director timestamp version did not move, nothing is
//      open and update_now was not asked for (an idle check-in costs no
//      repository traffic);
//   4. refresh director, refresh image repository; outside the maintenance
//      window (unless update_now) nothing new starts;
//   5. per component (selection.hpp): current or baseline target; already
//      installed -> nothing; mix-and-match, floor and "this device can
//      install it" checks -> refused and reported "failed"; else download
//      (a delta from the installed image first, any delta failure -> the full
//      image, resumable), install (app: a trial through AppInstaller; OS: the
//      inactive slot, StartTrial, reboot), commit (raise the floor, report).
//
// Durability: every step is recorded in STATE/update/state.json
// (update_state.hpp) before it is acted on, and each is idempotent, so a
// kill at any moment resumes or restarts the step. FaultPoint() marks every
// durable step and every chunk downloaded or written.
//
// Threading: Start() runs passes on the client's own thread; OnCheckIn()
// and CheckInSection() are called from the agent's thread and only take
// short locks (a pass never holds one across a download or a trial, so
// check-ins continue meanwhile). BootControl and OsSlots are used only from
// the pass thread (and from Recover(), before Start()). RunPass() may be
// called directly instead of Start() (tests, one-shot runs), never both.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "boot/boot_control.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "protocol/protocol.hpp"
#include "reports/failure_event.hpp"
#include "rot/rot.hpp"
#include "tuf/fetcher.hpp"
#include "tuf/metadata.hpp"
#include "tuf/updater.hpp"
#include "update/floors.hpp"
#include "update/installers.hpp"
#include "update/os_slots.hpp"
#include "update/selection.hpp"
#include "update/update_state.hpp"

namespace citadel::update {

// Makes the fetcher for repository traffic, given the device certificate
// chain (PEM, leaf first) to present; called again when the chain changes
// (certificate renewal).
using FetcherFactory = std::function<Expected<std::unique_ptr<tuf::Fetcher>>(const std::string& client_chain_pem)>;

// The production factory: tuf::HttpFetcher over http::Downloader, pinned to
// the service CA, presenting the chain with the RoT's TLS key (which must
// outlive every fetcher made).
FetcherFactory MutualTlsFetcherFactory(std::string service_ca_pem, const crypto::PrivateKey& tls_key);

struct UpdateClientOptions {
  std::filesystem::path state_dir{};  // the device's STATE; the client owns STATE/update
  std::string device_id{};
  std::string service_url{};  // "https://host:port"; repository paths are appended
  // The OS component this device runs (custom.citadel.component_id of OS
  // targets, = citadeld --os-name) and the version reported when the booted
  // slot was not written by this client (a factory image).
  std::string os_component_id = "citadel-os";
  std::string os_version = "1.0.0";
  // Lower-case hex SHA-256 of the booted slot's image as measured at this
  // boot (citadeld passes the digest it extended into the OS register).
  // Empty: what this client recorded when it wrote the slot, else unknown.
  std::string booted_os_sha256{};
  // Factory-provisioned trusted roots (see the header comment); empty:
  // trust on first use.
  std::filesystem::path image_root{};
  std::filesystem::path director_root{};
  // Boots an OS trial is given before the bootloader falls back.
  std::uint32_t os_trial_tries = 3;
  // App trials: how often AppInstaller::Trial is polled, and how long a trial
  // may stay "running" before it counts as failed.
  std::chrono::milliseconds trial_poll_interval{1000};
  std::chrono::seconds trial_timeout{600};
  // With open work (or after a failed pass), a pass runs again at least this
  // often even without a check-in.
  std::chrono::milliseconds retry_interval{60'000};
  // A device that cannot afford zstd's window for a big image lowers it and
  // downloads the full image instead (delta/delta.hpp).
  int delta_max_window_log = 31;
  // Unix seconds for report times, maintenance windows, trial deadlines and
  // (when set) the TUF reference time. Empty: time(2), so libfaketime moves
  // it. Tests inject a fixed time.
  std::function<std::int64_t()> now_unix_seconds{};
  // The rollout rule; empty: protocol::InRollout (the service's own rule).
  RolloutRule in_rollout{};
  // Called on the pass thread once an OS update armed its trial: the
  // runtime must restart the device (citadeld: stop cleanly and exit 75).
  std::function<void()> request_reboot{};
  // Called on the agent's thread (from OnCheckIn) once a pass completed
  // with nothing left open and every report was acknowledged — for
  // `citadeld run --update-once`. Must not call back into the client.
  std::function<void()> on_settled{};
  // Every update that ends "failed" is also recorded here as an
  // `update-failure` failure report (error_code = the stage that failed);
  // null: not recorded. Must outlive the client.
  reports::FailureSink* failure_sink = nullptr;
};

struct UpdateDependencies {
  rot::RootOfTrust* rot = nullptr;    // floors (RoT counters); required
  AppInstaller* apps = nullptr;       // nullptr: app targets are refused
  boot::BootControl* boot = nullptr;  // nullptr (or no os_slots): OS targets are refused
  OsSlots* os_slots = nullptr;
  FetcherFactory fetchers{};  // required
};

// The client's part of a check-in body, and which queued reports it carries
// (local sequence numbers, in the same order as update.reports).
struct CheckInSection {
  protocol::CheckInUpdate update;
  std::vector<std::uint64_t> report_sequences;
};

// What this client recorded about the OS image in `slot` when it wrote it
// (nullopt: it did not, e.g. the factory image). citadeld reads it at start
// for the OS version it measures and reports.
Expected<std::optional<SlotRecord>> RecordedOsSlot(const std::filesystem::path& state_dir, boot::Slot slot);

enum class PassOutcome {
  kIdle,             // nothing moved; no repository traffic
  kDone,             // the assignment is carried out (or refused and reported)
  kDeferred,         // outside the maintenance window: nothing new started
  kRebootRequested,  // an OS update waits for the reboot; no more passes
};

class UpdateClient {
 public:
  // Opens STATE/update/state.json. Does not touch the network or the boot
  // control. Fails when the state file is corrupt (the message says how to
  // reset it).
  static Expected<std::unique_ptr<UpdateClient>> Create(UpdateClientOptions options, UpdateDependencies dependencies);
  ~UpdateClient();  // Stop() and join.
  UpdateClient(const UpdateClient&) = delete;
  UpdateClient& operator=(const UpdateClient&) = delete;

  // Call once at start, after the boot happened (BootAtStart) and before
  // Start(): reconciles the state with the boot control — an OS trial slot
  // that booted waits for its commit; a trial the bootloader gave up on is
  // reported "failed" with its reason and acknowledged — and learns what
  // the booted slot holds.
  [[nodiscard]] Expected<void> Recover();

  // Runs passes on the client's thread until Stop(). Idempotent.
  void Start();
  // Ends the thread after its current step (a download is bounded by its
  // timeouts; a trial wait stops at once). Thread-safe, idempotent.
  void Stop();
  // Stop() and wait up to `grace` for the thread. false: it is still in a
  // step (a download waiting on a slow server); the caller may exit the
  // process anyway, every step being crash-safe.
  bool StopAndWait(std::chrono::milliseconds grace);

  // For the check-in body: what runs now and the oldest unacknowledged
  // reports (at most protocol::kMaxUpdateEntries each).
  CheckInSection PrepareCheckIn() const;
  // After a successful check-in: drops the reports the reply acknowledged
  // (the first `acknowledged` of `sent`), takes the reply's hints (nullopt:
  // the device is in no group), the certificate chain to present, and wakes
  // the pass thread. Never blocks on a pass.
  void OnCheckIn(const CheckInSection& sent, const std::optional<protocol::CheckInUpdateReply>& reply,
                 std::string client_chain_pem);

  // One pass on the calling thread (see the header comment). Errors are
  // transient failures (network, I/O); the work stays open for the next pass.
  Expected<PassOutcome> RunPass();

  UpdateState State() const { return state_->Snapshot(); }
  bool reboot_requested() const;
  // Passes that ended without an error (kIdle included) since Create.
  std::uint64_t passes_completed() const;

 private:
  struct Repositories;  // the two refreshed updaters of one pass
  struct BaseImage {
    std::filesystem::path path;
    std::string sha256;
  };

  UpdateClient(UpdateClientOptions options, UpdateDependencies dependencies, std::unique_ptr<StateFile> state);

  void ThreadMain();
  std::int64_t Now() const;
  std::string NowRfc3339() const;
  bool Stopping() const;
  // Sleeps up to `delay`; false when stopping.
  bool Sleep(std::chrono::milliseconds delay);
  void NotifySettledIfDone();

  std::vector<protocol::InstalledComponent> InstalledComponents() const;
  std::map<std::string, std::string> InstalledSha256() const;
  std::optional<BaseImage> InstalledImage(const TargetIdentity& identity) const;

  Expected<void> CommitBoot();
  Expected<PassOutcome> ContinueLocalWork();
  Expected<Repositories> OpenRepositories(const protocol::CheckInUpdateReply& hints, const std::string& chain_pem);
  Expected<void> EnsureTrustedRoot(const std::filesystem::path& dir, const std::filesystem::path& factory_root,
                                   const std::string& base_url);
  Expected<PassOutcome> Process(const Choice& choice, Repositories& repositories, bool update_now);
  // Refuses `target` for good (until the director assigns something else):
  // reported "failed" with reason.
  Expected<void> Refuse(const DirectorTarget& target, const std::string& reason);
  Expected<void> Download(const WorkItem& item, Repositories& repositories);
  Expected<bool> TryDelta(const WorkItem& item, const BaseImage& base, const std::filesystem::path& output,
                          const std::string& image_url);
  Expected<PassOutcome> Install(WorkItem item);
  Expected<PassOutcome> InstallApp(WorkItem item);
  Expected<PassOutcome> WaitForTrial(WorkItem item, int restarts_left);
  Expected<PassOutcome> InstallOs(WorkItem item);
  Expected<PassOutcome> RequestReboot();
  Expected<void> FinishCommitted(const WorkItem& item);
  Expected<void> FinishFailed(const WorkItem& item, const std::string& reason);
  // Records a report for `item` unless it was the last one reported.
  void AddReport(UpdateState& state, WorkItem& item, std::string_view report_state, std::string_view reason = {});

  std::filesystem::path UpdateDir() const { return options_.state_dir / "update"; }
  std::filesystem::path DownloadPath(const WorkItem& item) const;
  std::string ImageRepositoryUrl(const protocol::CheckInUpdateReply& hints) const;

  UpdateClientOptions options_;
  UpdateDependencies deps_;
  std::unique_ptr<StateFile> state_;
  Floors floors_;

  // Pass thread only.
  std::unique_ptr<tuf::Fetcher> fetcher_;
  std::string fetcher_chain_;
  bool boot_committed_ = false;
  std::optional<boot::Slot> booted_slot_;
  std::string booted_sha256_;  // of the booted slot's image, "" when unknown
  std::string booted_version_;

  mutable std::mutex mutex_;  // guards the members below
  std::condition_variable wake_cv_;
  std::optional<protocol::CheckInUpdateReply> hints_;
  std::string chain_pem_;
  bool checked_in_ = false;
  bool update_now_ = false;
  bool wake_ = false;
  bool stop_ = false;
  bool reboot_requested_ = false;
  bool last_pass_clean_ = false;
  std::uint64_t passes_completed_ = 0;
  bool settled_notified_ = false;
  bool thread_done_ = false;
  std::thread thread_;
};

}  // namespace citadel::update
