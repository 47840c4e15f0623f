// CreateDelta and ApplyDelta over libzstd (delta.hpp states the contracts).
#include "delta/delta.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace citadel::delta {
namespace {

namespace fs = std::filesystem;

// A zstd frame starts with its magic number, little-endian (RFC 8878 3.1.1).
// Checked so that a skippable frame cannot stand in for the target.
constexpr std::array<std::uint8_t, 4> kZstdFrameMagic = {0x28, 0xB5, 0x2F, 0xFD};
// Enough bytes of a frame for ZSTD_getFrameContentSize (ZSTD_FRAMEHEADERSIZE_MAX,
// which zstd.h only exposes to static linking).
constexpr std::size_t kZstdFrameHeaderMaxBytes = 18;

std::string Errno() { return std::strerror(errno); }

Error IoError(std::string_view what, const fs::path& path) {
  return Error(ErrorCode::kIo, std::string(what) + " " + path.string() + ": " + Errno());
}

std::string ZstdError(std::size_t code) { return ZSTD_getErrorName(code); }

struct ZstdCCtxDeleter {
  void operator()(ZSTD_CCtx* context) const { ZSTD_freeCCtx(context); }
};
struct ZstdDCtxDeleter {
  void operator()(ZSTD_DCtx* context) const { ZSTD_freeDCtx(context); }
};

// An open regular file, mapped read-only whole (nothing is mapped for an
// empty file). Sole owner of the descriptor and the mapping.
class MappedFile {
 public:
  // `role` names the file in errors ("source", "target").
  static Expected<MappedFile> Open(const fs::path& path, std::string_view role) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      const auto code = errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
      return MakeError(code, "cannot open " + std::string(role) + " " + path.string() + ": " + Errno());
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) return std::unexpected(IoError("cannot stat", path));
    if (!S_ISREG(info.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument, std::string(role) + " " + path.string() + " is not a regular file");
    }
    const auto length = static_cast<std::uint64_t>(info.st_size);
    if (length > kMaxImageBytes) {
      return MakeError(ErrorCode::kTooLarge, std::string(role) + " " + path.string() + " is " + std::to_string(length) +
                                                 " bytes, above the " + std::to_string(kMaxImageBytes) +
                                                 "-byte delta bound: only the full image can be offered");
    }
    MappedFile file(std::move(fd), info);
    if (length > 0) {
      void* address = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ, MAP_PRIVATE, file.fd_.get(), 0);
      if (address == MAP_FAILED) return std::unexpected(IoError("cannot map", path));
      file.data_ = static_cast<const std::uint8_t*>(address);
      file.length_ = static_cast<std::size_t>(length);
    }
    return file;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept
      : fd_(std::move(other.fd_)),
        info_(other.info_),
        data_(std::exchange(other.data_, nullptr)),
        length_(std::exchange(other.length_, 0)) {}
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) {
      // const_cast: munmap takes void*, the mapping itself is read-only.
      (void)::munmap(const_cast<std::uint8_t*>(data_), length_);
    }
  }

  std::span<const std::uint8_t> bytes() const { return {data_, length_}; }
  const struct stat& info() const { return info_; }

 private:
  MappedFile(UniqueFd fd, const struct stat& info) : fd_(std::move(fd)), info_(info) {}

  UniqueFd fd_;
  struct stat info_ {};
  const std::uint8_t* data_ = nullptr;
  std::size_t length_ = 0;
};

