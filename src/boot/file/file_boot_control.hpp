// The file backend: development, tests, the virtual fleet and `make run`.
//
// The state lives in DIR/boot-state.json, replaced atomically on every
// change (WriteFileAtomic: temporary file, fsync, rename, fsync of DIR), so
// a crash leaves the old or the new state. There is no bootloader: the
// runtime calls SimulateBoot() at start to play its part (DecideBoot), and
// the booted slot is kept in the file. Nothing here boots a real OS.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "boot/stored_boot_control.hpp"

namespace citadel::boot {

class FileBootControl final : public StoredBootControl {
 public:
  static constexpr std::string_view kStateFileName = "boot-state.json";

  // Creates `directory` and a factory state (A booted and primary, B not
  // bootable) when missing. Fails, without repairing anything, when an
  // existing state file does not parse: resetting it could lose a trial.
  static Expected<std::unique_ptr<FileBootControl>> Open(const std::filesystem::path& directory);

  std::string_view Backend() const override { return "file"; }
  // Applies DecideBoot to the stored variables (taking a try, falling back,
  // re-arming when nothing is left) and records the chosen slot as booted.
  [[nodiscard]] Expected<Slot> SimulateBoot() override;

  const std::filesystem::path& state_path() const { return state_path_; }

 protected:
  Expected<Snapshot> Load() override;
  [[nodiscard]] Expected<void> Store(const StoredBootState& stored, Slot booted) override;

 private:
  explicit FileBootControl(std::filesystem::path state_path)
      : StoredBootControl(kCountingLoader), state_path_(std::move(state_path)) {}

  std::filesystem::path state_path_;
};

}  // namespace citadel::boot
