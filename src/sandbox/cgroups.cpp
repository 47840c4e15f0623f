#include "sandbox/cgroups.hpp"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "common/file.hpp"
#include "common/unique_fd.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

constexpr auto kDrainTimeout = std::chrono::seconds(2);
constexpr auto kPollInterval = std::chrono::milliseconds(5);

std::string ErrnoText(int error) { return std::strerror(error); }

bool IsFileSystem(const fs::path& path, long magic) {
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) return false;
  return static_cast<long>(info.f_type) == magic;
}

Expected<void> WriteControl(const fs::path& file, std::string_view value) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, "opening " + file.string() + ": " + ErrnoText(errno));
  UniqueFd owner(fd);
  ssize_t written = ::write(fd, value.data(), value.size());
  if (written != static_cast<ssize_t>(value.size())) {
    int error = written < 0 ? errno : EIO;
    return MakeError(ErrorCode::kIo,
                     "writing \"" + std::string(value) + "\" to " + file.string() + ": " + ErrnoText(error));
  }
  return kOk;
}

Expected<std::string> ReadControl(const fs::path& file) {
  auto text = ReadFile(file, 1u << 20);
  if (!text) return WrapError(text.error(), "reading " + file.string());
  return text;
}

Expected<std::uint64_t> ReadNumber(const fs::path& file) {
  CITADEL_TRY(std::string text, ReadControl(file));
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return MakeError(ErrorCode::kParse, file.string() + ": not a number");
  }
}

// The value of "key N" in a flat keyed file (memory.events, memory.oom_control).
Expected<std::uint64_t> ReadKeyed(const fs::path& file, std::string_view key) {
  CITADEL_TRY(std::string text, ReadControl(file));
  std::istringstream lines(text);
  std::string name;
  std::uint64_t value = 0;
  while (lines >> name >> value) {
    if (name == key) return value;
  }
  return MakeError(ErrorCode::kParse, file.string() + ": no \"" + std::string(key) + "\" entry");
}

Expected<std::vector<pid_t>> ReadProcs(const fs::path& dir) {
  CITADEL_TRY(std::string text, ReadControl(dir / "cgroup.procs"));
  std::vector<pid_t> pids;
  std::istringstream lines(text);
  long pid = 0;
  while (lines >> pid) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

Expected<void> CheckComponentId(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 128 && id != "." && id != "..";
  for (char c : id) {
    bool allowed =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    ok = ok && allowed;
  }
  if (!ok) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup: component id \"" + std::string(id) + "\" is not a valid directory name");
  }
  return kOk;
}

Expected<void> MakeDirectory(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kIo, "creating cgroup " + dir.string() + ": " + ErrnoText(errno));
  }
  return kOk;
}

// cgroup v2: the parent must delegate a controller before a child can use it.
Expected<void> EnableControllers(const fs::path& dir) {
  CITADEL_TRY(std::string enabled, ReadControl(dir / "cgroup.subtree_control"));
  for (std::string_view controller : {"memory", "pids"}) {
    if (enabled.find(controller) != std::string::npos) continue;
    CITADEL_TRY_VOID(WriteControl(dir / "cgroup.subtree_control", "+" + std::string(controller)));
  }
  return kOk;
}

// v1 memory: the memory+swap limit must stay >= the memory limit, so the
// order of the two writes depends on whether the limit grows or shrinks.
Expected<void> SetV1MemoryLimit(const fs::path& dir, std::uint64_t bytes) {
  std::string value = std::to_string(bytes);
  fs::path memsw = dir / "memory.memsw.limit_in_bytes";
  std::error_code ec;
  bool has_swap_limit = fs::exists(memsw, ec);
  if (!has_swap_limit) return WriteControl(dir / "memory.limit_in_bytes", value);
  if (WriteControl(dir / "memory.limit_in_bytes", value)) return WriteControl(memsw, value);
  CITADEL_TRY_VOID(WriteControl(memsw, value));
  return WriteControl(dir / "memory.limit_in_bytes", value);
}

}  // namespace

