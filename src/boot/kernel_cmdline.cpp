#include "boot/kernel_cmdline.hpp"

#include <optional>
#include <string>

#include "common/file.hpp"
#include "common/json_fields.hpp"

namespace citadel::boot {
namespace {

constexpr std::string_view kParameter = "rauc.slot=";
constexpr std::size_t kMaxCmdlineBytes = 64 * 1024;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

Expected<Slot> BootedSlotFromCmdline(std::string_view cmdline) {
  std::optional<std::string_view> value;
  std::size_t position = 0;
  while (position < cmdline.size()) {
    while (position < cmdline.size() && IsSpace(cmdline[position])) ++position;
    std::size_t end = position;
    while (end < cmdline.size() && !IsSpace(cmdline[end])) ++end;
    std::string_view word = cmdline.substr(position, end - position);
    if (word.starts_with(kParameter)) value = word.substr(kParameter.size());
    position = end;
  }
  if (!value) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the kernel command line has no rauc.slot=A or rauc.slot=B: the boot script must pass the "
                     "booted slot (see src/boot/scripts)");
  }
  auto slot = ParseSlot(*value);
  if (!slot) {
    return MakeError(ErrorCode::kFailedPrecondition, "the kernel command line names slot " +
                                                         json_fields::Quote(*value) + "; expected rauc.slot=A or B");
  }
  return *slot;
}

Expected<Slot> ReadBootedSlot(const std::filesystem::path& path) {
  auto text = ReadFile(path, kMaxCmdlineBytes);
  if (!text) return WrapError(text.error(), "reading the booted slot");
  auto slot = BootedSlotFromCmdline(*text);
  if (!slot) return WrapError(slot.error(), path.string());
  return *slot;
}

}  // namespace citadel::boot
