#include "server/blob_store.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>
#include <system_error>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/unique_fd.hpp"
#include "crypto/crypto.hpp"

namespace citadel::server {
namespace {

namespace fs = std::filesystem;

Error ErrnoError(ErrorCode code, const std::string& what) { return Error(code, what + ": " + std::strerror(errno)); }

// Tenant ids become directory names: only the characters GenerateId uses.
bool IsSafeName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// SHA-256 of the first `length` bytes of fd, read through a mapping (page
// cache, not process memory: an image may be 1 GiB).
Expected<std::string> Sha256OfFile(int fd, std::uint64_t length, const std::string& what) {
  if (length == 0) return crypto::Sha256Hex(std::string_view());
  void* address = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) return std::unexpected(ErrnoError(ErrorCode::kIo, "mapping " + what));
  const auto digest = crypto::Sha256(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(address), length));
  (void)::munmap(address, static_cast<std::size_t>(length));
  return HexEncode(digest);
}

Expected<void> SyncDirectory(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "syncing " + dir.string()));
  return kOk;
}

// Renames `from` to blob path `to` (same file system) and makes the rename
// durable. Another writer may have stored the same digest first: identical
// bytes, so replacing it is harmless.
Expected<void> Publish(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return std::unexpected(ErrnoError(ErrorCode::kIo, "storing " + to.string()));
  }
  return SyncDirectory(to.parent_path());
}

// Writes all of data at offset (pwrite may write less than asked).
Expected<void> WriteAt(int fd, std::string_view data, std::uint64_t offset, const std::string& what) {
  while (!data.empty()) {
    const ssize_t wrote = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(ErrnoError(ErrorCode::kIo, "writing " + what));
    }
    data.remove_prefix(static_cast<std::size_t>(wrote));
    offset += static_cast<std::uint64_t>(wrote);
  }
  return kOk;
}

}  // namespace

bool IsSha256Hex(std::string_view text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

Expected<std::unique_ptr<BlobStore>> BlobStore::Open(const fs::path& root) {
  CITADEL_TRY_VOID(EnsureDirectory(root, 0700));
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

Expected<fs::path> BlobStore::TenantDir(std::string_view tenant_id) const {
  if (!IsSafeName(tenant_id)) return MakeError(ErrorCode::kInvalidArgument, "not a tenant id");
  fs::path dir = root_ / std::string(tenant_id);
  CITADEL_TRY_VOID(EnsureDirectory(dir / "sha256", 0700));
  CITADEL_TRY_VOID(EnsureDirectory(dir / "uploads", 0700));
  return dir;
}

Expected<fs::path> BlobStore::PathOf(std::string_view tenant_id, std::string_view sha256) const {
  if (!IsSha256Hex(sha256))
    return MakeError(ErrorCode::kInvalidArgument, "a blob is named by 64 lower-case hex digits");
  if (!IsSafeName(tenant_id)) return MakeError(ErrorCode::kInvalidArgument, "not a tenant id");
  return root_ / std::string(tenant_id) / "sha256" / std::string(sha256);
}

Expected<std::uint64_t> BlobStore::Size(std::string_view tenant_id, std::string_view sha256) const {
  CITADEL_TRY(fs::path path, PathOf(tenant_id, sha256));
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "blob " + std::string(sha256) + " not uploaded");
    return std::unexpected(ErrnoError(ErrorCode::kIo, "stat " + path.string()));
  }
  if (!S_ISREG(status.st_mode)) return MakeError(ErrorCode::kInternal, path.string() + " is not a regular file");
  return static_cast<std::uint64_t>(status.st_size);
}

