// An app's mutable storage: an ext4 file system in an image file, mounted
// at /mnt/config through a loop device. The image's size makes the quota:
// writes past it fail with ENOSPC inside the app.
//
// Threading: no shared state; the functions may run on any thread, but one
// image must not be created by two callers at once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace citadel::sandbox {

// Creates the image (sparse file + mkfs.ext4 with a journal, no reserved
// blocks, root directory owned by owner:owner) so that the space an app can
// use is >= quota_bytes and < quota_bytes + 1 MiB + quota_bytes / 16.
// An existing valid image with such usable space is kept (its data
// persists). An existing valid image of another size is refused with
// kFailedPrecondition (the caller decides whether to delete the data); an
// invalid one (e.g. a crash during creation) is recreated.
[[nodiscard]] Expected<void> EnsureStorageImage(const std::filesystem::path& image, std::uint64_t quota_bytes,
                                                uid_t owner);

// The bytes an unprivileged user can write once the image is mounted
// (statvfs f_bavail * f_frsize), computed from the ext4 superblock.
[[nodiscard]] Expected<std::uint64_t> StorageUsableBytes(const std::filesystem::path& image);

struct LoopDevice {
  UniqueFd fd;       // the loop block device, opened read-write
  std::string path;  // "/dev/loopN"
};

// Attaches the image to a free loop device (LOOP_CTL_GET_FREE +
// LOOP_CONFIGURE, autoclear: the device detaches when the last user, e.g.
// the mount, goes away). Holds an exclusive flock on the image for the
// device's lifetime, so an image is never attached (and mounted) twice:
// waits up to ~3 s for a previous attachment to go away, then fails with
// kUnavailable.
[[nodiscard]] Expected<LoopDevice> AttachLoopDevice(const std::filesystem::path& image);

}  // namespace citadel::sandbox
