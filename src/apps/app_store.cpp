#include "apps/app_store.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <system_error>

#include "app/manifest.hpp"
#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"
#include "update/fault.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kRootDir = "root";
constexpr std::string_view kStagingDir = "root.staging";
constexpr std::string_view kPreviousDir = "root.previous";
constexpr std::string_view kDiscardDir = "root.discard";
constexpr std::string_view kImageFile = "image.img";
constexpr std::string_view kImageStaging = "image.staging";
constexpr std::string_view kImagePrevious = "image.previous";
constexpr std::string_view kImageDiscard = "image.discard";
constexpr std::string_view kStorageImage = "storage.ext4";

// One of the two things a version of an app is on disk (its tree, its
// image file) under the four names a swap or a revert moves it through.
struct VersionedPaths {
  std::string_view what;  // "root" or "image", for fault labels and messages
  fs::path current;
  fs::path staging;
  fs::path previous;
  fs::path discard;
};

std::array<VersionedPaths, 2> VersionedPathsIn(const fs::path& app_dir) {
  return {
      VersionedPaths{"root", app_dir / kRootDir, app_dir / kStagingDir, app_dir / kPreviousDir, app_dir / kDiscardDir},
      VersionedPaths{"image", app_dir / kImageFile, app_dir / kImageStaging, app_dir / kImagePrevious,
                     app_dir / kImageDiscard}};
}

std::string Lower(std::string_view text) {
  std::string result(text);
  std::transform(result.begin(), result.end(), result.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return result;
}

bool Exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

std::string ErrnoText(int error) { return ::strerrordesc_np(error) != nullptr ? ::strerrordesc_np(error) : "error"; }

Expected<void> FsyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, "opening " + dir.string() + ": " + ErrnoText(errno));
  int synced = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (synced != 0) return MakeError(ErrorCode::kIo, "syncing " + dir.string() + ": " + ErrnoText(error));
  return kOk;
}

// A rename whose directory entry is on disk when it returns, so the order of
// the swap's renames is the order a power cut can observe.
Expected<void> DurableRename(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return MakeError(ErrorCode::kIo, "moving " + from.string() + " to " + to.string() + ": " + ErrnoText(errno));
  }
  return FsyncDirectory(to.parent_path());
}

struct TreeInfo {
  app::Manifest manifest;
  app::Policy policy;
};

// The manifest and policy of an installed tree, from its canonical
// app_manifest.json.
Expected<TreeInfo> ReadTree(const fs::path& root, const app::BoardDefinition& board, const app::DevicePolicy& device) {
  CITADEL_TRY(auto text, ReadFile(root / image::kManifestFileName, app::kMaxManifestBytes));
  CITADEL_TRY(auto manifest, app::ParseManifest(text));
  CITADEL_TRY(auto policy, app::BuildPolicy(manifest, board, device));
  return TreeInfo{std::move(manifest), std::move(policy)};
}

// What an app holds while one of its versions is on trial: the exclusive
// resources of both, so that putting the previous version back never meets
// another app holding what it needs.
app::Policy ClaimsOfBoth(app::Policy current, const app::Policy& previous) {
  current.peripherals.insert(current.peripherals.end(), previous.peripherals.begin(), previous.peripherals.end());
  current.tcp_server_ports.insert(current.tcp_server_ports.end(), previous.tcp_server_ports.begin(),
                                  previous.tcp_server_ports.end());
  current.udp_server_ports.insert(current.udp_server_ports.end(), previous.udp_server_ports.begin(),
                                  previous.udp_server_ports.end());
  return current;
}

}  // namespace

struct AppStore::Candidate {
  image::VerifiedImage verified;
  app::Policy policy;
  InstalledApp record;
  std::optional<InstalledApp> previous;  // the installed version an update replaces
  app::ResourceRegistry registry;        // the claims once it is installed
};

Expected<void> RemoveTree(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return kOk;
  if (fs::is_directory(fs::symlink_status(path, ec))) {
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    for (fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::error_code item_ec;
      if (it->is_directory(item_ec) && !it->is_symlink(item_ec)) {
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, item_ec);
      }
    }
  }
  fs::remove_all(path, ec);
  if (ec) return MakeError(ErrorCode::kIo, "removing " + path.string() + ": " + ec.message());
  return kOk;
}

