// StoredBootState <-> bootloader environment variables, for the U-Boot and
// GRUB backends. Pure, so the mapping is tested without the tools.
//
// U-Boot (RAUC): BOOT_ORDER="B A", BOOT_A_LEFT, BOOT_B_LEFT (one decimal
//   digit). Missing ones take the defaults of RAUC's script and ours
//   ("A B", 3), since that is what the bootloader will use.
// GRUB (RAUC): ORDER="B A", A_OK/A_TRY, B_OK/B_TRY. A slot has one try
//   left when OK=1 and TRY=0, none otherwise; written back as OK=1 TRY=0 or
//   OK=0 TRY=0. Missing ones take grub.cfg's defaults (ORDER "A B", A_OK=1,
//   B_OK=0, TRY 0).
// Both: Citadel's record as CITADEL_* variables (boot_transitions.hpp); a
//   missing CITADEL_PRIMARY means the first slot of the order, so an
//   environment set up by RAUC reads sensibly.
//
// Internal to src/boot.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "boot/boot_transitions.hpp"

namespace citadel::boot {

// Variables as listed by fw_printenv / grub-editenv list.
using EnvVariables = std::map<std::string, std::string>;
// Variables to write; nullopt deletes the variable.
using EnvAssignments = std::map<std::string, std::optional<std::string>>;

// "NAME=value" lines (split at the first '='; other lines ignored; the last
// of repeated names wins).
EnvVariables ParseEnvListing(std::string_view text);

EnvAssignments EncodeUbootState(const StoredBootState& stored);
// kParse naming the variable when a value is malformed.
Expected<StoredBootState> DecodeUbootState(const EnvVariables& variables);

EnvAssignments EncodeGrubState(const StoredBootState& stored);
Expected<StoredBootState> DecodeGrubState(const EnvVariables& variables);

}  // namespace citadel::boot
