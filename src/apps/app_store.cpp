#include "apps/app_store.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <system_error>

#include "app/manifest.hpp"
#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "image/image.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kRootDir = "root";
constexpr std::string_view kStagingDir = "root.staging";
constexpr std::string_view kStorageImage = "storage.ext4";

std::string Lower(std::string_view text) {
  std::string result(text);
  std::transform(result.begin(), result.end(), result.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return result;
}

// The policy of an installed tree, from its canonical app_manifest.json.
Expected<app::Policy> PolicyFromTree(const fs::path& root, const app::BoardDefinition& board,
                                     const app::DevicePolicy& device) {
  CITADEL_TRY(auto text, ReadFile(root / image::kManifestFileName, app::kMaxManifestBytes));
  CITADEL_TRY(auto manifest, app::ParseManifest(text));
  return app::BuildPolicy(manifest, board, device);
}

Expected<void> RenameExchange(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) != 0) {
    return MakeError(ErrorCode::kIo,
                     "exchanging " + from.string() + " and " + to.string() + ": " + std::strerror(errno));
  }
  return kOk;
}

}  // namespace

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

Expected<std::unique_ptr<AppStore>> AppStore::Open(StoreOptions options) {
  if (options.trust == nullptr) return MakeError(ErrorCode::kInvalidArgument, "app store: no trust source");
  std::unique_ptr<AppStore> store(new AppStore(std::move(options)));
  CITADEL_TRY_VOID(EnsureDirectory(store->apps_dir_, 0700));
  CITADEL_TRY(store->state_, LoadAppsState(store->state_file_));
  for (const auto& [component_id, installed] : store->state_.apps) {
    auto policy = PolicyFromTree(store->RootOf(component_id), store->options_.board, store->options_.device_policy);
    if (policy && policy->component_id != component_id) {
      policy = MakeError(ErrorCode::kInternal, "the installed manifest names component id " + policy->component_id);
    }
    Expected<void> claimed = policy ? store->registry_.Claim(*policy) : Expected<void>(std::unexpected(policy.error()));
    if (!claimed) {
      std::string problem = "cannot rebuild its policy: " + claimed.error().message() + "; reinstall or remove it";
      log::Error("installed app cannot start", {{"component_id", component_id}, {"reason", problem}});
      store->problems_.emplace(component_id, std::move(problem));
      continue;
    }
    store->policies_.emplace(component_id, std::move(*policy));
  }
  // Leftovers of an install or removal interrupted by a crash: directories of
  // apps that state.json does not list, and staging trees.
  std::error_code ec;
  for (fs::directory_iterator it(store->apps_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory()) continue;
    auto name = it->path().filename().string();
    if (!store->state_.apps.contains(name)) {
      log::Warn("removing files of an app that is not installed", {{"path", it->path().string()}});
      (void)RemoveTree(it->path());
    } else {
      (void)RemoveTree(it->path() / kStagingDir);
    }
  }
  return store;
}

fs::path AppStore::RootOf(std::string_view component_id) const { return apps_dir_ / component_id / kRootDir; }
fs::path AppStore::StorageImageOf(std::string_view component_id) const {
  return apps_dir_ / component_id / kStorageImage;
}

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
  std::string context = "installing " + std::string(label);

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

  // 3. Exclusive resources and the record, decided on copies.
  InstalledApp record;
  app::ResourceRegistry registry;
  AppsState next;
  bool update = false;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [other_id, other] : state_.apps) {
      if (other_id != policy->component_id && other.name == policy->name) {
        std::string message = context;
        message += ": an app named \"" + other.name + "\" is already installed with component id ";
        message += other_id;
        message += "; remove it first or rename this app";
        return MakeError(ErrorCode::kConflict, std::move(message));
      }
    }
    registry = registry_;
    if (auto claimed = registry.Claim(*policy); !claimed) return WrapError(claimed.error(), context);
    next = state_;
    auto existing = state_.apps.find(policy->component_id);
    update = existing != state_.apps.end();
    if (update) {
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
      record.desired = DesiredState::kStopped;
    }
    record.component_id = policy->component_id;
    record.name = policy->name;
    record.digest = verified->info().digest;
    record.image_signer = verified->info().key_id;
    record.sideloaded = source == InstallSource::kSideload;
    record.installed_at = FormatRfc3339(options_.now());
    next.apps[record.component_id] = record;
  }

  if (before_commit) before_commit(record, update);

  // 4. Files: staging tree, then state.json, then the swap. A failure before
  // the state is written removes the staging tree and changes nothing.
  auto app_dir = apps_dir_ / record.component_id;
  auto staging = app_dir / kStagingDir;
  auto root = app_dir / kRootDir;
  std::error_code ec;
  bool created_app_dir = !fs::exists(app_dir, ec);
  auto cleanup = [&] {
    (void)RemoveTree(staging);
    if (created_app_dir) (void)RemoveTree(app_dir);
  };
  if (auto made = EnsureDirectory(app_dir, 0755); !made) {
    cleanup();
    return WrapError(made.error(), context);
  }
  (void)RemoveTree(staging);
  if (auto extracted = image::ExtractImage(*verified, staging); !extracted) {
    cleanup();
    return WrapError(extracted.error(), context);
  }
  if (auto saved = SaveAppsState(state_file_, next); !saved) {
    cleanup();
    return WrapError(saved.error(), context);
  }
  Expected<void> swapped = kOk;
  if (update && fs::exists(root, ec)) {
    swapped = RenameExchange(staging, root);
  } else {
    fs::rename(staging, root, ec);
    if (ec) swapped = MakeError(ErrorCode::kIo, "moving " + staging.string() + " into place: " + ec.message());
  }
  if (!swapped) {
    // Put state.json back so it describes the tree that is really there.
    std::lock_guard lock(mutex_);
    (void)SaveAppsState(state_file_, state_);
    cleanup();
    return WrapError(swapped.error(), context);
  }
  (void)RemoveTree(staging);  // the previous version after an exchange

  {
    std::lock_guard lock(mutex_);
    state_ = std::move(next);
    registry_ = std::move(registry);
    policies_.insert_or_assign(record.component_id, *policy);
    problems_.erase(record.component_id);
  }
  log::Info(update ? "app updated" : "app installed", {{"component_id", record.component_id},
                                                       {"name", record.name},
                                                       {"digest", record.digest},
                                                       {"signer", record.image_signer},
                                                       {"sideloaded", record.sideloaded ? "true" : "false"}});
  return record;
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
    CITADEL_TRY_VOID(SaveAppsState(state_file_, next));
    state_ = std::move(next);
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
  CITADEL_TRY_VOID(SaveAppsState(state_file_, next));
  state_ = std::move(next);
  return kOk;
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
