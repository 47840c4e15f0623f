#include "image/image.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <zstd.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::image {
namespace {

namespace fs = std::filesystem;

using citadel::testing::TempDir;

void WriteText(const fs::path& path, const std::string& text, fs::perms perms = fs::perms(0644)) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
  fs::permissions(path, perms);
}

const char* kManifest = R"({"Name":"blink","ComponentId":"7f3c1a52-0b3e-4a8e-9d1c-2e5f4b6a7c8d","Version":"1.2.0"})";

void MakeApp(const fs::path& dir) {
  WriteText(dir / "app_manifest.json", kManifest);
  WriteText(dir / "bin" / "blink", "#!/bin/sh\necho blink\n", fs::perms(0755));
  WriteText(dir / "share" / "blink" / "deep" / "pattern.txt", "on off on off\n");
  WriteText(dir / "README", "read me\n");
  WriteText(dir / "empty.dat", "");
}

crypto::PrivateKey NewKey() {
  auto key = crypto::PrivateKey::GenerateP256();
  EXPECT_TRUE(key.has_value());
  return std::move(*key);
}

std::vector<crypto::PublicKey> Trust(const crypto::PrivateKey& key) { return {key.Public()}; }

// Builds image bytes from parts, so tests can craft what PackImage refuses to.
void AppendU32(Bytes& out, std::size_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>((value >> shift) & 0xff));
}

std::string SignatureBlock(std::string_view header, std::span<const std::uint8_t> payload,
                           const crypto::PrivateKey& key) {
  auto payload_sha256 = crypto::Sha256(payload);
  Bytes message(kMagic.begin(), kMagic.end());
  message.insert(message.end(), header.begin(), header.end());
  message.insert(message.end(), payload_sha256.begin(), payload_sha256.end());
  auto signature = key.Sign(message);
  EXPECT_TRUE(signature.has_value());
  return *CanonicalJson(Json{{"key_id", PublisherKeyId(key.Public())}, {"signature", Base64Encode(*signature)}});
}

Bytes Assemble(std::string_view header, std::span<const std::uint8_t> payload, std::optional<std::string> signature) {
  Bytes out(kMagic.begin(), kMagic.end());
  AppendU32(out, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  if (signature) {
    AppendU32(out, signature->size());
    out.insert(out.end(), signature->begin(), signature->end());
  }
  return out;
}

Bytes Compress(std::string_view data) {
  Bytes out(ZSTD_compressBound(data.size()));
  out.resize(ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3));
  return out;
}

// A signed image whose header is `header` with the payload fields filled in.
Bytes SignedImage(Json header, const Bytes& payload, const crypto::PrivateKey& key) {
  header["payload"] = {
      {"compression", "zstd"}, {"size", payload.size()}, {"sha256", HexEncode(crypto::Sha256(payload))}};
  auto text = *CanonicalJson(header);
  return Assemble(text, payload, SignatureBlock(text, payload, key));
}

Json OneFileHeader(const std::string& path, const std::string& contents) {
  return {
      {"format_version", 1},
      {"manifest", Json::parse(kManifest)},
      {"files",
       Json::array(
           {{{"path", path}, {"mode", 0444}, {"size", contents.size()}, {"sha256", crypto::Sha256Hex(contents)}}})}};
}

std::string ReadAll(const fs::path& path) { return *ReadFile(path); }

