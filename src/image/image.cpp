#include "image/image.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <set>
#include <system_error>
#include <utility>

#include <zstd.h>

#include "common/file.hpp"

namespace citadel::image {
namespace {

namespace fs = std::filesystem;

// zstd level for packing: fast, and the window it picks (<= 2^21 for large
// inputs) stays below what the bounded decoder accepts.
constexpr int kCompressionLevel = 3;
// Decoder window bound: 8 MiB of history, whatever a hostile frame asks for.
constexpr int kMaxWindowLog = 23;

std::string Quote(std::string_view text) { return "'" + std::string(text) + "'"; }

void AppendU32(Bytes& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>((value >> 24) & 0xff));
  out.push_back(static_cast<std::uint8_t>((value >> 16) & 0xff));
  out.push_back(static_cast<std::uint8_t>((value >> 8) & 0xff));
  out.push_back(static_cast<std::uint8_t>(value & 0xff));
}

void Append(Bytes& out, std::span<const std::uint8_t> data) { out.insert(out.end(), data.begin(), data.end()); }

// The bytes the publisher signs: magic || header || raw payload SHA-256.
Bytes SignedMessage(std::string_view header, const crypto::Sha256Digest& payload_sha256) {
  Bytes message;
  message.reserve(kMagic.size() + header.size() + payload_sha256.size());
  Append(message, AsBytes(kMagic));
  Append(message, AsBytes(header));
  Append(message, payload_sha256);
  return message;
}

Expected<Bytes> Compress(std::string_view data) {
  Bytes out(ZSTD_compressBound(data.size()));
  std::size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), kCompressionLevel);
  if (ZSTD_isError(size) != 0) {
    return MakeError(ErrorCode::kInternal, std::string("zstd compression failed: ") + ZSTD_getErrorName(size));
  }
  out.resize(size);
  return out;
}

// Decompresses exactly `expected_size` bytes from one or more frames that
// must end with the input. Never allocates more than expected_size (plus a
// bounded window), so a small payload cannot expand into a bomb.
Expected<std::string> DecompressExactly(std::span<const std::uint8_t> payload, std::uint64_t expected_size) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!context) return MakeError(ErrorCode::kInternal, "cannot create a zstd decoder");
  if (ZSTD_isError(ZSTD_DCtx_setParameter(context.get(), ZSTD_d_windowLogMax, kMaxWindowLog)) != 0) {
    return MakeError(ErrorCode::kInternal, "cannot bound the zstd window");
  }
  std::string out(static_cast<std::size_t>(expected_size), '\0');
  ZSTD_inBuffer input{payload.data(), payload.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  std::size_t last = 1;
  while (input.pos < input.size) {
    std::size_t before_in = input.pos;
    std::size_t before_out = output.pos;
    last = ZSTD_decompressStream(context.get(), &output, &input);
    if (ZSTD_isError(last) != 0) {
      return MakeError(ErrorCode::kParse, std::string("payload: zstd: ") + ZSTD_getErrorName(last));
    }
    if (output.pos == output.size && input.pos < input.size && last != 0) {
      return MakeError(ErrorCode::kTooLarge,
                       "payload: decompresses to more than the " + std::to_string(expected_size) + " bytes declared");
    }
    if (input.pos == before_in && output.pos == before_out) {
      return MakeError(ErrorCode::kParse, "payload: zstd made no progress");
    }
  }
  if (last != 0) {
    if (output.pos == output.size) {
      return MakeError(ErrorCode::kTooLarge,
                       "payload: decompresses to more than the " + std::to_string(expected_size) + " bytes declared");
    }
    return MakeError(ErrorCode::kParse, "payload: truncated zstd frame");
  }
  // More output pending (a frame that claims more than declared)?
  char probe = 0;
  ZSTD_outBuffer extra{&probe, 1, 0};
  ZSTD_inBuffer none{nullptr, 0, 0};
  std::size_t pending = ZSTD_decompressStream(context.get(), &extra, &none);
  if (ZSTD_isError(pending) == 0 && extra.pos != 0) {
    return MakeError(ErrorCode::kTooLarge,
                     "payload: decompresses to more than the " + std::to_string(expected_size) + " bytes declared");
  }
  if (output.pos != expected_size) {
    return MakeError(ErrorCode::kParse, "payload: decompresses to " + std::to_string(output.pos) +
                                            " bytes, the header declares " + std::to_string(expected_size));
  }
  return out;
}

