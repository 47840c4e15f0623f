#include "update/os_slots.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/file.hpp"
#include "common/unique_fd.hpp"
#include "update/fault.hpp"

namespace citadel::update {
namespace {

constexpr std::size_t kChunkBytes = 1u << 20;

Error Errno(std::string_view what, const std::filesystem::path& path) {
  return Error(ErrorCode::kIo, std::string(what) + " " + path.string() + ": " + std::strerror(errno));
}

Expected<void> WriteAll(int fd, const char* data, std::size_t size, const std::filesystem::path& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(Errno("cannot write", path));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return kOk;
}

}  // namespace

Expected<std::unique_ptr<FileOsSlots>> FileOsSlots::Open(const std::filesystem::path& directory) {
  CITADEL_TRY_VOID(EnsureDirectory(directory, 0700));
  return std::unique_ptr<FileOsSlots>(new FileOsSlots(directory));
}

std::filesystem::path FileOsSlots::ImagePath(boot::Slot slot) const {
  return directory_ / ("slot-" + std::string(boot::SlotName(slot)) + ".img");
}

Expected<void> FileOsSlots::Write(boot::Slot slot, const std::filesystem::path& image, std::uint64_t length) {
  const auto target = ImagePath(slot);
  UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return std::unexpected(Errno("cannot open", image));
  UniqueFd out(::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) return std::unexpected(Errno("cannot open", target));
  std::vector<char> buffer(kChunkBytes);
  std::uint64_t copied = 0;
  // Bounded by `length`: a source that grew is not copied past it.
  while (copied < length) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - copied));
    const ssize_t n = ::read(in.get(), buffer.data(), want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(Errno("cannot read", image));
    }
    if (n == 0) {
      return MakeError(ErrorCode::kIo,
                       image.string() + " is shorter than the " + std::to_string(length) + " bytes expected");
    }
    CITADEL_TRY_VOID(WriteAll(out.get(), buffer.data(), static_cast<std::size_t>(n), target));
    copied += static_cast<std::uint64_t>(n);
    FaultPoint("update:slot-chunk");
  }
  if (::fsync(out.get()) != 0) return std::unexpected(Errno("cannot sync", target));
  return kOk;
}

Expected<boot::Slot> BootAtStart(boot::BootControl& boot) {
  if (boot.Backend() == "file") {
    auto booted = boot.SimulateBoot();
    if (!booted) return WrapError(booted.error(), "simulating the bootloader (file boot control)");
    return booted;
  }
  CITADEL_TRY(boot::BootState state, boot.ReadState());
  return state.booted;
}

}  // namespace citadel::update
