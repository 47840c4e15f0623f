// The set of apps installed on the device: installing signed images (at
// once, or as an update trial that can be committed or reverted), removing
// them, and the per-app policy and resource claims derived from them. Files
// under the device state directory:
//
//   apps/state.json              installed apps and open trials (app_state.hpp)
//   apps/<cid>/root/             the extracted image, read-only
//   apps/<cid>/image.img         the installed image file: the base of the next delta update
//   apps/<cid>/storage.ext4      the app's mutable storage image (made at start; kept across
//                                updates and reverts: it is the app's data, not its code)
//   apps/<cid>/root.previous/    during a trial: the previous version's tree
//   apps/<cid>/image.previous    during a trial: the previous version's image
//   apps/<cid>/*.staging, *.discard, .*   transient; removed by Open()
//
// Checks (every install, trial or not): ParseImage -> VerifyImage (trusted
// publisher keys; for sideloads also the development grant's developer
// keys, and only when a valid grant exists) -> ParseManifest ->
// BuildPolicy(board, device policy) -> ResourceRegistry::Claim (on a copy).
//
// Swap (shared by Install and BeginTrial): the image is extracted to
// root.staging and copied to image.staging (both fsync'd) -> state.json
// records the new version plus a trial record naming the previous one
// (atomic) -> root moves to root.previous, root.staging to root, and the
// same for the image (each rename fsync'd). Install then commits at once;
// BeginTrial leaves the trial open. Commit: state.json drops the trial,
// then the previous files are deleted. Revert: state.json marks the trial
// "reverting", the trial's files move to *.discard and the previous ones
// back, then state.json names the previous version again and the discarded
// files are deleted. Every step is idempotent and derivable from state.json
// plus which files exist, so after a kill at any point Open() finishes the
// swap (the new version is complete before state.json names it) or the
// revert, and the app is installed in exactly one valid version. Each
// durable step calls StoreOptions::fault_point ("apps:<step>").
//
// Security contract: nothing about the installed apps changes until every
// check passed; any failure (bad signature, untrusted signer, manifest
// changed after signing, board or policy refusal, a resource another app
// holds, an I/O error) leaves state.json, the installed trees and the
// claims exactly as they were. A sideload without a valid AppDevelopment
// capability is refused before its signature is even considered. During a
// trial the app holds the exclusive resources of both versions, so a
// revert can never be blocked by another app having taken them.
//
// Threading: all methods are safe from any thread. Installs, trials,
// commits, reverts and removals are serialised; readers never wait for an
// extraction.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "app/board.hpp"
#include "app/policy.hpp"
#include "app/resources.hpp"
#include "apps/app_state.hpp"
#include "apps/trust.hpp"
#include "common/error.hpp"
#include "common/time.hpp"

namespace citadel::apps {

inline constexpr std::string_view kSideloadRefused =
    "this device does not accept sideloaded apps: development mode is not enabled; "
    "run `citadel device enable-development <device-id>`";

struct StoreOptions {
  std::filesystem::path state_dir;
  app::BoardDefinition board;
  app::DevicePolicy device_policy;
  TrustSource* trust = nullptr;  // required; must outlive the store
  std::function<TimePoint()> now = [] { return Clock::now(); };
  // Called after every durable step with "apps:<step>". Empty: the
  // process-wide update::FaultPoint (power-cut tests kill the runtime there).
  // Tests of the store put their own here to stop a step part-way.
  std::function<void(std::string_view label)> fault_point;
};

enum class InstallSource {
  kTenant,    // a tenant-signed image: publisher keys only
  kSideload,  // development: needs the capability; developer keys also trusted
};

class AppStore {
 public:
  // Loads apps/state.json, finishes any swap, revert or commit a crash
  // interrupted, and rebuilds every app's policy and claims. An app whose
  // policy no longer builds (board changed, tree damaged) stays installed
  // but cannot start; Problem() says why.
  static Expected<std::unique_ptr<AppStore>> Open(StoreOptions options);

  // Called after all checks passed and the new version is staged, before
  // anything installed changes, with the app as it will be recorded; true in
  // `update` when the component id is already installed (the manager stops
  // the old version here).
  using BeforeCommit = std::function<void(const InstalledApp& app, bool update)>;

  // Installs at once (no trial): sideloads, the development interface. An
  // app with an open trial is refused (kConflict) until the trial ends.
  [[nodiscard]] Expected<InstalledApp> Install(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                               InstallSource source, const BeforeCommit& before_commit = {});
  [[nodiscard]] Expected<InstalledApp> InstallFile(const std::filesystem::path& image_file, InstallSource source,
                                                   const BeforeCommit& before_commit = {});

