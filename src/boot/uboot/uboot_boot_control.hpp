// The U-Boot backend: the environment through libubootenv's tools,
//   fw_printenv -c FW_ENV_CONFIG            (read)
//   fw_setenv   -c FW_ENV_CONFIG -s SCRIPT  (all changes in one write)
// with RAUC's variables (env_encoding.hpp) and src/boot/scripts/
// uboot-boot.cmd as the bootloader side. The booted slot is rauc.slot= on
// the kernel command line.
//
// Crash safety needs a redundant environment: FW_ENV_CONFIG must name two
// copies (two lines); libubootenv then writes the inactive copy and flips
// its flag, so a power cut leaves the old or the new environment. With one
// copy, a cut during the write can corrupt it and U-Boot falls back to its
// built-in default environment.
//
// Every write is read back: libubootenv 0.3's fw_setenv exits 0 even when it
// cannot read the script, and U-Boot's own fw_setenv reads "NAME value"
// lines, not libubootenv's "NAME=value"; either would otherwise pass
// silently.
#pragma once

#include <filesystem>
#include <memory>

#include "boot/env_encoding.hpp"
#include "boot/stored_boot_control.hpp"

namespace citadel::boot {

class UbootBootControl final : public StoredBootControl {
 public:
  // Checks that `config` is readable and the tools exist ("install
  // libubootenv-tool" otherwise). The environment itself is read later.
  static Expected<std::unique_ptr<UbootBootControl>> Open(const std::filesystem::path& config,
                                                          const OpenOptions& options);

  std::string_view Backend() const override { return "uboot"; }

 protected:
  Expected<Snapshot> Load() override;
  [[nodiscard]] Expected<void> Store(const StoredBootState& stored, Slot booted) override;

 private:
  UbootBootControl(std::filesystem::path config, std::filesystem::path printenv, std::filesystem::path setenv,
                   OpenOptions options)
      : StoredBootControl(kCountingLoader),
        config_(std::move(config)),
        printenv_(std::move(printenv)),
        setenv_(std::move(setenv)),
        options_(std::move(options)) {}

  Expected<StoredBootState> ReadStored();

  std::filesystem::path config_;
  std::filesystem::path printenv_;
  std::filesystem::path setenv_;
  OpenOptions options_;
};

}  // namespace citadel::boot
