#include "apps/app_manager.hpp"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "apps/crash_resolver.hpp"
#include "common/log.hpp"

namespace citadel::apps {
namespace {

// Bytes read from one log pipe per wake-up, so one chatty app cannot hold
// the loop (the level-triggered epoll returns to it on the next round).
constexpr std::size_t kLogReadBudget = 64 * 1024;
constexpr auto kMaxLoopWait = std::chrono::hours(1);
// ReportViolation: how long it waits for the manager's lock before it
// leaves the violation to the loop, and how many can wait there (a flood
// beyond that is still in citadeld's log).
constexpr Milliseconds kViolationLockWait{200};
constexpr std::size_t kMaxQueuedViolations = 1024;
// ReportCrash for an app whose Launch has not returned yet: how long it
// waits for the pid (well within the handler's 2 s wait for the answer).
constexpr Milliseconds kCrashLaunchWait{1000};

std::string ErrnoText(int error) { return ::strerrordesc_np(error) != nullptr ? ::strerrordesc_np(error) : "error"; }

std::string HexAddress(std::uint64_t value) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string digits;
  do {
    digits.insert(digits.begin(), kDigits[value & 0xFU]);
    value >>= 4U;
  } while (value != 0);
  return "0x" + digits;
}

// "crashy 1.2.0", or the name alone for an app without a version.
std::string AppLabel(const std::string& component_id, const InstalledApp* app) {
  if (app == nullptr) return "app " + component_id;
  return app->version.empty() ? app->name : app->name + " " + app->version;
}

}  // namespace

std::string ExitStatus::Describe() const {
  std::string text;
  if (exited) {
    text = "exited with status " + std::to_string(code);
  } else {
    const char* name = ::sigabbrev_np(signal);
    text = "killed by signal " + std::to_string(signal) + (name != nullptr ? std::string(" (SIG") + name + ")" : "");
  }
  if (oom_killed) text += " (out of memory: the cgroup's memory limit was reached)";
  return text;
}

std::string_view RunStateName(RunState state) {
  switch (state) {
    case RunState::kStopped:
      return "stopped";
    case RunState::kStarting:
      return "starting";
    case RunState::kRunning:
      return "running";
    case RunState::kStopping:
      return "stopping";
    case RunState::kBackoff:
      return "backoff";
    case RunState::kFailed:
      return "failed";
  }
  return "unknown";
}

struct AppManager::Supervised {
  explicit Supervised(const ManagerOptions& options)
      : log(options.log_lines, options.log_bytes), backoff(options.restart) {}

  LogRing log;
  std::deque<ViolationRecord> violations;
  RunState state = RunState::kStopped;
  std::unique_ptr<RunningApp> instance;
  UniqueFd log_read;
  RestartBackoff backoff;
  SteadyClock::time_point started_steady{};
  SteadyClock::time_point restart_at{};
  SteadyClock::time_point kill_at{};
  std::optional<TimePoint> started_at;
  bool launch_pending = false;  // the loop launches it on its next round
  bool operator_start = false;  // a launch failure is reported, not retried
  bool stop_requested = false;
  bool killed = false;
  std::uint64_t restarts = 0;
  std::string last_exit;
  // Failure reporting: whether the backoff's cap was already reported.
  bool restart_loop_reported = false;
};

AppManager::AppManager(AppStore& store, AppLauncher& launcher, ManagerOptions options, UniqueFd epoll, UniqueFd wake)
    : store_(store),
      launcher_(launcher),
      options_(std::move(options)),
      epoll_(std::move(epoll)),
      wake_(std::move(wake)) {}

Expected<std::unique_ptr<AppManager>> AppManager::Create(AppStore& store, AppLauncher& launcher,
                                                         ManagerOptions options) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return MakeError(ErrorCode::kInternal, "epoll_create1: " + ErrnoText(errno));
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return MakeError(ErrorCode::kInternal, "eventfd: " + ErrnoText(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wake.get();
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &event) != 0) {
    return MakeError(ErrorCode::kInternal, "epoll_ctl: " + ErrnoText(errno));
  }
  std::unique_ptr<AppManager> manager(
      new AppManager(store, launcher, std::move(options), std::move(epoll), std::move(wake)));
  manager->thread_ = std::thread([raw = manager.get()] { raw->Loop(); });
  return manager;
}

AppManager::~AppManager() { Shutdown(); }