AppStore::AppStore(StoreOptions options)
    : options_(std::move(options)),
      apps_dir_(options_.state_dir / "apps"),
      state_file_(options_.state_dir / "apps" / "state.json") {}

void AppStore::Fault(std::string_view step) const {
  if (options_.fault_point) {
    options_.fault_point(step);
  } else {
    update::FaultPoint(step);
  }
}

Expected<void> AppStore::SaveLocked(AppsState next) {
  CITADEL_TRY_VOID(SaveAppsState(state_file_, next));
  state_ = std::move(next);
  return kOk;
}

Expected<std::unique_ptr<AppStore>> AppStore::Open(StoreOptions options) {
  if (options.trust == nullptr) return MakeError(ErrorCode::kInvalidArgument, "app store: no trust source");
  std::unique_ptr<AppStore> store(new AppStore(std::move(options)));
  CITADEL_TRY_VOID(EnsureDirectory(store->apps_dir_, 0700));
  CITADEL_TRY(store->state_, LoadAppsState(store->state_file_));
  store->RepairAtOpen();
  store->RebuildPolicies();
  store->RemoveLeftovers();
  return store;
}

// A crash (or power cut) interrupted a swap, commit or revert: finish it, so
// that each app is installed in exactly one valid version. Trials that were
// open stay open; the update client decides their fate.
void AppStore::RepairAtOpen() {
  std::vector<std::pair<std::string, TrialRecord>> trials(state_.trials.begin(), state_.trials.end());
  for (const auto& [component_id, trial] : trials) {
    Expected<void> repaired = kOk;
    if (trial.phase == TrialPhase::kReverting) {
      repaired = Revert(component_id);
    } else {
      repaired = FinishSwap(component_id);
      if (!repaired) {
        log::Error("cannot finish installing an app version; putting the previous one back",
                   {{"component_id", component_id}, {"reason", repaired.error().message()}});
        repaired = Revert(component_id);
      } else if (trial.immediate) {
        repaired = Commit(component_id);
      }
    }
    if (!repaired) {
      log::Error("cannot repair an app after an interrupted update",
                 {{"component_id", component_id}, {"reason", repaired.error().message()}});
    }
  }
}

void AppStore::RebuildPolicies() {
  registry_ = app::ResourceRegistry();
  policies_.clear();
  problems_.clear();
  for (auto& [component_id, installed] : state_.apps) {
    auto tree = ReadTree(RootOf(component_id), options_.board, options_.device_policy);
    if (tree && tree->policy.component_id != component_id) {
      tree = MakeError(ErrorCode::kInternal, "the installed manifest names component id " + tree->policy.component_id);
    }
    Expected<void> claimed = tree ? kOk : Expected<void>(std::unexpected(tree.error()));
    if (tree) {
      // Apps installed before versions were recorded take them from their manifest.
      if (installed.version.empty() && installed.security_version == 0) {
        installed.version = tree->manifest.version;
        installed.security_version = tree->manifest.security_version;
      }
      app::Policy claims = tree->policy;
      auto trial = state_.trials.find(component_id);
      if (trial != state_.trials.end() && trial->second.previous) {
        auto previous = ReadTree(apps_dir_ / component_id / kPreviousDir, options_.board, options_.device_policy);
        if (previous) claims = ClaimsOfBoth(std::move(claims), previous->policy);
      }
      claimed = registry_.Claim(claims);
    }
    if (!claimed) {
      std::string problem = "cannot rebuild its policy: " + claimed.error().message() + "; reinstall or remove it";
      log::Error("installed app cannot start", {{"component_id", component_id}, {"reason", problem}});
      problems_.emplace(component_id, std::move(problem));
      continue;
    }
    policies_.emplace(component_id, std::move(tree->policy));
  }
}

