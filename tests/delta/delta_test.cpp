#include "delta/delta.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace citadel::delta {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;
using Data = std::vector<std::uint8_t>;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;

void WriteData(const fs::path& path, const Data& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

Data ReadData(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Deterministic bytes: 64 KiB blocks alternating between random (like
// compressed files) and text-like (like configuration and scripts).
Data Generate(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  static constexpr std::string_view kWords[] = {"config ", "enable=",    "true\n", "/usr/lib/", "libcitadel",
                                                ".so.1\n", "# comment ", "value ", "0x1f ",     "device\n"};
  Data data;
  data.reserve(size);
  while (data.size() < size) {
    const std::size_t block = std::min<std::size_t>(64 * kKiB, size - data.size());
    if (random() % 2 == 0) {
      for (std::size_t i = 0; i < block; ++i) data.push_back(static_cast<std::uint8_t>(random()));
    } else {
      std::size_t added = 0;
      while (added < block) {
        const auto word = kWords[random() % std::size(kWords)];
        for (char c : word) {
          if (added == block) break;
          data.push_back(static_cast<std::uint8_t>(c));
          ++added;
        }
      }
    }
  }
  return data;
}

// A new version of `base`: a rewritten range, an insertion that shifts the
// rest, a deletion, and scattered byte edits.
Data Edit(Data base) {
  std::mt19937_64 random(99);
  for (std::size_t i = 0; i < 64 * kKiB; ++i) base[kMiB + i] = static_cast<std::uint8_t>(random());
  Data inserted(16 * kKiB);
  for (auto& byte : inserted) byte = static_cast<std::uint8_t>(random());
  base.insert(base.begin() + static_cast<std::ptrdiff_t>(2 * kMiB), inserted.begin(), inserted.end());
  const auto erase_at = base.begin() + static_cast<std::ptrdiff_t>(3 * kMiB);
  base.erase(erase_at, erase_at + static_cast<std::ptrdiff_t>(32 * kKiB));
  for (std::size_t i = 0; i < 16; ++i) base[(i * 251 * kKiB + 17) % base.size()] ^= 0x5A;
  return base;
}

class DeltaTest : public ::testing::Test {
 protected:
  fs::path Path(std::string_view name) const { return dir_.path() / name; }

  // Writes source and target, creates the delta at level 3 (fast; the
  // round-trip test uses the default level).
  DeltaInfo MakeDelta(const Data& source, const Data& target, CreateOptions options = {.level = 3}) {
    WriteData(Path("source"), source);
    WriteData(Path("target"), target);
    auto info = CreateDelta(Path("source"), Path("target"), Path("delta"), options);
    EXPECT_TRUE(info.has_value()) << info.error().message();
    return info.value_or(DeltaInfo{});
  }

  // Applies the current delta to the current source and expects failure
  // with `code`, no output and no part file.
  void ExpectApplyFails(ErrorCode code, std::string_view message_part, const ApplyOptions& options = {}) {
    auto applied = ApplyDelta(Path("source"), Path("delta"), Path("out"), options);
    ASSERT_FALSE(applied.has_value());
    EXPECT_EQ(applied.error().code(), code) << applied.error().message();
    EXPECT_NE(applied.error().message().find(message_part), std::string::npos) << applied.error().message();
    EXPECT_FALSE(fs::exists(Path("out")));
    EXPECT_FALSE(fs::exists(Path("out.part")));
  }

  void ExpectRoundTrip(const Data& target) {
    auto applied = ApplyDelta(Path("source"), Path("delta"), Path("out"));
    ASSERT_TRUE(applied.has_value()) << applied.error().message();
    EXPECT_EQ(applied->target_length, target.size());
    EXPECT_TRUE(ReadData(Path("out")) == target);
    EXPECT_FALSE(fs::exists(Path("out.part")));
  }

  TempDir dir_{"citadel-delta-test"};
};

TEST_F(DeltaTest, RoundTripOfEditedImageIsMuchSmallerThanTheTarget) {
  const Data source = Generate(4 * kMiB, 1);
  const Data target = Edit(source);
  const DeltaInfo info = MakeDelta(source, target, CreateOptions{});
  EXPECT_EQ(info.delta_length, fs::file_size(Path("delta")));
  EXPECT_EQ(info.header.source_length, source.size());
  EXPECT_EQ(info.header.target_length, target.size());
  EXPECT_EQ(info.window_log, 23);  // source + target: just under 8 MiB
  // ~80 KiB of new random bytes and a few dozen edits, in a 4 MiB image.
  EXPECT_LT(info.delta_length, target.size() / 20) << info.delta_length;
  EXPECT_LT(info.delta_length, 120 * kKiB) << info.delta_length;
  ExpectRoundTrip(target);
}

TEST_F(DeltaTest, IdenticalFilesGiveATinyDelta) {
  const Data source = Generate(2 * kMiB, 2);
  const DeltaInfo info = MakeDelta(source, source);
  EXPECT_LT(info.delta_length, 2 * kKiB) << info.delta_length;
  ExpectRoundTrip(source);
}

TEST_F(DeltaTest, EmptySourceIsAPlainCompressedTarget) {
  const Data target = Generate(1 * kMiB, 3);
  const DeltaInfo info = MakeDelta({}, target);
  EXPECT_EQ(info.header.source_length, 0U);
  EXPECT_LT(info.delta_length, target.size());
  ExpectRoundTrip(target);
}

TEST_F(DeltaTest, EmptyTargetAndBothEmpty) {
  MakeDelta(Generate(256 * kKiB, 4), {});
  ExpectRoundTrip({});
  MakeDelta({}, {});
  ExpectRoundTrip({});
}

TEST_F(DeltaTest, DeltaAgainstAnotherSourceIsRefusedBeforeDecompressing) {
  Data source = Generate(1 * kMiB, 5);
  MakeDelta(source, Edit(Generate(4 * kMiB, 5)));
  source[1000] ^= 1;  // same length, one bit different
  WriteData(Path("source"), source);
  ExpectApplyFails(ErrorCode::kFailedPrecondition, "is not the delta's base");
  WriteData(Path("source"), Generate(1 * kMiB + 1, 5));
  ExpectApplyFails(ErrorCode::kFailedPrecondition, "is not the delta's base");
}

TEST_F(DeltaTest, TruncatedDeltaIsRefused) {
  MakeDelta(Generate(1 * kMiB, 6), Generate(1 * kMiB, 7));
  const Data whole = ReadData(Path("delta"));
  for (std::size_t length : {std::size_t{0}, std::size_t{50}, kHeaderSize, kHeaderSize + 3, kHeaderSize + 10,
                             whole.size() / 2, whole.size() - 1}) {
    SCOPED_TRACE(length);
    WriteData(Path("delta"), Data(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length)));
    ExpectApplyFails(ErrorCode::kParse, "");
  }
}

TEST_F(DeltaTest, CorruptedFrameIsRefused) {
  MakeDelta(Generate(1 * kMiB, 8), Edit(Generate(4 * kMiB, 8)));
  const Data whole = ReadData(Path("delta"));
  for (std::size_t offset :
       {kHeaderSize, kHeaderSize + 5, kHeaderSize + (whole.size() - kHeaderSize) / 2, whole.size() - 2}) {
    SCOPED_TRACE(offset);
    Data corrupt = whole;
    corrupt[offset] ^= 0x40;
    WriteData(Path("delta"), corrupt);
    auto applied = ApplyDelta(Path("source"), Path("delta"), Path("out"));
    ASSERT_FALSE(applied.has_value());
    EXPECT_FALSE(fs::exists(Path("out")));
    EXPECT_FALSE(fs::exists(Path("out.part")));
  }
}

TEST_F(DeltaTest, DataAfterTheFrameIsRefused) {
  MakeDelta(Generate(256 * kKiB, 9), Generate(256 * kKiB, 10));
  Data delta = ReadData(Path("delta"));
  delta.push_back(0);
  WriteData(Path("delta"), delta);
  ExpectApplyFails(ErrorCode::kParse, "data after its zstd frame");
}

TEST_F(DeltaTest, HeaderLyingAboutTheTargetIsRefused) {
  const Data target = Generate(512 * kKiB, 12);
  MakeDelta(Generate(512 * kKiB, 11), target);
  const Data whole = ReadData(Path("delta"));
  auto header = ParseDeltaHeader(whole);
  ASSERT_TRUE(header.has_value());

  struct Lie {
    std::string_view name;
    std::function<void(DeltaHeader&)> tell;
    ErrorCode code;
    std::string_view message;
  };
  const Lie lies[] = {
      {"target shorter than the frame", [](DeltaHeader& h) { h.target_length -= 1; }, ErrorCode::kTooLarge,
       "the zstd frame declares"},
      {"target longer than the frame", [](DeltaHeader& h) { h.target_length += 1; }, ErrorCode::kParse,
       "the zstd frame declares"},
      {"wrong target digest", [](DeltaHeader& h) { h.target_sha256[0] ^= 1; }, ErrorCode::kCrypto,
       "does not match the SHA-256"},
      {"wrong source length", [](DeltaHeader& h) { h.source_length += 1; }, ErrorCode::kFailedPrecondition,
       "is not the delta's base"},
  };
  for (const Lie& lie : lies) {
    SCOPED_TRACE(lie.name);
    DeltaHeader told = *header;
    lie.tell(told);
    Data delta = whole;
    const auto bytes = SerializeDeltaHeader(told);
    std::copy(bytes.begin(), bytes.end(), delta.begin());
    WriteData(Path("delta"), delta);
    ExpectApplyFails(lie.code, lie.message);
  }
}

// A small delta that would expand far beyond what its header declares: the
// frame's declared length is checked before zstd writes anything, and a
// frame that declares nothing is refused outright.
TEST_F(DeltaTest, OversizedOutputIsRefused) {
  const Data zeros(8 * kMiB, 0);  // compresses to a few hundred bytes
  WriteData(Path("source"), {});
  DeltaHeader header;
  header.source_sha256 = crypto::Sha256(std::string_view());
  header.target_length = 1000;
  header.target_sha256 = crypto::Sha256(std::string(1000, '\0'));
  const auto header_bytes = SerializeDeltaHeader(header);

  for (bool declare_length : {true, false}) {
    SCOPED_TRACE(declare_length);
    ZSTD_CCtx* context = ZSTD_createCCtx();
    ASSERT_NE(context, nullptr);
    ASSERT_EQ(ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, declare_length ? 1 : 0)), 0U);
    Data frame(ZSTD_compressBound(zeros.size()));
    const std::size_t size = ZSTD_compress2(context, frame.data(), frame.size(), zeros.data(), zeros.size());
    ASSERT_EQ(ZSTD_isError(size), 0U);
    Data bomb(header_bytes.begin(), header_bytes.end());
    bomb.insert(bomb.end(), frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(size));
    ZSTD_freeCCtx(context);
    WriteData(Path("delta"), bomb);
    if (declare_length) {
      ExpectApplyFails(ErrorCode::kTooLarge, "the zstd frame declares 8388608 bytes");
    } else {
      ExpectApplyFails(ErrorCode::kParse, "does not declare its length");
    }
  }
}