void AppManager::Wake() {
  std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

AppManager::Supervised& AppManager::RecordLocked(const std::string& component_id) {
  auto found = records_.find(component_id);
  if (found == records_.end()) {
    found = records_.emplace(component_id, std::make_unique<Supervised>(options_)).first;
  }
  return *found->second;
}

template <typename Predicate>
bool AppManager::WaitLocked(std::unique_lock<std::mutex>& lock, Milliseconds timeout, Predicate done) {
  return changed_.wait_for(lock, timeout, done);
}

// ---- supervision thread -----------------------------------------------------

void AppManager::Loop() {
  std::array<epoll_event, 16> events{};
  while (true) {
    std::vector<std::string> to_launch;
    auto next = SteadyClock::time_point::max();
    {
      std::lock_guard lock(mutex_);
      if (stopping_thread_) return;
      DrainViolationsLocked();
      auto now = SteadyClock::now();
      for (auto& [component_id, record] : records_) {
        if (record->state == RunState::kBackoff) {
          if (record->restart_at <= now && !shut_down_) {
            record->state = RunState::kStarting;
            record->launch_pending = true;
            record->operator_start = false;
          } else {
            next = std::min(next, record->restart_at);
          }
        }
        if (record->state == RunState::kStarting && record->launch_pending) {
          record->launch_pending = false;
          to_launch.push_back(component_id);
        }
        if (record->state == RunState::kStopping && !record->killed && record->instance) {
          if (record->kill_at <= now) {
            log::Warn("app did not stop after SIGTERM; killing it", {{"component_id", component_id}});
            record->log.AppendLine("[citadeld] no exit within the stop grace period: SIGKILL", Clock::now());
            (void)record->instance->Signal(SIGKILL);
            (void)record->instance->KillAll();
            record->killed = true;
          } else {
            next = std::min(next, record->kill_at);
          }
        }
      }
    }
    if (!to_launch.empty()) {
      for (const auto& component_id : to_launch) LaunchNow(component_id);
      continue;
    }

    int timeout_ms = -1;
    if (next != SteadyClock::time_point::max()) {
      auto wait = std::chrono::ceil<Milliseconds>(next - SteadyClock::now());
      wait = std::clamp<Milliseconds>(wait, Milliseconds(0), kMaxLoopWait);
      timeout_ms = static_cast<int>(wait.count());
    }
    int count = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    if (count < 0) {
      if (errno == EINTR) continue;
      log::Error("app supervision: epoll_wait failed; apps are no longer supervised", {{"error", ErrnoText(errno)}});
      return;
    }
    std::lock_guard lock(mutex_);
    for (int i = 0; i < count; ++i) {
      int fd = events[static_cast<std::size_t>(i)].data.fd;
      if (fd == wake_.get()) {
        std::uint64_t value = 0;
        (void)!::read(wake_.get(), &value, sizeof value);
        continue;
      }
      auto target = fds_.find(fd);
      if (target == fds_.end()) continue;  // closed earlier in this round
      auto record = records_.find(target->second.component_id);
      if (record == records_.end()) continue;
      if (target->second.is_exit) {
        HandleExitLocked(*record->second);
      } else {
        ReadLogLocked(*record->second, false);
      }
    }
    changed_.notify_all();
  }
}

void AppManager::LaunchNow(const std::string& component_id) {
  LaunchRequest request;
  std::optional<InstalledApp> to_measure;
  UniqueFd read_end;
  UniqueFd write_end;
  Expected<std::unique_ptr<RunningApp>> launched = MakeError(ErrorCode::kInternal, "not launched");
  {
    std::lock_guard lock(mutex_);
    auto found = records_.find(component_id);
    if (found == records_.end() || found->second->state != RunState::kStarting) return;
    Supervised& record = *found->second;
    auto fail = [&](const Error& error) {
      record.last_exit = "failed to start: " + error.message();
      record.log.AppendLine("[citadeld] " + record.last_exit, Clock::now());
      log::Error("app failed to start", {{"component_id", component_id}, {"reason", error.message()}});
      auto known = store_.Resolve(component_id);
      RecordFailureLocked(component_id, known ? &*known : nullptr, "runtime-error", "app-start",
                          AppLabel(component_id, known ? &*known : nullptr) + " could not start: " + error.message());
      record.state = RunState::kFailed;
      changed_.notify_all();
    };
    if (record.stop_requested || shut_down_) {
      record.state = RunState::kStopped;
      record.stop_requested = false;
      changed_.notify_all();
      return;
    }
    auto app = store_.Resolve(component_id);
    if (!app) return fail(app.error());
    auto policy = store_.PolicyOf(component_id);
    if (!policy) return fail(policy.error());
    std::array<int, 2> pipe_fds{};
    if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
      return fail(Error(ErrorCode::kIo, "creating the log pipe: " + ErrnoText(errno)));
    }
    read_end.Reset(pipe_fds[0]);
    write_end.Reset(pipe_fds[1]);
    int flags = ::fcntl(read_end.get(), F_GETFL);
    (void)::fcntl(read_end.get(), F_SETFL, flags | O_NONBLOCK);
    request.policy = std::move(*policy);
    request.image_root = store_.RootOf(component_id);
    if (request.policy.storage_quota_bytes > 0) request.storage_image = store_.StorageImageOf(component_id);
    request.uid = AppUid(app->slot);
    request.gid = static_cast<gid_t>(AppUid(app->slot));
    request.log_fd = write_end.get();
    to_measure = *app;
  }

  // The launch may take a while (namespaces, mounts, mkfs): without the lock,
  // so other apps' exits and logs and the API keep being served.
  // An app can crash before Launch returns: a crash notice for it waits
  // (bounded) for the pid instead of being dropped.
  std::uint64_t launch = 0;
  {
    std::lock_guard crash_lock(crash_mutex_);
    launch = ++launches_;
    crash_targets_[component_id] = CrashTarget{-1, launch, std::nullopt};
  }
  Expected<void> measured = kOk;
  if (options_.measure) measured = options_.measure(*to_measure);
  if (measured) {
    launched = launcher_.Launch(request);
  } else {
    launched = WrapError(measured.error(), "measuring the app image");
  }
  write_end.Reset();  // the instance holds its own copy; EOF comes when it exits

  std::lock_guard lock(mutex_);
  auto found = records_.find(component_id);
  if (found == records_.end()) return;  // cannot happen: Remove waits for kStarting to end
  Supervised& record = *found->second;
  if (!launched) {
    {
      std::lock_guard crash_lock(crash_mutex_);
      crash_targets_.erase(component_id);
    }
    record.last_exit = "failed to start: " + launched.error().message();
    record.log.AppendLine("[citadeld] " + record.last_exit, Clock::now());
    log::Error("app failed to start", {{"component_id", component_id}, {"reason", launched.error().message()}});
    auto known = store_.Resolve(component_id);
    const InstalledApp* app = known ? &*known : nullptr;
    RecordFailureLocked(component_id, app, "runtime-error", "app-start",
                        AppLabel(component_id, app) + " could not start: " + launched.error().message());
    if (record.stop_requested || shut_down_) {
      record.state = RunState::kStopped;
      record.stop_requested = false;
    } else if (record.operator_start) {
      record.state = RunState::kFailed;
    } else {
      // A restart that failed to launch backs off like a crash.
      CountTrialExitLocked(component_id);
      record.state = RunState::kBackoff;
      auto delay = record.backoff.OnExit(Milliseconds(0));
      record.restart_at = SteadyClock::now() + delay;
      NoteBackoffLocked(record, component_id, app, delay);
    }
    changed_.notify_all();
    return;
  }
  record.instance = std::move(*launched);
  {
    std::lock_guard crash_lock(crash_mutex_);
    crash_targets_[component_id] = CrashTarget{record.instance->pid(), launch, std::nullopt};
    crash_target_ready_.notify_all();
  }
  record.log_read = std::move(read_end);
  for (auto [fd, is_exit] : {std::pair{record.instance->exit_fd(), true}, std::pair{record.log_read.get(), false}}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      log::Error("app supervision: epoll_ctl failed; killing the instance",
                 {{"component_id", component_id}, {"error", ErrnoText(errno)}});
      (void)record.instance->KillAll();
    }
    fds_[fd] = FdTarget{component_id, is_exit};
  }
  record.state = RunState::kRunning;
  record.started_steady = SteadyClock::now();
  record.started_at = Clock::now();
  record.log.AppendLine("[citadeld] started (pid " + std::to_string(record.instance->pid()) + ")", Clock::now());
  log::Info("app started", {{"component_id", component_id}, {"pid", std::to_string(record.instance->pid())}});
  if (record.stop_requested || shut_down_) BeginStopLocked(record);
  changed_.notify_all();
}

