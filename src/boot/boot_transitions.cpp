#include "boot/boot_transitions.hpp"

#include <algorithm>

namespace citadel::boot {
namespace {

std::string Name(Slot slot) { return std::string(SlotName(slot)); }

// The failure that is waiting to be acknowledged, recorded or derived: a
// trial whose tries ran out while another slot runs. While the trial slot
// itself runs its last try, that is no failure yet.
std::optional<TrialFailure> PendingFailure(const StoredBootState& stored, Slot booted) {
  const BootRecord& record = stored.record;
  if (record.failure) return record.failure;
  if (!record.trial) return std::nullopt;
  Slot trial = *record.trial;
  if (booted == trial || stored.variables.tries_left[SlotIndex(trial)] > 0) return std::nullopt;
  std::string tries = std::to_string(record.trial_tries);
  return TrialFailure{trial, "slot " + Name(trial) + " did not start healthy in " + tries +
                                 (record.trial_tries == 1 ? " boot attempt" : " boot attempts") +
                                 "; the bootloader returned to slot " + Name(booted)};
}

// The steady state around the primary: it boots first with a re-armed
// counter, and the other slot is not bootable (it is the next update's
// target). Clears the trial and the recorded failure.
StoredBootState Settled(const StoredBootState& stored, Slot primary, const LoaderTraits& traits) {
  StoredBootState next = stored;
  next.record = BootRecord{};
  next.record.primary = primary;
  next.variables.order = {primary, OtherSlot(primary)};
  next.variables.tries_left[SlotIndex(primary)] = traits.rearm_tries;
  next.variables.tries_left[SlotIndex(OtherSlot(primary))] = 0;
  return next;
}

std::unexpected<Error> Refuse(std::string message) {
  return MakeError(ErrorCode::kFailedPrecondition, std::move(message));
}

std::unexpected<Error> UnacknowledgedFailure(const TrialFailure& failure) {
  return Refuse("the failed trial of slot " + Name(failure.slot) + " (" + failure.reason +
                ") has not been acknowledged yet");
}

}  // namespace

std::string SanitizeReason(std::string_view reason) {
  std::string out;
  for (char c : reason.substr(0, kMaxReasonBytes)) {
    bool printable = c >= 0x20 && c < 0x7f && c != '\\';
    out += printable ? c : '?';
  }
  return out.empty() ? "unspecified" : out;
}

StoredBootState FactoryState(const LoaderTraits& traits) { return Settled(StoredBootState{}, Slot::kA, traits); }

BootState DescribeState(const StoredBootState& stored, Slot booted) {
  BootState state;
  state.booted = booted;
  state.primary = stored.record.primary;
  state.last_failure = PendingFailure(stored, booted);
  if (stored.record.trial && !state.last_failure) {
    Slot trial = *stored.record.trial;
    state.trial = Trial{trial, stored.variables.tries_left[SlotIndex(trial)]};
  }
  return state;
}

Expected<StoredBootState> PlanStartTrial(const StoredBootState& stored, Slot booted, Slot slot, std::uint32_t tries,
                                         const LoaderTraits& traits) {
  if (tries < 1 || tries > kMaxTrialTries) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a trial needs 1 to " + std::to_string(kMaxTrialTries) + " tries, not " + std::to_string(tries));
  }
  if (slot == booted) return Refuse("slot " + Name(slot) + " is running; a trial needs the inactive slot");
  if (booted != stored.record.primary) {
    return Refuse("the running slot " + Name(booted) + " is not committed (the primary is " +
                  Name(stored.record.primary) + "): commit or cancel its trial first");
  }
  if (auto failure = PendingFailure(stored, booted)) return UnacknowledgedFailure(*failure);
  std::uint32_t granted = std::min(tries, traits.max_tries);
  StoredBootState next = Settled(stored, stored.record.primary, traits);
  next.variables.order = {slot, stored.record.primary};
  next.variables.tries_left[SlotIndex(slot)] = granted;
  next.record.trial = slot;
  next.record.trial_tries = granted;
  return next;
}

Expected<StoredBootState> PlanCommit(const StoredBootState& stored, Slot booted, const LoaderTraits& traits) {
  const BootRecord& record = stored.record;
  if (record.failure && record.failure->slot == booted) {
    return Refuse("slot " + Name(booted) + " failed its trial (" + record.failure->reason +
                  "); it cannot be committed");
  }
  if (record.trial == booted) return Settled(stored, booted, traits);
  if (booted != record.primary) {
    return Refuse("the running slot " + Name(booted) + " is neither the primary (" + Name(record.primary) +
                  ") nor under trial: the bootloader fell back to it, and it is not committed behind anyone's back");
  }
  // A trial may be pending (not booted yet) or a failure waiting to be
  // reported: both stay; only the primary's counter is re-armed.
  if (record.trial || record.failure) {
    StoredBootState next = stored;
    next.variables.tries_left[SlotIndex(booted)] = traits.rearm_tries;
    return next;
  }
  return Settled(stored, booted, traits);
}

Expected<StoredBootState> PlanCancelTrial(const StoredBootState& stored, Slot booted, const LoaderTraits& traits) {
  if (!stored.record.trial) return stored;
  if (auto failure = PendingFailure(stored, booted)) return UnacknowledgedFailure(*failure);
  return Settled(stored, stored.record.primary, traits);
}

Expected<StoredBootState> PlanFailTrial(const StoredBootState& stored, Slot booted, std::string_view reason,
                                        const LoaderTraits& traits) {
  if (stored.record.trial != booted) {
    return Refuse("no trial is running on slot " + Name(booted) + "; only the trial slot can fail its trial");
  }
  StoredBootState next = Settled(stored, stored.record.primary, traits);
  next.record.failure = TrialFailure{booted, SanitizeReason(reason)};
  return next;
}

Expected<StoredBootState> PlanAcknowledgeFailure(const StoredBootState& stored, Slot booted,
                                                 const LoaderTraits& traits) {
  if (!PendingFailure(stored, booted)) return stored;
  return Settled(stored, stored.record.primary, traits);
}

}  // namespace citadel::boot
