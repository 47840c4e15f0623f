// Floors over the software RoT's monotonic counters, and the file OS slots.
#include "update/floors.hpp"

#include <gtest/gtest.h>

#include "boot/boot_control.hpp"
#include "common/file.hpp"
#include "rot/software/software_rot.hpp"
#include "support/temp_dir.hpp"
#include "update/os_slots.hpp"

namespace citadel::update {
namespace {

TEST(FloorsTest, RaiseIsIdempotentAndNeverLowers) {
  citadel::testing::TempDir temp("floors");
  auto rot = rot::SoftwareRootOfTrust::Open(temp.path());
  ASSERT_TRUE(rot) << rot.error().message();
  Floors floors(**rot);
  EXPECT_EQ(floors.Read("app-1").value(), 0u);
  ASSERT_TRUE(floors.Raise("app-1", 3));
  EXPECT_EQ(floors.Read("app-1").value(), 3u);
  EXPECT_EQ((*rot)->ReadCounter("floor.app-1").value(), 3u);
  ASSERT_TRUE(floors.Raise("app-1", 3));
  ASSERT_TRUE(floors.Raise("app-1", 1));
  EXPECT_EQ(floors.Read("app-1").value(), 3u);
  EXPECT_EQ(floors.Read("app-2").value(), 0u);
  EXPECT_FALSE(floors.Raise("app-1", kMaxFloor + 1));
  EXPECT_FALSE(floors.Raise("app-1", -1));
}

TEST(FileOsSlotsTest, WritesTheSlotAndBootsTheFactoryState) {
  citadel::testing::TempDir temp("slots");
  auto slots = FileOsSlots::Open(temp.path() / "os");
  ASSERT_TRUE(slots) << slots.error().message();
  const std::string image(3'000'000, 'i');
  ASSERT_TRUE(WriteFileAtomic(temp.path() / "image", image));
  ASSERT_TRUE((*slots)->Write(boot::Slot::kB, temp.path() / "image", image.size()));
  EXPECT_EQ((*slots)->ImagePath(boot::Slot::kB), temp.path() / "os" / "slot-B.img");
  EXPECT_EQ(ReadFile((*slots)->ImagePath(boot::Slot::kB), 4u << 20).value(), image);
  // A source shorter than announced is an error; a longer one is cut.
  EXPECT_FALSE((*slots)->Write(boot::Slot::kB, temp.path() / "image", image.size() + 1));
  ASSERT_TRUE((*slots)->Write(boot::Slot::kA, temp.path() / "image", 10));
  EXPECT_EQ(ReadFile((*slots)->ImagePath(boot::Slot::kA)).value(), std::string(10, 'i'));

  auto boot = boot::Open("file:" + (temp.path() / "boot").string());
  ASSERT_TRUE(boot) << boot.error().message();
  auto booted = BootAtStart(**boot);
  ASSERT_TRUE(booted) << booted.error().message();
  EXPECT_EQ(*booted, boot::Slot::kA);
}

}  // namespace
}  // namespace citadel::update
