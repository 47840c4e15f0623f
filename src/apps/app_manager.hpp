// Runs the installed apps: start, stop, restart after a crash with backoff,
// keep each app's recent output and policy violations, and remember which
// apps should run across citadeld restarts (the desired state in
// apps/state.json).
//
// Supervision: one thread waits (epoll) on every instance's exit fd and log
// pipe, a wake-up eventfd, and the nearest deadline (a backoff restart or a
// stop's SIGKILL). Each app is an independent state machine:
//
//   stopped ──Start──► starting ──launched──► running ──exit──► backoff ──delay──► starting
//      ▲                  │launch failed        │Stop: SIGTERM      (desired running)
//      │                  ▼                     ▼
//      └──────────────  failed        stopping ──grace──► SIGKILL + cgroup KillAll
//
// A crash-looping app costs one launch per backoff delay (1 s doubling to
// 60 s by default, reset after 30 s of uptime); nothing in the loop waits on
// one app, so others keep being served.
//
// Update trials (update::AppInstaller, for the update client): BeginTrial
// installs the new version through AppStore::BeginTrial, stopping the old
// instance only after every check passed, and starts the new one if the
// app was running or is meant to run. The trial is healthy once the new
// version's current instance has been up for `trial_period` (an app not
// meant to run has nothing to watch and is healthy at once); it is a crash
// loop once it exited `trial_max_exits` times during the trial (the exits
// are persisted with the trial, and restarts keep following the backoff
// meanwhile); it failed when it could not be started at all.
// RevertTrial stops the app, puts the previous version back and starts it
// again if it is meant to run. Install (sideload, development interface)
// over an installed app stays immediate: it is not a trial, and it is
// refused while a trial of that app is open.
//
// Security contract: the manager only launches apps the store lists with a
// policy that built; what an instance may do is entirely the launcher's
// (sandbox's) business. Violations reported by the Supervisor and the Broker
// are kept per app (last 256) and written to citadeld's log.
//
// Failure reporting (docs/ARCHITECTURE.md, "Failure reporting"): with a
// FailureSink in the options, the manager records one FailureEvent per
// instance exit it did not ask for (app-crash with the signal, app-exit
// with a non-zero status, sandbox-violation/seccomp-kill for SIGSYS; never
// for Stop, updates or shutdown, nor for a clean exit 0), one restart-loop
// when an app's backoff reaches its cap (again only after the backoff was
// reset), one runtime-error/app-start per launch failure and one
// sandbox-violation per reported violation. The kind of exit comes from the
// kernel (waitid); crash details (registers, frames, stack) come from the
// app's own crash handler through ReportCrash and are attached only when
// their signal matches the one the instance died of.
//
// Threading: every public method is safe from any thread. Start/Stop block
// until the transition finished (bounded by the launch and the stop grace).
// Callbacks from the store run on the caller's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "apps/app_store.hpp"
#include "apps/backoff.hpp"
#include "apps/launcher.hpp"
#include "apps/log_ring.hpp"
#include "common/error.hpp"
#include "common/time.hpp"
#include "common/unique_fd.hpp"
#include "protocol/failure_report.hpp"
#include "reports/failure_event.hpp"
#include "update/installers.hpp"

