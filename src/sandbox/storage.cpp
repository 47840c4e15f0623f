#include "sandbox/storage.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "common/subprocess.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kBlockSize = 1024;
// ext4 needs this many blocks before mke2fs adds a journal.
constexpr std::uint64_t kMinBlocks = 2048;
constexpr auto kMkfsTimeout = std::chrono::seconds(60);
constexpr const char* kMkfs = "/sbin/mkfs.ext4";
constexpr std::size_t kMaxMkfsOutput = 4096;

std::string ErrnoText(int error) { return std::strerror(error); }

// The label records the quota an image was made for, so a restart can tell
// "right size, keep the data" from "made for another quota" without
// re-running mke2fs.
std::string QuotaLabel(std::uint64_t quota_bytes) { return "cq" + std::to_string(quota_bytes / 1024); }

struct Superblock {
  std::uint64_t blocks = 0;
  std::uint64_t reserved_blocks = 0;
  std::uint64_t free_blocks = 0;
  std::uint64_t block_size = 0;
  bool extents = false;
  std::string label;
};

std::uint32_t Le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

Expected<Superblock> ReadSuperblock(const fs::path& image) {
  int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, "opening " + image.string() + ": " + ErrnoText(errno));
  UniqueFd owner(fd);
  std::array<std::uint8_t, 1024> sb{};
  if (::pread(fd, sb.data(), sb.size(), 1024) != static_cast<ssize_t>(sb.size())) {
    return MakeError(ErrorCode::kParse, image.string() + ": too short for an ext4 superblock");
  }
  if (sb[0x38] != 0x53 || sb[0x39] != 0xEF) {
    return MakeError(ErrorCode::kParse, image.string() + ": not an ext4 file system");
  }
  constexpr std::uint32_t kIncompat64Bit = 0x80;
  constexpr std::uint32_t kIncompatExtents = 0x40;
  std::uint32_t incompat = Le32(&sb[0x60]);
  std::uint32_t log_block_size = Le32(&sb[0x18]);
  if (log_block_size > 6) return MakeError(ErrorCode::kParse, image.string() + ": bad block size");
  Superblock result;
  result.block_size = std::uint64_t{1024} << log_block_size;
  result.blocks = Le32(&sb[0x04]);
  result.reserved_blocks = Le32(&sb[0x08]);
  result.free_blocks = Le32(&sb[0x0C]);
  if ((incompat & kIncompat64Bit) != 0) {
    result.blocks |= std::uint64_t{Le32(&sb[0x150])} << 32;
    result.reserved_blocks |= std::uint64_t{Le32(&sb[0x154])} << 32;
    result.free_blocks |= std::uint64_t{Le32(&sb[0x158])} << 32;
  }
  result.extents = (incompat & kIncompatExtents) != 0;
  for (std::size_t i = 0x78; i < 0x88 && sb[i] != 0; ++i) result.label.push_back(static_cast<char>(sb[i]));
  return result;
}

// What statvfs reports as f_bavail right after mounting: ext4 keeps 2% of
// the blocks (at most 4096) back for metadata (ext4_calculate_resv_clusters).
std::uint64_t UsableBytes(const Superblock& sb) {
  std::uint64_t kernel_reserved = sb.extents ? std::min<std::uint64_t>(sb.blocks / 50, 4096) : 0;
  std::uint64_t held = sb.reserved_blocks + kernel_reserved;
  return sb.free_blocks > held ? (sb.free_blocks - held) * sb.block_size : 0;
}