// Leftovers of an install, update or removal interrupted by a crash:
// directories of apps that state.json does not list, staging and discarded
// versions, temporary files (hidden names), and a previous version whose
// trial is over.
void AppStore::RemoveLeftovers() {
  std::error_code ec;
  for (fs::directory_iterator it(apps_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_directory(type_ec)) continue;
    auto name = it->path().filename().string();
    if (!state_.apps.contains(name)) {
      log::Warn("removing files of an app that is not installed", {{"path", it->path().string()}});
      (void)RemoveTree(it->path());
      continue;
    }
    const bool trial_open = state_.trials.contains(name);
    std::error_code inner_ec;
    for (fs::directory_iterator entry(it->path(), inner_ec), entries_end; !inner_ec && entry != entries_end;
         entry.increment(inner_ec)) {
      auto entry_name = entry->path().filename().string();
      bool leftover = entry_name.starts_with('.') || entry_name == kStagingDir || entry_name == kImageStaging ||
                      entry_name == kDiscardDir || entry_name == kImageDiscard;
      if (!trial_open && (entry_name == kPreviousDir || entry_name == kImagePrevious)) leftover = true;
      if (leftover) (void)RemoveTree(entry->path());
    }
  }
}

fs::path AppStore::RootOf(std::string_view component_id) const { return apps_dir_ / component_id / kRootDir; }
fs::path AppStore::StorageImageOf(std::string_view component_id) const {
  return apps_dir_ / component_id / kStorageImage;
}
fs::path AppStore::ImageFileOf(std::string_view component_id) const { return apps_dir_ / component_id / kImageFile; }

Expected<std::vector<crypto::PublicKey>> AppStore::TrustedSigners(InstallSource source) {
  std::vector<crypto::PublicKey> trusted;
  if (source == InstallSource::kSideload) {
    CITADEL_TRY(auto grant, options_.trust->Development());
    if (!grant) return MakeError(ErrorCode::kFailedPrecondition, std::string(kSideloadRefused));
    CITADEL_TRY(trusted, options_.trust->PublisherKeys());
    for (auto& key : grant->developer_keys) trusted.push_back(std::move(key));
  } else {
    CITADEL_TRY(trusted, options_.trust->PublisherKeys());
  }
  if (trusted.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this device trusts no publisher keys yet: it learns the tenant's keys from the service at "
                     "check-in (or, in development mode, from the capability's DeveloperKeys)");
  }
  return trusted;
}

Expected<InstalledApp> AppStore::InstallFile(const fs::path& image_file, InstallSource source,
                                             const BeforeCommit& before_commit) {
  auto bytes = ReadFile(image_file, image::kMaxImageBytes);
  if (!bytes) return WrapError(bytes.error(), "reading " + image_file.string());
  return Install(AsBytes(*bytes), image_file.string(), source, before_commit);
}

Expected<InstalledApp> AppStore::Install(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                         InstallSource source, const BeforeCommit& before_commit) {
  std::lock_guard install_lock(install_mutex_);
  return InstallLocked(image_bytes, label, source, std::nullopt, SwapMode::kImmediate, before_commit);
}

Expected<InstalledApp> AppStore::BeginTrial(const fs::path& image_file, std::string_view expected_component_id,
                                            const BeforeCommit& before_commit) {
  auto bytes = ReadFile(image_file, image::kMaxImageBytes);
  if (!bytes) return WrapError(bytes.error(), "reading " + image_file.string());
  std::lock_guard install_lock(install_mutex_);
  return InstallLocked(AsBytes(*bytes), image_file.string(), InstallSource::kTenant, expected_component_id,
                       SwapMode::kTrial, before_commit);
}

