// Binary delta updates for large images (an OS root filesystem, a big app):
// the service computes a delta of a new image against the version a device
// has, and the device rebuilds the new image from its installed one plus the
// delta, downloading a fraction of the full image. This is what
// `zstd --patch-from` does, through libzstd: the target is compressed with
// the whole source referenced as a raw-content prefix (ZSTD_CCtx_refPrefix),
// long-distance matching on, and a window large enough to reach from the end
// of the target back to the start of the source.
//
// Delta file format (version 1; all integers big-endian):
//
//   offset size
//        0    8  magic "CITDELTA"
//        8    4  format version, 1
//       12    4  reserved, 0
//       16    8  source length (bytes)
//       24   32  source SHA-256
//       56    8  target length (bytes)
//       64   32  target SHA-256
//       96  ...  exactly one zstd frame, to the end of the file: the target
//                compressed with the source as its prefix; the frame
//                declares the target length as its content size and carries
//                zstd's content checksum
//
// Bounds and memory: source and target are each at most kMaxImageBytes
// (1 GiB); larger images get no delta (CreateDelta refuses with kTooLarge and
// the service offers only the full image). The window is the smallest power
// of two covering source + target, at most 2^31 (zstd's 64-bit maximum).
//   * Device (ApplyDelta): the source is mapped read-only (page cache,
//     reclaimable, not process memory); zstd's decoder keeps a buffer of
//     min(target length, window) bytes, because any later output may copy
//     from anywhere in it; so a 1 GiB target costs up to ~1 GiB of process
//     memory while it is rebuilt. The rebuilt image is read back through a
//     mapping for its digest (page cache again). Measured on the bench's
//     1 GiB image: peak RSS 3.0 GiB, of which ~1 GiB is the decoder buffer
//     and the rest mapped file pages. A small device lowers
//     ApplyOptions::max_window_log: frames needing a larger window are
//     refused before any buffer is allocated, and it downloads the full image.
//   * Service (CreateDelta): both images are mapped; the compressor keeps an
//     input buffer of min(target length, window) bytes plus its match and
//     long-distance-matching tables. Measured at level 12: peak RSS 261 MiB
//     for 64 MiB images, 3.2 GiB for 1 GiB images (2 GiB of it the mappings).
//
// Security contract: nothing here trusts a delta. ParseDeltaHeader is
// strict and bounded on any bytes; ApplyDelta refuses a delta whose base is
// not the installed image (source SHA-256, checked before decompressing),
// bounds the output by the header's target length, and checks the rebuilt
// image's length and SHA-256 against the header. But the header is written
// by whoever made the delta: it proves only that the output is what the
// delta's author meant. The update client must still verify the final image
// against the length and hashes of the signed TUF target before installing
// it; only that check says the image is genuine.
//
// Failure: every function leaves no output file behind on failure (the
// partial file `<output>.part` is removed) and says why; on any ApplyDelta
// failure the caller falls back to the full download.
//
// Threading: free functions with no shared state; safe from any thread.
// The caller must not modify the source (or target) file while a call runs:
// they are memory-mapped, and a file truncated under the mapping kills the
// process with SIGBUS. The installed image is read-only while an update is
// applied, so this holds on a device.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::delta {

inline constexpr std::string_view kMagic = "CITDELTA";
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 96;

// The largest source or target image a delta is made for or applied to.
inline constexpr std::uint64_t kMaxImageBytes = std::uint64_t{1} << 30;  // 1 GiB
// zstd's window bounds on 64-bit builds (ZSTD_WINDOWLOG_MIN/_MAX_64).
inline constexpr int kMinWindowLog = 10;
inline constexpr int kMaxWindowLog = 31;

struct DeltaHeader {
  std::uint64_t source_length = 0;
  crypto::Sha256Digest source_sha256{};
  std::uint64_t target_length = 0;
  crypto::Sha256Digest target_sha256{};

