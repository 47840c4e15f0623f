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

#include "common/log.hpp"

namespace citadel::apps {
namespace {

// Bytes read from one log pipe per wake-up, so one chatty app cannot hold
// the loop (the level-triggered epoll returns to it on the next round).
constexpr std::size_t kLogReadBudget = 64 * 1024;
constexpr auto kMaxLoopWait = std::chrono::hours(1);

std::string ErrnoText(int error) { return ::strerrordesc_np(error) != nullptr ? ::strerrordesc_np(error) : "error"; }

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
};

AppManager::AppManager(AppStore& store, AppLauncher& launcher, ManagerOptions options, UniqueFd epoll, UniqueFd wake)
    : store_(store), launcher_(launcher), options_(options), epoll_(std::move(epoll)), wake_(std::move(wake)) {}

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
  std::unique_ptr<AppManager> manager(new AppManager(store, launcher, options, std::move(epoll), std::move(wake)));
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
  }

  // The launch may take a while (namespaces, mounts, mkfs): without the lock,
  // so other apps' exits and logs and the API keep being served.
  launched = launcher_.Launch(request);
  write_end.Reset();  // the instance holds its own copy; EOF comes when it exits

  std::lock_guard lock(mutex_);
  auto found = records_.find(component_id);
  if (found == records_.end()) return;  // cannot happen: Remove waits for kStarting to end
  Supervised& record = *found->second;
  if (!launched) {
    record.last_exit = "failed to start: " + launched.error().message();
    record.log.AppendLine("[citadeld] " + record.last_exit, Clock::now());
    log::Error("app failed to start", {{"component_id", component_id}, {"reason", launched.error().message()}});
    if (record.stop_requested || shut_down_) {
      record.state = RunState::kStopped;
      record.stop_requested = false;
    } else if (record.operator_start) {
      record.state = RunState::kFailed;
    } else {
      // A restart that failed to launch backs off like a crash.
      CountTrialExitLocked(component_id);
      record.state = RunState::kBackoff;
      record.restart_at = SteadyClock::now() + record.backoff.OnExit(Milliseconds(0));
    }
    changed_.notify_all();
    return;
  }
  record.instance = std::move(*launched);
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
  bool want_running = app && app->desired == DesiredState::kRunning;
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
  record.state = RunState::kBackoff;
  record.restart_at = SteadyClock::now() + delay;
  log::Warn("app exited; restarting after a delay",
            {{"component_id", component_id}, {"exit", record.last_exit}, {"delay_ms", std::to_string(delay.count())}});
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

void AppManager::ReportViolation(std::string_view component_id, std::string_view syscall, std::string_view detail) {
  log::Warn("app policy violation", {{"component_id", component_id}, {"syscall", syscall}, {"detail", detail}});
  std::lock_guard lock(mutex_);
  Supervised& record = RecordLocked(std::string(component_id));
  record.violations.push_back(ViolationRecord{Clock::now(), std::string(syscall), std::string(detail)});
  while (record.violations.size() > options_.max_violations) record.violations.pop_front();
  record.log.AppendLine("[citadeld] policy violation: " + std::string(syscall) + ": " + std::string(detail),
                        Clock::now());
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
}

}  // namespace citadel::apps