Expected<AppStore::Candidate> AppStore::Check(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                              const std::string& context, InstallSource source,
                                              std::optional<std::string_view> expected_component_id, SwapMode mode) {
  // 1. Who may sign it, then the signature and every byte it covers.
  auto trusted = TrustedSigners(source);
  if (!trusted) return WrapError(trusted.error(), context);
  auto info = image::ParseImage(image_bytes, label);
  if (!info) return WrapError(info.error(), context);
  auto verified = image::VerifyImage(*info, *trusted);
  if (!verified) return WrapError(verified.error(), context);

  // 2. What it asks for, on this board, within this device's policy.
  auto manifest_text = CanonicalJson(verified->info().manifest);
  if (!manifest_text) return WrapError(manifest_text.error(), context + ": manifest");
  auto manifest = app::ParseManifest(*manifest_text);
  if (!manifest) return WrapError(manifest.error(), context + ": app_manifest.json");
  auto policy = app::BuildPolicy(*manifest, options_.board, options_.device_policy);
  if (!policy) return WrapError(policy.error(), context + ": app_manifest.json");
  const std::string& component_id = policy->component_id;
  if (expected_component_id && component_id != Lower(*expected_component_id)) {
    return MakeError(ErrorCode::kInvalidArgument, context + ": the image is app " + component_id + ", not " +
                                                      Lower(*expected_component_id) + " as assigned");
  }

  // 3. Exclusive resources and the record, decided on copies.
  InstalledApp record;
  std::optional<InstalledApp> previous;
  app::ResourceRegistry registry;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [other_id, other] : state_.apps) {
      if (other_id == component_id) continue;
      auto other_trial = state_.trials.find(other_id);
      bool previous_name_taken = other_trial != state_.trials.end() && other_trial->second.previous &&
                                 other_trial->second.previous->name == policy->name;
      if (other.name == policy->name || previous_name_taken) {
        std::string message = context;
        message += ": an app named \"" + policy->name + "\" is already installed with component id ";
        message += other_id;
        message += "; remove it first or rename this app";
        return MakeError(ErrorCode::kConflict, std::move(message));
      }
    }
    if (state_.trials.contains(component_id)) {
      return MakeError(ErrorCode::kConflict, context + ": an update of app " + component_id +
                                                 " is on trial; install again once it was committed or reverted");
    }
    registry = registry_;
    auto existing = state_.apps.find(component_id);
    app::Policy claims = *policy;
    if (existing != state_.apps.end() && mode == SwapMode::kTrial) {
      if (auto installed = policies_.find(component_id); installed != policies_.end()) {
        claims = ClaimsOfBoth(std::move(claims), installed->second);
      }
    }
    if (auto claimed = registry.Claim(claims); !claimed) return WrapError(claimed.error(), context);
    if (existing != state_.apps.end()) {
      previous = existing->second;
      record = existing->second;
    } else {
      std::set<std::uint32_t> used;
      for (const auto& [id, app] : state_.apps) used.insert(app.slot);
      std::uint32_t slot = 0;
      while (slot < kMaxAppSlots && used.contains(slot)) ++slot;
      if (slot == kMaxAppSlots) {
        return MakeError(ErrorCode::kFailedPrecondition, context + ": the device has no free app slot; remove an app");
      }
      record.slot = slot;
      // A deployment installs an app to run it; an operator starts what they install.
      record.desired = mode == SwapMode::kTrial ? DesiredState::kRunning : DesiredState::kStopped;
    }
  }
  record.component_id = component_id;
  record.name = policy->name;
  record.digest = verified->info().digest;
  record.image_signer = verified->info().key_id;
  record.sideloaded = source == InstallSource::kSideload;
  record.installed_at = FormatRfc3339(options_.now());
  record.version = manifest->version;
  record.security_version = manifest->security_version;
  return Candidate{std::move(*verified), std::move(*policy), std::move(record), std::move(previous),
                   std::move(registry)};
}