bool SameFile(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// `<output>.part`: created (or reused and truncated) on Create, removed by
// the destructor unless Commit() renamed it to `<output>`. So every failure
// path leaves no partial file, whatever returns early.
class PartFile {
 public:
  // `inputs` are the files being read: the part file must not be one of
  // them (a hard link or a path mix-up), or truncating it would destroy an
  // input under its mapping.
  static Expected<PartFile> Create(const fs::path& output, std::initializer_list<const struct stat*> inputs) {
    fs::path part = output;
    part += ".part";
    UniqueFd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!fd) return std::unexpected(IoError("cannot create", part));
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) return std::unexpected(IoError("cannot stat", part));
    if (!S_ISREG(info.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument, part.string() + " exists and is not a regular file");
    }
    for (const struct stat* input : inputs) {
      if (SameFile(info, *input)) {
        return MakeError(ErrorCode::kInvalidArgument, part.string() + " is one of the input files");
      }
    }
    PartFile file(output, std::move(part), std::move(fd));
    if (::ftruncate(file.fd_.get(), 0) != 0) return std::unexpected(IoError("cannot truncate", file.part_));
    return file;
  }

  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;
  PartFile(PartFile&& other) noexcept
      : output_(std::move(other.output_)),
        part_(std::move(other.part_)),
        fd_(std::move(other.fd_)),
        committed_(std::exchange(other.committed_, true)) {}
  PartFile& operator=(PartFile&&) = delete;
  ~PartFile() {
    if (!committed_) (void)::unlink(part_.c_str());
  }

  int fd() const { return fd_.get(); }
  const fs::path& path() const { return part_; }

  Expected<void> Write(std::span<const std::uint8_t> data) {
    std::size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = ::write(fd_.get(), data.data() + written, data.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        return std::unexpected(IoError("cannot write", part_));
      }
      written += static_cast<std::size_t>(n);
    }
    return kOk;
  }

  // fsync, rename over the output, fsync the directory: after a crash the
  // output is either absent (or its old content) or complete.
  Expected<void> Commit() {
    if (::fsync(fd_.get()) != 0) return std::unexpected(IoError("cannot sync", part_));
    fd_.Reset();
    if (::rename(part_.c_str(), output_.c_str()) != 0) return std::unexpected(IoError("cannot rename to", output_));
    committed_ = true;
    const fs::path directory = output_.parent_path().empty() ? fs::path(".") : output_.parent_path();
    UniqueFd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!directory_fd || ::fsync(directory_fd.get()) != 0) {
      // The file is complete and renamed; only the rename's durability is in
      // doubt, which the next boot's verification of the image catches.
      log::Warn("cannot sync directory after rename", {{"path", directory.string()}, {"error", Errno()}});
    }
    return kOk;
  }

 private:
  PartFile(fs::path output, fs::path part, UniqueFd fd)
      : output_(std::move(output)), part_(std::move(part)), fd_(std::move(fd)) {}

  fs::path output_;
  fs::path part_;
  UniqueFd fd_;
  bool committed_ = false;
};

// SHA-256 of what was written to the part file, read back through a
// mapping: the digest covers the bytes as stored, not a buffer that was
// meant to be written.
Expected<crypto::Sha256Digest> DigestOfWritten(const PartFile& part, std::uint64_t length) {
  if (length == 0) return crypto::Sha256(std::string_view());
  void* address = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ, MAP_SHARED, part.fd(), 0);
  if (address == MAP_FAILED) return std::unexpected(IoError("cannot map", part.path()));
  const auto digest = crypto::Sha256(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(address), length));
  (void)::munmap(address, static_cast<std::size_t>(length));
  return digest;
}

// The smallest power of two covering source + target, so the last target
// byte can still copy from the first source byte.
int WindowLogFor(std::uint64_t source_length, std::uint64_t target_length) {
  const std::uint64_t span = std::max<std::uint64_t>(source_length + target_length, 1);
  const int log = static_cast<int>(std::bit_width(span - 1));
  return std::max(log, kMinWindowLog);
}

Expected<void> SetParameter(ZSTD_CCtx* context, ZSTD_cParameter parameter, int value, std::string_view name) {
  const std::size_t result = ZSTD_CCtx_setParameter(context, parameter, value);
  if (ZSTD_isError(result) != 0) {
    return MakeError(ErrorCode::kInternal, "zstd: cannot set " + std::string(name) + ": " + ZstdError(result));
  }
  return kOk;
}

Expected<std::unique_ptr<ZSTD_CCtx, ZstdCCtxDeleter>> MakeCompressor(const CreateOptions& options, int window_log,
                                                                     std::span<const std::uint8_t> source,
                                                                     std::uint64_t target_length) {
  std::unique_ptr<ZSTD_CCtx, ZstdCCtxDeleter> context(ZSTD_createCCtx());
  if (!context) return MakeError(ErrorCode::kInternal, "zstd: cannot create a compression context");
  ZSTD_CCtx* cctx = context.get();
  CITADEL_TRY_VOID(SetParameter(cctx, ZSTD_c_compressionLevel, options.level, "level"));
  CITADEL_TRY_VOID(SetParameter(cctx, ZSTD_c_windowLog, window_log, "window log"));
  // What `zstd --patch-from` turns on for large inputs: the regular match
  // finders only reach back 2^chainLog or so, long-distance matching finds
  // the source's copy of a block anywhere in the window.
  CITADEL_TRY_VOID(SetParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1, "long-distance matching"));
  CITADEL_TRY_VOID(SetParameter(cctx, ZSTD_c_checksumFlag, 1, "content checksum"));
  CITADEL_TRY_VOID(SetParameter(cctx, ZSTD_c_contentSizeFlag, 1, "content size"));
  std::size_t result = ZSTD_CCtx_setPledgedSrcSize(cctx, target_length);
  if (ZSTD_isError(result) != 0) {
    return MakeError(ErrorCode::kInternal, "zstd: cannot pledge the target length: " + ZstdError(result));
  }
  // Referenced, not copied: the mapping must outlive the frame.
  result = ZSTD_CCtx_refPrefix(cctx, source.data(), source.size());
  if (ZSTD_isError(result) != 0) {
    return MakeError(ErrorCode::kInternal, "zstd: cannot reference the source: " + ZstdError(result));
  }
  return context;
}