void AppManager::BeginStopLocked(Supervised& record) {
  switch (record.state) {
    case RunState::kRunning:
      record.stop_requested = true;
      record.state = RunState::kStopping;
      record.killed = false;
      record.kill_at = SteadyClock::now() + options_.stop_grace;
      (void)record.instance->Signal(SIGTERM);
      Wake();
      break;
    case RunState::kStarting:
      if (record.launch_pending) {
        record.launch_pending = false;
        record.state = RunState::kStopped;
      } else {
        record.stop_requested = true;  // LaunchNow stops it once launched
      }
      break;
    case RunState::kBackoff:
    case RunState::kFailed:
      record.state = RunState::kStopped;
      break;
    case RunState::kStopping:
    case RunState::kStopped:
      break;
  }
}

void AppManager::HandleExitLocked(Supervised& record) {
  if (!record.instance) return;
  auto status = record.instance->Reap();
  int exit_fd = record.instance->exit_fd();
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, exit_fd, nullptr);
  fds_.erase(exit_fd);
  ReadLogLocked(record, true);
  CloseLogLocked(record);
  record.instance.reset();

  std::string component_id;
  for (const auto& [id, candidate] : records_) {
    if (candidate.get() == &record) component_id = id;
  }
  record.last_exit = status ? status->Describe() : "could not be reaped: " + status.error().message();
  record.log.AppendLine("[citadeld] " + record.last_exit, Clock::now());
  auto uptime = std::chrono::duration_cast<Milliseconds>(SteadyClock::now() - record.started_steady);
  auto app = store_.Resolve(component_id);
  const InstalledApp* known = app ? &*app : nullptr;
  bool want_running = app && app->desired == DesiredState::kRunning;
  // After Reap: the broker, which delivers crash notices, has let go of
  // this app by now, so whatever its handler sent is here.
  std::optional<protocol::CrashDetails> crash;
  {
    std::lock_guard crash_lock(crash_mutex_);
    if (auto target = crash_targets_.find(component_id); target != crash_targets_.end()) {
      crash = std::move(target->second.pending);
      crash_targets_.erase(target);
    }
  }
  // An exit the runtime asked for (Stop, an update, shutdown) is no failure.
  if (status && !record.stop_requested && !shut_down_) ReportExitLocked(component_id, known, *status, std::move(crash));
  if (record.stop_requested || shut_down_ || !want_running) {
    record.state = RunState::kStopped;
    record.stop_requested = false;
    record.killed = false;
    log::Info("app stopped", {{"component_id", component_id}, {"exit", record.last_exit}});
    return;
  }
  CountTrialExitLocked(component_id);
  auto delay = record.backoff.OnExit(uptime);
  ++record.restarts;
  ++total_restarts_;
  record.state = RunState::kBackoff;
  record.restart_at = SteadyClock::now() + delay;
  NoteBackoffLocked(record, component_id, known, delay);
  log::Warn("app exited; restarting after a delay",
            {{"component_id", component_id}, {"exit", record.last_exit}, {"delay_ms", std::to_string(delay.count())}});
}