bool IsLowerHex(std::string_view text, std::size_t length) {
  return text.size() == length &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Hex(const crypto::Sha256Digest& digest) { return HexEncode(digest); }

// Reads a big-endian u32 at offset; the caller checked the bounds.
std::uint32_t ReadU32(std::span<const std::uint8_t> bytes, std::size_t offset) {
  return (std::uint32_t{bytes[offset]} << 24) | (std::uint32_t{bytes[offset + 1]} << 16) |
         (std::uint32_t{bytes[offset + 2]} << 8) | std::uint32_t{bytes[offset + 3]};
}

// Requires `object` to have exactly `keys`.
Expected<void> RequireKeys(const Json& object, std::initializer_list<std::string_view> keys) {
  if (!object.is_object()) return MakeError(ErrorCode::kParse, "must be a JSON object");
  for (auto key : keys) {
    if (!object.contains(key)) return MakeError(ErrorCode::kParse, "missing \"" + std::string(key) + "\"");
  }
  if (object.size() != keys.size()) {
    for (const auto& item : object.items()) {
      if (std::find(keys.begin(), keys.end(), item.key()) == keys.end()) {
        return MakeError(ErrorCode::kParse, "unknown member \"" + item.key() + "\"");
      }
    }
  }
  return kOk;
}

Expected<std::uint64_t> ReadSize(const Json& value, std::uint64_t max, std::string_view what) {
  if (!value.is_number_unsigned()) {
    return MakeError(ErrorCode::kParse, std::string(what) + ": must be a non-negative integer");
  }
  auto size = value.get<std::uint64_t>();
  if (size > max) {
    return MakeError(ErrorCode::kTooLarge,
                     std::string(what) + ": " + std::to_string(size) + " is above the limit of " + std::to_string(max));
  }
  return size;
}

Expected<std::string> ReadHash(const Json& value, std::string_view what) {
  if (!value.is_string() || !IsLowerHex(value.get_ref<const std::string&>(), 64)) {
    return MakeError(ErrorCode::kParse, std::string(what) + ": must be 64 lower-case hex digits");
  }
  return value.get<std::string>();
}

// Paths that name a directory holding another entry would make the tree
// ambiguous ("a" as a file and "a/b"); entries must also be sorted and unique.
Expected<void> CheckTreeShape(const std::vector<FileEntry>& files) {
  std::set<std::string_view> paths;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& path = files[i].path;
    if (i > 0 && !(files[i - 1].path < path)) {
      return MakeError(ErrorCode::kParse, "files[" + std::to_string(i) + "].path: " + Quote(path) + " is not after " +
                                              Quote(files[i - 1].path) + " (paths must be sorted and unique)");
    }
    paths.insert(path);
  }
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::string_view path = files[i].path;
    for (auto slash = path.find('/'); slash != std::string_view::npos; slash = path.find('/', slash + 1)) {
      if (paths.contains(path.substr(0, slash))) {
        return MakeError(ErrorCode::kParse, "files[" + std::to_string(i) + "].path: " + Quote(path) + " is inside " +
                                                Quote(path.substr(0, slash)) + ", which is a file");
      }
    }
  }
  return kOk;
}

Expected<std::vector<FileEntry>> ParseFiles(const Json& files) {
  if (!files.is_array()) return MakeError(ErrorCode::kParse, "files: must be an array");
  if (files.size() > kMaxFiles) {
    return MakeError(ErrorCode::kTooLarge, "files: " + std::to_string(files.size()) + " entries, above the limit of " +
                                               std::to_string(kMaxFiles));
  }
  std::vector<FileEntry> entries;
  entries.reserve(files.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::string where = "files[" + std::to_string(i) + "]";
    const Json& file = files[i];
    auto keys = RequireKeys(file, {"mode", "path", "sha256", "size"});
    if (!keys) return WrapError(keys.error(), where);
    FileEntry entry;
    if (!file["path"].is_string()) return MakeError(ErrorCode::kParse, where + ".path: must be a string");
    entry.path = file["path"].get<std::string>();
    auto valid = ValidateImagePath(entry.path);
    if (!valid) return WrapError(valid.error(), where + ".path");
    if (entry.path == kManifestFileName) {
      return MakeError(ErrorCode::kParse,
                       where + ".path: " + Quote(kManifestFileName) + " travels in the header, not as a file");
    }
    CITADEL_TRY(auto mode, ReadSize(file["mode"], 07777, where + ".mode"));
    if (mode != kFileMode && mode != kExecutableMode) {
      return MakeError(ErrorCode::kParse, where + ".mode: must be 292 (0444) or 365 (0555)");
    }
    entry.mode = static_cast<std::uint32_t>(mode);
    CITADEL_TRY(entry.size, ReadSize(file["size"], kMaxTotalSize, where + ".size"));
    total += entry.size;
    if (total > kMaxTotalSize) {
      return MakeError(ErrorCode::kTooLarge,
                       "files: total size is above the limit of " + std::to_string(kMaxTotalSize));
    }
    CITADEL_TRY(entry.sha256, ReadHash(file["sha256"], where + ".sha256"));
    entries.push_back(std::move(entry));
  }
  CITADEL_TRY_VOID(CheckTreeShape(entries));
  return entries;
}

