#include "common/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>

#include "common/encoding.hpp"
#include "common/unique_fd.hpp"

namespace citadel {
namespace {

// Tries at random names before WriteFileAtomic gives up (EEXIST each time).
constexpr int kTemporaryNameAttempts = 8;
constexpr std::string_view kTemporaryInfix = ".tmp.";

Error IoError(const std::filesystem::path& path, std::string_view what) {
  return Error(ErrorCode::kIo, std::string(what) + " " + path.string() + ": " + std::strerror(errno));
}

// 16 random hex digits.
std::string RandomSuffix(std::random_device& random) {
  std::array<std::uint8_t, 8> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 4) {
    const std::uint32_t value = random();
    for (std::size_t j = 0; j < 4; ++j) bytes[i + j] = static_cast<std::uint8_t>(value >> (8 * j));
  }
  return HexEncode(bytes);
}

}  // namespace

Expected<std::string> ReadFile(const std::filesystem::path& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    auto code = errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
    return MakeError(code, "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  std::string data;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto error = IoError(path, "cannot read");
      ::close(fd);
      return std::unexpected(error);
    }
    if (n == 0) break;
    if (data.size() + static_cast<std::size_t>(n) > max_bytes) {
      ::close(fd);
      return MakeError(ErrorCode::kTooLarge, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    data.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

Expected<void> WriteFileAtomic(const std::filesystem::path& path, std::string_view data, unsigned mode) {
  const auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  // O_EXCL on a random name: two writers of the same path never share a
  // temporary file, and a leftover of a crash is never reused.
  std::random_device random;
  std::filesystem::path tmp;
  UniqueFd fd;
  for (int attempt = 0; attempt < kTemporaryNameAttempts && !fd; ++attempt) {
    tmp = dir / ("." + path.filename().string() + std::string(kTemporaryInfix) + RandomSuffix(random));
    fd.Reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd && errno != EEXIST) break;
  }
  if (!fd) return std::unexpected(IoError(tmp, "cannot create"));
  // From here on every failure removes the temporary file.
  auto fail = [&](const std::filesystem::path& subject, std::string_view what) -> Expected<void> {
    auto error = IoError(subject, what);
    fd.Reset();
    (void)::unlink(tmp.c_str());
    return std::unexpected(error);
  };
  // The umask may have narrowed the mode; a key file must be exactly `mode`.
  if (::fchmod(fd.get(), mode) != 0) return fail(tmp, "cannot set the mode of");
  std::size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(tmp, "cannot write");
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(tmp, "cannot sync");
  if (::close(fd.Release()) != 0) return fail(tmp, "cannot close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(path, "cannot replace");
  // The rename is durable only once the directory is: until then a crash
  // can bring back the old content, so a caller must not act as if the new
  // one were stored.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return std::unexpected(IoError(dir, "replaced " + path.string() + " but cannot open the directory"));
  if (::fsync(dir_fd.get()) != 0) {
    return std::unexpected(IoError(dir, "replaced " + path.string() + " but cannot sync the directory"));
  }
  return kOk;
}

Expected<void> EnsureDirectory(const std::filesystem::path& path, unsigned mode) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return kOk;
  std::filesystem::create_directories(path, ec);
  if (ec) return MakeError(ErrorCode::kIo, "cannot create directory " + path.string() + ": " + ec.message());
  ::chmod(path.c_str(), mode);
  return kOk;
}

}  // namespace citadel
