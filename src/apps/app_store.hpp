// The set of apps installed on the device: installing signed images,
// removing them, and the per-app policy and resource claims derived from
// them. Files under the device state directory:
//
//   apps/state.json          installed apps (app_state.hpp)
//   apps/<cid>/root/         the extracted image, read-only
//   apps/<cid>/storage.ext4  the app's mutable storage image (made at start)
//
// Install: ParseImage -> VerifyImage (trusted publisher keys; for sideloads
// also the development grant's developer keys, and only when a valid grant
// exists) -> ParseManifest -> BuildPolicy(board, device policy) ->
// ResourceRegistry::Claim (on a copy) -> ExtractImage into a staging
// directory -> state.json (atomic) -> staging swapped into root/.
//
// Security contract: nothing about the installed apps changes until every
// check passed; any failure (bad signature, untrusted signer, manifest
// changed after signing, board or policy refusal, a resource another app
// holds, an I/O error) leaves state.json, the installed trees and the
// claims exactly as they were. A sideload without a valid AppDevelopment
// capability is refused before its signature is even considered.
//
// Threading: all methods are safe from any thread. Installs and removals
// are serialised; readers never wait for an extraction.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
};

enum class InstallSource {
  kTenant,    // a tenant-signed image: publisher keys only
  kSideload,  // development: needs the capability; developer keys also trusted
};

class AppStore {
 public:
  // Loads apps/state.json and rebuilds every app's policy and claims. An app
  // whose policy no longer builds (board changed, tree damaged) stays
  // installed but cannot start; Problem() says why.
  static Expected<std::unique_ptr<AppStore>> Open(StoreOptions options);

  // Called after all checks passed and before anything changes, with the
  // app as it will be recorded; true in `update` when the component id is
  // already installed (the manager stops the old version here).
  using BeforeCommit = std::function<void(const InstalledApp& app, bool update)>;

  [[nodiscard]] Expected<InstalledApp> Install(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                               InstallSource source, const BeforeCommit& before_commit = {});
  [[nodiscard]] Expected<InstalledApp> InstallFile(const std::filesystem::path& image_file, InstallSource source,
                                                   const BeforeCommit& before_commit = {});
  // Forgets the app (state.json first), releases its claims, then deletes
  // its tree and storage image. The caller stops it first.
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
  const std::filesystem::path& apps_dir() const { return apps_dir_; }
  const std::filesystem::path& state_file() const { return state_file_; }

 private:
  explicit AppStore(StoreOptions options);
  Expected<std::vector<crypto::PublicKey>> TrustedSigners(InstallSource source);

  StoreOptions options_;
  std::filesystem::path apps_dir_;
  std::filesystem::path state_file_;

  std::mutex install_mutex_;  // serialises Install/Remove (held across I/O)
  mutable std::mutex mutex_;  // guards the fields below (never held across extraction)
  AppsState state_;
  app::ResourceRegistry registry_;
  std::map<std::string, app::Policy, std::less<>> policies_;
  std::map<std::string, std::string, std::less<>> problems_;
};

// Removes a tree extracted read-only (directories 0555) and anything else.
Expected<void> RemoveTree(const std::filesystem::path& path);

}  // namespace citadel::apps