void AppManager::RecordFailureLocked(const std::string& component_id, const InstalledApp* app,
                                     std::string failure_class, std::string error_code, std::string message,
                                     std::optional<protocol::CrashDetails> crash) {
  if (options_.failure_sink == nullptr) return;
  reports::FailureEvent event;
  event.failure_class = std::move(failure_class);
  event.time = Clock::now();
  event.component_id = component_id;
  event.component_version = app != nullptr ? app->version : std::string();
  event.error_code = std::move(error_code);
  event.message = std::move(message);
  event.crash = std::move(crash);
  options_.failure_sink->Record(std::move(event));
}

void AppManager::ReportExitLocked(const std::string& component_id, const InstalledApp* app, const ExitStatus& status,
                                  std::optional<protocol::CrashDetails> crash) {
  const std::string label = AppLabel(component_id, app);
  if (status.exited) {
    if (status.code == 0) return;  // a clean exit; the backoff restarts it if it is meant to run
    RecordFailureLocked(component_id, app, "app-exit", "exit-" + std::to_string(status.code),
                        label + " exited with status " + std::to_string(status.code));
    return;
  }
  const std::string signal_name = protocol::SignalName(status.signal);
  if (status.signal == SIGSYS) {
    // The filter's kill action (or a forged SIGSYS): either way the sandbox ended it.
    RecordFailureLocked(component_id, app, "sandbox-violation", "seccomp-kill",
                        label + " was killed by SIGSYS: a system call its seccomp filter does not allow");
    return;
  }
  // The app's own account is attached only when it is about this death.
  if (crash && crash->signal != status.signal) crash.reset();
  std::string message = label + " was killed by " + signal_name;
  if (crash) message += " at address " + HexAddress(crash->fault_address);
  if (status.oom_killed) message += " (out of memory: the cgroup's memory limit was reached)";
  RecordFailureLocked(component_id, app, "app-crash", signal_name, std::move(message), std::move(crash));
}