Expected<UploadProgress> BlobStore::Append(std::string_view tenant_id, std::string_view sha256,
                                           std::uint64_t declared_length, std::uint64_t offset,
                                           std::string_view chunk) const {
  if (!IsSha256Hex(sha256)) {
    return MakeError(ErrorCode::kInvalidArgument, "an upload is named by the SHA-256 of its bytes, 64 lower-case hex");
  }
  if (declared_length == 0 || declared_length > kMaxBlobBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "length must be 1.." + std::to_string(kMaxBlobBytes) + " bytes (the largest image is 1 GiB)");
  }
  if (chunk.size() > kMaxUploadChunkBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a chunk is at most " + std::to_string(kMaxUploadChunkBytes) + " bytes");
  }
  if (offset > declared_length || chunk.size() > declared_length - offset) {
    return MakeError(ErrorCode::kInvalidArgument, "the chunk reaches past the declared length");
  }
  CITADEL_TRY(fs::path dir, TenantDir(tenant_id));
  const fs::path blob = dir / "sha256" / std::string(sha256);
  if (auto size = Size(tenant_id, sha256); size) {
    if (*size != declared_length) {
      return MakeError(ErrorCode::kInvalidArgument, "blob " + std::string(sha256) + " is stored with " +
                                                        std::to_string(*size) + " bytes, not " +
                                                        std::to_string(declared_length));
    }
    return UploadProgress{declared_length, true, true};
  } else if (size.error().code() != ErrorCode::kNotFound) {
    return std::unexpected(size.error());
  }

  const fs::path part = dir / "uploads" / (std::string(sha256) + ".part");
  const std::string what = "upload " + std::string(sha256);
  UniqueFd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return std::unexpected(ErrnoError(ErrorCode::kIo, "opening " + part.string()));
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_SETLK, &lock) != 0) {
    if (errno == EACCES || errno == EAGAIN) {
      return MakeError(ErrorCode::kConflict, "another upload of " + std::string(sha256) + " is in progress; retry");
    }
    return std::unexpected(ErrnoError(ErrorCode::kIo, "locking " + part.string()));
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "stat " + part.string()));
  auto current = static_cast<std::uint64_t>(status.st_size);
  if (current > declared_length) {
    // Left by an upload that declared another length: it cannot become
    // this blob, so it starts over.
    if (::ftruncate(fd.get(), 0) != 0)
      return std::unexpected(ErrnoError(ErrorCode::kIo, "truncating " + part.string()));
    current = 0;
  }
  if (offset != current) return UploadProgress{current, false, false};

  CITADEL_TRY_VOID(WriteAt(fd.get(), chunk, offset, what));
  const std::uint64_t received = offset + chunk.size();
  if (received < declared_length) return UploadProgress{received, false, true};

  CITADEL_TRY(std::string actual, Sha256OfFile(fd.get(), received, part.string()));
  if (actual != sha256) {
    (void)::unlink(part.c_str());
    return MakeError(ErrorCode::kCrypto, "the uploaded bytes have SHA-256 " + actual + ", not " + std::string(sha256) +
                                             "; the partial upload was deleted: upload again from offset 0");
  }
  if (::fsync(fd.get()) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "syncing " + part.string()));
  CITADEL_TRY_VOID(Publish(part, blob));
  return UploadProgress{received, true, true};
}

Expected<fs::path> BlobStore::ScratchPath(std::string_view tenant_id) const {
  CITADEL_TRY(fs::path dir, TenantDir(tenant_id));
  return dir / "uploads" / (HexEncode(crypto::RandomBytes(16)) + ".tmp");
}

Expected<StoredBlob> BlobStore::AddFile(std::string_view tenant_id, const fs::path& file) const {
  struct Remover {
    const fs::path& path;
    ~Remover() {
      std::error_code ignored;
      fs::remove(path, ignored);
    }
  } remover{file};
  CITADEL_TRY(fs::path dir, TenantDir(tenant_id));
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::unexpected(ErrnoError(ErrorCode::kIo, "opening " + file.string()));
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "stat " + file.string()));
  const auto length = static_cast<std::uint64_t>(status.st_size);
  if (length > kMaxBlobBytes) return MakeError(ErrorCode::kTooLarge, file.string() + " is larger than 1 GiB");
  CITADEL_TRY(std::string sha256, Sha256OfFile(fd.get(), length, file.string()));
  if (::fsync(fd.get()) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "syncing " + file.string()));
  CITADEL_TRY_VOID(Publish(file, dir / "sha256" / sha256));
  return StoredBlob{sha256, length};
}

}  // namespace citadel::server
