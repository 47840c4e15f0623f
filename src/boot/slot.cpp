#include "boot/slot.hpp"

#include "common/json_fields.hpp"

namespace citadel::boot {

std::string_view SlotName(Slot slot) { return slot == Slot::kA ? "A" : "B"; }

Expected<Slot> ParseSlot(std::string_view name) {
  if (name == "A") return Slot::kA;
  if (name == "B") return Slot::kB;
  return MakeError(ErrorCode::kInvalidArgument, "unknown slot " + json_fields::Quote(name) + ": expected A or B");
}

Slot OtherSlot(Slot slot) { return slot == Slot::kA ? Slot::kB : Slot::kA; }

std::size_t SlotIndex(Slot slot) { return slot == Slot::kA ? 0 : 1; }

}  // namespace citadel::boot
