// Restart backoff for crashed apps: the first restart waits `initial`, each
// further crash doubles the wait up to `max`; an instance that stayed up for
// `reset_after` is considered healthy and the next crash waits `initial`
// again. The delay is a deadline the app manager's loop sleeps towards, so a
// crash-looping app costs one launch per delay and never a busy loop.
//
// Threading: a value owned by one app's supervision record.
#pragma once

#include <chrono>

namespace citadel::apps {

using Milliseconds = std::chrono::milliseconds;

struct RestartPolicy {
  Milliseconds initial = std::chrono::seconds(1);
  Milliseconds max = std::chrono::seconds(60);
  Milliseconds reset_after = std::chrono::seconds(30);
};

class RestartBackoff {
 public:
  explicit RestartBackoff(RestartPolicy policy = {}) : policy_(policy), next_(policy.initial) {}

  // The wait before restarting an instance that ran for `uptime` and exited.
  Milliseconds OnExit(Milliseconds uptime);
  // Forget past crashes (an operator start).
  void Reset() { next_ = policy_.initial; }

 private:
  RestartPolicy policy_;
  Milliseconds next_;
};

}  // namespace citadel::apps