Expected<InstalledApp> AppStore::InstallLocked(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                               InstallSource source,
                                               std::optional<std::string_view> expected_component_id, SwapMode mode,
                                               const BeforeCommit& before_commit) {
  const bool trial = mode == SwapMode::kTrial;
  const std::string context = std::string(trial ? "updating to " : "installing ") + std::string(label);
  const std::string image_sha256 = HexEncode(crypto::Sha256(image_bytes));
  if (trial) {
    std::lock_guard lock(mutex_);
    auto open = state_.trials.find(Lower(expected_component_id.value_or("")));
    if (open != state_.trials.end() && !open->second.immediate && open->second.phase == TrialPhase::kOpen &&
        open->second.image_sha256 == image_sha256) {
      return state_.apps.at(open->first);  // this very image is already on trial
    }
  }
  CITADEL_TRY(auto candidate, Check(image_bytes, label, context, source, expected_component_id, mode));
  candidate.record.image_sha256 = image_sha256;
  const InstalledApp& record = candidate.record;
  const std::string& component_id = record.component_id;

  // 4. Stage the new version beside the installed one. A failure here
  // removes what was staged and changes nothing.
  const auto app_dir = apps_dir_ / component_id;
  const bool created_app_dir = !Exists(app_dir);
  auto cleanup = [&] {
    (void)RemoveTree(app_dir / kStagingDir);
    (void)RemoveTree(app_dir / kImageStaging);
    if (created_app_dir) (void)RemoveTree(app_dir);
  };
  if (auto made = EnsureDirectory(app_dir, 0755); !made) {
    cleanup();
    return WrapError(made.error(), context);
  }
  // No trial is open (Check refused that), so anything but the installed
  // version is a leftover of an earlier failure.
  for (const auto& paths : VersionedPathsIn(app_dir)) {
    for (const auto* stale : {&paths.staging, &paths.previous, &paths.discard}) (void)RemoveTree(*stale);
  }
  if (auto extracted = image::ExtractImage(candidate.verified, app_dir / kStagingDir); !extracted) {
    cleanup();
    return WrapError(extracted.error(), context);
  }
  if (auto kept = WriteFileAtomic(app_dir / kImageStaging, AsText(image_bytes), 0600); !kept) {
    cleanup();
    return WrapError(kept.error(), context);
  }
  Fault("apps:staged");

  if (before_commit) before_commit(record, candidate.previous.has_value());

  // 5. The record of the swap, then the swap. From here on Open() completes
  // what a crash interrupts.
  {
    std::lock_guard lock(mutex_);
    AppsState next = state_;
    next.apps[component_id] = record;
    next.trials[component_id] =
        TrialRecord{image_sha256, FormatRfc3339(options_.now()), 0, TrialPhase::kOpen, !trial, candidate.previous};
    if (auto saved = SaveLocked(std::move(next)); !saved) {
      cleanup();
      return WrapError(saved.error(), context);
    }
    registry_ = std::move(candidate.registry);
    policies_.insert_or_assign(component_id, candidate.policy);
    problems_.erase(component_id);
  }
  Fault("apps:swap-recorded");
  if (auto swapped = FinishSwap(component_id); !swapped) {
    log::Error("cannot move the new app version into place; putting the previous one back",
               {{"component_id", component_id}, {"reason", swapped.error().message()}});
    if (auto reverted = Revert(component_id); !reverted) {
      log::Error("cannot put the previous app version back; the next start of citadeld retries",
                 {{"component_id", component_id}, {"reason", reverted.error().message()}});
    }
    return WrapError(swapped.error(), context);
  }
  if (!trial) {
    if (auto committed = Commit(component_id); !committed) return WrapError(committed.error(), context);
  }
  std::string_view what = "app installed";
  if (trial) {
    what = "app update on trial";
  } else if (candidate.previous) {
    what = "app updated";
  }
  log::Info(what, {{"component_id", component_id},
                   {"name", record.name},
                   {"version", record.version},
                   {"digest", record.digest},
                   {"signer", record.image_signer},
                   {"sideloaded", record.sideloaded ? "true" : "false"}});
  return record;
}

// Moves what is staged into place, keeping the installed version as
// *.previous: root first, then the image. Idempotent: each rename is
// decided by which names exist, so it can resume after a crash anywhere.
Expected<void> AppStore::FinishSwap(std::string_view component_id) {
  for (const auto& paths : VersionedPathsIn(apps_dir_ / component_id)) {
    if (!Exists(paths.staging)) continue;  // swapped already (or nothing staged)
    if (Exists(paths.current)) {
      if (Exists(paths.previous)) {
        return MakeError(ErrorCode::kInternal,
                         "both " + paths.current.string() + " and " + paths.previous.string() + " exist");
      }
      CITADEL_TRY_VOID(DurableRename(paths.current, paths.previous));
      Fault("apps:" + std::string(paths.what) + "-kept");
    }
    CITADEL_TRY_VOID(DurableRename(paths.staging, paths.current));
    Fault("apps:" + std::string(paths.what) + "-swapped");
  }
  return kOk;
}

Expected<void> AppStore::CommitTrial(std::string_view component_id) {
  std::lock_guard install_lock(install_mutex_);
  {
    std::lock_guard lock(mutex_);
    auto trial = state_.trials.find(component_id);
    if (trial == state_.trials.end()) return kOk;
    if (trial->second.phase == TrialPhase::kReverting) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "app " + std::string(component_id) + ": its trial is being reverted and cannot be committed");
    }
  }
  CITADEL_TRY_VOID(Commit(component_id));
  log::Info("app update committed", {{"component_id", component_id}});
  return kOk;
}

