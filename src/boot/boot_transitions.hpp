// Citadel's side of A/B booting, as pure functions over what a backend
// stores: every BootControl operation is "load, plan, store once", and the
// plans live here so the state machine is tested without any bootloader.
//
// Beside the bootloader's variables (BootVariables) a backend keeps
// Citadel's own record, which no boot script reads:
//   CITADEL_PRIMARY        the committed slot (absent: the first in the order)
//   CITADEL_TRIAL          the slot under trial
//   CITADEL_TRIAL_TRIES    the tries it was granted (for the failure reason)
//   CITADEL_FAILED         a slot the runtime failed with FailTrial ...
//   CITADEL_FAILED_REASON  ... and why.
// A trial whose tries ran out while another slot runs is a failure derived
// from the variables; it needs no write by the bootloader.
//
// Invariants every plan keeps (so every stored state boots something):
// the primary's counter is re-armed, the primary is in the order, and the
// other slot has tries only while it is under trial.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "boot/boot_control.hpp"
#include "boot/boot_decision.hpp"

namespace citadel::boot {

// How a bootloader counts.
struct LoaderTraits {
  std::uint32_t max_tries = kMaxTrialTries;   // what a trial can be granted
  std::uint32_t rearm_tries = kDefaultTries;  // the primary's counter, and the reset value
};
inline constexpr LoaderTraits kCountingLoader{};  // U-Boot, file
inline constexpr LoaderTraits kFlagLoader{1, 1};  // GRUB: TRY is a flag

struct BootRecord {
  Slot primary = Slot::kA;
  std::optional<Slot> trial;
  std::uint32_t trial_tries = 0;
  std::optional<TrialFailure> failure;  // from FailTrial

  bool operator==(const BootRecord&) const = default;
};

struct StoredBootState {
  BootVariables variables;
  BootRecord record;

  bool operator==(const StoredBootState&) const = default;
};

// Bound on a failure reason, so it fits any bootloader environment.
inline constexpr std::size_t kMaxReasonBytes = 200;
// Printable ASCII only ('\\' too is replaced: GRUB escapes it), cut to
// kMaxReasonBytes; an empty reason becomes "unspecified".
std::string SanitizeReason(std::string_view reason);

// A fresh device: A is primary and booted, B is not bootable.
StoredBootState FactoryState(const LoaderTraits& traits);

BootState DescribeState(const StoredBootState& stored, Slot booted);

Expected<StoredBootState> PlanStartTrial(const StoredBootState& stored, Slot booted, Slot slot, std::uint32_t tries,
                                         const LoaderTraits& traits);
Expected<StoredBootState> PlanCommit(const StoredBootState& stored, Slot booted, const LoaderTraits& traits);
Expected<StoredBootState> PlanCancelTrial(const StoredBootState& stored, Slot booted, const LoaderTraits& traits);
Expected<StoredBootState> PlanFailTrial(const StoredBootState& stored, Slot booted, std::string_view reason,
                                        const LoaderTraits& traits);
Expected<StoredBootState> PlanAcknowledgeFailure(const StoredBootState& stored, Slot booted,
                                                 const LoaderTraits& traits);

}  // namespace citadel::boot