TEST_F(DeltaTest, WindowAboveTheDeviceBoundIsRefused) {
  MakeDelta(Generate(2 * kMiB, 13), Generate(2 * kMiB, 14));
  ExpectApplyFails(ErrorCode::kTooLarge, "more memory than this device allows", ApplyOptions{.max_window_log = 20});
  ExpectRoundTrip(Generate(2 * kMiB, 14));
}

TEST_F(DeltaTest, FailureLeavesAnExistingOutputAndRemovesAStalePart) {
  MakeDelta(Generate(256 * kKiB, 15), Generate(256 * kKiB, 16));
  WriteData(Path("out"), {'o', 'l', 'd'});
  WriteData(Path("out.part"), {'s', 't', 'a', 'l', 'e'});  // from an attempt cut off earlier
  WriteData(Path("source"), Generate(256 * kKiB, 99));
  auto applied = ApplyDelta(Path("source"), Path("delta"), Path("out"));
  ASSERT_FALSE(applied.has_value());
  EXPECT_TRUE(ReadData(Path("out")) == (Data{'o', 'l', 'd'}));
  EXPECT_FALSE(fs::exists(Path("out.part")));
  WriteData(Path("source"), Generate(256 * kKiB, 15));
  ExpectRoundTrip(Generate(256 * kKiB, 16));
}

