// The GRUB backend: the environment block (normally /boot/grub/grubenv)
// through grub-editenv, with RAUC's variables (env_encoding.hpp) and
// src/boot/scripts/grub.cfg as the bootloader side. The booted slot is
// rauc.slot= on the kernel command line.
//
// GRUB's TRY is a flag, so a trial gets one boot (MaxTrialTries() == 1),
// as with RAUC.
//
// Crash safety: grub-editenv rewrites the block in place (open with
// O_TRUNC, then write), so a power cut can leave it empty. It therefore
// edits a private copy, which is then put in place with one atomic replace
// (WriteFileAtomic). GRUB's own save_env at boot writes the same 1 KiB block
// in place, which it can do on any file that is not sparse.
//
// A missing block is an error, never created here: `grub-editenv FILE list`
// would silently create an empty one, hiding a wrong path.
#pragma once

#include <filesystem>
#include <memory>

#include "boot/env_encoding.hpp"
#include "boot/stored_boot_control.hpp"

namespace citadel::boot {

class GrubBootControl final : public StoredBootControl {
 public:
  // Checks that `grubenv` exists and grub-editenv is installed ("install
  // grub-common" otherwise).
  static Expected<std::unique_ptr<GrubBootControl>> Open(const std::filesystem::path& grubenv,
                                                         const OpenOptions& options);

  std::string_view Backend() const override { return "grub"; }

 protected:
  Expected<Snapshot> Load() override;
  [[nodiscard]] Expected<void> Store(const StoredBootState& stored, Slot booted) override;

 private:
  GrubBootControl(std::filesystem::path grubenv, std::filesystem::path editenv, OpenOptions options)
      : StoredBootControl(kFlagLoader),
        grubenv_(std::move(grubenv)),
        editenv_(std::move(editenv)),
        options_(std::move(options)) {}

  // The block's bytes; a clear error when it is missing.
  Expected<std::string> ReadBlock() const;
  // Runs grub-editenv on `file` with `args` after the file name.
  Expected<std::string> Edit(const std::filesystem::path& file, std::vector<std::string> args) const;

  std::filesystem::path grubenv_;
  std::filesystem::path editenv_;
  OpenOptions options_;
};

}  // namespace citadel::boot
