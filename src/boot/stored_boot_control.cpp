#include "boot/stored_boot_control.hpp"

#include <string>

#include "common/log.hpp"

namespace citadel::boot {

Expected<BootState> StoredBootControl::ReadState() {
  CITADEL_TRY(Snapshot snapshot, Load());
  return DescribeState(snapshot.stored, snapshot.booted);
}

Expected<void> StoredBootControl::Apply(std::string_view operation, const Plan& plan) {
  CITADEL_TRY(Snapshot snapshot, Load());
  auto next = plan(snapshot.stored, snapshot.booted);
  if (!next) return WrapError(next.error(), operation);
  if (*next == snapshot.stored) return kOk;
  if (auto stored = Store(*next, snapshot.booted); !stored) return WrapError(stored.error(), operation);
  BootState state = DescribeState(*next, snapshot.booted);
  std::string trial = state.trial ? std::string(SlotName(state.trial->slot)) : "none";
  std::string tries = state.trial ? std::to_string(state.trial->tries_left) : "0";
  log::Fields fields = {{"operation", operation},
                        {"backend", Backend()},
                        {"booted", SlotName(state.booted)},
                        {"primary", SlotName(state.primary)},
                        {"trial", trial},
                        {"tries_left", tries}};
  // Re-arming a counter happens at every boot; only changes of slot roles
  // are worth an operator's attention.
  if (next->record == snapshot.stored.record && next->variables.order == snapshot.stored.variables.order) {
    log::Debug("boot counter re-armed", fields);
  } else {
    log::Info("boot control changed", fields);
  }
  return kOk;
}

Expected<void> StoredBootControl::StartTrial(Slot slot, std::uint32_t tries) {
  return Apply(
      "starting a trial of slot " + std::string(SlotName(slot)),
      [&](const StoredBootState& stored, Slot booted) { return PlanStartTrial(stored, booted, slot, tries, traits_); });
}

Expected<void> StoredBootControl::Commit() {
  return Apply("committing the running slot",
               [&](const StoredBootState& stored, Slot booted) { return PlanCommit(stored, booted, traits_); });
}

Expected<void> StoredBootControl::CancelTrial() {
  return Apply("cancelling the trial",
               [&](const StoredBootState& stored, Slot booted) { return PlanCancelTrial(stored, booted, traits_); });
}

Expected<void> StoredBootControl::FailTrial(std::string_view reason) {
  return Apply("failing the trial", [&](const StoredBootState& stored, Slot booted) {
    return PlanFailTrial(stored, booted, reason, traits_);
  });
}

Expected<void> StoredBootControl::AcknowledgeFailure() {
  return Apply("acknowledging the failed trial", [&](const StoredBootState& stored, Slot booted) {
    return PlanAcknowledgeFailure(stored, booted, traits_);
  });
}

}  // namespace citadel::boot
