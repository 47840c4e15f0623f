#include "apps/backoff.hpp"

#include <algorithm>

namespace citadel::apps {

Milliseconds RestartBackoff::OnExit(Milliseconds uptime) {
  if (uptime >= policy_.reset_after) next_ = policy_.initial;
  Milliseconds delay = std::min(next_, policy_.max);
  // Doubling saturates at max, so it cannot overflow however long it loops.
  next_ = std::min(next_ * 2, policy_.max);
  return delay;
}

}  // namespace citadel::apps
