// apps/state.json: which apps are installed on the device, what the
// operator wants them to do, and the update trials in progress. The one
// source of truth the app store rebuilds its in-memory view from at
// citadeld start.
//
//   {"schema_version": 1,
//    "apps": {"<component id>": {"name", "digest", "slot", "image_signer",
//                                "sideloaded", "desired": "running"|"stopped",
//                                "installed_at", "version", "security_version",
//                                "image_sha256"}},
//    "trials": {"<component id>": {"image_sha256", "started_at", "exits",
//                                  "phase": "open"|"reverting",
//                                  "immediate", "previous": {app} | null}}}
//
// An app with a trial runs the version in "apps" (the new one) while the
// previous version's tree and image stay beside it, recorded in the trial's
// "previous" (null when the trial is a first install). "version",
// "security_version", "image_sha256" and "trials" are optional when
// loading (files written before app updates existed); they are always
// written.
//
// Security contract: the file is written only by citadeld (root, 0600) and
// replaced atomically (WriteFileAtomic), so after a crash it holds either the
// previous or the new set of apps. Loading is strict: a file that does not
// parse is an error, never an empty set of apps (that would silently drop
// the resource claims of every installed app), and a trial that does not
// belong to an installed app is an error.
//
// Threading: plain functions and values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel::apps {

// App uids are kFirstAppUid + slot; slots are small, dense and persistent
// per component id, so an app keeps owning its storage across restarts and
// updates.
inline constexpr uid_t kFirstAppUid = 61000;
inline constexpr std::uint32_t kMaxAppSlots = 1000;
inline constexpr std::size_t kMaxStateBytes = 4u << 20;

inline uid_t AppUid(std::uint32_t slot) { return kFirstAppUid + slot; }

enum class DesiredState { kRunning, kStopped };
std::string_view DesiredStateName(DesiredState state);

struct InstalledApp {
  std::string component_id;
  std::string name;
  std::string digest;        // image digest (lower-case hex), what the device measures
  std::uint32_t slot = 0;    // uid/gid = AppUid(slot)
  std::string image_signer;  // publisher key id that signed the image
  bool sideloaded = false;
  DesiredState desired = DesiredState::kStopped;
  std::string installed_at;  // RFC 3339
  std::string version;       // manifest Version ("" when none)
  std::int64_t security_version = 0;
  // Lower-case hex SHA-256 of the whole image file as installed (what a
  // TUF target's hash names); "" for apps installed before images were kept.
  std::string image_sha256;

  bool operator==(const InstalledApp&) const = default;
};

enum class TrialPhase {
  kOpen,       // the new version is in place (or being swapped in) and on trial
  kReverting,  // the previous version is being put back
};

struct TrialRecord {
  std::string image_sha256;  // the version on trial (equals the app's image_sha256)
  std::string started_at;    // RFC 3339
  std::uint32_t exits = 0;   // unplanned exits (and failed restarts) of the new version during the trial
  TrialPhase phase = TrialPhase::kOpen;
  // A plain install (sideload, development interface): swapped in the same
  // way, then committed at once; never reported as a trial.
  bool immediate = false;
  std::optional<InstalledApp> previous;  // nullopt: the trial installs the app for the first time

  bool operator==(const TrialRecord&) const = default;
};

struct AppsState {
  std::map<std::string, InstalledApp, std::less<>> apps;   // by component id
  std::map<std::string, TrialRecord, std::less<>> trials;  // by component id; each names an app in `apps`
};

// A missing file is an empty state; anything malformed is kParse naming the
// field.
[[nodiscard]] Expected<AppsState> LoadAppsState(const std::filesystem::path& path);
[[nodiscard]] Expected<void> SaveAppsState(const std::filesystem::path& path, const AppsState& state);

}  // namespace citadel::apps
