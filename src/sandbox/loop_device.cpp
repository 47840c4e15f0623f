// AttachLoopDevice (storage.hpp), in its own file: citadel-sandbox calls
// it for every app start with storage, and linking it alone keeps the
// helper free of what the rest of storage.cpp needs (logging, mkfs).
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/loop.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "sandbox/storage.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kLockTimeout = std::chrono::seconds(3);

std::string ErrnoText(int error) { return std::strerror(error); }

}  // namespace

Expected<LoopDevice> AttachLoopDevice(const fs::path& image) {
  int image_fd = ::open(image.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (image_fd < 0) return MakeError(ErrorCode::kIo, "opening " + image.string() + ": " + ErrnoText(errno));
  UniqueFd image_owner(image_fd);
  auto deadline = Clock::now() + kLockTimeout;
  while (::flock(image_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return MakeError(ErrorCode::kIo, "locking " + image.string() + ": " + ErrnoText(errno));
    }
    if (Clock::now() > deadline) {
      return MakeError(ErrorCode::kUnavailable,
                       image.string() +
                           " is still attached to a loop device (a previous instance of the app is "
                           "still shutting down): try again");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int control = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     std::string("opening /dev/loop-control: ") + ErrnoText(errno) + " (is the loop module loaded?)");
  }
  UniqueFd control_owner(control);
  int last_error = 0;
  for (int attempt = 0; attempt < 16; ++attempt) {
    int index = ::ioctl(control, LOOP_CTL_GET_FREE);
    if (index < 0) return MakeError(ErrorCode::kIo, std::string("LOOP_CTL_GET_FREE: ") + ErrnoText(errno));
    std::string path = "/dev/loop" + std::to_string(index);
    int loop_fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (loop_fd < 0 && errno == ENOENT) {
      // Containers often carry only a few static /dev/loopN nodes.
      (void)::mknod(path.c_str(), S_IFBLK | 0660, makedev(7, static_cast<unsigned>(index)));
      loop_fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    }
    if (loop_fd < 0) return MakeError(ErrorCode::kIo, "opening " + path + ": " + ErrnoText(errno));
    UniqueFd loop(loop_fd);
    loop_config config{};
    config.fd = static_cast<std::uint32_t>(image_fd);
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    std::string name = image.string().substr(0, LO_NAME_SIZE - 1);
    std::memcpy(config.info.lo_file_name, name.data(), name.size());
    if (::ioctl(loop_fd, LOOP_CONFIGURE, &config) == 0) return LoopDevice{std::move(loop), path};
    last_error = errno;
    if (last_error != EBUSY) break;  // EBUSY: another process took this device first
  }
  return MakeError(ErrorCode::kIo,
                   "attaching " + image.string() + " to a loop device (LOOP_CONFIGURE): " + ErrnoText(last_error));
}

}  // namespace citadel::sandbox