  // An update from the update client (tenant keys only): the same checks,
  // plus the image's component id must be expected_component_id; then the
  // swap, leaving the trial open. The same image while its trial is open
  // returns the installed app and changes nothing; another image while a
  // trial is open is refused (kConflict). A first install on trial is
  // recorded with desired state running (a deployment installs an app to
  // run it); an update keeps the app's desired state.
  [[nodiscard]] Expected<InstalledApp> BeginTrial(const std::filesystem::path& image_file,
                                                  std::string_view expected_component_id,
                                                  const BeforeCommit& before_commit = {});
  // Ends the trial keeping the new version; the previous files are deleted.
  // No open trial: nothing to do (kOk), so a repeated call after a crash is
  // harmless.
  [[nodiscard]] Expected<void> CommitTrial(std::string_view component_id);
  // Puts the previous version back (tree, image, state entry with the
  // current desired state, claims, policy) and deletes the trial version;
  // a first install on trial is removed. The caller stops the app first.
  // No open trial: kOk.
  [[nodiscard]] Expected<void> RevertTrial(std::string_view component_id);
  // The open trial of an app (not the transient record of an immediate
  // install), or nullopt.
  std::optional<TrialRecord> TrialOf(std::string_view component_id) const;
  // Counts (and persists) one unplanned exit of an app on trial; returns the
  // count, 0 when the app has no open trial.
  std::uint32_t RecordTrialExit(std::string_view component_id);

  // Forgets the app (state.json first, with any trial), releases its claims,
  // then deletes its trees, images and storage image. The caller stops it
  // first.
  [[nodiscard]] Expected<void> Remove(std::string_view component_id);
  [[nodiscard]] Expected<void> SetDesired(std::string_view component_id, DesiredState desired);

  std::vector<InstalledApp> List() const;
  // By exact component id, else by name; kNotFound says how to list apps.
  Expected<InstalledApp> Resolve(std::string_view name_or_component_id) const;
  Expected<app::Policy> PolicyOf(std::string_view component_id) const;
  // Why an installed app cannot start ("" when it can).
  std::string Problem(std::string_view component_id) const;
  std::optional<app::ResourceHolder> HolderOf(std::string_view resource_key) const;

  std::filesystem::path RootOf(std::string_view component_id) const;
  std::filesystem::path StorageImageOf(std::string_view component_id) const;
  // apps/<cid>/image.img; it exists when the app's image_sha256 is not "".
  std::filesystem::path ImageFileOf(std::string_view component_id) const;
  const std::filesystem::path& apps_dir() const { return apps_dir_; }
  const std::filesystem::path& state_file() const { return state_file_; }

 private:
  struct Candidate;
  enum class SwapMode { kImmediate, kTrial };

  explicit AppStore(StoreOptions options);
  Expected<std::vector<crypto::PublicKey>> TrustedSigners(InstallSource source);
  void Fault(std::string_view step) const;
  // install_mutex_ held by the caller for all of these.
  Expected<InstalledApp> InstallLocked(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                       InstallSource source, std::optional<std::string_view> expected_component_id,
                                       SwapMode mode, const BeforeCommit& before_commit);
  Expected<Candidate> Check(std::span<const std::uint8_t> image_bytes, std::string_view label,
                            const std::string& context, InstallSource source,
                            std::optional<std::string_view> expected_component_id, SwapMode mode);
  Expected<void> FinishSwap(std::string_view component_id);
  Expected<void> Commit(std::string_view component_id);
  Expected<void> Revert(std::string_view component_id);
  void RepairAtOpen();
  void RebuildPolicies();
  void RemoveLeftovers();
  // Writes `next` and makes it the state; mutex_ held by the caller.
  Expected<void> SaveLocked(AppsState next);

  StoreOptions options_;
  std::filesystem::path apps_dir_;
  std::filesystem::path state_file_;

  std::mutex install_mutex_;  // serialises installs, trials and removals (held across I/O)
  mutable std::mutex mutex_;  // guards the fields below (never held across extraction)
  AppsState state_;
  app::ResourceRegistry registry_;
  std::map<std::string, app::Policy, std::less<>> policies_;
  std::map<std::string, std::string, std::less<>> problems_;
};

// Removes a tree extracted read-only (directories 0555) and anything else.
Expected<void> RemoveTree(const std::filesystem::path& path);

}  // namespace citadel::apps
