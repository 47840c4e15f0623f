#include "http/admission.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/log.hpp"

namespace citadel::http {

namespace {

int WorkerCount(int configured) {
  if (configured > 0) return configured;
  return static_cast<int>(std::max(4u, 2 * std::thread::hardware_concurrency()));
}

}  // namespace

std::string_view ShedReasonName(ShedReason reason) {
  switch (reason) {
    case ShedReason::kQueueFull:
      return "queue-full";
    case ShedReason::kQueueDelay:
      return "queue-delay";
    case ShedReason::kStopping:
      return "stopping";
  }
  return "unknown";
}

Admission::Admission(AdmissionOptions options) : options_(options), worker_count_(WorkerCount(options_.workers)) {}

Admission::~Admission() { Stop(); }

void Admission::Start() {
  std::lock_guard lock(mutex_);
  if (started_ || stopping_) return;
  started_ = true;
  threads_.reserve(static_cast<std::size_t>(worker_count_));
  for (int i = 0; i < worker_count_; ++i) threads_.emplace_back([this] { RunWorker(); });
}

std::chrono::seconds Admission::RetryAfterLocked() const {
  // The time the queue ahead of a retry needs to drain, rounded up; a
  // client retrying then finds room. Bounded so a bad estimate never tells
  // a device to go away for long.
  double drain = static_cast<double>(queued_ + running_) * mean_run_seconds_ / static_cast<double>(worker_count_);
  auto seconds = static_cast<std::int64_t>(std::ceil(drain));
  return std::chrono::seconds(std::clamp<std::int64_t>(seconds, 1, 60));
}

void Admission::Submit(std::string key, AdmissionTask task) {
  std::unique_lock lock(mutex_);
  if (stopping_) {
    ++shed_[static_cast<int>(ShedReason::kStopping)];
    auto retry_after = RetryAfterLocked();
    lock.unlock();
    task.shed(ShedReason::kStopping, retry_after);
    return;
  }
  std::optional<Queued> evicted;
  if (queued_ >= options_.max_queued) {
    auto longest = queues_.end();
    for (auto it = queues_.begin(); it != queues_.end(); ++it) {
      if (longest == queues_.end() || it->second.size() > longest->second.size()) longest = it;
    }
    auto own = queues_.find(key);
    std::size_t own_size = own == queues_.end() ? 0 : own->second.size();
    if (longest == queues_.end() || own_size + 1 >= longest->second.size()) {
      ++shed_[static_cast<int>(ShedReason::kQueueFull)];
      auto retry_after = RetryAfterLocked();
      lock.unlock();
      task.shed(ShedReason::kQueueFull, retry_after);
      return;
    }
    // Make room at the flooding key's expense: its oldest task goes.
    evicted = std::move(longest->second.front());
    longest->second.pop_front();
    --queued_;
    ++shed_[static_cast<int>(ShedReason::kQueueFull)];
    // The longest queue holds more than own_size + 1 >= 1 tasks, so it is
    // not empty now and keeps its place in turn_.
  }
  auto [it, inserted] = queues_.try_emplace(key);
  if (inserted) turn_.push_back(std::move(key));
  it->second.push_back({std::move(task), SteadyClock::now()});
  ++queued_;
  auto retry_after = RetryAfterLocked();
  lock.unlock();
  work_.notify_one();
  if (evicted) evicted->task.shed(ShedReason::kQueueFull, retry_after);
}

void Admission::RunWorker() {
  std::unique_lock lock(mutex_);
  while (true) {
    work_.wait(lock, [this] { return stopping_ || queued_ > 0; });
    if (queued_ == 0) return;  // stopping, nothing left
    std::string key = std::move(turn_.front());
    turn_.pop_front();
    auto it = queues_.find(key);
    Queued item = std::move(it->second.front());
    it->second.pop_front();
    --queued_;
    if (it->second.empty()) {
      queues_.erase(it);
    } else {
      turn_.push_back(std::move(key));
    }
    const auto started = SteadyClock::now();
    const auto waited = started - item.enqueued;
    if (waited > options_.max_queue_delay) {
      ++shed_[static_cast<int>(ShedReason::kQueueDelay)];
      auto retry_after = RetryAfterLocked();
      lock.unlock();
      item.task.shed(ShedReason::kQueueDelay, retry_after);
      lock.lock();
      continue;
    }
    ++running_;
    lock.unlock();
    try {
      item.task.run(std::chrono::duration_cast<std::chrono::nanoseconds>(waited));
    } catch (const std::exception& e) {
      // The server's task catches handler errors; this keeps a worker alive
      // whatever happens.
      log::Error("uncaught exception in a request worker", {{"error", e.what()}});
    } catch (...) {
      log::Error("uncaught non-exception in a request worker", {});
    }
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    lock.lock();
    --running_;
    mean_run_seconds_ = 0.95 * mean_run_seconds_ + 0.05 * seconds;
  }
}

void Admission::Stop() {
  std::vector<Queued> dropped;
  std::vector<std::thread> threads;
  std::chrono::seconds retry_after{1};
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
    for (auto& [key, queue] : queues_) {
      for (auto& item : queue) dropped.push_back(std::move(item));
    }
    queues_.clear();
    turn_.clear();
    queued_ = 0;
    shed_[static_cast<int>(ShedReason::kStopping)] += dropped.size();
    retry_after = RetryAfterLocked();
  }
  work_.notify_all();
  for (auto& item : dropped) item.task.shed(ShedReason::kStopping, retry_after);
  for (auto& thread : threads) thread.join();
}

AdmissionStats Admission::Stats() const {
  std::lock_guard lock(mutex_);
  AdmissionStats stats;
  stats.queued = queued_;
  stats.running = running_;
  stats.keys = queues_.size();
  stats.workers = worker_count_;
  stats.shed_queue_full = shed_[static_cast<int>(ShedReason::kQueueFull)];
  stats.shed_queue_delay = shed_[static_cast<int>(ShedReason::kQueueDelay)];
  stats.shed_stopping = shed_[static_cast<int>(ShedReason::kStopping)];
  return stats;
}

}  // namespace citadel::http