  bool operator==(const DeltaHeader&) const = default;
};

// Parses the first kHeaderSize bytes of `bytes` (the rest, if any, is the
// frame and is not looked at). Safe on any untrusted input. Refuses: fewer
// than kHeaderSize bytes, another magic, another format version, a non-zero
// reserved field (kParse); a length above kMaxImageBytes (kTooLarge); an
// empty image whose digest is not SHA-256 of nothing (kParse).
[[nodiscard]] Expected<DeltaHeader> ParseDeltaHeader(std::span<const std::uint8_t> bytes);

// The kHeaderSize bytes of `header`, as ParseDeltaHeader reads them.
std::array<std::uint8_t, kHeaderSize> SerializeDeltaHeader(const DeltaHeader& header);

struct CreateOptions {
  // zstd level, 1..19; applying costs about the same at every level. The
  // delta is mostly the new bytes, so levels differ little in size and much
  // in time: on the bench's 64 MiB image, 3 gives 255 KB in 0.4 s, 12 gives
  // 252 KB in 3-6 s, 16 gives 250 KB in 49 s (bench/delta_bench.cpp).
  int level = 12;
  // The largest window the delta may need, as a power of two
  // (kMinWindowLog..kMaxWindowLog). The window must cover source + target;
  // images needing more are refused (kTooLarge) rather than given a delta
  // that cannot reach the source. Not the device's bound: the frame declares
  // min(2^window_log, target length) as its window, and that is what a
  // device compares with its ApplyOptions::max_window_log.
  int max_window_log = kMaxWindowLog;
};

struct DeltaInfo {
  DeltaHeader header;
  std::uint64_t delta_length = 0;  // bytes of the delta file, header included
  int window_log = 0;              // the window the frame needs, 2^window_log bytes
};

// Service side: writes to `output` a delta that rebuilds `target` from
// `source`. The output is written to `<output>.part`, fsync'd and renamed,
// so `output` is either absent/unchanged or complete. Refuses images larger
// than kMaxImageBytes and windows above options.max_window_log (kTooLarge),
// options out of range (kInvalidArgument), unreadable files (kNotFound,
// kIo). The caller decides whether the delta is worth offering (e.g. only
// when smaller than the full compressed image).
[[nodiscard]] Expected<DeltaInfo> CreateDelta(const std::filesystem::path& source, const std::filesystem::path& target,
                                              const std::filesystem::path& output, const CreateOptions& options = {});

struct ApplyOptions {
  // The largest zstd window accepted, as a power of two
  // (kMinWindowLog..kMaxWindowLog); it bounds the decoder's buffer (see
  // "Bounds and memory" above). Larger windows are refused (kTooLarge).
  // When the window covers the whole target, zstd declares the target
  // length as the frame's window, so in practice this is also the largest
  // target a device rebuilds from a delta.
  int max_window_log = kMaxWindowLog;
};

// Device side: rebuilds the target image at `output` from the installed
// image `source` and `delta`. In order: parses the header; checks the source
// length and SHA-256 against it before any decompression (a mismatch is
// kFailedPrecondition, "the installed image is not the delta's base");
// checks that the frame declares the header's target length; streams the
// output to `<output>.part` (never held whole in memory beyond zstd's
// window buffer); refuses output beyond the target length (kTooLarge), a
// window above options.max_window_log (kTooLarge), a truncated, corrupt or
// trailing-data frame (kParse); verifies the target length and SHA-256
// (kCrypto on mismatch); fsyncs and renames. Returns the verified header.
// On failure `output` is untouched and no `<output>.part` is left (a stale
// one from an interrupted attempt is removed too, once source and delta
// could be opened).
[[nodiscard]] Expected<DeltaHeader> ApplyDelta(const std::filesystem::path& source, const std::filesystem::path& delta,
                                               const std::filesystem::path& output, const ApplyOptions& options = {});

}  // namespace citadel::delta
