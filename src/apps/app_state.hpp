// apps/state.json: which apps are installed on the device and what the
// operator wants them to do. The one source of truth the app store rebuilds
// its in-memory view from at citadeld start.
//
//   {"schema_version": 1,
//    "apps": {"<component id>": {"name", "digest", "slot", "image_signer",
//                                "sideloaded", "desired": "running"|"stopped",
//                                "installed_at"}}}
//
// Security contract: the file is written only by citadeld (root, 0600) and
// replaced atomically (WriteFileAtomic), so after a crash it holds either the
// previous or the new set of apps. Loading is strict: a file that does not
// parse is an error, never an empty set of apps (that would silently drop
// the resource claims of every installed app).
//
// Threading: plain functions and values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
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

  bool operator==(const InstalledApp&) const = default;
};

struct AppsState {
  std::map<std::string, InstalledApp, std::less<>> apps;  // by component id
};

// A missing file is an empty state; anything malformed is kParse naming the
// field.
[[nodiscard]] Expected<AppsState> LoadAppsState(const std::filesystem::path& path);
[[nodiscard]] Expected<void> SaveAppsState(const std::filesystem::path& path, const AppsState& state);

}  // namespace citadel::apps