Expected<void> AppStore::Commit(std::string_view component_id) {
  CITADEL_TRY_VOID(FinishSwap(component_id));
  {
    std::lock_guard lock(mutex_);
    AppsState next = state_;
    next.trials.erase(std::string(component_id));
    CITADEL_TRY_VOID(SaveLocked(std::move(next)));
    // Drop the previous version's claims: a subset of what is held, so
    // claiming again cannot conflict.
    if (auto policy = policies_.find(component_id); policy != policies_.end()) {
      (void)registry_.Claim(policy->second);
    }
  }
  Fault("apps:committed");
  const auto app_dir = apps_dir_ / component_id;
  for (const auto& paths : VersionedPathsIn(app_dir)) {
    if (auto removed = RemoveTree(paths.previous); !removed) {
      log::Warn("committed, but the previous version's files remain; the next start removes them",
                {{"component_id", component_id}, {"reason", removed.error().message()}});
    }
  }
  Fault("apps:previous-removed");
  return kOk;
}

Expected<void> AppStore::RevertTrial(std::string_view component_id) {
  std::lock_guard install_lock(install_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (!state_.trials.contains(component_id)) return kOk;
  }
  CITADEL_TRY_VOID(Revert(component_id));
  log::Info("app update reverted", {{"component_id", component_id}});
  return kOk;
}

Expected<void> AppStore::Revert(std::string_view component_id) {
  TrialRecord trial;
  {
    std::lock_guard lock(mutex_);
    auto found = state_.trials.find(component_id);
    if (found == state_.trials.end()) return kOk;
    trial = found->second;
    if (trial.phase != TrialPhase::kReverting) {
      // Recorded first: from here a crash finishes the revert, never the swap.
      AppsState next = state_;
      next.trials[std::string(component_id)].phase = TrialPhase::kReverting;
      CITADEL_TRY_VOID(SaveLocked(std::move(next)));
    }
  }
  Fault("apps:revert-recorded");
  const auto app_dir = apps_dir_ / component_id;
  const auto paths = VersionedPathsIn(app_dir);
  if (trial.previous) {
    for (const auto& path : paths) {
      if (Exists(path.previous)) {
        CITADEL_TRY_VOID(RemoveTree(path.discard));
        if (Exists(path.current)) {
          CITADEL_TRY_VOID(DurableRename(path.current, path.discard));
          Fault("apps:" + std::string(path.what) + "-discarded");
        }
        CITADEL_TRY_VOID(DurableRename(path.previous, path.current));
        Fault("apps:" + std::string(path.what) + "-restored");
      } else if (path.what == "image" && trial.previous->image_sha256.empty() && Exists(path.current)) {
        // The previous version was installed before images were kept: the
        // image in place is the trial's.
        CITADEL_TRY_VOID(DurableRename(path.current, path.discard));
        Fault("apps:image-discarded");
      }
      // Otherwise the previous version is in place: restored before a
      // crash, or never moved because the swap had not begun.
    }
  }
  std::optional<TreeInfo> restored_tree;
  std::string problem;
  if (trial.previous) {
    auto tree = ReadTree(app_dir / kRootDir, options_.board, options_.device_policy);
    if (tree) {
      restored_tree = std::move(*tree);
    } else {
      problem = "cannot rebuild its policy: " + tree.error().message() + "; reinstall or remove it";
    }
  }
  {
    std::lock_guard lock(mutex_);
    AppsState next = state_;
    const std::string id(component_id);
    if (trial.previous) {
      InstalledApp restored = *trial.previous;
      if (auto current = next.apps.find(id); current != next.apps.end()) restored.desired = current->second.desired;
      next.apps[id] = restored;
    } else {
      next.apps.erase(id);
    }
    next.trials.erase(id);
    CITADEL_TRY_VOID(SaveLocked(std::move(next)));
    problems_.erase(id);
    policies_.erase(id);
    if (restored_tree && registry_.Claim(restored_tree->policy)) {
      policies_.emplace(id, restored_tree->policy);
    } else {
      registry_.Release(id);
      if (trial.previous) problems_.emplace(id, problem.empty() ? "its resources are held by another app" : problem);
    }
  }
  Fault("apps:reverted");
  if (trial.previous) {
    for (const auto& path : paths) {
      (void)RemoveTree(path.staging);
      (void)RemoveTree(path.discard);
    }
  } else if (auto removed = RemoveTree(app_dir); !removed) {
    log::Warn("reverted, but the trial version's files remain; the next start removes them",
              {{"component_id", component_id}, {"reason", removed.error().message()}});
  }
  Fault("apps:trial-removed");
  return kOk;
}