void AppManager::NoteBackoffLocked(Supervised& record, const std::string& component_id, const InstalledApp* app,
                                   Milliseconds delay) {
  if (delay < options_.restart.max) {
    record.restart_loop_reported = false;  // the backoff was reset: a new loop is a new event
    return;
  }
  if (record.restart_loop_reported) return;
  record.restart_loop_reported = true;
  RecordFailureLocked(component_id, app, "restart-loop", "restart-loop",
                      AppLabel(component_id, app) + " keeps failing: restarts are now " +
                          std::to_string(delay.count()) + " ms apart (last: " + record.last_exit + ")");
}

void AppManager::ReadLogLocked(Supervised& record, bool drain) {
  if (!record.log_read) return;
  std::array<char, 4096> buffer{};
  std::size_t budget = drain ? 4 * kLogReadBudget : kLogReadBudget;
  while (budget > 0) {
    ssize_t got = ::read(record.log_read.get(), buffer.data(), buffer.size());
    if (got > 0) {
      record.log.Append(std::string_view(buffer.data(), static_cast<std::size_t>(got)), Clock::now());
      budget -= std::min(budget, static_cast<std::size_t>(got));
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) CloseLogLocked(record);  // every writer closed it
    break;                                 // EAGAIN: nothing more for now
  }
}

void AppManager::CloseLogLocked(Supervised& record) {
  if (!record.log_read) return;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, record.log_read.get(), nullptr);
  fds_.erase(record.log_read.get());
  record.log_read.Reset();
  record.log.Flush(Clock::now());
}

// ---- API --------------------------------------------------------------------

AppStatus AppManager::StatusLocked(const InstalledApp& app) const {
  AppStatus status;
  status.app = app;
  status.problem = store_.Problem(app.component_id);
  status.on_trial = store_.TrialOf(app.component_id).has_value();
  auto found = records_.find(app.component_id);
  if (found == records_.end()) return status;
  const Supervised& record = *found->second;
  status.state = record.state;
  status.pid = record.instance ? record.instance->pid() : -1;
  status.restarts = record.restarts;
  status.last_exit = record.last_exit;
  if (record.instance) status.started_at = record.started_at;
  if (record.state == RunState::kBackoff) {
    status.next_restart_in =
        std::max(Milliseconds(0), std::chrono::duration_cast<Milliseconds>(record.restart_at - SteadyClock::now()));
  }
  status.violations = record.violations.size();
  return status;
}

void AppManager::StartDesired() {
  for (const auto& app : store_.List()) {
    if (app.desired != DesiredState::kRunning) continue;
    auto started = Start(app.component_id);
    if (!started) {
      log::Error("could not start app at boot",
                 {{"component_id", app.component_id}, {"reason", started.error().message()}});
    }
  }
}

Expected<AppStatus> AppManager::Start(std::string_view name_or_component_id) {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  CITADEL_TRY_VOID(store_.PolicyOf(app.component_id));
  CITADEL_TRY_VOID(store_.SetDesired(app.component_id, DesiredState::kRunning));
  app.desired = DesiredState::kRunning;
  std::unique_lock lock(mutex_);
  if (shut_down_) return MakeError(ErrorCode::kUnavailable, "citadeld is shutting down");
  Supervised& record = RecordLocked(app.component_id);
  auto settled = [&] { return record.state != RunState::kStopping; };
  if (!WaitLocked(lock, options_.stop_grace + options_.kill_wait + std::chrono::seconds(1), settled)) {
    return MakeError(ErrorCode::kUnavailable, "app " + app.name + " is still stopping; try again");
  }
  if (record.state == RunState::kRunning || record.state == RunState::kStarting) return StatusLocked(app);
  record.backoff.Reset();
  record.restart_loop_reported = false;
  record.restarts = 0;
  record.stop_requested = false;
  record.operator_start = true;
  record.launch_pending = true;
  record.state = RunState::kStarting;
  Wake();
  if (!WaitLocked(lock, options_.start_timeout, [&] { return record.state != RunState::kStarting; })) {
    return MakeError(ErrorCode::kUnavailable, "app " + app.name + " is still starting after " +
                                                  std::to_string(options_.start_timeout.count()) + " ms");
  }
  if (record.state == RunState::kFailed) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "app " + app.name + " " + record.last_exit + "; see `citadel device app logs " + app.name + "`");
  }
  return StatusLocked(app);
}

Expected<AppStatus> AppManager::StopInstance(const std::string& component_id) {
  CITADEL_TRY(auto app, store_.Resolve(component_id));
  std::unique_lock lock(mutex_);
  Supervised& record = RecordLocked(component_id);
  BeginStopLocked(record);
  auto limit = options_.start_timeout + options_.stop_grace + options_.kill_wait + std::chrono::seconds(1);
  bool stopped = WaitLocked(lock, limit, [&] {
    return record.state != RunState::kStopping && record.state != RunState::kStarting &&
           record.state != RunState::kRunning;
  });
  if (!stopped) {
    return MakeError(ErrorCode::kUnavailable,
                     "app " + app.name + " did not exit even after SIGKILL; it may be stuck in the kernel");
  }
  return StatusLocked(app);
}

