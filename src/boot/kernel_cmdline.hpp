// The booted slot as the bootloader announced it: rauc.slot=A or
// rauc.slot=B on the kernel command line (RAUC's convention, set by the
// scripts in src/boot/scripts and by makers' RAUC scripts alike).
//
// Internal to src/boot.
#pragma once

#include <filesystem>
#include <string_view>

#include "boot/slot.hpp"
#include "common/error.hpp"

namespace citadel::boot {

// The value of the last rauc.slot= parameter (the kernel's rule for repeated
// parameters). kFailedPrecondition when there is none or it is not A or B.
Expected<Slot> BootedSlotFromCmdline(std::string_view cmdline);
// Reads `path` (normally /proc/cmdline) and parses it.
Expected<Slot> ReadBootedSlot(const std::filesystem::path& path);

}  // namespace citadel::boot
