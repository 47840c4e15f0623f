// The register arithmetic shared by every RoT backend and the verifier.
#include "rot/rot.hpp"

#include <gtest/gtest.h>

namespace citadel::rot {
namespace {

crypto::Sha256Digest DigestOf(std::string_view text) { return crypto::Sha256(text); }

MeasurementEvent OsEvent() {
  return {.register_index = 0, .type = "os", .name = "citadel-os", .version = "1.0.0", .digest = DigestOf("image")};
}

TEST(EventDigestTest, IsSha256OfCanonicalJsonOfTheEvent) {
  auto event = OsEvent();
  // Written out by hand: keys sorted, no white space (docs/PROTOCOL.md).
  std::string canonical =
      "{\"digest\":\"" + HexEncode(event.digest) + "\",\"name\":\"citadel-os\",\"type\":\"os\",\"version\":\"1.0.0\"}";
  EXPECT_EQ(EventDigest(event), crypto::Sha256(canonical));
}

TEST(EventDigestTest, EveryFieldChangesTheDigest) {
  auto base = EventDigest(OsEvent());
  auto changed = OsEvent();
  changed.name = "other-os";
  EXPECT_NE(EventDigest(changed), base);
  changed = OsEvent();
  changed.type = "app";
  EXPECT_NE(EventDigest(changed), base);
  changed = OsEvent();
  changed.version = "1.0.1";
  EXPECT_NE(EventDigest(changed), base);
  changed = OsEvent();
  changed.digest[31] ^= 1;
  EXPECT_NE(EventDigest(changed), base);
}

TEST(ExtendRegisterTest, IsSha256OfRegisterThenEventDigest) {
  crypto::Sha256Digest current{};
  current.fill(0x11);
  crypto::Sha256Digest event{};
  event.fill(0x22);
  Bytes concatenated(32, 0x11);
  concatenated.insert(concatenated.end(), 32, 0x22);
  EXPECT_EQ(ExtendRegister(current, event), crypto::Sha256(std::span<const std::uint8_t>(concatenated)));
}

TEST(ReplayLogTest, StartsFromZeroAndIsOrderSensitive) {
  auto empty = ReplayLog({});
  ASSERT_EQ(empty.size(), kRegisterCount);
  for (const auto& reg : empty) EXPECT_EQ(reg, crypto::Sha256Digest{});

  auto first = OsEvent();
  auto second = OsEvent();
  second.version = "1.0.1";
  auto forward = ReplayLog({first, second});
  auto backward = ReplayLog({second, first});
  EXPECT_NE(forward[0], backward[0]);
  EXPECT_EQ(forward[0],
            ExtendRegister(ExtendRegister(crypto::Sha256Digest{}, EventDigest(first)), EventDigest(second)));
  for (std::uint32_t i = 1; i < kRegisterCount; ++i) EXPECT_EQ(forward[i], crypto::Sha256Digest{});
}

TEST(QuoteDigestTest, IsSha256OfCanonicalJsonOfNonceAndRegisters) {
  std::vector<crypto::Sha256Digest> registers(kRegisterCount, crypto::Sha256Digest{});
  registers[2].fill(0xab);
  Bytes nonce = {0x01, 0x02, 0xfe};
  std::string canonical = "{\"nonce\":\"0102fe\",\"registers\":[";
  for (std::size_t i = 0; i < registers.size(); ++i) {
    if (i != 0) canonical += ',';
    canonical += '"' + HexEncode(registers[i]) + '"';
  }
  canonical += "]}";
  EXPECT_EQ(QuoteDigest(registers, nonce), crypto::Sha256(canonical));
}

}  // namespace
}  // namespace citadel::rot
