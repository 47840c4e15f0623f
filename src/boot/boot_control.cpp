#include "boot/boot_control.hpp"

#include <string>

#include "boot/file/file_boot_control.hpp"
#include "boot/grub/grub_boot_control.hpp"
#include "boot/uboot/uboot_boot_control.hpp"
#include "common/json_fields.hpp"

namespace citadel::boot {
namespace {

constexpr std::string_view kSpecForms = "file:DIR, uboot:FW_ENV_CONFIG or grub:GRUBENV";

template <typename Backend>
Expected<std::unique_ptr<BootControl>> Generic(Expected<std::unique_ptr<Backend>> control) {
  if (!control) return std::unexpected(std::move(control).error());
  return std::unique_ptr<BootControl>(std::move(*control));
}

}  // namespace

Expected<Slot> BootControl::SimulateBoot() {
  return MakeError(ErrorCode::kFailedPrecondition,
                   "the " + std::string(Backend()) +
                       " backend has a real bootloader; only the file backend simulates "
                       "a boot");
}

Expected<std::unique_ptr<BootControl>> Open(std::string_view spec, const OpenOptions& options) {
  std::size_t colon = spec.find(':');
  if (colon == std::string_view::npos || colon + 1 == spec.size()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "boot control " + json_fields::Quote(spec) + ": expected " + std::string(kSpecForms));
  }
  std::string_view backend = spec.substr(0, colon);
  std::filesystem::path path(spec.substr(colon + 1));
  if (backend == "file") return Generic(FileBootControl::Open(path));
  if (backend == "uboot") return Generic(UbootBootControl::Open(path, options));
  if (backend == "grub") return Generic(GrubBootControl::Open(path, options));
  return MakeError(ErrorCode::kInvalidArgument, "unknown boot control backend " + json_fields::Quote(backend) +
                                                    ": expected " + std::string(kSpecForms));
}

}  // namespace citadel::boot