unsigned ModeOf(const fs::path& path) {
  struct stat info {};
  EXPECT_EQ(::lstat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

// Parse or verify must refuse; returns the error message.
std::string Refusal(std::span<const std::uint8_t> bytes, std::span<const crypto::PublicKey> trusted) {
  auto verified = VerifyImage(bytes, trusted, "app.img");
  if (verified) return "";
  return verified.error().message();
}

TEST(ImageTest, PackParseVerifyExtractRoundTrip) {
  TempDir dir;
  MakeApp(dir.path() / "app");
  auto key = NewKey();
  auto packed = PackImage(dir.path() / "app", key);
  ASSERT_TRUE(packed.has_value()) << packed.error().message();
  ASSERT_TRUE(std::equal(kMagic.begin(), kMagic.end(), packed->begin()));

  auto info = ParseImage(*packed, "app.img");
  ASSERT_TRUE(info.has_value()) << info.error().message();
  EXPECT_EQ(info->manifest, Json::parse(kManifest));
  EXPECT_EQ(info->key_id, crypto::Sha256Hex(AsText(key.Public().SpkiDer())));
  ASSERT_EQ(info->files.size(), 4u);  // the manifest travels in the header
  EXPECT_EQ(info->files[0].path, "README");
  EXPECT_EQ(info->files[1].path, "bin/blink");
  EXPECT_EQ(info->files[1].mode, 0555u);
  EXPECT_EQ(info->files[2].path, "empty.dat");
  EXPECT_EQ(info->files[2].size, 0u);
  EXPECT_EQ(info->files[3].path, "share/blink/deep/pattern.txt");
  EXPECT_EQ(info->files[3].mode, 0444u);
  EXPECT_EQ(info->files[3].sha256, crypto::Sha256Hex("on off on off\n"));
  EXPECT_EQ(info->total_size, 8u + 21u + 0u + 14u);
  // The digest covers everything before the signature block.
  std::size_t signed_end = kMagic.size() + 4 + info->header_bytes.size() + info->payload.size();
  EXPECT_EQ(info->digest, HexEncode(crypto::Sha256(std::span(*packed).first(signed_end))));

  auto verified = VerifyImage(*info, Trust(key));
  ASSERT_TRUE(verified.has_value()) << verified.error().message();
  auto target = dir.path() / "installed";
  auto extracted = ExtractImage(*verified, target);
  ASSERT_TRUE(extracted.has_value()) << extracted.error().message();
  EXPECT_EQ(ReadAll(target / "bin" / "blink"), "#!/bin/sh\necho blink\n");
  EXPECT_EQ(ReadAll(target / "share" / "blink" / "deep" / "pattern.txt"), "on off on off\n");
  EXPECT_EQ(ReadAll(target / "empty.dat"), "");
  EXPECT_EQ(Json::parse(ReadAll(target / "app_manifest.json")), Json::parse(kManifest));
  EXPECT_EQ(ModeOf(target / "bin" / "blink"), 0555u);
  EXPECT_EQ(ModeOf(target / "README"), 0444u);
  EXPECT_EQ(ModeOf(target / "app_manifest.json"), 0444u);
  EXPECT_EQ(ModeOf(target / "share" / "blink" / "deep"), 0555u);
  EXPECT_EQ(ModeOf(target / "share"), 0555u);
  EXPECT_EQ(ModeOf(target), 0555u);
  // Nothing but the target was left beside it.
  std::vector<std::string> siblings;
  for (const auto& entry : fs::directory_iterator(dir.path())) siblings.push_back(entry.path().filename().string());
  std::sort(siblings.begin(), siblings.end());
  EXPECT_EQ(siblings, (std::vector<std::string>{"app", "installed"}));

  // Packing is deterministic apart from the (randomised) ECDSA signature.
  auto again = ParseImage(*PackImage(dir.path() / "app", key));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->digest, info->digest);
}

TEST(ImageTest, UnsignedImageIsRefused) {
  TempDir dir;
  MakeApp(dir.path());
  auto key = NewKey();
  auto info = ParseImage(*PackImage(dir.path(), key));
  ASSERT_TRUE(info.has_value());
  auto unsigned_image = Assemble(info->header_bytes, info->payload, std::nullopt);
  auto parsed = ParseImage(unsigned_image, "app.img");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().message(), "image app.img: is not signed (no signature block after the payload)");
  EXPECT_NE(Refusal(unsigned_image, Trust(key)), "");
}

