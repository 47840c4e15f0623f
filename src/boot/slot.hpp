// The two OS slots of an A/B device.
//
// Names are RAUC's bootnames, "A" and "B": they appear in the bootloader
// variables (BOOT_ORDER="A B", A_OK, ...) and on the kernel command line
// (rauc.slot=A), so makers' existing scripts and Citadel agree on them.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/error.hpp"

namespace citadel::boot {

enum class Slot { kA, kB };

inline constexpr std::size_t kSlotCount = 2;

// "A" or "B".
std::string_view SlotName(Slot slot);
// Accepts exactly "A" or "B"; anything else is kInvalidArgument.
Expected<Slot> ParseSlot(std::string_view name);
// The slot that is not `slot`.
Slot OtherSlot(Slot slot);
// 0 for A, 1 for B: the index into per-slot arrays.
std::size_t SlotIndex(Slot slot);

}  // namespace citadel::boot