namespace citadel::apps {

struct ManagerOptions {
  RestartPolicy restart;
  Milliseconds stop_grace = std::chrono::seconds(3);  // SIGTERM -> SIGKILL
  Milliseconds kill_wait = std::chrono::seconds(2);   // SIGKILL -> give up waiting
  Milliseconds start_timeout = std::chrono::seconds(30);
  std::size_t log_lines = kDefaultLogLines;
  std::size_t log_bytes = kDefaultLogBytes;
  std::size_t max_violations = 256;
  // Update trials: healthy after this much uptime of the new version
  // (citadeld --update-trial-seconds); a crash loop after this many exits.
  Milliseconds trial_period = std::chrono::seconds(30);
  std::uint32_t trial_max_exits = 3;
  // Where failure events go (citadeld: the report collector); null: none
  // are recorded. Must outlive the manager; Record is called with the
  // manager's lock held (reports::FailureSink's contract allows it).
  reports::FailureSink* failure_sink = nullptr;
  // Measures an app's image into the root of trust before each launch
  // (citadeld: AppRuntime, register kApps); an error fails the launch, so
  // nothing runs unmeasured. Empty: no measurement (tests). Called without
  // the manager's lock.
  std::function<Expected<void>(const InstalledApp& app)> measure;
};

// Who refused what an app tried: the seccomp filter (a system call) or the
// broker (an applibs call). Decides the report's error code prefix.
enum class ViolationSource { kSeccomp, kBroker };

enum class RunState { kStopped, kStarting, kRunning, kStopping, kBackoff, kFailed };
std::string_view RunStateName(RunState state);

struct ViolationRecord {
  TimePoint time;
  std::string syscall;
  std::string detail;
};

struct AppStatus {
  InstalledApp app;
  RunState state = RunState::kStopped;
  pid_t pid = -1;
  std::uint64_t restarts = 0;  // automatic restarts since the last Start
  std::string last_exit;       // how the last instance ended, or why it failed to start
  std::optional<TimePoint> started_at;
  Milliseconds next_restart_in{0};  // kBackoff only
  std::size_t violations = 0;
  std::string problem;    // why the app cannot start at all ("" when it can)
  bool on_trial = false;  // an update of it is on trial (the previous version is kept)
};

class AppManager : public update::AppInstaller {
 public:
  static Expected<std::unique_ptr<AppManager>> Create(AppStore& store, AppLauncher& launcher,
                                                      ManagerOptions options = {});
  ~AppManager() override;
  AppManager(const AppManager&) = delete;
  AppManager& operator=(const AppManager&) = delete;

  // citadeld start: launches every app whose desired state is running.
  // Failures are logged per app and do not stop the others.
  void StartDesired();

  // Installs (AppStore::Install); an update of a running app stops the old
  // version after the new one passed every check and starts the new one.
  [[nodiscard]] Expected<InstalledApp> Install(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                               InstallSource source);
  // Marks the app running (persisted) and launches it; resets its backoff.
  [[nodiscard]] Expected<AppStatus> Start(std::string_view name_or_component_id);
  // Marks the app stopped (persisted) and stops it: SIGTERM, SIGKILL after
  // stop_grace, then the cgroup's KillAll.
  [[nodiscard]] Expected<AppStatus> Stop(std::string_view name_or_component_id);
  [[nodiscard]] Expected<void> Remove(std::string_view name_or_component_id);

  std::vector<AppStatus> List() const;
  Expected<AppStatus> Status(std::string_view name_or_component_id) const;
  Expected<std::vector<LogLine>> Logs(std::string_view name_or_component_id, std::size_t count) const;
  Expected<std::vector<ViolationRecord>> Violations(std::string_view name_or_component_id) const;

  // The sink for seccomp::Supervisor and broker::Broker; any thread. Never
  // waits long for the manager's lock (the callers hold their own lock,
  // which the supervision thread may be waiting for): when the lock stays
  // busy, the violation is recorded by the supervision loop shortly after.
  void ReportViolation(std::string_view component_id, std::string_view syscall, std::string_view detail,
                       ViolationSource source = ViolationSource::kSeccomp);

  // What the app's crash handler sent (broker op "crash"): `crash` without
  // frames, and the absolute program counters. Resolves them against the
  // app's current instance (/proc/<pid>/maps, build ids; crash_resolver.hpp)
  // and keeps the result until that instance's exit is handled. Call it
  // while the app is still alive (the broker does, before it answers).
  // Ignored for an app with no running instance. Any thread; the /proc
  // reads happen without the manager's lock.
  void ReportCrash(std::string_view component_id, protocol::CrashDetails crash, std::span<const std::uint64_t> pcs);

  // Automatic restarts (crashes and exits followed by a backoff restart) of
  // every app since the manager was created, for the telemetry heartbeat.
  std::uint64_t TotalRestarts() const;

  // Stops every instance (desired states unchanged) and the supervision
  // thread. Called by the destructor; idempotent.
  void Shutdown();