TEST(ImageTest, WrongKeyIsRefused) {
  TempDir dir;
  MakeApp(dir.path());
  auto key = NewKey();
  auto other = NewKey();
  auto packed = PackImage(dir.path(), key);
  ASSERT_TRUE(packed.has_value());
  auto message = Refusal(*packed, Trust(other));
  auto key_id = PublisherKeyId(key.Public());
  EXPECT_EQ(message, "image app.img: signed by key " + key_id.substr(0, 16) + "..., which is not a trusted publisher");
  EXPECT_EQ(Refusal(*packed, {}), message);

  // Claiming a trusted key's id does not help a signature made by another key.
  auto info = ParseImage(*packed);
  ASSERT_TRUE(info.has_value());
  auto forged_block =
      *CanonicalJson(Json{{"key_id", PublisherKeyId(other.Public())}, {"signature", Base64Encode(info->signature)}});
  auto forged = Assemble(info->header_bytes, info->payload, forged_block);
  EXPECT_NE(Refusal(forged, Trust(other)).find("the signature does not verify"), std::string::npos);
  // Trusting several publishers finds the right one.
  std::vector<crypto::PublicKey> both = {other.Public(), key.Public()};
  EXPECT_TRUE(VerifyImage(*packed, both).has_value());
}

TEST(ImageTest, EverySingleByteFlipIsRefused) {
  TempDir dir;
  WriteText(dir.path() / "app_manifest.json", R"({"Name":"x"})");
  WriteText(dir.path() / "a", "A");
  WriteText(dir.path() / "d" / "b", "BB", fs::perms(0755));
  auto key = NewKey();
  auto packed = PackImage(dir.path(), key);
  ASSERT_TRUE(packed.has_value());
  ASSERT_TRUE(VerifyImage(*packed, Trust(key)).has_value());
  ASSERT_LT(packed->size(), 2000u);
  for (std::size_t i = 0; i < packed->size(); ++i) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      Bytes tampered = *packed;
      tampered[i] ^= mask;
      EXPECT_NE(Refusal(tampered, Trust(key)), "") << "byte " << i << " mask " << int{mask};
    }
  }
}

TEST(ImageTest, TruncatedImageIsRefused) {
  TempDir dir;
  WriteText(dir.path() / "app_manifest.json", R"({"Name":"x"})");
  WriteText(dir.path() / "a", "A");
  auto key = NewKey();
  auto packed = PackImage(dir.path(), key);
  ASSERT_TRUE(packed.has_value());
  for (std::size_t length = 0; length < packed->size(); ++length) {
    EXPECT_FALSE(ParseImage(std::span(*packed).first(length)).has_value()) << "length " << length;
  }
  Bytes extended = *packed;
  extended.push_back(0);
  auto parsed = ParseImage(extended);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_NE(parsed.error().message().find("trailing bytes"), std::string::npos);
}

TEST(ImageTest, ManifestSwappedAfterSigningIsRefused) {
  TempDir dir;
  MakeApp(dir.path());
  auto key = NewKey();
  auto info = ParseImage(*PackImage(dir.path(), key));
  ASSERT_TRUE(info.has_value());
  auto header = Json::parse(info->header_bytes);
  header["manifest"]["Name"] = "evil";
  header["manifest"]["Capabilities"] = {{"AllowedConnections", {"attacker.example"}}};
  auto old_block = *CanonicalJson(Json{{"key_id", info->key_id}, {"signature", Base64Encode(info->signature)}});
  auto swapped = Assemble(*CanonicalJson(header), info->payload, old_block);
  ASSERT_TRUE(ParseImage(swapped).has_value());  // well-formed, but...
  auto message = Refusal(swapped, Trust(key));
  EXPECT_NE(message.find("the signature does not verify"), std::string::npos) << message;
}