TEST_F(DeltaTest, PartFileThatIsAnInputIsRefused) {
  const Data source = Generate(256 * kKiB, 17);
  MakeDelta(source, Generate(256 * kKiB, 18));
  ASSERT_EQ(::link(Path("source").c_str(), Path("out.part").c_str()), 0);
  auto applied = ApplyDelta(Path("source"), Path("delta"), Path("out"));
  ASSERT_FALSE(applied.has_value());
  EXPECT_EQ(applied.error().code(), ErrorCode::kInvalidArgument) << applied.error().message();
  EXPECT_TRUE(ReadData(Path("source")) == source);
}

TEST_F(DeltaTest, CreateRefusesBadOptionsAndOversizedImages) {
  WriteData(Path("source"), Generate(64 * kKiB, 19));
  WriteData(Path("target"), Generate(64 * kKiB, 20));
  for (int level : {0, 20}) {
    auto info = CreateDelta(Path("source"), Path("target"), Path("delta"), {.level = level});
    ASSERT_FALSE(info.has_value());
    EXPECT_EQ(info.error().code(), ErrorCode::kInvalidArgument);
  }
  auto small_window = CreateDelta(Path("source"), Path("target"), Path("delta"), {.level = 3, .max_window_log = 16});
  ASSERT_FALSE(small_window.has_value());
  EXPECT_EQ(small_window.error().code(), ErrorCode::kTooLarge);

  auto missing = CreateDelta(Path("nothing"), Path("target"), Path("delta"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  // Sparse: nothing is read, the size alone is refused.
  { std::ofstream(Path("huge"), std::ios::binary).put('x'); }
  fs::resize_file(Path("huge"), kMaxImageBytes + 1);
  auto huge = CreateDelta(Path("source"), Path("huge"), Path("delta"));
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error().code(), ErrorCode::kTooLarge);
  EXPECT_NE(huge.error().message().find("only the full image"), std::string::npos);
  EXPECT_FALSE(fs::exists(Path("delta")));
  EXPECT_FALSE(fs::exists(Path("delta.part")));
}

TEST(DeltaHeaderTest, SerializeThenParseIsIdentity) {
  DeltaHeader header;
  header.source_length = 123456789;
  header.source_sha256 = crypto::Sha256(std::string_view("source"));
  header.target_length = kMaxImageBytes;
  header.target_sha256 = crypto::Sha256(std::string_view("target"));
  const auto bytes = SerializeDeltaHeader(header);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "CITDELTA");
  auto parsed = ParseDeltaHeader(bytes);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(*parsed, header);
}

