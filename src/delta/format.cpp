// The delta file header (delta.hpp, "Delta file format"): its only codec.
#include <algorithm>
#include <string>

#include "delta/delta.hpp"

namespace citadel::delta {
namespace {

constexpr std::size_t kVersionOffset = 8;
constexpr std::size_t kReservedOffset = 12;
constexpr std::size_t kSourceLengthOffset = 16;
constexpr std::size_t kSourceDigestOffset = 24;
constexpr std::size_t kTargetLengthOffset = 56;
constexpr std::size_t kTargetDigestOffset = 64;
static_assert(kTargetDigestOffset + crypto::Sha256Digest{}.size() == kHeaderSize);

template <typename T>
T ReadBigEndian(std::span<const std::uint8_t> bytes, std::size_t offset) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value = static_cast<T>((value << 8U) | bytes[offset + i]);
  return value;
}

template <typename T>
void WriteBigEndian(std::span<std::uint8_t> bytes, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    bytes[offset + sizeof(T) - 1 - i] = static_cast<std::uint8_t>(value & 0xFFU);
    value = static_cast<T>(value >> 8U);
  }
}

crypto::Sha256Digest ReadDigest(std::span<const std::uint8_t> bytes, std::size_t offset) {
  crypto::Sha256Digest digest{};
  std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(offset), digest.size(), digest.begin());
  return digest;
}

Expected<void> CheckImage(std::string_view name, std::uint64_t length, const crypto::Sha256Digest& digest) {
  if (length > kMaxImageBytes) {
    return MakeError(ErrorCode::kTooLarge, "delta header: " + std::string(name) + " length " + std::to_string(length) +
                                               " is above the " + std::to_string(kMaxImageBytes) + "-byte bound");
  }
  // An empty image has exactly one digest; any other is a forged or broken
  // header, refused here rather than after a pointless decompression.
  if (length == 0 && digest != crypto::Sha256(std::string_view())) {
    return MakeError(ErrorCode::kParse,
                     "delta header: " + std::string(name) + " is empty but its SHA-256 is not that of no bytes");
  }
  return kOk;
}

}  // namespace

Expected<DeltaHeader> ParseDeltaHeader(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) {
    return MakeError(ErrorCode::kParse, "delta header: truncated: " + std::to_string(bytes.size()) + " bytes, need " +
                                            std::to_string(kHeaderSize));
  }
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin(),
                  [](char expected, std::uint8_t actual) { return static_cast<std::uint8_t>(expected) == actual; })) {
    return MakeError(ErrorCode::kParse, "delta header: not a Citadel delta (bad magic)");
  }
  const auto version = ReadBigEndian<std::uint32_t>(bytes, kVersionOffset);
  if (version != kFormatVersion) {
    return MakeError(ErrorCode::kParse, "delta header: unsupported format version " + std::to_string(version) +
                                            " (this build reads version " + std::to_string(kFormatVersion) + ")");
  }
  if (ReadBigEndian<std::uint32_t>(bytes, kReservedOffset) != 0) {
    return MakeError(ErrorCode::kParse, "delta header: reserved field is not zero");
  }
  DeltaHeader header;
  header.source_length = ReadBigEndian<std::uint64_t>(bytes, kSourceLengthOffset);
  header.source_sha256 = ReadDigest(bytes, kSourceDigestOffset);
  header.target_length = ReadBigEndian<std::uint64_t>(bytes, kTargetLengthOffset);
  header.target_sha256 = ReadDigest(bytes, kTargetDigestOffset);
  CITADEL_TRY_VOID(CheckImage("source", header.source_length, header.source_sha256));
  CITADEL_TRY_VOID(CheckImage("target", header.target_length, header.target_sha256));
  return header;
}

std::array<std::uint8_t, kHeaderSize> SerializeDeltaHeader(const DeltaHeader& header) {
  std::array<std::uint8_t, kHeaderSize> bytes{};
  std::transform(kMagic.begin(), kMagic.end(), bytes.begin(), [](char c) { return static_cast<std::uint8_t>(c); });
  WriteBigEndian<std::uint32_t>(bytes, kVersionOffset, kFormatVersion);
  WriteBigEndian<std::uint32_t>(bytes, kReservedOffset, 0);
  WriteBigEndian<std::uint64_t>(bytes, kSourceLengthOffset, header.source_length);
  std::copy(header.source_sha256.begin(), header.source_sha256.end(), bytes.begin() + kSourceDigestOffset);
  WriteBigEndian<std::uint64_t>(bytes, kTargetLengthOffset, header.target_length);
  std::copy(header.target_sha256.begin(), header.target_sha256.end(), bytes.begin() + kTargetDigestOffset);
  return bytes;
}

}  // namespace citadel::delta
