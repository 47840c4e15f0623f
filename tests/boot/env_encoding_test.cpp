#include "boot/env_encoding.hpp"

#include <gtest/gtest.h>

namespace citadel::boot {
namespace {

constexpr Slot kA = Slot::kA;
constexpr Slot kB = Slot::kB;

// What a tool would list after the assignments were written.
EnvVariables Written(const EnvAssignments& assignments, EnvVariables base = {}) {
  for (const auto& [name, value] : assignments) {
    if (value) {
      base[name] = *value;
    } else {
      base.erase(name);
    }
  }
  return base;
}

StoredBootState TrialState(std::uint32_t primary_tries, std::uint32_t tries) {
  StoredBootState stored;
  stored.variables = {{kB, kA}, {primary_tries, tries}};
  stored.record.primary = kA;
  stored.record.trial = kB;
  stored.record.trial_tries = tries;
  return stored;
}

StoredBootState FailedState() {
  StoredBootState stored;
  stored.variables = {{kA, kB}, {1, 0}};
  stored.record.primary = kA;
  stored.record.failure = TrialFailure{kB, "health check: app x = crashed"};
  return stored;
}

TEST(EnvEncodingTest, ParsesListings) {
  EnvVariables variables = ParseEnvListing("A=1\r\nbootcmd=run x=y; boot\nno equals\n=nameless\nA=2\nEMPTY=\n");
  EXPECT_EQ(variables, (EnvVariables{{"A", "2"}, {"bootcmd", "run x=y; boot"}, {"EMPTY", ""}}));
}

TEST(EnvEncodingTest, AnEmptyUbootEnvironmentReadsAsRaucDefaults) {
  auto stored = DecodeUbootState({{"bootdelay", "3"}});
  ASSERT_TRUE(stored) << stored.error().message();
  EXPECT_TRUE(stored->variables.order.empty());
  EXPECT_EQ(stored->variables.tries_left, (std::array<std::uint32_t, 2>{3, 3}));
  EXPECT_EQ(stored->record, BootRecord{});
}

TEST(EnvEncodingTest, UbootRoundTrips) {
  for (const StoredBootState& original :
       {FactoryState(kCountingLoader), TrialState(3, 3), TrialState(2, 0), FailedState()}) {
    EnvAssignments assignments = EncodeUbootState(original);
    auto decoded = DecodeUbootState(Written(assignments, {{"bootdelay", "3"}}));
    ASSERT_TRUE(decoded) << decoded.error().message();
    EXPECT_EQ(*decoded, original);
  }
  EnvAssignments trial = EncodeUbootState(TrialState(3, 3));
  EXPECT_EQ(trial.at("BOOT_ORDER"), "B A");
  EXPECT_EQ(trial.at("BOOT_B_LEFT"), "3");
  EXPECT_EQ(trial.at("CITADEL_TRIAL"), "B");
  EXPECT_EQ(trial.at("CITADEL_FAILED"), std::nullopt);  // deleted when written
}

TEST(EnvEncodingTest, MalformedUbootValuesNameTheVariable) {
  const std::vector<EnvVariables> bad = {
      {{"BOOT_A_LEFT", "10"}},    {{"BOOT_B_LEFT", "x"}},    {{"BOOT_ORDER", "A C"}},
      {{"CITADEL_PRIMARY", "C"}}, {{"CITADEL_TRIAL", "AB"}}, {{"CITADEL_TRIAL", "B"}, {"CITADEL_TRIAL_TRIES", "-1"}},
  };
  for (const EnvVariables& variables : bad) {
    auto stored = DecodeUbootState(variables);
    ASSERT_FALSE(stored) << variables.begin()->first;
    EXPECT_EQ(stored.error().code(), ErrorCode::kParse);
    EXPECT_NE(stored.error().message().find(variables.rbegin()->first), std::string::npos) << stored.error().message();
  }
}

TEST(EnvEncodingTest, UbootWithoutCitadelPrimaryTakesTheFirstOfTheOrder) {
  auto stored = DecodeUbootState({{"BOOT_ORDER", "B A"}, {"BOOT_A_LEFT", "3"}, {"BOOT_B_LEFT", "3"}});
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->record.primary, kB);
}

TEST(EnvEncodingTest, GrubReadsOkAndTryAsOneTry) {
  auto fresh = DecodeGrubState({});
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->variables.tries_left, (std::array<std::uint32_t, 2>{1, 0}));
  auto tried = DecodeGrubState({{"ORDER", "B A"}, {"A_OK", "1"}, {"A_TRY", "0"}, {"B_OK", "1"}, {"B_TRY", "1"}});
  ASSERT_TRUE(tried);
  EXPECT_EQ(tried->variables.order, (std::vector<Slot>{kB, kA}));
  EXPECT_EQ(tried->variables.tries_left, (std::array<std::uint32_t, 2>{1, 0}));
  auto bad = DecodeGrubState({{"A_OK", "0"}, {"B_OK", "1"}, {"B_TRY", "0"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->variables.tries_left, (std::array<std::uint32_t, 2>{0, 1}));
}

TEST(EnvEncodingTest, GrubRoundTripsOneTryStates) {
  for (const StoredBootState& original :
       {FactoryState(kFlagLoader), TrialState(1, 1), TrialState(1, 0), FailedState()}) {
    auto decoded = DecodeGrubState(Written(EncodeGrubState(original), {{"saved_entry", "x"}}));
    ASSERT_TRUE(decoded) << decoded.error().message();
    EXPECT_EQ(*decoded, original);
  }
  EnvAssignments trial = EncodeGrubState(TrialState(1, 1));
  EXPECT_EQ(trial.at("ORDER"), "B A");
  EXPECT_EQ(trial.at("B_OK"), "1");
  EXPECT_EQ(trial.at("B_TRY"), "0");
  EnvAssignments failed = EncodeGrubState(FailedState());
  EXPECT_EQ(failed.at("B_OK"), "0");
  EXPECT_EQ(failed.at("CITADEL_FAILED_REASON"), "health check: app x = crashed");
}

}  // namespace
}  // namespace citadel::boot