TEST(ImageTest, PackRefusesWhatAnImageCannotHold) {
  auto key = NewKey();
  {
    TempDir dir;
    WriteText(dir.path() / "a", "A");
    auto packed = PackImage(dir.path(), key);
    ASSERT_FALSE(packed.has_value());
    EXPECT_NE(packed.error().message().find("no app_manifest.json"), std::string::npos);
  }
  {
    TempDir dir;
    WriteText(dir.path() / "app_manifest.json", "[1]");
    auto packed = PackImage(dir.path(), key);
    ASSERT_FALSE(packed.has_value());
    EXPECT_NE(packed.error().message().find("must be a JSON object"), std::string::npos);
  }
  {
    TempDir dir;
    MakeApp(dir.path());
    fs::create_symlink("/etc/passwd", dir.path() / "bin" / "passwd");
    auto packed = PackImage(dir.path(), key);
    ASSERT_FALSE(packed.has_value());
    EXPECT_NE(packed.error().message().find("bin/passwd: is a symbolic link"), std::string::npos)
        << packed.error().message();
  }
  {
    TempDir dir;
    MakeApp(dir.path());
    fs::create_directory_symlink("/etc", dir.path() / "etc");
    EXPECT_FALSE(PackImage(dir.path(), key).has_value());
  }
  {
    TempDir dir;
    MakeApp(dir.path());
    ASSERT_EQ(::mkfifo((dir.path() / "pipe").c_str(), 0600), 0);
    auto packed = PackImage(dir.path(), key);
    ASSERT_FALSE(packed.has_value());
    EXPECT_NE(packed.error().message().find("pipe: is not a regular file"), std::string::npos);
  }
  {
    TempDir dir;
    MakeApp(dir.path());
    WriteText(dir.path() / "bad\nname", "x");
    EXPECT_FALSE(PackImage(dir.path(), key).has_value());
  }
}

TEST(ImageTest, ValidateImagePathRules) {
  for (std::string_view good : {"a", "bin/app", "a/b/c.d", ".hidden", "a..b", "...", "a/.b"}) {
    EXPECT_TRUE(ValidateImagePath(good).has_value()) << good;
  }
  for (std::string_view bad :
       {"", "/etc/passwd", "..", "../x", "a/../b", "a/..", ".", "./a", "a//b", "a/", "a\\b", "a\tb"}) {
    EXPECT_FALSE(ValidateImagePath(bad).has_value()) << bad;
  }
  EXPECT_FALSE(ValidateImagePath(std::string_view("a\0b", 3)).has_value());
  EXPECT_FALSE(ValidateImagePath(std::string(kMaxPathBytes + 1, 'a')).has_value());
  std::string deep;
  for (std::size_t i = 0; i <= kMaxPathDepth; ++i) deep += i == 0 ? "d" : "/d";
  EXPECT_FALSE(ValidateImagePath(deep).has_value());
}

TEST(ImageTest, ParseRefusesCraftedPaths) {
  auto key = NewKey();
  auto payload = Compress("x");
  struct Case {
    std::string path;
    std::string message;
  };
  std::vector<Case> cases = {
      {"../etc/passwd", "files[0].path: '..' is not allowed"},
      {"a/../../b", "files[0].path: '..' is not allowed"},
      {"/etc/passwd", "files[0].path: '/etc/passwd': absolute paths are not allowed"},
      {std::string("a\0b", 3), "files[0].path: a NUL byte is not allowed"},
      {"a//b", "empty components are not allowed"},
      {"./a", "files[0].path: '.' is not allowed"},
      {"app_manifest.json", "travels in the header"},
  };
  for (const auto& c : cases) {
    auto bytes = SignedImage(OneFileHeader(c.path, "x"), payload, key);
    auto parsed = ParseImage(bytes, "app.img");
    ASSERT_FALSE(parsed.has_value()) << c.path;
    EXPECT_TRUE(parsed.error().message().starts_with("image app.img: files[0]")) << parsed.error().message();
    EXPECT_NE(parsed.error().message().find(c.message), std::string::npos) << parsed.error().message();
  }
  // A sanity check that the crafting itself is right.
  EXPECT_TRUE(VerifyImage(SignedImage(OneFileHeader("ok", "x"), payload, key), Trust(key)).has_value());
}

