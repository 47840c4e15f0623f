// A/B boot control: which OS slot runs, which one is committed, and a
// bounded trial of the other one.
//
// The OS update flow (docs/ARCHITECTURE.md, "Device: UpdateClient"):
//   1. the updater writes the new OS into the inactive slot, then calls
//      StartTrial(slot, tries): the next boots try `slot` at most `tries`
//      times;
//   2. on every boot the runtime (citadeld, citadel-init) reads ReadState();
//      once it is healthy it calls Commit(): on the trial slot that makes it
//      the primary (known good) slot, with no more tries;
//   3. if the trial slot never gets that far, its tries run out and the
//      bootloader returns to the primary slot. ReadState() there shows
//      last_failure until the runtime has reported it and calls
//      AcknowledgeFailure().
//
// Backends, chosen in one place (Open):
//   file:DIR               development, tests, the virtual fleet, `make run`:
//                          DIR/boot-state.json, and SimulateBoot() plays the
//                          bootloader;
//   uboot:FW_ENV_CONFIG    the U-Boot environment through libubootenv's
//                          fw_printenv/fw_setenv -c FW_ENV_CONFIG;
//   grub:GRUBENV           the GRUB environment block through grub-editenv.
// The bootloader side lives in src/boot/scripts (see its README.md); it uses
// RAUC's variables, and the booted slot comes from the kernel command line
// (rauc.slot=A), as with RAUC.
//
// Crash safety: every change is one atomic write of the whole variable set
// (an atomic file replace; fw_setenv -s, which is atomic when fw_env.config
// names a redundant environment, two copies; grub-editenv on a copy renamed
// over the block). A power cut at any moment leaves the old or the new state,
// and every state a write can produce boots a slot.
//
// Threading: a BootControl is used from one thread at a time, and one process
// (the runtime) should own the boot control of a device; two processes
// changing it at once may lose one change.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boot/slot.hpp"
#include "common/error.hpp"

namespace citadel::boot {

struct Trial {
  Slot slot = Slot::kB;
  // Boots the bootloader will still attempt on `slot`. 0 while the last try
  // runs: the runtime may still commit it.
  std::uint32_t tries_left = 0;

  bool operator==(const Trial&) const = default;
};

struct TrialFailure {
  Slot slot = Slot::kB;
  std::string reason;  // for people: printable ASCII, bounded

  bool operator==(const TrialFailure&) const = default;
};

struct BootState {
  Slot booted = Slot::kA;   // what is running now
  Slot primary = Slot::kA;  // the committed, known-good slot
  // The slot under trial, if any. Absent once the trial failed.
  std::optional<Trial> trial;
  // A trial that failed (tries ran out, or FailTrial) and has not been
  // acknowledged yet.
  std::optional<TrialFailure> last_failure;

  bool operator==(const BootState&) const = default;
};

class BootControl {
 public:
  virtual ~BootControl() = default;

  // "file", "uboot" or "grub".
  virtual std::string_view Backend() const = 0;
  // The most tries StartTrial grants here: kMaxTrialTries, but 1 on GRUB,
  // whose A_TRY/B_TRY are flags (RAUC's convention); larger requests are
  // granted this many.
  virtual std::uint32_t MaxTrialTries() const = 0;

  virtual Expected<BootState> ReadState() = 0;

  // Called after the inactive slot was written: the next boots try `slot` at
  // most `tries` times (1..kMaxTrialTries), then fall back to the primary.
  // The running slot must be the primary, `slot` the other one, and no
  // failure may be waiting to be acknowledged (it would be lost).
  // SECURITY: call only after the image in `slot` was verified; the
  // bootloader boots whatever is there.
  [[nodiscard]] virtual Expected<void> StartTrial(Slot slot, std::uint32_t tries) = 0;

  // The runtime is healthy. Call it on every boot, not only after an
  // update: on the trial slot, that slot becomes the primary and the other
  // slot stops being bootable (it is the next update's target; a fallback
  // into a half-written slot must be impossible). On the primary it re-arms
  // the primary's counter, which RAUC's scripts take down on every boot.
  // Fails when the running slot is neither (a bootloader fallback into the
  // other slot is not made primary behind anyone's back).
  [[nodiscard]] virtual Expected<void> Commit() = 0;

  // Abandons a trial that has not failed (no-op without one): the next boot
  // runs the primary. Not recorded as a failure.
  [[nodiscard]] virtual Expected<void> CancelTrial() = 0;

  // The runtime on the trial slot found it unhealthy: the trial ends now,
  // recorded as failed with `reason`, and the next boot runs the primary
  // (without waiting for the tries to run out).
  [[nodiscard]] virtual Expected<void> FailTrial(std::string_view reason) = 0;

  // Clears last_failure once it was reported. No-op without one.
  [[nodiscard]] virtual Expected<void> AcknowledgeFailure() = 0;

  // Development backends only (file): plays the bootloader's part of one
  // power-on (DecideBoot) and records the slot as booted. Real backends
  // return kFailedPrecondition: their bootloader does this.
  [[nodiscard]] virtual Expected<Slot> SimulateBoot();
};

struct OpenOptions {
  // Where uboot and grub learn the booted slot: rauc.slot=A|B, put on the
  // kernel command line by the boot scripts.
  std::filesystem::path kernel_cmdline = "/proc/cmdline";
  // Searched in order for fw_printenv, fw_setenv and grub-editenv. The
  // tools run with exactly this PATH and LC_ALL=C, nothing else inherited.
  std::vector<std::filesystem::path> tool_directories = {"/usr/sbin", "/usr/bin", "/sbin", "/bin"};
  // Bound on one run of a tool; it is killed after.
  std::chrono::milliseconds tool_timeout{20000};
};

// Opens the backend named by `spec`: "file:DIR", "uboot:FW_ENV_CONFIG" or
// "grub:GRUBENV". The file backend creates DIR and a factory state (slot A
// booted and primary, B not bootable) when missing; the others check that
// their tools and files exist, with what to install or create if not.
Expected<std::unique_ptr<BootControl>> Open(std::string_view spec, const OpenOptions& options = {});

}  // namespace citadel::boot
