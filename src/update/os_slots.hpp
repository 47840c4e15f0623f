// Where OS images go: the two A/B slots, as the update client writes them
// (the bootloader side, which slot boots, is boot::BootControl).
//
// Backends, chosen in one place (OpenOsSlots):
//   file:DIR   development, tests, the virtual fleet, `make run`: each slot is
//              a plain file, DIR/slot-A.img and DIR/slot-B.img, and citadeld
//              measures the booted slot's file as its OS image.
// A block-device backend (partitions named by the board) is the same
// interface; it is not written yet because nothing boots from these slots
// before the reference OS image exists.
//
// Threading: one writer at a time (the update client's thread).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "boot/boot_control.hpp"
#include "boot/slot.hpp"
#include "common/error.hpp"

namespace citadel::update {

class OsSlots {
 public:
  virtual ~OsSlots() = default;

  // The file holding the slot's image (to measure it, or as a delta base).
  virtual std::filesystem::path ImagePath(boot::Slot slot) const = 0;

  // Replaces the slot's content with `image` (`length` bytes): streamed in
  // bounded chunks, fsync'd before returning. Not atomic, like a partition
  // write: a cut leaves the slot half-written, which is harmless because the
  // caller arms a trial (BootControl::StartTrial) only after the write
  // returned and the slot was verified. Calls FaultPoint per chunk.
  [[nodiscard]] virtual Expected<void> Write(boot::Slot slot, const std::filesystem::path& image,
                                             std::uint64_t length) = 0;
};

class FileOsSlots final : public OsSlots {
 public:
  // Creates DIR when missing; slot files appear when first written (the
  // factory image of slot A is put there by whoever sets the device up).
  static Expected<std::unique_ptr<FileOsSlots>> Open(const std::filesystem::path& directory);

  std::filesystem::path ImagePath(boot::Slot slot) const override;
  [[nodiscard]] Expected<void> Write(boot::Slot slot, const std::filesystem::path& image,
                                     std::uint64_t length) override;

 private:
  explicit FileOsSlots(std::filesystem::path directory) : directory_(std::move(directory)) {}
  std::filesystem::path directory_;
};

// The bootloader's part of a power-on, as far as the runtime can see it: on
// the file boot backend (no bootloader) SimulateBoot() plays it; on real
// backends the bootloader already chose and this reads which slot it was.
// citadeld calls it once at start, before measuring the OS.
Expected<boot::Slot> BootAtStart(boot::BootControl& boot);

}  // namespace citadel::update
