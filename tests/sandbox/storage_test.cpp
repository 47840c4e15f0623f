// Storage images: sized so the usable space covers the quota (checked by
// mounting in a private mount namespace and asking statvfs), kept across
// restarts, refused when made for another quota.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "sandbox/storage.hpp"
#include "test_support.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;
using test_support::SandboxTempDir;

struct MountedStats {
  std::uint64_t available = 0;
  uid_t root_owner = 0;
};

// Mounts the image in a forked child with its own mount namespace (so the
// test process's mounts never change) and reports statvfs and the owner.
std::optional<MountedStats> MountAndStat(const fs::path& image, const fs::path& mount_point) {
  int report[2];
  if (::pipe(report) != 0) return std::nullopt;
  pid_t child = ::fork();
  if (child == 0) {
    (void)::close(report[0]);
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(2);
    if (::mount("", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(3);
    auto loop = AttachLoopDevice(image);
    if (!loop) ::_exit(4);
    if (::mount(loop->path.c_str(), mount_point.c_str(), "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, "") != 0) ::_exit(5);
    struct statvfs info {};
    struct stat root {};
    if (::statvfs(mount_point.c_str(), &info) != 0 || ::stat(mount_point.c_str(), &root) != 0) ::_exit(6);
    MountedStats stats{info.f_bavail * info.f_frsize, root.st_uid};
    (void)!::write(report[1], &stats, sizeof stats);
    ::_exit(0);
  }
  (void)::close(report[1]);
  MountedStats stats;
  ssize_t got = ::read(report[0], &stats, sizeof stats);
  (void)::close(report[0]);
  int status = 0;
  (void)::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mount child status " << status;
  if (got != static_cast<ssize_t>(sizeof stats)) return std::nullopt;
  return stats;
}

class SandboxStorageTest : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(SandboxStorageTest, UsableSpaceCoversTheQuota) {
  TempDir dir = SandboxTempDir();
  std::uint64_t quota = GetParam();
  fs::path image = dir.path() / "storage.ext4";
  auto made = EnsureStorageImage(image, quota, 61005);
  ASSERT_TRUE(made.has_value()) << made.error().message();
  fs::create_directories(dir.path() / "mnt");
  auto stats = MountAndStat(image, dir.path() / "mnt");
  ASSERT_TRUE(stats.has_value());
  EXPECT_GE(stats->available, quota);
  EXPECT_LT(stats->available, quota + (1u << 20) + quota / 16);
  EXPECT_EQ(stats->root_owner, 61005u);
  auto computed = StorageUsableBytes(image);
  ASSERT_TRUE(computed.has_value());
  EXPECT_EQ(*computed, stats->available) << "the superblock arithmetic matches statvfs";
  // The image file is private to root.
  EXPECT_EQ(fs::status(image).permissions() & fs::perms::all, fs::perms(0600));
}

INSTANTIATE_TEST_SUITE_P(Quotas, SandboxStorageTest,
                         ::testing::Values(256 * 1024, 1024 * 1024, 5 * 1024 * 1024 + 512, 64ull << 20));

TEST(SandboxStorageImageTest, AnExistingImageIsKept) {
  TempDir dir = SandboxTempDir();
  fs::path image = dir.path() / "storage.ext4";
  ASSERT_TRUE(EnsureStorageImage(image, 256 * 1024, 61005).has_value());
  struct stat before {};
  ASSERT_EQ(::stat(image.c_str(), &before), 0);
  ASSERT_TRUE(EnsureStorageImage(image, 256 * 1024, 61005).has_value());
  struct stat after {};
  ASSERT_EQ(::stat(image.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
}

TEST(SandboxStorageImageTest, AnImageForAnotherQuotaIsRefusedNotWiped) {
  TempDir dir = SandboxTempDir();
  fs::path image = dir.path() / "storage.ext4";
  ASSERT_TRUE(EnsureStorageImage(image, 256 * 1024, 61005).has_value());
  auto other = EnsureStorageImage(image, 1024 * 1024, 61005);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(other.error().message().find("remove it"), std::string::npos) << other.error().message();
}

TEST(SandboxStorageImageTest, AGarbageImageIsRecreated) {
  TempDir dir = SandboxTempDir();
  fs::path image = dir.path() / "storage.ext4";
  std::ofstream(image) << "half-written";
  ASSERT_TRUE(EnsureStorageImage(image, 256 * 1024, 61005).has_value());
  auto usable = StorageUsableBytes(image);
  ASSERT_TRUE(usable.has_value()) << usable.error().message();
  EXPECT_GE(*usable, 256u * 1024);
}

TEST(SandboxStorageImageTest, AnImageIsAttachedOnlyOnce) {
  TempDir dir = SandboxTempDir();
  fs::path image = dir.path() / "storage.ext4";
  ASSERT_TRUE(EnsureStorageImage(image, 256 * 1024, 61005).has_value());
  auto first = AttachLoopDevice(image);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  auto second = AttachLoopDevice(image);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  first->fd.Reset();  // autoclear: the device detaches and releases the lock
  auto third = AttachLoopDevice(image);
  EXPECT_TRUE(third.has_value()) << third.error().message();
}

}  // namespace
}  // namespace citadel::sandbox