Expected<AppStatus> AppManager::Stop(std::string_view name_or_component_id) {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  CITADEL_TRY_VOID(store_.SetDesired(app.component_id, DesiredState::kStopped));
  return StopInstance(app.component_id);
}

Expected<void> AppManager::Remove(std::string_view name_or_component_id) {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  CITADEL_TRY_VOID(store_.SetDesired(app.component_id, DesiredState::kStopped));
  CITADEL_TRY_VOID(StopInstance(app.component_id));
  CITADEL_TRY_VOID(store_.Remove(app.component_id));
  std::lock_guard lock(mutex_);
  auto found = records_.find(app.component_id);
  if (found != records_.end() && !found->second->instance) records_.erase(found);
  return kOk;
}

AppStore::BeforeCommit AppManager::StopOldVersion(bool& was_running, std::string& component_id) {
  return [this, &was_running, &component_id](const InstalledApp& app, bool update) {
    component_id = app.component_id;
    if (!update) return;
    {
      std::lock_guard lock(mutex_);
      auto found = records_.find(app.component_id);
      if (found == records_.end()) return;
      auto state = found->second->state;
      was_running = state == RunState::kRunning || state == RunState::kStarting || state == RunState::kBackoff;
    }
    if (was_running) (void)StopInstance(app.component_id);
  };
}

Expected<InstalledApp> AppManager::Install(std::span<const std::uint8_t> image_bytes, std::string_view label,
                                           InstallSource source) {
  bool was_running = false;
  std::string component_id;
  auto installed = store_.Install(image_bytes, label, source, StopOldVersion(was_running, component_id));
  if (!installed) {
    // Nothing changed on disk: the previous version runs again.
    if (was_running) (void)Start(component_id);
    return installed;
  }
  if (was_running || installed->desired == DesiredState::kRunning) {
    auto started = Start(installed->component_id);
    if (!started) return WrapError(started.error(), "installed " + installed->name + ", but it did not start");
  }
  return installed;
}

// ---- update trials ----------------------------------------------------------

std::vector<update::InstalledApp> AppManager::InstalledApps() {
  std::vector<update::InstalledApp> result;
  for (const auto& app : store_.List()) {
    update::InstalledApp installed;
    installed.component_id = app.component_id;
    installed.version = app.version;
    installed.security_version = app.security_version;
    installed.image_sha256 = app.image_sha256;
    if (!app.image_sha256.empty()) installed.image_file = store_.ImageFileOf(app.component_id);
    result.push_back(std::move(installed));
  }
  return result;
}

Expected<void> AppManager::BeginTrial(const std::filesystem::path& image_file, std::string_view expected_component_id) {
  {
    std::lock_guard lock(mutex_);
    if (shut_down_) return MakeError(ErrorCode::kUnavailable, "citadeld is shutting down");
  }
  bool was_running = false;
  std::string component_id;
  auto installed = store_.BeginTrial(image_file, expected_component_id, StopOldVersion(was_running, component_id));
  if (!installed) {
    // The previous version is installed as it was: it runs again.
    if (was_running) (void)Start(component_id);
    return std::unexpected(installed.error());
  }
  if (!was_running && installed->desired != DesiredState::kRunning) return kOk;
  {
    // The same image again (after a crash of the update client, say): the
    // trial version already runs, or waits for its next restart.
    std::lock_guard lock(mutex_);
    auto found = records_.find(installed->component_id);
    if (found != records_.end() && found->second->state != RunState::kStopped) return kOk;
  }
  // A failure to start is the trial's outcome (Trial() says kFailed), not
  // this call's: the new version is installed and the caller must revert.
  if (auto started = Start(installed->component_id); !started) {
    log::Error("app version on trial did not start",
               {{"component_id", installed->component_id}, {"reason", started.error().message()}});
  }
  return kOk;
}