Expected<Cgroups> Cgroups::Detect(std::string_view root_name) {
  CITADEL_TRY_VOID(CheckComponentId(root_name));
  for (const fs::path& mount : {fs::path("/sys/fs/cgroup"), fs::path("/sys/fs/cgroup/unified")}) {
    if (!IsFileSystem(mount, CGROUP2_SUPER_MAGIC)) continue;
    auto controllers = ReadControl(mount / "cgroup.controllers");
    if (!controllers) continue;
    if (controllers->find("memory") != std::string::npos && controllers->find("pids") != std::string::npos) {
      return Cgroups(Version::kV2, {mount}, std::string(root_name));
    }
  }
  fs::path memory = "/sys/fs/cgroup/memory";
  fs::path pids = "/sys/fs/cgroup/pids";
  if (IsFileSystem(memory, CGROUP_SUPER_MAGIC) && IsFileSystem(pids, CGROUP_SUPER_MAGIC)) {
    std::error_code ec;
    if (fs::exists(memory / "memory.limit_in_bytes", ec) && fs::exists(pids / "cgroup.procs", ec)) {
      return Cgroups(Version::kV1, {memory, pids}, std::string(root_name));
    }
  }
  return MakeError(ErrorCode::kFailedPrecondition,
                   "cgroup: no cgroup2 mount with the memory and pids controllers and no cgroup v1 memory and pids "
                   "hierarchies under /sys/fs/cgroup: enable them in the kernel and mount them");
}

std::vector<fs::path> Cgroups::LeafDirectories(std::string_view component_id) const {
  std::vector<fs::path> dirs;
  dirs.reserve(mounts_.size());
  for (const fs::path& mount : mounts_) dirs.push_back(mount / root_name_ / std::string(component_id));
  return dirs;
}

Expected<std::string> Cgroups::Create(std::string_view component_id, std::uint64_t memory_bytes, std::uint32_t pids) {
  CITADEL_TRY_VOID(CheckComponentId(component_id));
  if (memory_bytes == 0 || pids == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "cgroup: memory and pids limits must be positive");
  }
  std::vector<fs::path> leaves = LeafDirectories(component_id);
  for (const fs::path& mount : mounts_) CITADEL_TRY_VOID(MakeDirectory(mount / root_name_));
  if (version_ == Version::kV2) {
    const fs::path& mount = mounts_[0];
    CITADEL_TRY_VOID(EnableControllers(mount));
    CITADEL_TRY_VOID(EnableControllers(mount / root_name_));
    CITADEL_TRY_VOID(MakeDirectory(leaves[0]));
    CITADEL_TRY_VOID(WriteControl(leaves[0] / "memory.max", std::to_string(memory_bytes)));
    std::error_code ec;
    if (fs::exists(leaves[0] / "memory.swap.max", ec)) {
      CITADEL_TRY_VOID(WriteControl(leaves[0] / "memory.swap.max", "0"));
    }
    CITADEL_TRY_VOID(WriteControl(leaves[0] / "pids.max", std::to_string(pids)));
    return leaves[0].string();
  }
  for (const fs::path& leaf : leaves) CITADEL_TRY_VOID(MakeDirectory(leaf));
  CITADEL_TRY_VOID(SetV1MemoryLimit(leaves[0], memory_bytes));
  CITADEL_TRY_VOID(WriteControl(leaves[1] / "pids.max", std::to_string(pids)));
  return leaves[0].string() + "\n" + leaves[1].string();
}