Expected<void> CheckWindowLog(int window_log, std::string_view name) {
  if (window_log < kMinWindowLog || window_log > kMaxWindowLog) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(name) + " " + std::to_string(window_log) +
                                                      " is outside " + std::to_string(kMinWindowLog) + ".." +
                                                      std::to_string(kMaxWindowLog));
  }
  return kOk;
}

// Reads exactly data.size() bytes at offset, or fails (a short file is a
// truncated delta).
Expected<void> ReadExactly(int fd, std::uint64_t offset, std::span<std::uint8_t> data, const fs::path& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(IoError("cannot read", path));
    }
    if (n == 0) return MakeError(ErrorCode::kParse, "delta " + path.string() + " is truncated");
    done += static_cast<std::size_t>(n);
  }
  return kOk;
}

// The frame must be a zstd frame (not a skippable one) that declares the
// header's target length as its content size.
Expected<void> CheckFrameStart(int fd, std::uint64_t frame_length, const DeltaHeader& header, const fs::path& path) {
  std::array<std::uint8_t, kZstdFrameHeaderMaxBytes> start{};
  const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(frame_length, start.size()));
  CITADEL_TRY_VOID(ReadExactly(fd, kHeaderSize, std::span(start).first(length), path));
  if (length < kZstdFrameMagic.size() || !std::equal(kZstdFrameMagic.begin(), kZstdFrameMagic.end(), start.begin())) {
    return MakeError(ErrorCode::kParse, "delta " + path.string() + ": the body is not a zstd frame");
  }
  const unsigned long long declared = ZSTD_getFrameContentSize(start.data(), length);
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return MakeError(ErrorCode::kParse, "delta " + path.string() + ": the zstd frame header is truncated or corrupt");
  }
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
    return MakeError(ErrorCode::kParse, "delta " + path.string() + ": the zstd frame does not declare its length");
  }
  if (declared != header.target_length) {
    // More than declared is the "endless data" case: refused before zstd
    // writes a byte.
    return MakeError(declared > header.target_length ? ErrorCode::kTooLarge : ErrorCode::kParse,
                     "delta " + path.string() + ": the zstd frame declares " + std::to_string(declared) +
                         " bytes, the header " + std::to_string(header.target_length));
  }
  return kOk;
}

Error DecompressionError(std::size_t code, int max_window_log, const fs::path& path) {
  if (ZSTD_getErrorCode(code) == ZSTD_error_frameParameter_windowTooLarge) {
    return Error(ErrorCode::kTooLarge, "delta " + path.string() + " needs a zstd window above 2^" +
                                           std::to_string(max_window_log) +
                                           " bytes, more memory than this device allows");
  }
  return Error(ErrorCode::kParse, "delta " + path.string() + " is corrupt: zstd: " + ZstdError(code));
}