update::TrialHealth AppManager::Trial(std::string_view component_id) {
  auto trial = store_.TrialOf(component_id);
  if (!trial) return update::TrialHealth::kNoTrial;
  if (trial->phase == TrialPhase::kReverting) return update::TrialHealth::kFailed;
  if (trial->exits >= options_.trial_max_exits) return update::TrialHealth::kCrashLoop;
  if (!store_.Problem(component_id).empty()) return update::TrialHealth::kFailed;
  auto app = store_.Resolve(component_id);
  if (!app) return update::TrialHealth::kNoTrial;
  // Nothing runs, so nothing can go wrong: the checks at install were all.
  if (app->desired != DesiredState::kRunning) return update::TrialHealth::kHealthy;
  std::lock_guard lock(mutex_);
  auto found = records_.find(component_id);
  if (found == records_.end()) return update::TrialHealth::kRunning;
  const Supervised& record = *found->second;
  if (record.state == RunState::kFailed) return update::TrialHealth::kFailed;
  if (record.state == RunState::kRunning && SteadyClock::now() - record.started_steady >= options_.trial_period) {
    return update::TrialHealth::kHealthy;
  }
  return update::TrialHealth::kRunning;
}

std::string AppManager::TrialFailure(std::string_view component_id) {
  auto trial = store_.TrialOf(component_id);
  if (!trial) return {};
  if (trial->phase == TrialPhase::kReverting) return "the trial is being reverted";
  std::string last_exit;
  RunState state = RunState::kStopped;
  {
    std::lock_guard lock(mutex_);
    if (auto found = records_.find(component_id); found != records_.end()) {
      last_exit = found->second->last_exit;
      state = found->second->state;
    }
  }
  if (trial->exits >= options_.trial_max_exits) {
    return "crash loop: the new version exited " + std::to_string(trial->exits) + " times during its trial" +
           (last_exit.empty() ? std::string() : " (last: " + last_exit + ")");
  }
  if (auto problem = store_.Problem(component_id); !problem.empty()) return "cannot start: " + problem;
  if (state == RunState::kFailed) return last_exit;
  return {};
}

Expected<void> AppManager::CommitTrial(std::string_view component_id) { return store_.CommitTrial(component_id); }

Expected<void> AppManager::RevertTrial(std::string_view component_id) {
  if (!store_.TrialOf(component_id)) return kOk;  // reverted (or committed) already
  const std::string id(component_id);
  CITADEL_TRY_VOID(StopInstance(id));
  CITADEL_TRY_VOID(store_.RevertTrial(id));
  auto app = store_.Resolve(id);
  if (!app) {
    // A first install on trial: the app is gone.
    std::lock_guard lock(mutex_);
    auto found = records_.find(id);
    if (found != records_.end() && !found->second->instance) records_.erase(found);
    return kOk;
  }
  if (app->desired == DesiredState::kRunning) {
    // The revert itself is done; a previous version that no longer starts
    // shows as failed in the app's status and log.
    if (auto started = Start(id); !started) {
      log::Error("reverted app did not start", {{"component_id", id}, {"reason", started.error().message()}});
    }
  }
  return kOk;
}

void AppManager::CountTrialExitLocked(const std::string& component_id) {
  std::uint32_t exits = store_.RecordTrialExit(component_id);
  if (exits == 0) return;
  auto found = records_.find(component_id);
  if (found != records_.end()) {
    found->second->log.AppendLine("[citadeld] exit " + std::to_string(exits) + " of the version on trial",
                                  Clock::now());
  }
  log::Warn("app version on trial exited", {{"component_id", component_id}, {"exits", std::to_string(exits)}});
}

std::vector<AppStatus> AppManager::List() const {
  auto apps = store_.List();
  std::lock_guard lock(mutex_);
  std::vector<AppStatus> result;
  result.reserve(apps.size());
  for (const auto& app : apps) result.push_back(StatusLocked(app));
  return result;
}

Expected<AppStatus> AppManager::Status(std::string_view name_or_component_id) const {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  std::lock_guard lock(mutex_);
  return StatusLocked(app);
}

Expected<std::vector<LogLine>> AppManager::Logs(std::string_view name_or_component_id, std::size_t count) const {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  std::lock_guard lock(mutex_);
  auto found = records_.find(app.component_id);
  if (found == records_.end()) return std::vector<LogLine>{};
  return found->second->log.Tail(count);
}

Expected<std::vector<ViolationRecord>> AppManager::Violations(std::string_view name_or_component_id) const {
  CITADEL_TRY(auto app, store_.Resolve(name_or_component_id));
  std::lock_guard lock(mutex_);
  auto found = records_.find(app.component_id);
  if (found == records_.end()) return std::vector<ViolationRecord>{};
  return std::vector<ViolationRecord>(found->second->violations.begin(), found->second->violations.end());
}

