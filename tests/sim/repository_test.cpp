#include "sim/repository.hpp"

#include <gtest/gtest.h>

namespace citadel::sim {
namespace {

TEST(TargetPathTest, ConsistentSnapshotNamesCarryTheHash) {
  tuf::TargetFile target;
  target.path = "os/citadel-os/2.0.0/os 2.img";
  target.length = 10;
  target.hashes = {{"sha256", "ab12"}, {"sha512", "cd34"}};
  EXPECT_EQ(TargetPath("/v1/repo/ten_1/image", target, true),
            "/v1/repo/ten_1/image/targets/os/citadel-os/2.0.0/ab12.os%202.img");
  EXPECT_EQ(TargetPath("/v1/repo/ten_1/image", target, false),
            "/v1/repo/ten_1/image/targets/os/citadel-os/2.0.0/os%202.img");
  target.path = "top.img";
  EXPECT_EQ(TargetPath("/r", target, true), "/r/targets/ab12.top.img");
}

}  // namespace
}  // namespace citadel::sim
