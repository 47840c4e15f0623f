// Issue 6, acceptance 4: the update client's version floors in a real TPM's
// NV counters (swtpm). A floor survives citadeld restarts, a TPM power
// cycle and the loss or restoration of the whole state directory, and no
// call lowers it.
#include <gtest/gtest.h>

#include <filesystem>

#include "rot/tpm2/tpm2_rot.hpp"
#include "support/must.hpp"
#include "support/swtpm.hpp"
#include "support/temp_dir.hpp"
#include "update/floors.hpp"

namespace citadel::update {
namespace {

using citadel::testing::Must;

TEST(TpmFloorsTest, AFloorSurvivesRestartsAndAnOldDiskAndCannotBeLowered) {
  citadel::testing::TempDir dir;
  citadel::testing::SoftwareTpm tpm(dir.path() / "tpm", dir.path() / "ca");
  const std::string tcti = Must(tpm.ManufactureAndStart(), "swtpm");
  const auto state = dir.path() / "device";
  {
    auto rot = Must(rot::Tpm2RootOfTrust::Open({tcti, state}), "TPM RoT");
    Floors floors(*rot);
    EXPECT_EQ(Must(floors.Read("com.example.thermostat"), "floor"), 0u);
    ASSERT_TRUE(floors.Raise("com.example.thermostat", 3).has_value());
    EXPECT_EQ(Must(floors.Read("com.example.thermostat"), "floor"), 3u);
    // Raising to less is a no-op; there is no call that lowers.
    ASSERT_TRUE(floors.Raise("com.example.thermostat", 1).has_value());
    EXPECT_EQ(Must(floors.Read("com.example.thermostat"), "floor"), 3u);
    // Another component starts at 0 although the TPM's counters are higher.
    EXPECT_EQ(Must(floors.Read("os"), "floor"), 0u);
  }
  // citadeld restarted, then the TPM power-cycled: still 3.
  {
    auto rot = Must(rot::Tpm2RootOfTrust::Open({tcti, state}), "TPM RoT after restart");
    EXPECT_EQ(Must(Floors(*rot).Read("com.example.thermostat"), "floor"), 3u);
  }
  ASSERT_TRUE(tpm.Stop().has_value());
  const std::string restarted = Must(tpm.Start(), "swtpm after power off");
  // An attacker restores an empty disk (every file of the device gone): the
  // floor lives in the TPM, not in the state directory.
  std::filesystem::remove_all(state);
  {
    auto rot = Must(rot::Tpm2RootOfTrust::Open({restarted, state}), "TPM RoT on a wiped disk");
    Floors floors(*rot);
    EXPECT_EQ(Must(floors.Read("com.example.thermostat"), "floor"), 3u);
    ASSERT_TRUE(floors.Raise("com.example.thermostat", 5).has_value());
    EXPECT_EQ(Must(floors.Read("com.example.thermostat"), "floor"), 5u);
  }
}

}  // namespace
}  // namespace citadel::update