  // update::AppInstaller (contract in update/installers.hpp). Any thread;
  // BeginTrial and RevertTrial block while an instance stops and starts.
  std::vector<update::InstalledApp> InstalledApps() override;
  [[nodiscard]] Expected<void> BeginTrial(const std::filesystem::path& image_file,
                                          std::string_view expected_component_id) override;
  update::TrialHealth Trial(std::string_view component_id) override;
  std::string TrialFailure(std::string_view component_id) override;
  [[nodiscard]] Expected<void> CommitTrial(std::string_view component_id) override;
  [[nodiscard]] Expected<void> RevertTrial(std::string_view component_id) override;

 private:
  using SteadyClock = std::chrono::steady_clock;
  struct Supervised;
  struct FdTarget {
    std::string component_id;
    bool is_exit = false;  // exit fd, else log pipe
  };

  AppManager(AppStore& store, AppLauncher& launcher, ManagerOptions options, UniqueFd epoll, UniqueFd wake);
  void Loop();
  void Wake();
  Supervised& RecordLocked(const std::string& component_id);
  AppStatus StatusLocked(const InstalledApp& app) const;
  void LaunchNow(const std::string& component_id);
  void BeginStopLocked(Supervised& record);
  void HandleExitLocked(Supervised& record);
  struct PendingViolation {
    std::string component_id;
    std::string syscall;
    std::string detail;
    ViolationSource source = ViolationSource::kSeccomp;
    TimePoint time;
  };
  void RecordViolationLocked(const PendingViolation& violation);
  // Records the violations ReportViolation queued while mutex_ was busy.
  void DrainViolationsLocked();
  // Failure reporting (no-ops without a sink). `app` is null when the
  // store no longer knows the app.
  void RecordFailureLocked(const std::string& component_id, const InstalledApp* app, std::string failure_class,
                           std::string error_code, std::string message,
                           std::optional<protocol::CrashDetails> crash = std::nullopt);
  void ReportExitLocked(const std::string& component_id, const InstalledApp* app, const ExitStatus& status,
                        std::optional<protocol::CrashDetails> crash);
  // After a backoff delay was chosen: a restart-loop event when it reached the cap.
  void NoteBackoffLocked(Supervised& record, const std::string& component_id, const InstalledApp* app,
                         Milliseconds delay);
  void ReadLogLocked(Supervised& record, bool drain);
  void CloseLogLocked(Supervised& record);
  // Waits until `done` or the deadline; false on timeout.
  template <typename Predicate>
  bool WaitLocked(std::unique_lock<std::mutex>& lock, Milliseconds timeout, Predicate done);
  Expected<AppStatus> StopInstance(const std::string& component_id);
  // An exit (or failed restart) that the backoff will restart: counted
  // against an open trial.
  void CountTrialExitLocked(const std::string& component_id);
  // The stop-before-swap callback shared by Install and BeginTrial.
  // Sets `component_id` and, when an instance was stopped, `was_running`.
  AppStore::BeforeCommit StopOldVersion(bool& was_running, std::string& component_id);

  AppStore& store_;
  AppLauncher& launcher_;
  const ManagerOptions options_;
  UniqueFd epoll_;
  UniqueFd wake_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::unique_ptr<Supervised>, std::less<>> records_;
  std::map<int, FdTarget> fds_;
  bool stopping_thread_ = false;
  bool shut_down_ = false;
  std::uint64_t total_restarts_ = 0;

  // Crash notices arrive on the broker's thread with the broker's lock
  // held, and the supervision thread holds mutex_ while Reap removes an app
  // from the broker: so what ReportCrash needs has its own lock, which is
  // never held while taking another.
  struct CrashTarget {
    pid_t pid = -1;            // -1 while Launch runs
    std::uint64_t launch = 0;  // which instance: a notice resolved for an earlier one is dropped
    std::optional<protocol::CrashDetails> pending;
  };
  std::mutex crash_mutex_;
  std::condition_variable crash_target_ready_;                     // a launching instance got its pid
  std::map<std::string, CrashTarget, std::less<>> crash_targets_;  // guarded by crash_mutex_
  std::uint64_t launches_ = 0;                                     // guarded by crash_mutex_
  // Violations reported while mutex_ stayed busy (see ReportViolation).
  std::mutex queued_violations_mutex_;
  std::vector<PendingViolation> queued_violations_;  // guarded by queued_violations_mutex_
  std::thread thread_;
};

}  // namespace citadel::apps