void AppManager::ReportViolation(std::string_view component_id, std::string_view syscall, std::string_view detail,
                                 ViolationSource source) {
  log::Warn("app policy violation", {{"component_id", component_id}, {"syscall", syscall}, {"detail", detail}});
  PendingViolation violation{std::string(component_id), std::string(syscall), std::string(detail), source,
                             Clock::now()};
  // The Broker and the Supervisor call this with their own lock held, and
  // the supervision thread may hold mutex_ while Reap waits for exactly
  // that lock: never wait for mutex_ unboundedly here. When it stays busy,
  // the loop records the violation on its next round.
  std::unique_lock lock(mutex_, std::defer_lock);
  const auto deadline = SteadyClock::now() + kViolationLockWait;
  while (!lock.try_lock()) {
    if (SteadyClock::now() >= deadline) {
      {
        std::lock_guard queue_lock(queued_violations_mutex_);
        if (queued_violations_.size() < kMaxQueuedViolations) queued_violations_.push_back(std::move(violation));
      }
      Wake();
      return;
    }
    std::this_thread::sleep_for(Milliseconds(1));
  }
  RecordViolationLocked(violation);
}

void AppManager::RecordViolationLocked(const PendingViolation& violation) {
  auto app = store_.Resolve(violation.component_id);
  Supervised& record = RecordLocked(violation.component_id);
  RecordFailureLocked(
      violation.component_id, app ? &*app : nullptr, "sandbox-violation",
      std::string(violation.source == ViolationSource::kSeccomp ? "seccomp:" : "broker:") + violation.syscall,
      violation.detail);
  record.violations.push_back(ViolationRecord{violation.time, violation.syscall, violation.detail});
  while (record.violations.size() > options_.max_violations) record.violations.pop_front();
  record.log.AppendLine("[citadeld] policy violation: " + violation.syscall + ": " + violation.detail, Clock::now());
}

void AppManager::DrainViolationsLocked() {
  std::vector<PendingViolation> queued;
  {
    std::lock_guard queue_lock(queued_violations_mutex_);
    queued.swap(queued_violations_);
  }
  for (const auto& violation : queued) RecordViolationLocked(violation);
}

void AppManager::ReportCrash(std::string_view component_id, protocol::CrashDetails crash,
                             std::span<const std::uint64_t> pcs) {
  // Only crash_mutex_, never mutex_: this runs on the broker's thread with
  // the broker's lock held, while the supervision thread may hold mutex_
  // and wait for that lock (Reap removes the app from the broker).
  pid_t pid = -1;
  std::uint64_t launch = 0;
  {
    std::unique_lock lock(crash_mutex_);
    auto known = [&] {
      auto target = crash_targets_.find(component_id);
      return target == crash_targets_.end() || target->second.pid >= 0;
    };
    // Still launching (it crashed at once): Launch returns shortly.
    (void)crash_target_ready_.wait_for(lock, kCrashLaunchWait, known);
    auto target = crash_targets_.find(component_id);
    if (target == crash_targets_.end() || target->second.pid < 0) {
      log::Warn("crash report from an app with no running instance; ignored", {{"component_id", component_id}});
      return;
    }
    pid = target->second.pid;
    launch = target->second.launch;
  }
  // The app waits for the broker's answer meanwhile, so its /proc entries
  // are still there; no lock is held for these reads.
  auto frames = ResolveCrashFrames(pid, pcs);
  if (frames) {
    crash.frames = std::move(*frames);
  } else {
    log::Warn("crash frames could not be resolved",
              {{"component_id", component_id}, {"reason", frames.error().message()}});
  }
  std::lock_guard lock(crash_mutex_);
  auto target = crash_targets_.find(component_id);
  if (target == crash_targets_.end() || target->second.launch != launch) return;
  target->second.pending = std::move(crash);
}

std::uint64_t AppManager::TotalRestarts() const {
  std::lock_guard lock(mutex_);
  return total_restarts_;
}

void AppManager::Shutdown() {
  {
    std::unique_lock lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& [id, record] : records_) BeginStopLocked(*record);
    auto limit = options_.stop_grace + options_.kill_wait + std::chrono::seconds(1);
    bool all_stopped = WaitLocked(lock, limit, [&] {
      return std::ranges::none_of(records_, [](const auto& entry) { return entry.second->instance != nullptr; });
    });
    if (!all_stopped) log::Warn("some apps did not stop in time; killing them");
    stopping_thread_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  for (auto& [id, record] : records_) {
    if (record->instance) {
      (void)record->instance->KillAll();
      record->instance.reset();  // the launcher's destructor kills and reaps
    }
    CloseLogLocked(*record);
  }
  std::lock_guard crash_lock(crash_mutex_);
  crash_targets_.clear();
}

}  // namespace citadel::apps