Expected<ImageInfo> ParseImageImpl(std::span<const std::uint8_t> bytes, std::string label) {
  ImageInfo info;
  info.label = std::move(label);
  if (bytes.size() > kMaxImageBytes) {
    return MakeError(ErrorCode::kTooLarge, "is larger than " + std::to_string(kMaxImageBytes) + " bytes");
  }
  if (bytes.size() < kMagic.size() || AsText(bytes.first(kMagic.size())) != kMagic) {
    return MakeError(ErrorCode::kParse, "not a Citadel image (no CITIMG1 magic)");
  }
  std::size_t offset = kMagic.size();
  if (bytes.size() - offset < 4) return MakeError(ErrorCode::kParse, "truncated before the header length");
  std::size_t header_size = ReadU32(bytes, offset);
  offset += 4;
  if (header_size > kMaxHeaderBytes) {
    return MakeError(ErrorCode::kTooLarge, "header: " + std::to_string(header_size) + " bytes, above the limit of " +
                                               std::to_string(kMaxHeaderBytes));
  }
  if (bytes.size() - offset < header_size) return MakeError(ErrorCode::kParse, "truncated inside the header");
  info.header_bytes = std::string(AsText(bytes.subspan(offset, header_size)));
  offset += header_size;

  auto header_json = ParseJsonStrict(info.header_bytes);
  if (!header_json) return WrapError(header_json.error(), "header");
  auto canonical = CanonicalJson(*header_json);
  if (!canonical || *canonical != info.header_bytes) {
    return MakeError(ErrorCode::kParse, "header: is not canonical JSON");
  }
  const Json& header = *header_json;
  auto keys = RequireKeys(header, {"files", "format_version", "manifest", "payload"});
  if (!keys) return WrapError(keys.error(), "header");
  if (!header["format_version"].is_number_integer() || header["format_version"].get<std::int64_t>() != kFormatVersion) {
    return MakeError(ErrorCode::kParse, "header.format_version: this version reads format 1 only");
  }
  if (!header["manifest"].is_object()) return MakeError(ErrorCode::kParse, "manifest: must be a JSON object");
  auto manifest_text = CanonicalJson(header["manifest"]);
  if (!manifest_text || manifest_text->size() > kMaxManifestBytes) {
    return MakeError(ErrorCode::kTooLarge,
                     "manifest: above the limit of " + std::to_string(kMaxManifestBytes) + " bytes");
  }
  info.manifest = header["manifest"];
  CITADEL_TRY(info.files, ParseFiles(header["files"]));
  for (const auto& file : info.files) info.total_size += file.size;

  const Json& payload = header["payload"];
  auto payload_keys = RequireKeys(payload, {"compression", "sha256", "size"});
  if (!payload_keys) return WrapError(payload_keys.error(), "payload");
  if (payload["compression"] != "zstd") return MakeError(ErrorCode::kParse, "payload.compression: must be \"zstd\"");
  CITADEL_TRY(info.payload_size, ReadSize(payload["size"], kMaxPayloadBytes, "payload.size"));
  CITADEL_TRY(info.payload_sha256, ReadHash(payload["sha256"], "payload.sha256"));

  if (bytes.size() - offset < info.payload_size) return MakeError(ErrorCode::kParse, "truncated inside the payload");
  auto payload_bytes = bytes.subspan(offset, static_cast<std::size_t>(info.payload_size));
  info.payload.assign(payload_bytes.begin(), payload_bytes.end());
  offset += payload_bytes.size();
  info.digest = Hex(crypto::Sha256(bytes.first(offset)));

  if (offset == bytes.size()) {
    return MakeError(ErrorCode::kCrypto, "is not signed (no signature block after the payload)");
  }
  if (bytes.size() - offset < 4) return MakeError(ErrorCode::kParse, "truncated before the signature length");
  std::size_t signature_size = ReadU32(bytes, offset);
  offset += 4;
  if (signature_size > kMaxSignatureBytes) {
    return MakeError(ErrorCode::kTooLarge,
                     "signature block: above the limit of " + std::to_string(kMaxSignatureBytes) + " bytes");
  }
  if (bytes.size() - offset != signature_size) {
    return MakeError(ErrorCode::kParse, bytes.size() - offset < signature_size
                                            ? "truncated inside the signature block"
                                            : "trailing bytes after the signature block");
  }
  std::string signature_text(AsText(bytes.subspan(offset, signature_size)));
  auto signature_json = ParseJsonStrict(signature_text, 2);
  if (!signature_json) return WrapError(signature_json.error(), "signature block");
  auto signature_canonical = CanonicalJson(*signature_json);
  if (!signature_canonical || *signature_canonical != signature_text) {
    return MakeError(ErrorCode::kParse, "signature block: is not canonical JSON");
  }
  auto signature_keys = RequireKeys(*signature_json, {"key_id", "signature"});
  if (!signature_keys) return WrapError(signature_keys.error(), "signature block");
  const Json& key_id = (*signature_json)["key_id"];
  if (!key_id.is_string() || !IsLowerHex(key_id.get_ref<const std::string&>(), 64)) {
    return MakeError(ErrorCode::kParse, "signature block.key_id: must be 64 lower-case hex digits");
  }
  info.key_id = key_id.get<std::string>();
  const Json& signature = (*signature_json)["signature"];
  if (!signature.is_string()) return MakeError(ErrorCode::kParse, "signature block.signature: must be a string");
  auto decoded = Base64Decode(signature.get_ref<const std::string&>());
  if (!decoded || decoded->empty() || Base64Encode(*decoded) != signature.get_ref<const std::string&>()) {
    return MakeError(ErrorCode::kParse, "signature block.signature: must be canonical base64");
  }
  info.signature = std::move(*decoded);
  return info;
}

