// Fuzzes what a device does first with an app image from the network or a
// sideload: the strict, bounded image parser, then the signature, payload
// and per-file checks against a fixed publisher key. Must never crash, and
// whatever the parser accepts must respect the documented limits
// (docs/IMAGE.md); whatever verifies must hold exactly the declared bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/encoding.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"

namespace {

// The publisher key that signed corpus/image_fuzz/seed.img.
#include "image_fuzz_publisher.inc"

const citadel::crypto::PublicKey& SeedPublisherKey() {
  static const citadel::crypto::PublicKey key = [] {
    auto parsed = citadel::crypto::PublicKey::FromPem(kImageSeedPublisherPem);
    if (!parsed) {
      std::fprintf(stderr, "image_fuzz_publisher.inc: %s\n", parsed.error().message().c_str());
      std::abort();
    }
    return *parsed;
  }();
  return key;
}

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "image_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace image = citadel::image;
  auto info = image::ParseImage({data, size}, "fuzz.img");
  if (!info) return 0;
  if (info->files.size() > image::kMaxFiles) Fail("accepted too many files");
  if (info->total_size > image::kMaxTotalSize) Fail("accepted too large a tree");
  if (info->header_bytes.size() > image::kMaxHeaderBytes) Fail("accepted too large a header");
  if (info->payload.size() != info->payload_size) Fail("payload size differs from the header");
  for (const auto& file : info->files) {
    if (!image::ValidateImagePath(file.path)) Fail("accepted an invalid path");
  }

  const citadel::crypto::PublicKey trusted[] = {SeedPublisherKey()};
  auto verified = image::VerifyImage(*info, trusted);
  if (!verified) return 0;
  if (verified->contents().size() != info->files.size()) Fail("verified contents differ from the file list");
  for (std::size_t i = 0; i < info->files.size(); ++i) {
    if (verified->contents()[i].size() != info->files[i].size) Fail("verified a file of the wrong size");
  }
  return 0;
}