std::optional<TrialRecord> AppStore::TrialOf(std::string_view component_id) const {
  std::lock_guard lock(mutex_);
  auto found = state_.trials.find(component_id);
  if (found == state_.trials.end() || found->second.immediate) return std::nullopt;
  return found->second;
}

std::uint32_t AppStore::RecordTrialExit(std::string_view component_id) {
  std::lock_guard lock(mutex_);
  auto found = state_.trials.find(component_id);
  if (found == state_.trials.end() || found->second.immediate || found->second.phase != TrialPhase::kOpen) return 0;
  AppsState next = state_;
  std::uint32_t exits = ++next.trials[std::string(component_id)].exits;
  if (auto saved = SaveLocked(std::move(next)); !saved) {
    // The count still decides this trial; only a crash would forget it.
    log::Warn("cannot record an exit of an app on trial",
              {{"component_id", component_id}, {"reason", saved.error().message()}});
    found->second.exits = exits;
  }
  return exits;
}

Expected<void> AppStore::Remove(std::string_view component_id) {
  std::lock_guard install_lock(install_mutex_);
  {
    std::lock_guard lock(mutex_);
    auto found = state_.apps.find(component_id);
    if (found == state_.apps.end()) {
      return MakeError(ErrorCode::kNotFound, "app " + std::string(component_id) + " is not installed");
    }
    AppsState next = state_;
    next.apps.erase(std::string(component_id));
    next.trials.erase(std::string(component_id));
    CITADEL_TRY_VOID(SaveLocked(std::move(next)));
    registry_.Release(component_id);
    if (auto policy = policies_.find(component_id); policy != policies_.end()) policies_.erase(policy);
    if (auto problem = problems_.find(component_id); problem != problems_.end()) problems_.erase(problem);
  }
  auto removed = RemoveTree(apps_dir_ / component_id);
  if (!removed) {
    // The app is no longer installed; Open() removes the leftovers later.
    log::Warn("app removed but its files remain",
              {{"component_id", component_id}, {"reason", removed.error().message()}});
  }
  log::Info("app removed", {{"component_id", component_id}});
  return kOk;
}

Expected<void> AppStore::SetDesired(std::string_view component_id, DesiredState desired) {
  std::lock_guard lock(mutex_);
  auto found = state_.apps.find(component_id);
  if (found == state_.apps.end()) {
    return MakeError(ErrorCode::kNotFound, "app " + std::string(component_id) + " is not installed");
  }
  if (found->second.desired == desired) return kOk;
  AppsState next = state_;
  next.apps[std::string(component_id)].desired = desired;
  return SaveLocked(std::move(next));
}

std::vector<InstalledApp> AppStore::List() const {
  std::lock_guard lock(mutex_);
  std::vector<InstalledApp> result;
  result.reserve(state_.apps.size());
  for (const auto& [id, app] : state_.apps) result.push_back(app);
  return result;
}

Expected<InstalledApp> AppStore::Resolve(std::string_view name_or_component_id) const {
  std::lock_guard lock(mutex_);
  if (auto found = state_.apps.find(Lower(name_or_component_id)); found != state_.apps.end()) return found->second;
  for (const auto& [id, app] : state_.apps) {
    if (app.name == name_or_component_id) return app;
  }
  return MakeError(ErrorCode::kNotFound, "no installed app is named or has component id \"" +
                                             std::string(name_or_component_id) +
                                             "\"; list installed apps with `citadel device app list`");
}

Expected<app::Policy> AppStore::PolicyOf(std::string_view component_id) const {
  std::lock_guard lock(mutex_);
  if (auto found = policies_.find(component_id); found != policies_.end()) return found->second;
  if (auto problem = problems_.find(component_id); problem != problems_.end()) {
    return MakeError(ErrorCode::kFailedPrecondition, "app " + std::string(component_id) + " " + problem->second);
  }
  return MakeError(ErrorCode::kNotFound, "app " + std::string(component_id) + " is not installed");
}

std::string AppStore::Problem(std::string_view component_id) const {
  std::lock_guard lock(mutex_);
  auto found = problems_.find(component_id);
  return found == problems_.end() ? std::string() : found->second;
}

std::optional<app::ResourceHolder> AppStore::HolderOf(std::string_view resource_key) const {
  std::lock_guard lock(mutex_);
  return registry_.HolderOf(resource_key);
}

}  // namespace citadel::apps
