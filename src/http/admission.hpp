// Admission: the server's request handlers run on a pool of worker threads
// behind one bounded queue that is fair between classes of caller
// (docs/ARCHITECTURE.md, "Backpressure").
//
// The I/O threads read requests and Submit() them with a fairness key (the
// service uses the caller's tenant once it is proven, "anonymous" before).
// Workers take the next task round-robin over the keys that have work, so
// a key with a thousand queued requests and a key with one each get the
// next free worker in turn: one tenant's flood cannot starve another.
//
// Load shedding, always before a handler runs (so nothing a handler
// accepted is ever dropped):
//   * queue full (max_queued): the newcomer is shed when its own key holds
//     the longest queue; otherwise the oldest task of the longest queue is
//     shed to make room, so the flooding key pays for the overflow;
//   * stale: a task that waited longer than max_queue_delay is shed when a
//     worker reaches it (its client has likely given up, and serving it
//     would only make every later task late too);
//   * stopping: tasks still queued when Stop() runs.
// A shed task learns a Retry-After: the estimated time to drain the queue
// (queued tasks x the mean handler time / workers), 1..60 s.
//
// Thread-safety: every member is safe to call from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace citadel::http {

struct AdmissionOptions {
  int workers = 0;  // 0: 2 x hardware threads, at least 4 (handlers block on the store)
  std::size_t max_queued = 2048;
  std::chrono::milliseconds max_queue_delay{2000};
};

enum class ShedReason { kQueueFull, kQueueDelay, kStopping };
std::string_view ShedReasonName(ShedReason reason);  // "queue-full", "queue-delay", "stopping"

struct AdmissionTask {
  // Runs on a worker; `waited` is the time the task spent queued.
  std::function<void(std::chrono::nanoseconds waited)> run;
  // Runs instead of `run`, on the submitting thread (queue full, stopping)
  // or a worker (stale); never both, exactly one of them.
  std::function<void(ShedReason reason, std::chrono::seconds retry_after)> shed;
};

struct AdmissionStats {
  std::size_t queued = 0;
  std::size_t running = 0;
  std::size_t keys = 0;  // keys with queued tasks
  int workers = 0;
  std::uint64_t shed_queue_full = 0;
  std::uint64_t shed_queue_delay = 0;
  std::uint64_t shed_stopping = 0;
};

class Admission {
 public:
  explicit Admission(AdmissionOptions options);
  ~Admission();  // Stop()
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  void Start();  // starts the workers; idempotent
  void Submit(std::string key, AdmissionTask task);
  // Sheds what is queued, waits for running tasks, joins the workers;
  // later Submit()s are shed. Idempotent. Must not run on a worker.
  void Stop();

  AdmissionStats Stats() const;
  int workers() const { return worker_count_; }

 private:
  using SteadyClock = std::chrono::steady_clock;
  struct Queued {
    AdmissionTask task;
    SteadyClock::time_point enqueued;
  };

  void RunWorker();
  std::chrono::seconds RetryAfterLocked() const;

  const AdmissionOptions options_;
  const int worker_count_;
  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::map<std::string, std::deque<Queued>, std::less<>> queues_;  // only keys with queued tasks
  std::deque<std::string> turn_;                                   // round-robin order of those keys
  std::size_t queued_ = 0;
  std::size_t running_ = 0;
  double mean_run_seconds_ = 0.005;  // EWMA of handler time, for Retry-After
  bool started_ = false;
  bool stopping_ = false;
  std::uint64_t shed_[3] = {0, 0, 0};
  std::vector<std::thread> threads_;
};

}  // namespace citadel::http
