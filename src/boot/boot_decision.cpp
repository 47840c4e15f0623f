#include "boot/boot_decision.hpp"

#include <algorithm>
#include <optional>

namespace citadel::boot {
namespace {

// The first slot of `order` with tries left, its counter taken down by one.
std::optional<Slot> TakeTry(const std::vector<Slot>& order, BootVariables& variables) {
  for (Slot slot : order) {
    std::uint32_t& left = variables.tries_left[SlotIndex(slot)];
    if (left > 0) {
      --left;
      return slot;
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<Slot> EffectiveOrder(const BootVariables& variables) {
  if (variables.order.empty()) return {Slot::kA, Slot::kB};
  return variables.order;
}

BootDecision DecideBoot(const BootVariables& variables, std::uint32_t rearm_tries) {
  std::vector<Slot> order = EffectiveOrder(variables);
  BootDecision decision;
  decision.after = variables;
  decision.after.order = order;
  if (auto slot = TakeTry(order, decision.after)) {
    decision.slot = *slot;
    return decision;
  }
  decision.counters_reset = true;
  decision.after.tries_left.fill(std::max<std::uint32_t>(rearm_tries, 1));
  // Cannot fail: the order is non-empty and every counter is now at least 1.
  decision.slot = TakeTry(order, decision.after).value_or(order.front());
  return decision;
}

}  // namespace citadel::boot
