// Image packages: one file holding an app's read-only file tree and its
// app_manifest.json, signed by a tenant publisher key (ECDSA P-256). The byte
// format is specified in docs/IMAGE.md; this header is its only codec.
//
//   magic "CITIMG1\n" | u32be header length | canonical JSON header
//   | zstd payload | u32be signature length | canonical JSON signature
//
// Security contract: ParseImage() only checks structure (it is safe on any
// untrusted bytes, bounded in memory and time) and says nothing about who
// made the image. Only a VerifiedImage, which VerifyImage() alone creates
// after checking the signer against the caller's trusted publishers, the
// signature, the payload hash and every file's hash, may be installed with
// ExtractImage().
//
// Threading: free functions with no shared state; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::image {

inline constexpr std::string_view kMagic = "CITIMG1\n";
inline constexpr std::int64_t kFormatVersion = 1;
inline constexpr std::string_view kManifestFileName = "app_manifest.json";

// Bounds (docs/IMAGE.md, "Limits"). Pack refuses trees beyond them and
// ParseImage refuses images that claim more.
inline constexpr std::size_t kMaxHeaderBytes = std::size_t{1} << 20;      // 1 MiB
inline constexpr std::size_t kMaxSignatureBytes = 4096;                   // signature block
inline constexpr std::size_t kMaxManifestBytes = std::size_t{64} << 10;   // 64 KiB, canonical
inline constexpr std::size_t kMaxFiles = 4096;                            // entries in "files"
inline constexpr std::uint64_t kMaxTotalSize = std::uint64_t{256} << 20;  // sum of file sizes
inline constexpr std::size_t kMaxPathBytes = 1024;
inline constexpr std::size_t kMaxPathDepth = 32;  // components per path
// zstd's worst case for incompressible input is < 1/128 above the input.
inline constexpr std::uint64_t kMaxPayloadBytes = kMaxTotalSize + kMaxTotalSize / 128;
inline constexpr std::uint64_t kMaxImageBytes =
    kMagic.size() + 4 + kMaxHeaderBytes + kMaxPayloadBytes + 4 + kMaxSignatureBytes;

// File modes are normalised: an image is read-only, so a file is either
// kFileMode or, when any execute bit was set at pack time, kExecutableMode.
inline constexpr std::uint32_t kFileMode = 0444;
inline constexpr std::uint32_t kExecutableMode = 0555;
inline constexpr std::uint32_t kDirectoryMode = 0555;

struct FileEntry {
  std::string path;  // relative, '/'-separated, validated (see docs/IMAGE.md)
  std::uint32_t mode = kFileMode;
  std::uint64_t size = 0;
  std::string sha256;  // lower-case hex of the file's contents
};

// What ParseImage() learnt from untrusted bytes. Nothing here is trusted
// until VerifyImage() succeeds.
struct ImageInfo {
  std::string label;  // names the image in errors ("app.img")
  Json manifest;      // the app_manifest.json object
  std::vector<FileEntry> files;
  std::uint64_t total_size = 0;  // sum of files[].size
  std::uint64_t payload_size = 0;
  std::string payload_sha256;  // lower-case hex of the compressed payload
  // Lower-case hex SHA-256 over magic || u32 || header || payload: what a
  // device measures.
  std::string digest;
  std::string key_id;  // lower-case hex SHA-256 of the signer's SPKI (claimed)
  Bytes signature;     // DER ECDSA

  std::string header_bytes;  // canonical header as it appears in the file
  Bytes payload;             // compressed payload
};

// An image whose signer is trusted and whose every byte matched the signed
// hashes. Only VerifyImage() makes one.
class VerifiedImage {
 public:
  const ImageInfo& info() const { return info_; }
  // File contents, in the order of info().files.
  const std::vector<std::string>& contents() const { return contents_; }

 private:
  friend Expected<VerifiedImage> VerifyImage(const ImageInfo& info,
                                             std::span<const crypto::PublicKey> trusted_publishers);
  VerifiedImage(ImageInfo info, std::vector<std::string> contents)
      : info_(std::move(info)), contents_(std::move(contents)) {}
  ImageInfo info_;
  std::vector<std::string> contents_;
};

// The publisher key id: lower-case hex SHA-256 of the key's DER SPKI.
std::string PublisherKeyId(const crypto::PublicKey& key);

// Checks one image path against the rules of docs/IMAGE.md; the error says
// which rule it breaks ("'..' is not allowed").
Expected<void> ValidateImagePath(std::string_view path);

// Packs dir (which must hold app_manifest.json, a JSON object) into a signed
// image. Only regular files and directories are allowed; symlinks, devices,
// fifos and sockets are refused, as are trees beyond the limits. Empty
// directories are not carried. The manifest travels in the header, not as a
// file entry.
Expected<Bytes> PackImage(const std::filesystem::path& dir, const crypto::PrivateKey& publisher_key);

// Strict, bounded parse of untrusted bytes; no signature check. label names
// the image in error messages.
Expected<ImageInfo> ParseImage(std::span<const std::uint8_t> bytes, std::string_view label = "image");
// Reads (at most kMaxImageBytes) and parses a file; the label is its path.
Expected<ImageInfo> ParseImageFile(const std::filesystem::path& path);

// Checks that the claimed signer is one of trusted_publishers, the signature,
// the payload hash, and (after a decompression bounded by the declared
// sizes) every file's size and hash. Fails closed: any doubt is an error.
[[nodiscard]] Expected<VerifiedImage> VerifyImage(const ImageInfo& info,
                                                  std::span<const crypto::PublicKey> trusted_publishers);
[[nodiscard]] Expected<VerifiedImage> VerifyImage(std::span<const std::uint8_t> bytes,
                                                  std::span<const crypto::PublicKey> trusted_publishers,
                                                  std::string_view label = "image");

struct ExtractOptions {
  // Called before each file is written with its image path; an error aborts
  // the extraction. Lets tests inject an I/O failure part-way through.
  std::function<Expected<void>(std::string_view path)> before_file;
};

// Writes the tree (plus app_manifest.json, the canonical manifest) into a
// fresh temporary sibling of target_dir, fsyncs every file and directory,
// makes files 0444/0555 and directories 0555, then renames it into place
// atomically (exchanging with an existing target_dir, which is then
// removed). On any failure target_dir is left exactly as it was.
// target_dir's parent must exist.
[[nodiscard]] Expected<void> ExtractImage(const VerifiedImage& image, const std::filesystem::path& target_dir,
                                          const ExtractOptions& options = {});

}  // namespace citadel::image
