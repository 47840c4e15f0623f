// The update client's one durable record, STATE/update/state.json: what it
// is in the middle of (one work item per component), the reports not yet
// acknowledged by the service, targets it refused, what each OS slot holds,
// and which repositories and director timestamp it last worked from.
//
// Crash safety: every change is one WriteFileAtomic of the whole document
// (temporary file, fsync, rename, fsync of the directory), made BEFORE the
// in-memory copy changes, so a kill at any moment leaves the old or the new
// state on disk and the process never acts on a state that is not durable.
// Each step of the client is written so that re-running it from the last
// durable state is correct (docs/ARCHITECTURE.md, "Device: UpdateClient").
//
// The file is the device's own, but it is still parsed strictly: a state
// that does not parse is refused (Open fails, saying which file and how to
// reset it) rather than guessed at. Nothing in it is security-critical on
// its own: floors live in RoT counters, and every image is verified against
// signed metadata before it is used.
//
// Threading: StateFile is thread-safe; Update() serialises writers and
// Snapshot() returns a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"

namespace citadel::update {

// Report states on the wire (docs/PROTOCOL.md, "Check-in additions").
inline constexpr std::string_view kReportDownloading = "downloading";
inline constexpr std::string_view kReportInstalling = "installing";
inline constexpr std::string_view kReportPendingReboot = "pending-reboot";
inline constexpr std::string_view kReportCommitted = "committed";
inline constexpr std::string_view kReportFailed = "failed";

// Bounds: reports wait here until acknowledged; when the service is away for
// long, the oldest are dropped (the newest say where the device is now).
inline constexpr std::size_t kMaxQueuedReports = 256;
inline constexpr std::size_t kMaxReasonBytes = 256;

// Where a component's update is. Each step's work is idempotent.
enum class WorkStep {
  kDownloading,    // fetch (delta or full) into downloads/, verified
  kInstalling,     // app: BeginTrial; OS: write the inactive slot, StartTrial
  kTrial,          // app: trial running, polled until healthy or failed
  kPendingReboot,  // OS: trial armed, waiting for the reboot
  kOsTrial,        // OS: booted the trial slot; commit after a check-in
};
std::string_view WorkStepName(WorkStep step);

// What a target claims to be (custom.citadel of the signed metadata).
struct TargetIdentity {
  std::string kind;  // "app" | "os"
  std::string component_id;
  std::string version;
  std::int64_t security_version = 0;

  bool operator==(const TargetIdentity&) const = default;
};

struct WorkItem {
  TargetIdentity identity;
  std::string target_name;
  std::string deployment_id;
  std::int64_t length = 0;
  std::map<std::string, std::string> hashes;  // as signed (image repository == director)
  WorkStep step = WorkStep::kDownloading;
  std::string slot;                   // OS: the slot written ("A"/"B"), once installing
  std::int64_t trial_started_at = 0;  // app: Unix seconds when the trial began
  std::string last_reported;          // the last report state queued for it

  std::string Sha256() const;
};

struct Report {
  std::uint64_t sequence = 0;  // local, increasing; not sent
  std::string deployment_id;
  std::string target_name;
  std::string state;        // kReport*
  std::string reason;       // for "failed"; empty otherwise
  std::string reported_at;  // RFC 3339
};

// What an OS slot holds, recorded when the client wrote it.
struct SlotRecord {
  std::string target_name;
  std::string version;
  std::int64_t security_version = 0;
  std::string sha256;
};

struct UpdateState {
  // Repository paths (from the check-in reply) the local metadata belongs to.
  std::string image_repository;
  std::string director;
  // The director timestamp version the last complete pass worked from.
  std::int64_t director_timestamp_version = 0;
  // A maintenance window kept assigned work waiting.
  bool deferred_by_window = false;
  std::map<std::string, WorkItem> work;        // by component id
  std::map<std::string, std::string> refused;  // component id -> sha256 not to try again
  std::vector<Report> reports;                 // oldest first
  std::uint64_t next_sequence = 1;
  std::map<std::string, SlotRecord> os_slots;  // "A" / "B"

  // Appends a report (dropping the oldest beyond kMaxQueuedReports); the
  // reason is cut to kMaxReasonBytes.
  void AddReport(std::string_view deployment_id, std::string_view target_name, std::string_view state,
                 std::string_view reason, std::string reported_at);
};

Json UpdateStateToJson(const UpdateState& state);
Expected<UpdateState> ParseUpdateState(std::string_view text);

class StateFile {
 public:
  // Loads `path`, or starts empty when it does not exist (the directory is
  // created). A file that does not parse is an error naming it.
  static Expected<std::unique_ptr<StateFile>> Open(const std::filesystem::path& path);

  UpdateState Snapshot() const;
  // Applies `change` to a copy, writes it atomically, then adopts it. When
  // the write fails nothing changes (in memory or on disk). FaultPoint()
  // marks the write unless `fault_points` is false: writes made on the
  // agent's thread (dropping acknowledged reports) are left out so that the
  // N-th point of an update does not depend on when check-ins happen.
  [[nodiscard]] Expected<void> Update(const std::function<void(UpdateState&)>& change, bool fault_points = true);

  const std::filesystem::path& path() const { return path_; }

 private:
  StateFile(std::filesystem::path path, UpdateState state) : path_(std::move(path)), state_(std::move(state)) {}

  std::filesystem::path path_;
  mutable std::mutex mutex_;
  UpdateState state_;
};

}  // namespace citadel::update