// ---- packing ----------------------------------------------------------------

struct PackedFile {
  FileEntry entry;
  fs::path source;
};

Expected<std::vector<PackedFile>> CollectFiles(const fs::path& dir) {
  std::vector<PackedFile> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) return MakeError(ErrorCode::kIo, "cannot read " + dir.string() + ": " + ec.message());
  std::uint64_t total = 0;
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return MakeError(ErrorCode::kIo, "cannot read " + dir.string() + ": " + ec.message());
    const fs::path& source = it->path();
    std::string relative = source.lexically_relative(dir).generic_string();
    auto status = fs::symlink_status(source, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot stat " + source.string() + ": " + ec.message());
    if (fs::is_symlink(status)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       relative + ": is a symbolic link; images hold regular files and directories only");
    }
    if (fs::is_directory(status)) {
      if (it.depth() + 1 >= static_cast<int>(kMaxPathDepth)) {
        return MakeError(ErrorCode::kTooLarge,
                         relative + ": nested deeper than " + std::to_string(kMaxPathDepth) + " levels");
      }
      continue;
    }
    if (!fs::is_regular_file(status)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       relative + ": is not a regular file or directory (device, fifo or socket)");
    }
    if (relative == kManifestFileName) continue;  // carried in the header
    auto valid = ValidateImagePath(relative);
    if (!valid) return WrapError(valid.error(), relative);
    if (files.size() >= kMaxFiles) {
      return MakeError(ErrorCode::kTooLarge, "more than " + std::to_string(kMaxFiles) + " files");
    }
    FileEntry entry;
    entry.path = relative;
    auto permissions = status.permissions();
    bool executable =
        (permissions & (fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec)) != fs::perms::none;
    entry.mode = executable ? kExecutableMode : kFileMode;
    entry.size = fs::file_size(source, ec);
    if (ec) return MakeError(ErrorCode::kIo, "cannot stat " + source.string() + ": " + ec.message());
    total += entry.size;
    if (total > kMaxTotalSize) {
      return MakeError(ErrorCode::kTooLarge,
                       "the files add up to more than " + std::to_string(kMaxTotalSize) + " bytes");
    }
    files.push_back({std::move(entry), source});
  }
  std::sort(files.begin(), files.end(),
            [](const PackedFile& a, const PackedFile& b) { return a.entry.path < b.entry.path; });
  return files;
}

