#include "common/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

namespace citadel {
namespace {

Error IoError(const std::filesystem::path& path, std::string_view what) {
  return Error(ErrorCode::kIo, std::string(what) + " " + path.string() + ": " + std::strerror(errno));
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
  auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::random_device random;
  auto tmp = dir / ("." + path.filename().string() + ".tmp" + std::to_string(random()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return std::unexpected(IoError(tmp, "cannot create"));
  // The umask may have narrowed the mode; a key file must be exactly `mode`.
  ::fchmod(fd, mode);
  std::size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto error = IoError(tmp, "cannot write");
      ::close(fd);
      ::unlink(tmp.c_str());
      return std::unexpected(error);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto error = IoError(tmp, "cannot sync");
    ::close(fd);
    ::unlink(tmp.c_str());
    return std::unexpected(error);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto error = IoError(path, "cannot replace");
    ::unlink(tmp.c_str());
    return std::unexpected(error);
  }
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
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