TEST(DeltaHeaderTest, StrictOnEveryField) {
  DeltaHeader header;
  header.source_length = 10;
  header.target_length = 10;
  const auto good = SerializeDeltaHeader(header);
  auto expect_refused = [](std::span<const std::uint8_t> bytes, ErrorCode code) {
    auto parsed = ParseDeltaHeader(bytes);
    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code(), code) << parsed.error().message();
  };
  expect_refused(std::span(good).first(kHeaderSize - 1), ErrorCode::kParse);
  auto changed = [&](std::size_t offset, std::uint8_t value) {
    auto bytes = good;
    bytes[offset] = value;
    return bytes;
  };
  expect_refused(changed(0, 'X'), ErrorCode::kParse);    // magic
  expect_refused(changed(11, 2), ErrorCode::kParse);     // version 2
  expect_refused(changed(15, 1), ErrorCode::kParse);     // reserved
  expect_refused(changed(16, 1), ErrorCode::kTooLarge);  // source length 2^56 + 10
  expect_refused(changed(56, 1), ErrorCode::kTooLarge);  // target length 2^56 + 10

  DeltaHeader empty;  // length 0 with an all-zero digest: inconsistent
  expect_refused(SerializeDeltaHeader(empty), ErrorCode::kParse);
  empty.source_sha256 = crypto::Sha256(std::string_view());
  empty.target_sha256 = crypto::Sha256(std::string_view());
  EXPECT_TRUE(ParseDeltaHeader(SerializeDeltaHeader(empty)).has_value());
}

}  // namespace
}  // namespace citadel::delta