// ---- extraction -------------------------------------------------------------

Error ErrnoError(std::string_view what, const fs::path& path) {
  std::error_code ec(errno, std::generic_category());
  return Error(ErrorCode::kIo, std::string(what) + " " + path.string() + ": " + ec.message());
}

Expected<void> FsyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(ErrnoError("cannot open", path));
  int result = ::fsync(fd);
  ::close(fd);
  if (result != 0) return std::unexpected(ErrnoError("cannot fsync", path));
  return kOk;
}

Expected<void> WriteNewFile(const fs::path& path, std::string_view data, std::uint32_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(ErrnoError("cannot create", path));
  std::size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto error = ErrnoError("cannot write", path);
      ::close(fd);
      return std::unexpected(error);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    auto error = ErrnoError("cannot finish", path);
    ::close(fd);
    return std::unexpected(error);
  }
  if (::close(fd) != 0) return std::unexpected(ErrnoError("cannot close", path));
  return kOk;
}

// Removes a tree this module wrote, making its read-only directories
// writable first. Best effort: used on the failure path and for the old tree.
void RemoveTree(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(root, ec))) return;
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::add | fs::perm_options::nofollow, ec);
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add | fs::perm_options::nofollow, ec);
    }
  }
  fs::remove_all(root, ec);
}

Expected<void> WriteTree(const VerifiedImage& image, const fs::path& root, const ExtractOptions& options) {
  const auto& files = image.info().files;
  std::set<fs::path> directories;
  for (std::size_t i = 0; i < files.size(); ++i) {
    fs::path relative(files[i].path);
    fs::path parent;
    for (auto component = relative.begin(); std::next(component) != relative.end(); ++component) {
      parent /= *component;
      if (directories.insert(parent).second) {
        if (::mkdir((root / parent).c_str(), 0700) != 0)
          return std::unexpected(ErrnoError("cannot create", root / parent));
      }
    }
    if (options.before_file) CITADEL_TRY_VOID(options.before_file(files[i].path));
    CITADEL_TRY_VOID(WriteNewFile(root / relative, image.contents()[i], files[i].mode));
  }
  CITADEL_TRY(auto manifest, CanonicalJson(image.info().manifest));
  CITADEL_TRY_VOID(WriteNewFile(root / kManifestFileName, manifest, kFileMode));
  // Deepest first, so each directory is synced after its entries.
  for (auto it = directories.rbegin(); it != directories.rend(); ++it) {
    CITADEL_TRY_VOID(FsyncPath(root / *it));
    if (::chmod((root / *it).c_str(), kDirectoryMode) != 0)
      return std::unexpected(ErrnoError("cannot chmod", root / *it));
  }
  CITADEL_TRY_VOID(FsyncPath(root));
  if (::chmod(root.c_str(), kDirectoryMode) != 0) return std::unexpected(ErrnoError("cannot chmod", root));
  return kOk;
}

}  // namespace

std::string PublisherKeyId(const crypto::PublicKey& key) { return Hex(crypto::Sha256(key.SpkiDer())); }