// Decompresses the frame (delta bytes [kHeaderSize, end)) into `part`,
// writing at most header.target_length bytes. Each pass of the loop either
// consumes input or produces output, or fails; input is bounded by the
// frame length and output by the target length, so the loop is bounded.
Expected<void> DecompressFrame(ZSTD_DCtx* dctx, int delta_fd, std::uint64_t frame_length, const DeltaHeader& header,
                               int max_window_log, const fs::path& delta_path, PartFile& part) {
  std::vector<std::uint8_t> input_buffer(ZSTD_DStreamInSize());
  std::vector<std::uint8_t> output_buffer(ZSTD_DStreamOutSize());
  ZSTD_inBuffer input{input_buffer.data(), 0, 0};
  std::uint64_t frame_read = 0;
  std::uint64_t written = 0;
  for (;;) {
    if (input.pos == input.size && frame_read < frame_length) {
      const auto chunk =
          static_cast<std::size_t>(std::min<std::uint64_t>(input_buffer.size(), frame_length - frame_read));
      CITADEL_TRY_VOID(
          ReadExactly(delta_fd, kHeaderSize + frame_read, std::span(input_buffer).first(chunk), delta_path));
      frame_read += chunk;
      input = {input_buffer.data(), chunk, 0};
    }
    const std::size_t input_before = input.pos;
    ZSTD_outBuffer output{output_buffer.data(), output_buffer.size(), 0};
    const std::size_t result = ZSTD_decompressStream(dctx, &output, &input);
    if (ZSTD_isError(result) != 0) return std::unexpected(DecompressionError(result, max_window_log, delta_path));
    if (output.pos > header.target_length - written) {
      return MakeError(ErrorCode::kTooLarge, "delta " + delta_path.string() + " produces more than the " +
                                                 std::to_string(header.target_length) + " bytes its header declares");
    }
    CITADEL_TRY_VOID(part.Write(std::span(output_buffer).first(output.pos)));
    written += output.pos;
    if (result == 0) break;  // the frame is complete
    if (input.pos == input_before && output.pos == 0) {
      // zstd wants more input and the frame has none left.
      if (frame_read == frame_length) {
        return MakeError(ErrorCode::kParse,
                         "delta " + delta_path.string() + " is truncated: the zstd frame is incomplete");
      }
      return MakeError(ErrorCode::kInternal, "zstd made no progress decompressing " + delta_path.string());
    }
  }
  if (input.pos != input.size || frame_read != frame_length) {
    return MakeError(ErrorCode::kParse, "delta " + delta_path.string() + " has data after its zstd frame");
  }
  if (written != header.target_length) {
    return MakeError(ErrorCode::kParse, "delta " + delta_path.string() + " produces " + std::to_string(written) +
                                            " bytes, its header declares " + std::to_string(header.target_length));
  }
  return kOk;
}

}  // namespace

Expected<DeltaInfo> CreateDelta(const fs::path& source, const fs::path& target, const fs::path& output,
                                const CreateOptions& options) {
  if (options.level < 1 || options.level > 19) {
    return MakeError(ErrorCode::kInvalidArgument, "delta level " + std::to_string(options.level) + " is outside 1..19");
  }
  CITADEL_TRY_VOID(CheckWindowLog(options.max_window_log, "maximum window log"));
  CITADEL_TRY(auto source_file, MappedFile::Open(source, "source"));
  CITADEL_TRY(auto target_file, MappedFile::Open(target, "target"));
  const auto source_bytes = source_file.bytes();
  const auto target_bytes = target_file.bytes();

  const int window_log = WindowLogFor(source_bytes.size(), target_bytes.size());
  if (window_log > options.max_window_log) {
    return MakeError(ErrorCode::kTooLarge,
                     "a delta from " + source.string() + " to " + target.string() + " needs a 2^" +
                         std::to_string(window_log) + "-byte window, above the bound 2^" +
                         std::to_string(options.max_window_log) + ": only the full image can be offered");
  }

  DeltaInfo info;
  info.window_log = window_log;
  info.header.source_length = source_bytes.size();
  info.header.source_sha256 = crypto::Sha256(source_bytes);
  info.header.target_length = target_bytes.size();
  info.header.target_sha256 = crypto::Sha256(target_bytes);

  CITADEL_TRY(auto context, MakeCompressor(options, window_log, source_bytes, target_bytes.size()));
  CITADEL_TRY(auto part, PartFile::Create(output, {&source_file.info(), &target_file.info()}));
  const auto header_bytes = SerializeDeltaHeader(info.header);
  CITADEL_TRY_VOID(part.Write(header_bytes));
  info.delta_length = header_bytes.size();

  // Each pass consumes input or flushes output until zstd reports the frame
  // complete (0); the frame is at most ZSTD_compressBound(target) bytes, so
  // the loop is bounded. A pass that does neither is a zstd bug.
  std::vector<std::uint8_t> output_buffer(ZSTD_CStreamOutSize());
  ZSTD_inBuffer input{target_bytes.data(), target_bytes.size(), 0};
  for (;;) {
    const std::size_t input_before = input.pos;
    ZSTD_outBuffer out{output_buffer.data(), output_buffer.size(), 0};
    const std::size_t remaining = ZSTD_compressStream2(context.get(), &out, &input, ZSTD_e_end);
    if (ZSTD_isError(remaining) != 0) {
      return MakeError(ErrorCode::kInternal, "zstd compression failed: " + ZstdError(remaining));
    }
    CITADEL_TRY_VOID(part.Write(std::span(output_buffer).first(out.pos)));
    info.delta_length += out.pos;
    if (remaining == 0) break;
    if (input.pos == input_before && out.pos == 0) {
      return MakeError(ErrorCode::kInternal, "zstd made no progress compressing " + target.string());
    }
  }
  CITADEL_TRY_VOID(part.Commit());
  log::Info("delta created", {{"source", source.string()},
                              {"target", target.string()},
                              {"delta_bytes", std::to_string(info.delta_length)},
                              {"target_bytes", std::to_string(info.header.target_length)}});
  return info;
}