Expected<void> Cgroups::KillAll(std::string_view component_id) {
  CITADEL_TRY_VOID(CheckComponentId(component_id));
  auto deadline = std::chrono::steady_clock::now() + kDrainTimeout;
  for (const fs::path& leaf : LeafDirectories(component_id)) {
    std::error_code ec;
    if (!fs::exists(leaf, ec)) continue;
    if (version_ == Version::kV2 && fs::exists(leaf / "cgroup.kill", ec)) {
      CITADEL_TRY_VOID(WriteControl(leaf / "cgroup.kill", "1"));
    }
    // v1 has no cgroup.kill: kill what is listed until nothing is, since a
    // process may fork between the read and the kill.
    while (true) {
      CITADEL_TRY(std::vector<pid_t> pids, ReadProcs(leaf));
      if (pids.empty()) break;
      for (pid_t pid : pids) (void)::kill(pid, SIGKILL);
      if (std::chrono::steady_clock::now() > deadline) {
        return MakeError(ErrorCode::kUnavailable,
                         "cgroup " + leaf.string() + ": processes remain after SIGKILL for 2 s");
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  return kOk;
}

Expected<void> Cgroups::Remove(std::string_view component_id) {
  CITADEL_TRY_VOID(CheckComponentId(component_id));
  auto deadline = std::chrono::steady_clock::now() + kDrainTimeout;
  for (const fs::path& leaf : LeafDirectories(component_id)) {
    while (true) {
      if (::rmdir(leaf.c_str()) == 0 || errno == ENOENT) break;
      int error = errno;
      if (error != EBUSY) {
        return MakeError(ErrorCode::kIo, "removing cgroup " + leaf.string() + ": " + ErrnoText(error));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "removing cgroup " + leaf.string() + ": still has processes after 2 s (call KillAll first)");
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  return kOk;
}

Expected<Cgroups::Stats> Cgroups::Read(std::string_view component_id) const {
  CITADEL_TRY_VOID(CheckComponentId(component_id));
  std::vector<fs::path> leaves = LeafDirectories(component_id);
  Stats stats;
  if (version_ == Version::kV2) {
    CITADEL_TRY(stats.memory_bytes, ReadNumber(leaves[0] / "memory.current"));
    CITADEL_TRY(stats.oom_kills, ReadKeyed(leaves[0] / "memory.events", "oom_kill"));
    CITADEL_TRY(std::uint64_t pids, ReadNumber(leaves[0] / "pids.current"));
    stats.pids = static_cast<std::uint32_t>(pids);
    return stats;
  }
  CITADEL_TRY(stats.memory_bytes, ReadNumber(leaves[0] / "memory.usage_in_bytes"));
  CITADEL_TRY(stats.oom_kills, ReadKeyed(leaves[0] / "memory.oom_control", "oom_kill"));
  CITADEL_TRY(std::uint64_t pids, ReadNumber(leaves[1] / "pids.current"));
  stats.pids = static_cast<std::uint32_t>(pids);
  return stats;
}

namespace {

// Calls visit(leaf directory) for each line of Create()'s result.
template <typename Visit>
Expected<void> ForEachLeaf(std::string_view create_result, Visit visit) {
  std::size_t start = 0;
  while (start <= create_result.size()) {
    std::size_t end = create_result.find('\n', start);
    if (end == std::string_view::npos) end = create_result.size();
    std::string_view dir = create_result.substr(start, end - start);
    if (dir.empty() || dir.front() != '/') {
      return MakeError(ErrorCode::kInvalidArgument, "cgroup: \"" + std::string(dir) + "\" is not an absolute path");
    }
    CITADEL_TRY_VOID(visit(fs::path(dir)));
    start = end + 1;
  }
  return kOk;
}

}  // namespace

Expected<void> MoveToCgroup(std::string_view create_result, pid_t pid) {
  std::string pid_text = std::to_string(pid);
  return ForEachLeaf(create_result,
                     [&](const fs::path& leaf) { return WriteControl(leaf / "cgroup.procs", pid_text); });
}

Expected<void> JoinCgroup(std::string_view create_result) { return MoveToCgroup(create_result, ::getpid()); }

namespace {

constexpr std::string_view kFavourOption = "favordynmods";

std::vector<std::string_view> SplitOn(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(separator, start);
    if (end == std::string_view::npos) end = text.size();
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view field) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) && octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(field[i]);
  }
  return out;
}

struct CgroupMount {
  std::string mount_point;
  std::string mount_options;  // per-mount: rw,nosuid,relatime...
  std::string super_options;  // per-superblock: rw,nsdelegate,favordynmods...
  bool v2 = false;
};

Expected<std::vector<CgroupMount>> ReadCgroupMounts() {
  CITADEL_TRY(std::string text, ReadControl("/proc/self/mountinfo"));
  std::vector<CgroupMount> mounts;
  for (std::string_view line : SplitOn(text, '\n')) {
    // id parent major:minor root mount-point mount-options [optional...] - type source super-options
    std::size_t separator = line.find(" - ");
    if (separator == std::string_view::npos) continue;
    std::vector<std::string_view> head = SplitOn(line.substr(0, separator), ' ');
    std::vector<std::string_view> tail = SplitOn(line.substr(separator + 3), ' ');
    if (head.size() < 6 || tail.size() < 3) continue;
    if (tail[0] != "cgroup" && tail[0] != "cgroup2") continue;
    mounts.push_back({Unescape(head[4]), std::string(head[5]), std::string(tail[2]), tail[0] == "cgroup2"});
  }
  return mounts;
}

bool HasOption(std::string_view options, std::string_view option) {
  for (std::string_view each : SplitOn(options, ',')) {
    if (each == option) return true;
  }
  return false;
}

// The MS_* flags that keep a mount's per-mount options across a remount
// (a remount replaces them with whatever it is given).
unsigned long MountFlags(std::string_view options) {
  constexpr std::array<std::pair<std::string_view, unsigned long>, 8> kFlags{{{"ro", MS_RDONLY},
                                                                              {"nosuid", MS_NOSUID},
                                                                              {"nodev", MS_NODEV},
                                                                              {"noexec", MS_NOEXEC},
                                                                              {"noatime", MS_NOATIME},
                                                                              {"nodiratime", MS_NODIRATIME},
                                                                              {"relatime", MS_RELATIME},
                                                                              {"strictatime", MS_STRICTATIME}}};
  unsigned long flags = 0;
  for (std::string_view each : SplitOn(options, ',')) {
    for (const auto& [name, flag] : kFlags) {
      if (each == name) flags |= flag;
    }
  }
  return flags;
}

}  // namespace

Expected<bool> FavoursDynamicModifications() {
  CITADEL_TRY(std::vector<CgroupMount> mounts, ReadCgroupMounts());
  for (const CgroupMount& mount : mounts) {
    if (HasOption(mount.super_options, kFavourOption)) return true;
  }
  return false;
}

Expected<void> SetFavourDynamicModifications(bool favour) {
  CITADEL_TRY(std::vector<CgroupMount> mounts, ReadCgroupMounts());
  const CgroupMount* target = nullptr;
  for (const CgroupMount& mount : mounts) {
    if (mount.v2) {
      target = &mount;
      break;
    }
  }
  if (target == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cgroup: no cgroup2 mount to set favordynmods on; boot with cgroup_favordynmods=true instead");
  }
  std::string data;
  for (std::string_view each : SplitOn(target->super_options, ',')) {
    if (each.empty() || each == kFavourOption) continue;
    if (!data.empty()) data += ',';
    data += each;
  }
  if (favour) data += (data.empty() ? "" : ",") + std::string(kFavourOption);
  if (::mount(nullptr, target->mount_point.c_str(), nullptr, MS_REMOUNT | MountFlags(target->mount_options),
              data.c_str()) != 0) {
    return MakeError(ErrorCode::kIo, "cgroup: remounting " + target->mount_point + " with \"" + data +
                                         "\": " + ErrnoText(errno) + " (needs CAP_SYS_ADMIN in the initial namespace)");
  }
  return kOk;
}

Expected<void> CheckInCgroup(std::string_view create_result, pid_t pid) {
  std::string pid_text = std::to_string(pid);
  return ForEachLeaf(create_result, [&](const fs::path& leaf) -> Expected<void> {
    CITADEL_TRY(std::string members, ReadControl(leaf / "cgroup.procs"));
    std::istringstream lines(members);
    std::string member;
    while (std::getline(lines, member)) {
      if (member == pid_text) return kOk;
    }
    return MakeError(ErrorCode::kFailedPrecondition, "process " + pid_text + " is not in " + leaf.string());
  });
}

}  // namespace citadel::sandbox
