// BootRecord: how the previous run of citadeld ended, across reboots
// (docs/ARCHITECTURE.md, "Failure reporting", Unplanned reboots).
//
// STATE/reports/boot.json holds {"boot_id", "clean", "reason",
// "started_at", "panic_records"}. Open() reads it, decides what happened,
// and rewrites it for this start (this boot's id, clean: false) before it
// returns, so a crash from then on is seen by the next start:
//   no record, or the last stop was clean        -> nothing
//   same boot id, not clean                      -> runtime-error / runtime-restart
//   another boot id, not clean                   -> unplanned-reboot with
//       "watchdog"      a watchdog's bootstatus has WDIOF_CARDRESET set,
//       "kernel-panic"  pstore holds a panic record not seen before,
//       "power-loss"    otherwise.
// MarkClean(reason) records a requested stop (SIGTERM, reboot for an
// update); call it only when the runtime is about to exit on purpose.
//
// pstore records stay until something deletes them, so the names of the
// panic records already present are remembered in boot.json: an old panic
// does not explain a later power loss.
//
// Threading: not thread-safe; used from citadeld's main thread.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/time.hpp"
#include "reports/failure_event.hpp"

namespace citadel::reports {

struct BootRecordOptions {
  std::filesystem::path reports_dir;  // STATE/reports; boot.json lives there
  // The kernel's id of this boot; a virtual device passes a file of its own
  // (citadeld --boot-id-file) so that its "reboots" can be simulated.
  std::filesystem::path boot_id_file = "/proc/sys/kernel/random/boot_id";
  // Each <watchdog_root>/watchdog*/bootstatus is read (sysfs; tests pass a tree).
  std::filesystem::path watchdog_root = "/sys/class/watchdog";
  std::filesystem::path pstore_root = "/sys/fs/pstore";
  std::function<TimePoint()> now{};  // empty: Clock::now
};

class BootRecord {
 public:
  // Fails when the boot id cannot be read or boot.json cannot be written
  // (an unreadable old boot.json counts as no record).
  static Expected<BootRecord> Open(BootRecordOptions options);

  // The event describing how the previous run ended, if it was a failure
  // (at most one per start). citadeld passes it to its FailureSink.
  const std::optional<FailureEvent>& start_event() const { return start_event_; }
  const std::string& boot_id() const { return boot_id_; }

  // Records a clean, requested stop ("sigterm", "update-reboot", ...).
  Expected<void> MarkClean(std::string_view reason);

 private:
  explicit BootRecord(BootRecordOptions options) : options_(std::move(options)) {}
  Expected<void> Write(bool clean, std::string_view reason);
  std::string DetectRebootReason(const std::vector<std::string>& known_panics);

  BootRecordOptions options_;
  std::string boot_id_;
  std::string started_at_;
  std::vector<std::string> panic_records_;  // present at this start
  std::optional<FailureEvent> start_event_;
};

// Helpers, exposed for tests: whether a watchdog under `root` reports that
// it reset the machine, and the pstore panic records under `root`.
bool WatchdogCausedReset(const std::filesystem::path& root);
std::vector<std::string> PstorePanicRecords(const std::filesystem::path& root);

}  // namespace citadel::reports
