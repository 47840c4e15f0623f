#include "sandbox/landlock.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/landlock.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "common/unique_fd.hpp"

namespace citadel::sandbox {
namespace {

// Newer than Debian 12's <linux/landlock.h> (kernel 6.1 headers); values
// from the kernel's UAPI, stable by Landlock's ABI rules.
constexpr std::uint64_t kFsRefer = 1ULL << 13;     // ABI 2
constexpr std::uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr std::uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr std::uint64_t kNetBindTcp = 1ULL << 0;   // ABI 4
constexpr std::uint64_t kNetConnectTcp = 1ULL << 1;
constexpr std::uint64_t kScopeAbstractUnixSocket = 1ULL << 0;  // ABI 6
constexpr std::uint64_t kScopeSignal = 1ULL << 1;

// struct landlock_ruleset_attr as of ABI 6; the kernel takes the size.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
  std::uint64_t scoped;
};

constexpr std::uint64_t kFsAbi1 = (1ULL << 13) - 1;  // EXECUTE .. MAKE_SYM

constexpr std::uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr std::uint64_t kReadExecute = kRead | LANDLOCK_ACCESS_FS_EXECUTE;
constexpr std::uint64_t kReadWrite = kRead | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                                     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
                                     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SYM | kFsRefer | kFsTruncate;
// A rule on a file may only carry the rights that apply to files.
constexpr std::uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                      LANDLOCK_ACCESS_FS_READ_FILE | kFsTruncate | kFsIoctlDev;
constexpr std::uint64_t kDeviceFile = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | kFsTruncate;

std::uint64_t HandledFs(int abi) {
  std::uint64_t fs = kFsAbi1;
  if (abi >= 2) fs |= kFsRefer;
  if (abi >= 3) fs |= kFsTruncate;
  if (abi >= 5) fs |= kFsIoctlDev;
  return fs;
}

Expected<void> AddPathRule(int ruleset, const char* path, std::uint64_t access, std::uint64_t handled) {
  int fd = ::open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, std::string("landlock: opening ") + path + ": " + std::strerror(errno));
  UniqueFd owner(fd);
  landlock_path_beneath_attr rule{};
  rule.allowed_access = access & handled;
  rule.parent_fd = fd;
  if (::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) {
    return MakeError(ErrorCode::kIo,
                     std::string("landlock: adding the rule for ") + path + ": " + std::strerror(errno));
  }
  return kOk;
}

}  // namespace

int LandlockAbi() {
  long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

Expected<int> ApplyAppLandlock(bool with_storage) {
  int abi = LandlockAbi();
  if (abi == 0) return 0;
  RulesetAttr attr{};
  attr.handled_access_fs = HandledFs(abi);
  std::size_t attr_size = sizeof(std::uint64_t);
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    attr_size = 2 * sizeof(std::uint64_t);
  }
  if (abi >= 6) {
    attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
    attr_size = sizeof(RulesetAttr);
  }
  long ruleset = ::syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
  if (ruleset < 0) {
    return MakeError(ErrorCode::kIo, std::string("landlock: creating the ruleset: ") + std::strerror(errno));
  }
  UniqueFd ruleset_fd(static_cast<int>(ruleset));
  std::uint64_t handled = attr.handled_access_fs;
  for (const char* path : {"/app", "/usr", "/opt/citadel/lib"}) {
    CITADEL_TRY_VOID(AddPathRule(ruleset_fd.get(), path, kReadExecute, handled));
  }
  for (const char* path : {"/etc", "/proc", "/dev"})
    CITADEL_TRY_VOID(AddPathRule(ruleset_fd.get(), path, kRead, handled));
  CITADEL_TRY_VOID(AddPathRule(ruleset_fd.get(), "/tmp", kReadWrite, handled));
  if (with_storage) CITADEL_TRY_VOID(AddPathRule(ruleset_fd.get(), "/mnt/config", kReadWrite, handled));
  for (const char* path : {"/dev/null", "/dev/zero", "/dev/full"}) {
    CITADEL_TRY_VOID(AddPathRule(ruleset_fd.get(), path, kDeviceFile & kFileRights, handled));
  }
  // Landlock needs no_new_privs or CAP_SYS_ADMIN; set it here so the order
  // of the caller's steps cannot make this fail.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return MakeError(ErrorCode::kIo, std::string("landlock: no_new_privs: ") + std::strerror(errno));
  }
  if (::syscall(SYS_landlock_restrict_self, ruleset_fd.get(), 0) != 0) {
    return MakeError(ErrorCode::kIo, std::string("landlock: restricting the process: ") + std::strerror(errno));
  }
  return abi;
}

}  // namespace citadel::sandbox
