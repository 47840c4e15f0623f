// The service's content-addressed file store: uploaded images and the
// deltas made from them, each named by the SHA-256 of its bytes.
//
// Layout under the root (DATA/blobs):
//   <tenant>/sha256/<hex>          a complete, verified blob (never changed)
//   <tenant>/uploads/<hex>.part    an upload in progress, resumable
//   <tenant>/uploads/<random>.tmp  scratch files (deltas being made)
// Blobs are per tenant on purpose: with one shared namespace a tenant that
// learnt another tenant's image digest could register that digest as its
// own image (the store would say "already uploaded") and then download the
// other tenant's bytes through its own repository. Per-tenant directories
// cost disk for identical images in two tenants, nothing else.
//
// Uploads: chunks of at most kMaxChunkBytes (the HTTP server's body limit)
// are appended at the offset the client names; a chunk at any other offset
// is not written and the caller learns the current size, so a cut upload
// resumes from there. When the size reaches the declared length the part is
// hashed: a match is fsync'd and renamed into sha256/ (complete), a
// mismatch deletes the part and fails (kCrypto) so the upload starts again.
//
// Replicas: several service replicas share this directory (NFS or a shared
// volume; object storage is the later step). Everything that publishes is a
// rename within one file system, and an append holds a POSIX record lock
// (fcntl, which NFS forwards to the server) on its part file; a second
// writer of the same part is refused (kConflict), never made to wait.
//
// Threading: safe from all request threads (no shared mutable state beyond
// the file system).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel::server {

// Inline because it is a unit of the server's request size.
inline constexpr std::size_t kMaxUploadChunkBytes = std::size_t{1} << 20;  // 1 MiB
// The largest image (or delta) the service stores.
inline constexpr std::uint64_t kMaxBlobBytes = std::uint64_t{1} << 30;  // 1 GiB

// True for 64 lower-case hex characters (how blobs are named).
bool IsSha256Hex(std::string_view text);

struct UploadProgress {
  std::uint64_t received = 0;  // bytes of the part (or blob) now on disk
  bool complete = false;       // the blob is stored and verified
  bool accepted = true;        // false: the offset was not `received`; nothing written
};

struct StoredBlob {
  std::string sha256;
  std::uint64_t length = 0;
};

class BlobStore {
 public:
  // Creates root if missing.
  static Expected<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& root);

  // Appends chunk at offset to the upload of blob sha256 (declared_length
  // bytes in all). Refuses (kInvalidArgument) a bad digest or tenant name, a
  // length of 0 or above kMaxBlobBytes, a chunk above kMaxUploadChunkBytes
  // or reaching past declared_length. A blob already stored answers
  // complete without writing (uploads are idempotent); one stored with
  // another length is kInvalidArgument. kConflict while another writer
  // holds the part. kCrypto when the finished upload's SHA-256 differs (the
  // part is deleted).
  [[nodiscard]] Expected<UploadProgress> Append(std::string_view tenant_id, std::string_view sha256,
                                                std::uint64_t declared_length, std::uint64_t offset,
                                                std::string_view chunk) const;

  // The size of a stored blob; kNotFound when there is none.
  Expected<std::uint64_t> Size(std::string_view tenant_id, std::string_view sha256) const;
  // Where a stored blob is (for streaming it); does not check it exists.
  Expected<std::filesystem::path> PathOf(std::string_view tenant_id, std::string_view sha256) const;

  // A fresh scratch path in the tenant's upload area (same file system as
  // the blobs, so AddFile is a rename). The caller removes it on failure.
  Expected<std::filesystem::path> ScratchPath(std::string_view tenant_id) const;
  // Moves file (a scratch file) into the store under its SHA-256 and
  // returns the blob; the file is gone afterwards either way. A blob that
  // already exists is kept (same bytes by construction).
  [[nodiscard]] Expected<StoredBlob> AddFile(std::string_view tenant_id, const std::filesystem::path& file) const;

 private:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  Expected<std::filesystem::path> TenantDir(std::string_view tenant_id) const;

  std::filesystem::path root_;
};

}  // namespace citadel::server
