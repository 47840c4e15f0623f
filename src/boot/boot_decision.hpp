// The bootloader's side of A/B booting, as a pure function.
//
// DecideBoot() is the one statement of what the boot scripts in
// src/boot/scripts (U-Boot hush and GRUB) do at every power-on; the scripts
// and this function must change together. It is unit-tested over every
// combination of order and counters, and the file backend runs it to stand
// in for the bootloader in development (FileBootControl::SimulateBoot).
//
// The variables follow RAUC's conventions so that makers' existing scripts
// fit:
//   U-Boot: BOOT_ORDER="A B", BOOT_A_LEFT, BOOT_B_LEFT (tries left);
//   GRUB:   ORDER="A B", A_OK/A_TRY, B_OK/B_TRY, which this model reads as
//           one try left when OK=1 and TRY=0, none otherwise.
//
// The decision: walk the order; the first slot with tries left is booted and
// its counter goes down by one before the kernel starts (so a boot that never
// reaches a healthy runtime has used its try). When no slot in the order has
// tries left, the scripts re-arm every counter to `rearm_tries` and start
// over (RAUC's U-Boot script saves and resets; ours does the same): the
// device never ends in a state that boots nothing. DecideBoot returns the
// outcome after such a restart directly, with counters_reset set.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "boot/slot.hpp"

namespace citadel::boot {

// RAUC's default for BOOT_x_LEFT, and what a healthy runtime re-arms its own
// slot's counter to on U-Boot and the file backend.
inline constexpr std::uint32_t kDefaultTries = 3;
// The most tries a trial may ask for. U-Boot's setexpr computes in hex while
// its `test -gt` reads decimal; single digits read the same in both.
inline constexpr std::uint32_t kMaxTrialTries = 9;

// What the bootloader reads and writes.
struct BootVariables {
  // Slots in the order they are tried. Empty means the scripts' default,
  // "A B". A slot may appear twice (a hand-edited environment); it is then
  // simply met again.
  std::vector<Slot> order;
  // Tries left per slot, indexed by SlotIndex().
  std::array<std::uint32_t, kSlotCount> tries_left{};

  bool operator==(const BootVariables&) const = default;
};

struct BootDecision {
  Slot slot = Slot::kA;         // the slot whose kernel starts
  BootVariables after;          // the variables as saved before the kernel starts
  bool counters_reset = false;  // no slot had tries left; all were re-armed
};

// The order the scripts walk: `order`, or "A B" when it is empty.
std::vector<Slot> EffectiveOrder(const BootVariables& variables);

// Pure and total: every input yields a slot. rearm_tries is kDefaultTries
// for U-Boot and the file backend, 1 for GRUB (whose TRY is a flag);
// a value of 0 is treated as 1.
BootDecision DecideBoot(const BootVariables& variables, std::uint32_t rearm_tries);

}  // namespace citadel::boot
