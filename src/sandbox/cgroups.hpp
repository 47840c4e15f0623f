// One control group per app: memory and pids limits, kill-all, statistics.
// Works on cgroup v2 (memory.max, pids.max, memory.events) when
// /sys/fs/cgroup (or /sys/fs/cgroup/unified) is a cgroup2 mount offering
// both controllers, else on the v1 memory and pids hierarchies
// (memory.limit_in_bytes, memory.memsw.limit_in_bytes, pids.max,
// memory.oom_control). Groups live at <root>/<root_name>/<component_id>.
//
// SECURITY: a component id becomes a directory name, so only
// [A-Za-z0-9._-] (not "." or "..") is accepted.
//
// Threading: a Cgroups value is immutable after Detect(); its methods touch
// only the file system and may be called from any thread, but two threads
// must not Create/Remove the same component at once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace citadel::sandbox {

class Cgroups {
 public:
  enum class Version { kV1, kV2 };

  // Finds the hierarchy to use. kFailedPrecondition when neither a cgroup2
  // mount with memory+pids nor v1 memory and pids hierarchies exist.
  [[nodiscard]] static Expected<Cgroups> Detect(std::string_view root_name = "citadel");

  // Creates (or reuses) the group and sets its limits: memory (swap 0 where
  // settable) and pids. Returns the leaf directory (v2) or the memory and
  // pids leaf directories joined by '\n' (v1): LaunchSpec::cgroup.
  [[nodiscard]] Expected<std::string> Create(std::string_view component_id, std::uint64_t memory_bytes,
                                             std::uint32_t pids);
  // SIGKILLs every process in the group until it is empty (bounded: fails
  // with kUnavailable if processes keep appearing for ~2 s).
  [[nodiscard]] Expected<void> KillAll(std::string_view component_id);
  // Waits (bounded, ~2 s) until the group is empty, then removes it. Call
  // KillAll first. A missing group is not an error.
  [[nodiscard]] Expected<void> Remove(std::string_view component_id);

  struct Stats {
    std::uint64_t memory_bytes = 0;
    std::uint64_t oom_kills = 0;
    std::uint32_t pids = 0;
  };
  [[nodiscard]] Expected<Stats> Read(std::string_view component_id) const;

  Version version() const { return version_; }
  // The leaf directories of a component (one for v2; memory, pids for v1).
  std::vector<std::filesystem::path> LeafDirectories(std::string_view component_id) const;

 private:
  Cgroups(Version version, std::vector<std::filesystem::path> mounts, std::string root_name)
      : version_(version), mounts_(std::move(mounts)), root_name_(std::move(root_name)) {}

  Version version_;
  // v2: {mount}; v1: {memory mount, pids mount}.
  std::vector<std::filesystem::path> mounts_;
  std::string root_name_;
};

// Moves process `pid` into the groups named by Create()'s result (writes
// it to each cgroup.procs). Launch() moves citadel-sandbox while it is
// still starting up, so that the move overlaps the exec. The move takes a
// global kernel lock whose write side waits for an RCU grace period (about
// 8 ms on the CI machine) when no move happened in the last grace period,
// i.e. at nearly every real app start, unless the kernel favours dynamic
// cgroup modifications (see FavoursDynamicModifications below).
[[nodiscard]] Expected<void> MoveToCgroup(std::string_view create_result, pid_t pid);
// The calling process joins the groups (MoveToCgroup of its own pid).
[[nodiscard]] Expected<void> JoinCgroup(std::string_view create_result);
// Whether process `pid` (as the caller's pid namespace sees it) is in every
// group named by Create()'s result; kFailedPrecondition naming the group
// where it is not. citadel-sandbox checks itself before it clones the app,
// so that the app never starts outside its limits.
[[nodiscard]] Expected<void> CheckInCgroup(std::string_view create_result, pid_t pid);

// Whether the kernel favours dynamic cgroup modifications ("favordynmods":
// the cgroup2 mount option, or the boot parameter cgroup_favordynmods=true
// for v1 and v2), read from the super options of the cgroup mounts in
// /proc/self/mountinfo. With it a migration no longer waits for an RCU
// grace period; forks and exits become slightly more expensive (the
// kernel's own trade-off). Citadel OS mounts cgroups with it.
[[nodiscard]] Expected<bool> FavoursDynamicModifications();
// Turns favordynmods on or off by remounting the cgroup2 mount with its
// other super options and mount flags unchanged. The setting is global (one
// kernel lock serves every hierarchy, v1 included). kFailedPrecondition
// when there is no cgroup2 mount to remount; kIo when the remount fails
// (e.g. in a container without CAP_SYS_ADMIN over the mount).
[[nodiscard]] Expected<void> SetFavourDynamicModifications(bool favour);

}  // namespace citadel::sandbox
