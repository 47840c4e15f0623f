#include "boot/boot_transitions.hpp"

#include <gtest/gtest.h>

#include <random>

namespace citadel::boot {
namespace {

constexpr Slot kA = Slot::kA;
constexpr Slot kB = Slot::kB;

// A device as the planner and the bootloader see it, without any backend.
struct Device {
  StoredBootState stored = FactoryState(kCountingLoader);
  Slot booted = kA;
  LoaderTraits traits = kCountingLoader;

  Slot Boot() {
    BootDecision decision = DecideBoot(stored.variables, traits.rearm_tries);
    stored.variables = decision.after;
    booted = decision.slot;
    return booted;
  }
  BootState State() const { return DescribeState(stored, booted); }
  // Applies a plan; returns its error code, if any.
  template <typename Plan>
  std::optional<ErrorCode> Apply(Plan plan) {
    Expected<StoredBootState> next = plan(stored, booted);
    if (!next) return next.error().code();
    stored = *next;
    return std::nullopt;
  }
  std::optional<ErrorCode> StartTrial(Slot slot, std::uint32_t tries) {
    return Apply([&](const StoredBootState& s, Slot b) { return PlanStartTrial(s, b, slot, tries, traits); });
  }
  std::optional<ErrorCode> Commit() {
    return Apply([&](const StoredBootState& s, Slot b) { return PlanCommit(s, b, traits); });
  }
  std::optional<ErrorCode> Cancel() {
    return Apply([&](const StoredBootState& s, Slot b) { return PlanCancelTrial(s, b, traits); });
  }
  std::optional<ErrorCode> Fail(std::string_view reason) {
    return Apply([&](const StoredBootState& s, Slot b) { return PlanFailTrial(s, b, reason, traits); });
  }
  std::optional<ErrorCode> Acknowledge() {
    return Apply([&](const StoredBootState& s, Slot b) { return PlanAcknowledgeFailure(s, b, traits); });
  }
};

TEST(BootTransitionsTest, FactoryStateRunsAWithBNotBootable) {
  Device device;
  EXPECT_EQ(device.State(), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_EQ(device.stored.variables, (BootVariables{{kA, kB}, {kDefaultTries, 0}}));
  EXPECT_EQ(device.Boot(), kA);
}

TEST(BootTransitionsTest, TrialThenCommitMakesTheTrialSlotPrimary) {
  Device device;
  ASSERT_FALSE(device.StartTrial(kB, 3));
  EXPECT_EQ(device.State().trial, (Trial{kB, 3}));
  EXPECT_EQ(device.stored.variables.order, (std::vector<Slot>{kB, kA}));
  EXPECT_EQ(device.Boot(), kB);
  EXPECT_EQ(device.State().trial, (Trial{kB, 2}));
  ASSERT_FALSE(device.Commit());
  BootState state = device.State();
  EXPECT_EQ(state.primary, kB);
  EXPECT_FALSE(state.trial);
  EXPECT_FALSE(state.last_failure);
  // The old slot is the next update's target: never a fallback.
  EXPECT_EQ(device.stored.variables.tries_left[SlotIndex(kA)], 0U);
  for (int boot = 0; boot < 5; ++boot) {
    EXPECT_EQ(device.Boot(), kB);
    ASSERT_FALSE(device.Commit());
  }
}

TEST(BootTransitionsTest, TriesRunningOutFallBackAndReportTheFailureUntilAcknowledged) {
  Device device;
  ASSERT_FALSE(device.StartTrial(kB, 2));
  EXPECT_EQ(device.Boot(), kB);
  EXPECT_EQ(device.Boot(), kB);
  // The last try is running: not a failure yet, and it may still commit.
  EXPECT_EQ(device.State().trial, (Trial{kB, 0}));
  EXPECT_FALSE(device.State().last_failure);
  EXPECT_EQ(device.Boot(), kA);
  BootState state = device.State();
  EXPECT_EQ(state.booted, kA);
  EXPECT_EQ(state.primary, kA);
  EXPECT_FALSE(state.trial);
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(state.last_failure->slot, kB);
  EXPECT_NE(state.last_failure->reason.find("2 boot attempts"), std::string::npos) << state.last_failure->reason;
  // A new trial would lose the failure; the healthy primary may re-arm.
  EXPECT_EQ(device.StartTrial(kB, 3), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(device.Cancel(), ErrorCode::kFailedPrecondition);
  ASSERT_FALSE(device.Commit());
  EXPECT_TRUE(device.State().last_failure);
  ASSERT_FALSE(device.Acknowledge());
  EXPECT_EQ(device.State(), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_EQ(device.stored.variables, (BootVariables{{kA, kB}, {kDefaultTries, 0}}));
  EXPECT_EQ(device.Boot(), kA);
  ASSERT_FALSE(device.StartTrial(kB, 1));
}

TEST(BootTransitionsTest, FailTrialEndsTheTrialAtOnce) {
  Device device;
  ASSERT_FALSE(device.StartTrial(kB, 3));
  EXPECT_EQ(device.Fail("health check failed"), ErrorCode::kFailedPrecondition);  // runs on A
  EXPECT_EQ(device.Boot(), kB);
  ASSERT_FALSE(device.Fail("app thermostat\ndid not start"));
  BootState state = device.State();
  ASSERT_TRUE(state.last_failure);
  EXPECT_EQ(state.last_failure->reason, "app thermostat?did not start");
  EXPECT_EQ(device.Commit(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(device.Boot(), kA);
  EXPECT_TRUE(device.State().last_failure);
  ASSERT_FALSE(device.Acknowledge());
  EXPECT_FALSE(device.State().last_failure);
}

TEST(BootTransitionsTest, CancelTrialReturnsToThePrimaryWithoutAFailure) {
  Device device;
  EXPECT_FALSE(device.Cancel());  // no trial: nothing to do
  ASSERT_FALSE(device.StartTrial(kB, 3));
  ASSERT_FALSE(device.Cancel());
  EXPECT_EQ(device.State(), (BootState{kA, kA, std::nullopt, std::nullopt}));
  EXPECT_EQ(device.Boot(), kA);
  // Cancelled from the trial slot itself: the next boot is the primary's.
  ASSERT_FALSE(device.StartTrial(kB, 3));
  EXPECT_EQ(device.Boot(), kB);
  ASSERT_FALSE(device.Cancel());
  EXPECT_EQ(device.Boot(), kA);
  EXPECT_FALSE(device.State().last_failure);
}

TEST(BootTransitionsTest, StartTrialPreconditions) {
  Device device;
  EXPECT_EQ(device.StartTrial(kA, 3), ErrorCode::kFailedPrecondition);  // the running slot
  EXPECT_EQ(device.StartTrial(kB, 0), ErrorCode::kInvalidArgument);
  EXPECT_EQ(device.StartTrial(kB, kMaxTrialTries + 1), ErrorCode::kInvalidArgument);
  ASSERT_FALSE(device.StartTrial(kB, kMaxTrialTries));
  EXPECT_EQ(device.Boot(), kB);
  // An uncommitted trial slot cannot start a trial of the other one.
  EXPECT_EQ(device.StartTrial(kA, 3), ErrorCode::kFailedPrecondition);
}

TEST(BootTransitionsTest, AFallbackIntoTheOtherSlotIsNotCommitted) {
  Device device;
  // The primary never gets healthy: its tries run out and the last-resort
  // re-arm also makes B bootable.
  for (int boot = 0; boot < 3; ++boot) EXPECT_EQ(device.Boot(), kA);
  EXPECT_EQ(device.Boot(), kA);  // re-armed, A first
  device.booted = kB;            // as if the order had led to B
  EXPECT_EQ(device.Commit(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(device.Fail("x"), ErrorCode::kFailedPrecondition);
}

TEST(BootTransitionsTest, FlagLoaderGrantsOneTry) {
  Device device;
  device.traits = kFlagLoader;
  device.stored = FactoryState(kFlagLoader);
  ASSERT_FALSE(device.StartTrial(kB, 3));
  EXPECT_EQ(device.State().trial, (Trial{kB, 1}));
  EXPECT_EQ(device.stored.record.trial_tries, 1U);
  EXPECT_EQ(device.Boot(), kB);
  EXPECT_EQ(device.Boot(), kA);
  ASSERT_TRUE(device.State().last_failure);
  EXPECT_NE(device.State().last_failure->reason.find("1 boot attempt;"), std::string::npos);
}

TEST(BootTransitionsTest, SanitizeReasonKeepsPrintableAsciiWithinTheBound) {
  EXPECT_EQ(SanitizeReason("ok: exit 3"), "ok: exit 3");
  EXPECT_EQ(SanitizeReason("a\nb\\c\x01\xff"), "a?b?c??");
  EXPECT_EQ(SanitizeReason(""), "unspecified");
  EXPECT_EQ(SanitizeReason(std::string(500, 'x')).size(), kMaxReasonBytes);
}

// Whatever sequence of operations and boots happens, every state Citadel
// writes boots the primary or the slot under trial, without needing the
// bootloader's last-resort re-arm.
TEST(BootTransitionsTest, EveryWrittenStateBootsThePrimaryOrTheTrial) {
  for (LoaderTraits traits : {kCountingLoader, kFlagLoader}) {
    Device device;
    device.traits = traits;
    device.stored = FactoryState(traits);
    std::mt19937 random(1234);
    int writes = 0;
    for (int step = 0; step < 3000; ++step) {
      StoredBootState before = device.stored;
      std::optional<ErrorCode> error;
      switch (random() % 6) {
        case 0:
          device.Boot();
          continue;
        case 1:
          error = device.StartTrial(OtherSlot(device.booted), 1 + static_cast<std::uint32_t>(random() % 3));
          break;
        case 2:
          error = device.Commit();
          break;
        case 3:
          error = device.Cancel();
          break;
        case 4:
          error = device.Fail("random");
          break;
        default:
          error = device.Acknowledge();
          break;
      }
      if (error) {
        EXPECT_EQ(*error, ErrorCode::kFailedPrecondition);
        continue;
      }
      if (device.stored == before) continue;  // nothing to write
      ++writes;
      BootDecision next = DecideBoot(device.stored.variables, traits.rearm_tries);
      ASSERT_FALSE(next.counters_reset) << "step " << step;
      const BootRecord& record = device.stored.record;
      ASSERT_TRUE(next.slot == record.primary || next.slot == record.trial) << "step " << step;
    }
    EXPECT_GT(writes, 300);
  }
}

}  // namespace
}  // namespace citadel::boot