Expected<void> ValidateImagePath(std::string_view path) {
  if (path.empty()) return MakeError(ErrorCode::kInvalidArgument, "an empty path is not allowed");
  if (path.size() > kMaxPathBytes) {
    return MakeError(ErrorCode::kTooLarge, "longer than " + std::to_string(kMaxPathBytes) + " bytes");
  }
  if (path.front() == '/')
    return MakeError(ErrorCode::kInvalidArgument, Quote(path) + ": absolute paths are not allowed");
  for (char c : path) {
    auto byte = static_cast<unsigned char>(c);
    if (byte == 0) return MakeError(ErrorCode::kInvalidArgument, "a NUL byte is not allowed");
    if (byte < 0x20 || byte == 0x7f || c == '\\') {
      return MakeError(ErrorCode::kInvalidArgument, "control characters and '\\' are not allowed");
    }
  }
  std::size_t depth = 0;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view component = path.substr(start, end - start);
    if (component.empty())
      return MakeError(ErrorCode::kInvalidArgument, Quote(path) + ": empty components are not allowed");
    if (component == "..") return MakeError(ErrorCode::kInvalidArgument, "'..' is not allowed");
    if (component == ".") return MakeError(ErrorCode::kInvalidArgument, "'.' is not allowed");
    if (++depth > kMaxPathDepth) {
      return MakeError(ErrorCode::kTooLarge, "deeper than " + std::to_string(kMaxPathDepth) + " components");
    }
    start = end + 1;
  }
  return kOk;
}

Expected<Bytes> PackImage(const fs::path& dir, const crypto::PrivateKey& publisher_key) {
  auto fail = [&dir](const Error& error) { return WrapError(error, "packing " + dir.string()); };
  auto manifest_text = ReadFile(dir / kManifestFileName, kMaxManifestBytes);
  if (!manifest_text) {
    if (manifest_text.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "packing " + dir.string() + ": no " + std::string(kManifestFileName) +
                                                 " (every image needs one at the top of the tree)");
    }
    return fail(manifest_text.error());
  }
  auto manifest = ParseJsonStrict(*manifest_text);
  if (!manifest) return fail(manifest.error().Wrap(kManifestFileName));
  if (!manifest->is_object()) {
    return fail(Error(ErrorCode::kInvalidArgument, std::string(kManifestFileName) + ": must be a JSON object"));
  }
  auto files = CollectFiles(dir);
  if (!files) return fail(files.error());

  std::string contents;
  Json entries = Json::array();
  for (const auto& file : *files) {
    auto data = ReadFile(file.source, static_cast<std::size_t>(kMaxTotalSize));
    if (!data) return fail(data.error());
    if (data->size() != file.entry.size) {
      return fail(Error(ErrorCode::kConflict, file.entry.path + ": changed while packing"));
    }
    if (contents.size() + data->size() > kMaxTotalSize) {
      return fail(
          Error(ErrorCode::kTooLarge, "the files add up to more than " + std::to_string(kMaxTotalSize) + " bytes"));
    }
    entries.push_back({{"path", file.entry.path},
                       {"mode", file.entry.mode},
                       {"size", file.entry.size},
                       {"sha256", crypto::Sha256Hex(*data)}});
    contents += *data;
  }
  auto payload = Compress(contents);
  if (!payload) return fail(payload.error());
  auto payload_sha256 = crypto::Sha256(*payload);
  Json header = {{"format_version", kFormatVersion},
                 {"manifest", *manifest},
                 {"files", std::move(entries)},
                 {"payload", {{"compression", "zstd"}, {"size", payload->size()}, {"sha256", Hex(payload_sha256)}}}};
  auto header_text = CanonicalJson(header);
  if (!header_text) return fail(header_text.error().Wrap("header"));
  if (header_text->size() > kMaxHeaderBytes) {
    return fail(Error(ErrorCode::kTooLarge, "the header (manifest and file list) is larger than " +
                                                std::to_string(kMaxHeaderBytes) +
                                                " bytes; use fewer or shorter paths"));
  }
  auto manifest_canonical = CanonicalJson(*manifest);
  if (!manifest_canonical || manifest_canonical->size() > kMaxManifestBytes) {
    return fail(Error(ErrorCode::kTooLarge, std::string(kManifestFileName) + ": larger than the limit"));
  }
  auto signature = publisher_key.Sign(SignedMessage(*header_text, payload_sha256));
  if (!signature) return fail(signature.error());
  auto signature_text =
      CanonicalJson(Json{{"key_id", PublisherKeyId(publisher_key.Public())}, {"signature", Base64Encode(*signature)}});
  if (!signature_text) return fail(signature_text.error());

  Bytes image;
  image.reserve(kMagic.size() + 8 + header_text->size() + payload->size() + signature_text->size());
  Append(image, AsBytes(kMagic));
  AppendU32(image, header_text->size());
  Append(image, AsBytes(*header_text));
  Append(image, *payload);
  AppendU32(image, signature_text->size());
  Append(image, AsBytes(*signature_text));
  return image;
}

