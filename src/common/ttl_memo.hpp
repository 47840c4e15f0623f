// A small thread-safe memo whose entries are good for a fixed age.
//
// For values that many requests read, few change, and that may be a moment
// stale: the director version, publisher keys and group settings every
// device check-in needs (docs/ARCHITECTURE.md, "Check-in cost"). A writer in
// this process calls Put or Forget so its own change shows at once; a
// change through another replica shows within the age. Bounded: when full,
// it starts over (a memo, not a cache with an eviction policy).
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

#include "common/error.hpp"

namespace citadel {

template <typename Key, typename Value>
class TtlMemo {
 public:
  using SteadyClock = std::chrono::steady_clock;

  TtlMemo(SteadyClock::duration age, std::size_t max_entries) : age_(age), max_entries_(max_entries) {}

  // The remembered answer for key when younger than the age; otherwise
  // load()'s, remembered when it is a value or keep(error) says so.
  template <typename Load, typename Keep>
  Expected<Value> Get(const Key& key, Load&& load, Keep&& keep, SteadyClock::time_point now = SteadyClock::now()) {
    {
      std::lock_guard lock(mutex_);
      if (auto it = entries_.find(key); it != entries_.end() && now - it->second.at < age_) return it->second.answer;
    }
    Expected<Value> answer = std::forward<Load>(load)();
    if (answer || std::forward<Keep>(keep)(answer.error())) Put(key, answer, now);
    return answer;
  }
  template <typename Load>
  Expected<Value> Get(const Key& key, Load&& load) {
    return Get(key, std::forward<Load>(load), [](const Error&) { return false; });
  }

  void Put(const Key& key, Expected<Value> answer, SteadyClock::time_point now = SteadyClock::now()) {
    std::lock_guard lock(mutex_);
    if (entries_.size() >= max_entries_ && !entries_.contains(key)) entries_.clear();
    entries_.insert_or_assign(key, Entry{std::move(answer), now});
  }

  void Forget(const Key& key) {
    std::lock_guard lock(mutex_);
    entries_.erase(key);
  }
  template <typename Predicate>
  void ForgetIf(Predicate&& forget) {
    std::lock_guard lock(mutex_);
    std::erase_if(entries_, [&](const auto& entry) { return forget(entry.first); });
  }

  std::size_t size() {
    std::lock_guard lock(mutex_);
    return entries_.size();
  }

 private:
  struct Entry {
    Expected<Value> answer;
    SteadyClock::time_point at;
  };

  const SteadyClock::duration age_;
  const std::size_t max_entries_;
  std::mutex mutex_;
  std::map<Key, Entry> entries_;  // guarded by mutex_
};

}  // namespace citadel