Expected<void> MakeFileSystem(const fs::path& image, std::uint64_t blocks, std::uint64_t quota_bytes, uid_t owner) {
  (void)::unlink(image.c_str());
  int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return MakeError(ErrorCode::kIo, "creating " + image.string() + ": " + ErrnoText(errno));
  UniqueFd owner_fd(fd);
  if (::ftruncate(fd, static_cast<off_t>(blocks * kBlockSize)) != 0) {
    return MakeError(ErrorCode::kIo, "sizing " + image.string() + ": " + ErrnoText(errno));
  }
  owner_fd.Reset();
  std::uint64_t inodes = std::max<std::uint64_t>(64, quota_bytes / (16 * 1024));
  std::string ids = std::to_string(owner) + ":" + std::to_string(owner);
  std::vector<std::string> args = {kMkfs,
                                   "-q",
                                   "-F",
                                   "-m",
                                   "0",
                                   "-b",
                                   std::to_string(kBlockSize),
                                   "-I",
                                   "256",
                                   "-N",
                                   std::to_string(inodes),
                                   "-O",
                                   "^resize_inode",
                                   "-L",
                                   QuotaLabel(quota_bytes),
                                   "-E",
                                   "root_owner=" + ids + ",nodiscard",
                                   image.string(),
                                   std::to_string(blocks)};
  // A fixed PATH and nothing else in the environment; stdout and stderr
  // together, the first 4 KiB kept for the message.
  CITADEL_TRY(SubprocessResult result,
              RunSubprocess({.argv = std::move(args),
                             .environment = std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                             .timeout = kMkfsTimeout,
                             .max_stdout_bytes = kMaxMkfsOutput,
                             .stdout_overflow_is_error = false,
                             .merge_stderr_into_stdout = true}));
  if (result.exit_code != 0) {
    return MakeError(ErrorCode::kIo, std::string(kMkfs) + " " + image.string() + " failed (" +
                                         (result.exit_code < 0 ? std::string("killed by a signal")
                                                               : "exit code " + std::to_string(result.exit_code)) +
                                         "): " + result.out);
  }
  return kOk;
}

}  // namespace

Expected<std::uint64_t> StorageUsableBytes(const fs::path& image) {
  CITADEL_TRY(Superblock sb, ReadSuperblock(image));
  return UsableBytes(sb);
}

Expected<void> EnsureStorageImage(const fs::path& image, std::uint64_t quota_bytes, uid_t owner) {
  if (quota_bytes == 0) return MakeError(ErrorCode::kInvalidArgument, "storage: the quota must be positive");
  quota_bytes = (quota_bytes + kBlockSize - 1) / kBlockSize * kBlockSize;
  std::error_code ec;
  if (fs::exists(image, ec)) {
    auto sb = ReadSuperblock(image);
    if (sb) {
      if (sb->label == QuotaLabel(quota_bytes)) return kOk;
      return MakeError(ErrorCode::kFailedPrecondition,
                       "storage image " + image.string() + " was made for another quota (label \"" + sb->label +
                           "\", want \"" + QuotaLabel(quota_bytes) +
                           "\"): remove it to recreate it empty (its data will be lost)");
    }
    log::Warn("storage image is not a valid ext4 file system; recreating it",
              {{"image", image.string()}, {"reason", sb.error().message()}});
  }
  fs::path staging = image;
  staging += ".new";
  std::uint64_t upper = quota_bytes + (1u << 20) + quota_bytes / 16;
  // Metadata and journal take a share that depends on the size: start from
  // an estimate and correct with what mke2fs actually left free.
  std::uint64_t blocks = std::max<std::uint64_t>(kMinBlocks, quota_bytes / kBlockSize * 105 / 100 + 1100);
  for (int attempt = 0; attempt < 8; ++attempt) {
    CITADEL_TRY_VOID(MakeFileSystem(staging, blocks, quota_bytes, owner));
    CITADEL_TRY(Superblock sb, ReadSuperblock(staging));
    std::uint64_t usable = UsableBytes(sb);
    if (usable >= quota_bytes && usable < upper) {
      if (::rename(staging.c_str(), image.c_str()) != 0) {
        return MakeError(ErrorCode::kIo, "renaming " + staging.string() + ": " + ErrnoText(errno));
      }
      return kOk;
    }
    std::uint64_t target = quota_bytes + (upper - quota_bytes) / 4;
    std::int64_t delta_blocks =
        (static_cast<std::int64_t>(target) - static_cast<std::int64_t>(usable)) / static_cast<std::int64_t>(kBlockSize);
    std::int64_t next = static_cast<std::int64_t>(blocks) + delta_blocks + delta_blocks / 20;
    blocks = static_cast<std::uint64_t>(std::max<std::int64_t>(next, static_cast<std::int64_t>(kMinBlocks)));
  }
  (void)::unlink(staging.c_str());
  return MakeError(ErrorCode::kInternal, "storage image " + image.string() +
                                             ": could not size an ext4 file system for " + std::to_string(quota_bytes) +
                                             " bytes");
}

}  // namespace citadel::sandbox