TEST(ImageTest, ParseRefusesAmbiguousTrees) {
  auto key = NewKey();
  auto entry = [](const std::string& path, const std::string& contents) {
    return Json{{"path", path}, {"mode", 0444}, {"size", contents.size()}, {"sha256", crypto::Sha256Hex(contents)}};
  };
  auto payload = Compress("xy");
  auto with_files = [&](Json files) {
    auto header = OneFileHeader("unused", "");
    header["files"] = std::move(files);
    return ParseImage(SignedImage(header, payload, key));
  };
  auto unsorted = with_files(Json::array({entry("b", "x"), entry("a", "y")}));
  ASSERT_FALSE(unsorted.has_value());
  EXPECT_NE(unsorted.error().message().find("must be sorted and unique"), std::string::npos);
  EXPECT_FALSE(with_files(Json::array({entry("a", "x"), entry("a", "y")})).has_value());
  auto nested = with_files(Json::array({entry("a", "x"), entry("a/b", "y")}));
  ASSERT_FALSE(nested.has_value());
  EXPECT_NE(nested.error().message().find("which is a file"), std::string::npos);
  EXPECT_TRUE(with_files(Json::array({entry("a", "x"), entry("b", "y")})).has_value());

  auto bad_mode = OneFileHeader("a", "xy");
  bad_mode["files"][0]["mode"] = 04755;
  EXPECT_FALSE(ParseImage(SignedImage(bad_mode, payload, key)).has_value());
  auto extra_member = OneFileHeader("a", "xy");
  extra_member["files"][0]["uid"] = 0;
  EXPECT_FALSE(ParseImage(SignedImage(extra_member, payload, key)).has_value());
  auto version_two = OneFileHeader("a", "xy");
  version_two["format_version"] = 2;
  EXPECT_FALSE(ParseImage(SignedImage(version_two, payload, key)).has_value());
}

TEST(ImageTest, OversizedPartsAreRefused) {
  auto key = NewKey();
  // A header length beyond the bound is refused before anything is read.
  Bytes huge_header(kMagic.begin(), kMagic.end());
  AppendU32(huge_header, kMaxHeaderBytes + 1);
  auto parsed = ParseImage(huge_header);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), ErrorCode::kTooLarge);

  auto payload = Compress("x");
  auto too_big_file = OneFileHeader("a", "x");
  too_big_file["files"][0]["size"] = kMaxTotalSize + 1;
  parsed = ParseImage(SignedImage(too_big_file, payload, key));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), ErrorCode::kTooLarge);

  auto header = OneFileHeader("a", "x");
  header["payload"] = {{"compression", "zstd"}, {"size", kMaxPayloadBytes + 1}, {"sha256", std::string(64, '0')}};
  auto text = *CanonicalJson(header);
  parsed = ParseImage(Assemble(text, payload, SignatureBlock(text, payload, key)));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), ErrorCode::kTooLarge);

  auto many = OneFileHeader("a", "x");
  many["files"] = Json::array();
  for (std::size_t i = 0; i <= kMaxFiles; ++i) {
    many["files"].push_back(
        {{"path", "f" + std::to_string(100000 + i)}, {"mode", 0444}, {"size", 0}, {"sha256", crypto::Sha256Hex("")}});
  }
  parsed = ParseImage(SignedImage(many, Compress(""), key));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_NE(parsed.error().message().find("above the limit of 4096"), std::string::npos);
}