Expected<ImageInfo> ParseImage(std::span<const std::uint8_t> bytes, std::string_view label) {
  auto info = ParseImageImpl(bytes, std::string(label));
  if (!info) return WrapError(info.error(), "image " + std::string(label));
  return info;
}

Expected<ImageInfo> ParseImageFile(const fs::path& path) {
  auto data = ReadFile(path, static_cast<std::size_t>(kMaxImageBytes));
  if (!data) return WrapError(data.error(), "image " + path.string());
  return ParseImage(AsBytes(*data), path.string());
}

Expected<VerifiedImage> VerifyImage(const ImageInfo& info, std::span<const crypto::PublicKey> trusted_publishers) {
  auto fail = [&info](ErrorCode code, const std::string& message) {
    return MakeError(code, "image " + info.label + ": " + message);
  };
  const crypto::PublicKey* signer = nullptr;
  for (const auto& key : trusted_publishers) {
    if (PublisherKeyId(key) == info.key_id) {
      signer = &key;
      break;
    }
  }
  if (signer == nullptr) {
    return fail(ErrorCode::kPermissionDenied,
                "signed by key " + info.key_id.substr(0, 16) + "..., which is not a trusted publisher");
  }
  auto payload_sha256 = crypto::Sha256(info.payload);
  if (!signer->Verify(SignedMessage(info.header_bytes, payload_sha256), info.signature)) {
    return fail(ErrorCode::kCrypto, "the signature does not verify with publisher key " + info.key_id.substr(0, 16) +
                                        "... (the image was changed after signing)");
  }
  if (Hex(payload_sha256) != info.payload_sha256 || info.payload.size() != info.payload_size) {
    return fail(ErrorCode::kCrypto, "payload: does not match the signed payload hash");
  }
  auto contents = DecompressExactly(info.payload, info.total_size);
  if (!contents) return fail(contents.error().code(), contents.error().message());
  std::vector<std::string> files;
  files.reserve(info.files.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < info.files.size(); ++i) {
    const auto& entry = info.files[i];
    std::string data = contents->substr(offset, static_cast<std::size_t>(entry.size));
    offset += data.size();
    if (crypto::Sha256Hex(data) != entry.sha256) {
      return fail(ErrorCode::kCrypto, "files[" + std::to_string(i) + "] " + Quote(entry.path) +
                                          ": contents do not match the signed sha256");
    }
    files.push_back(std::move(data));
  }
  return VerifiedImage(info, std::move(files));
}

Expected<VerifiedImage> VerifyImage(std::span<const std::uint8_t> bytes,
                                    std::span<const crypto::PublicKey> trusted_publishers, std::string_view label) {
  CITADEL_TRY(auto info, ParseImage(bytes, label));
  return VerifyImage(info, trusted_publishers);
}

Expected<void> ExtractImage(const VerifiedImage& image, const fs::path& target_dir, const ExtractOptions& options) {
  const std::string context = "extracting image " + image.info().label + " to " + target_dir.string();
  fs::path target = target_dir.has_filename() ? target_dir : target_dir.parent_path();
  fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  auto existing = fs::symlink_status(target, ec);
  bool replace = fs::exists(existing);
  if (replace && !fs::is_directory(existing)) {
    return MakeError(ErrorCode::kConflict, context + ": the target exists and is not a directory");
  }
  std::string pattern = (parent / ("." + target.filename().string() + ".new-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return std::unexpected(ErrnoError("cannot create a directory beside", target).Wrap(context));
  }
  fs::path staging = pattern;
  auto written = WriteTree(image, staging, options);
  if (!written) {
    RemoveTree(staging);
    return WrapError(written.error(), context);
  }
  if (replace) {
    // Swap in one step: at every instant target_dir is the old or the new tree.
    if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0) {
      auto error = ErrnoError("cannot exchange", target);
      RemoveTree(staging);
      return std::unexpected(error.Wrap(context));
    }
  } else if (::rename(staging.c_str(), target.c_str()) != 0) {
    auto error = ErrnoError("cannot rename into", target);
    RemoveTree(staging);
    return std::unexpected(error.Wrap(context));
  }
  auto synced = FsyncPath(parent);
  if (!synced) return WrapError(synced.error(), context);
  if (replace) RemoveTree(staging);  // now holds the old tree
  return kOk;
}

}  // namespace citadel::image