Expected<DeltaHeader> ApplyDelta(const fs::path& source, const fs::path& delta, const fs::path& output,
                                 const ApplyOptions& options) {
  CITADEL_TRY_VOID(CheckWindowLog(options.max_window_log, "maximum window log"));

  UniqueFd delta_fd(::open(delta.c_str(), O_RDONLY | O_CLOEXEC));
  if (!delta_fd) {
    const auto code = errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
    return MakeError(code, "cannot open delta " + delta.string() + ": " + Errno());
  }
  struct stat delta_info {};
  if (::fstat(delta_fd.get(), &delta_info) != 0) return std::unexpected(IoError("cannot stat", delta));
  if (!S_ISREG(delta_info.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "delta " + delta.string() + " is not a regular file");
  }
  CITADEL_TRY(auto source_file, MappedFile::Open(source, "installed image"));
  const auto source_bytes = source_file.bytes();
  // Created first, so that from here on every failure removes it, including
  // one left by an earlier attempt that was cut off.
  CITADEL_TRY(auto part, PartFile::Create(output, {&source_file.info(), &delta_info}));

  const auto delta_length = static_cast<std::uint64_t>(delta_info.st_size);
  if (delta_length < kHeaderSize) {
    return MakeError(ErrorCode::kParse, "delta " + delta.string() + " is truncated: " + std::to_string(delta_length) +
                                            " bytes, shorter than its header");
  }
  std::array<std::uint8_t, kHeaderSize> header_bytes{};
  CITADEL_TRY_VOID(ReadExactly(delta_fd.get(), 0, header_bytes, delta));
  auto parsed = ParseDeltaHeader(header_bytes);
  if (!parsed) return WrapError(parsed.error(), "delta " + delta.string());
  const DeltaHeader header = *parsed;

  const std::uint64_t frame_length = delta_length - kHeaderSize;
  if (frame_length == 0) {
    return MakeError(ErrorCode::kParse, "delta " + delta.string() + " is truncated: it has no zstd frame");
  }
  // No honest frame is longer than zstd's worst case for the target.
  if (frame_length > ZSTD_compressBound(static_cast<std::size_t>(header.target_length))) {
    return MakeError(ErrorCode::kTooLarge, "delta " + delta.string() + " is longer than any compression of a " +
                                               std::to_string(header.target_length) + "-byte target");
  }

  // The base check comes before any decompression: a delta against another
  // image would rebuild garbage, and zstd must not run on it at all.
  if (source_bytes.size() != header.source_length || crypto::Sha256(source_bytes) != header.source_sha256) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the installed image " + source.string() + " is not the delta's base (length or SHA-256 differ)");
  }
  CITADEL_TRY_VOID(CheckFrameStart(delta_fd.get(), frame_length, header, delta));

  std::unique_ptr<ZSTD_DCtx, ZstdDCtxDeleter> context(ZSTD_createDCtx());
  if (!context) return MakeError(ErrorCode::kInternal, "zstd: cannot create a decompression context");
  std::size_t result = ZSTD_DCtx_setParameter(context.get(), ZSTD_d_windowLogMax, options.max_window_log);
  if (ZSTD_isError(result) != 0) {
    return MakeError(ErrorCode::kInternal, "zstd: cannot bound the window: " + ZstdError(result));
  }
  result = ZSTD_DCtx_refPrefix(context.get(), source_bytes.data(), source_bytes.size());
  if (ZSTD_isError(result) != 0) {
    return MakeError(ErrorCode::kInternal, "zstd: cannot reference the installed image: " + ZstdError(result));
  }

  CITADEL_TRY_VOID(
      DecompressFrame(context.get(), delta_fd.get(), frame_length, header, options.max_window_log, delta, part));
  CITADEL_TRY(const auto digest, DigestOfWritten(part, header.target_length));
  if (digest != header.target_sha256) {
    return MakeError(ErrorCode::kCrypto, "the image rebuilt from delta " + delta.string() +
                                             " does not match the SHA-256 its header declares");
  }
  CITADEL_TRY_VOID(part.Commit());
  log::Info(
      "delta applied",
      {{"delta", delta.string()}, {"output", output.string()}, {"target_bytes", std::to_string(header.target_length)}});
  return header;
}

}  // namespace citadel::delta