TEST(ImageTest, DecompressionBombIsRefused) {
  auto key = NewKey();
  // 64 MiB of zeros compresses to a few KiB, but the header declares 1 byte.
  std::string zeros(std::size_t{64} << 20, '\0');
  auto bomb = Compress(zeros);
  ASSERT_LT(bomb.size(), std::size_t{64} << 10);
  auto bytes = SignedImage(OneFileHeader("a", std::string(1, '\0')), bomb, key);
  auto verified = VerifyImage(bytes, Trust(key));
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().code(), ErrorCode::kTooLarge) << verified.error().message();

  // Fewer bytes than declared is refused too.
  auto short_payload = SignedImage(OneFileHeader("a", "abc"), Compress("ab"), key);
  EXPECT_FALSE(VerifyImage(short_payload, Trust(key)).has_value());
  // And a payload that is not zstd at all.
  Bytes garbage = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_FALSE(VerifyImage(SignedImage(OneFileHeader("a", "abc"), garbage, key), Trust(key)).has_value());
  // Right size, wrong contents: the per-file hash catches it.
  auto wrong = SignedImage(OneFileHeader("a", "abc"), Compress("abd"), key);
  auto refused = VerifyImage(wrong, Trust(key), "app.img");
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find("files[0] 'a': contents do not match"), std::string::npos);
}

TEST(ImageTest, FailedExtractionLeavesTheInstalledTreeUntouched) {
  TempDir dir;
  auto key = NewKey();
  MakeApp(dir.path() / "v1");
  WriteText(dir.path() / "v2" / "app_manifest.json", R"({"Name":"blink","Version":"2.0.0"})");
  WriteText(dir.path() / "v2" / "a", "new a");
  WriteText(dir.path() / "v2" / "b", "new b");
  auto v1 = VerifyImage(*PackImage(dir.path() / "v1", key), Trust(key));
  auto v2 = VerifyImage(*PackImage(dir.path() / "v2", key), Trust(key));
  ASSERT_TRUE(v1.has_value());
  ASSERT_TRUE(v2.has_value());
  auto target = dir.path() / "installed";
  ASSERT_TRUE(ExtractImage(*v1, target).has_value());

  ExtractOptions failing;
  failing.before_file = [](std::string_view path) -> Expected<void> {
    if (path == "b") return MakeError(ErrorCode::kIo, "disk full (injected)");
    return kOk;
  };
  auto failed = ExtractImage(*v2, target, failing);
  ASSERT_FALSE(failed.has_value());
  EXPECT_NE(failed.error().message().find("disk full (injected)"), std::string::npos);
  EXPECT_EQ(ReadAll(target / "bin" / "blink"), "#!/bin/sh\necho blink\n");
  EXPECT_EQ(Json::parse(ReadAll(target / "app_manifest.json"))["Version"], "1.2.0");
  EXPECT_FALSE(fs::exists(target / "a"));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 3u) << "a staging directory was left behind";

  // A target that is a file is refused without touching it.
  WriteText(dir.path() / "file", "keep");
  EXPECT_FALSE(ExtractImage(*v2, dir.path() / "file").has_value());
  EXPECT_EQ(ReadAll(dir.path() / "file"), "keep");

  // The real update replaces the whole tree: nothing of v1 survives.
  ASSERT_TRUE(ExtractImage(*v2, target).has_value());
  EXPECT_EQ(ReadAll(target / "a"), "new a");
  EXPECT_FALSE(fs::exists(target / "bin"));
  EXPECT_EQ(Json::parse(ReadAll(target / "app_manifest.json"))["Version"], "2.0.0");
  entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 4u) << "the old tree was left behind";
}

TEST(ImageTest, ParseImageFileNamesThePath) {
  TempDir dir;
  WriteText(dir.path() / "app.img", "not an image");
  auto parsed = ParseImageFile(dir.path() / "app.img");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().message(),
            "image " + (dir.path() / "app.img").string() + ": not a Citadel image (no CITIMG1 magic)");
  EXPECT_EQ(ParseImageFile(dir.path() / "missing.img").error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace citadel::image
