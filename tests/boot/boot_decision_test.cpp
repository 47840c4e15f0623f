#include "boot/boot_decision.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace citadel::boot {
namespace {

constexpr Slot kA = Slot::kA;
constexpr Slot kB = Slot::kB;

std::string OrderText(const std::vector<Slot>& order) {
  std::string text = "[";
  for (Slot slot : order) text += SlotName(slot);
  return text + "]";
}

struct Case {
  std::vector<Slot> order;
  std::uint32_t a_left;
  std::uint32_t b_left;
  std::uint32_t rearm;
  Slot booted;
  std::uint32_t a_after;
  std::uint32_t b_after;
  bool reset;
};

TEST(BootDecisionTest, Table) {
  const std::vector<Case> cases = {
      // The committed slot boots and spends a try.
      {{kA, kB}, 3, 0, 3, kA, 2, 0, false},
      {{kA, kB}, 3, 3, 3, kA, 2, 3, false},
      // A trial of B: B first while it has tries, then back to A.
      {{kB, kA}, 3, 3, 3, kB, 3, 2, false},
      {{kB, kA}, 3, 1, 3, kB, 3, 0, false},
      {{kB, kA}, 3, 0, 3, kA, 2, 0, false},
      {{kB, kA}, 1, 0, 3, kA, 0, 0, false},
      // A slot with no tries is skipped.
      {{kA, kB}, 0, 2, 3, kB, 0, 1, false},
      // An empty order is "A B", as in the scripts.
      {{}, 3, 3, 3, kA, 2, 3, false},
      {{}, 0, 1, 3, kB, 0, 0, false},
      // Nothing left: every counter re-armed, the first of the order boots.
      {{kA, kB}, 0, 0, 3, kA, 2, 3, true},
      {{kB, kA}, 0, 0, 3, kB, 3, 2, true},
      {{}, 0, 0, 3, kA, 2, 3, true},
      // A slot outside the order is never booted, even with tries left.
      {{kA}, 0, 5, 3, kA, 2, 3, true},
      {{kB}, 2, 0, 3, kB, 3, 2, true},
      {{kA, kA}, 0, 1, 3, kA, 2, 3, true},
      // GRUB: one try per slot.
      {{kB, kA}, 1, 1, 1, kB, 1, 0, false},
      {{kB, kA}, 1, 0, 1, kA, 0, 0, false},
      {{kA, kB}, 0, 0, 1, kA, 0, 1, true},
      {{kB, kA}, 0, 0, 1, kB, 1, 0, true},
      // A re-arm value of 0 would boot nothing; it counts as 1.
      {{kA, kB}, 0, 0, 0, kA, 0, 1, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(OrderText(c.order) + " A=" + std::to_string(c.a_left) + " B=" + std::to_string(c.b_left) +
                 " rearm=" + std::to_string(c.rearm));
    BootVariables before{c.order, {c.a_left, c.b_left}};
    BootDecision decision = DecideBoot(before, c.rearm);
    EXPECT_EQ(decision.slot, c.booted);
    EXPECT_EQ(decision.after.tries_left[0], c.a_after);
    EXPECT_EQ(decision.after.tries_left[1], c.b_after);
    EXPECT_EQ(decision.counters_reset, c.reset);
    EXPECT_EQ(decision.after.order, EffectiveOrder(before));
  }
}

// Every order (including a hand-edited duplicate), every counter value a
// trial can have, both re-arm values, checked against the decision stated
// independently.
TEST(BootDecisionTest, EveryCombination) {
  const std::vector<std::vector<Slot>> orders = {{}, {kA}, {kB}, {kA, kB}, {kB, kA}, {kA, kA}, {kB, kB}};
  int combinations = 0;
  for (const auto& order : orders) {
    for (std::uint32_t a = 0; a <= kMaxTrialTries; ++a) {
      for (std::uint32_t b = 0; b <= kMaxTrialTries; ++b) {
        for (std::uint32_t rearm : {1U, kDefaultTries}) {
          SCOPED_TRACE(OrderText(order) + " A=" + std::to_string(a) + " B=" + std::to_string(b) +
                       " rearm=" + std::to_string(rearm));
          ++combinations;
          BootVariables before{order, {a, b}};
          BootDecision decision = DecideBoot(before, rearm);
          std::vector<Slot> walked = order.empty() ? std::vector<Slot>{kA, kB} : order;
          const Slot* first_with_tries = nullptr;
          for (const Slot& slot : walked) {
            if (before.tries_left[SlotIndex(slot)] > 0) {
              first_with_tries = &slot;
              break;
            }
          }
          BootVariables expected = before;
          expected.order = walked;
          if (first_with_tries != nullptr) {
            ASSERT_FALSE(decision.counters_reset);
            ASSERT_EQ(decision.slot, *first_with_tries);
            expected.tries_left[SlotIndex(*first_with_tries)] -= 1;
          } else {
            ASSERT_TRUE(decision.counters_reset);
            ASSERT_EQ(decision.slot, walked.front());
            expected.tries_left = {rearm, rearm};
            expected.tries_left[SlotIndex(walked.front())] = rearm - 1;
          }
          ASSERT_EQ(decision.after, expected);
        }
      }
    }
  }
  EXPECT_EQ(combinations, 7 * 10 * 10 * 2);
}

}  // namespace
}  // namespace citadel::boot
