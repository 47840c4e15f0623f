// The request admission queue: fair turns between keys, shedding when full
// (at the flooding key's expense), when stale and when stopping, and a
// Retry-After in bounds. Real threads; waits are bounded.
#include "http/admission.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace citadel::http {
namespace {

using namespace std::chrono_literals;

// A latch the test opens: tasks block on it to hold the workers busy.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(opened_cv_.wait_for(lock, 10s, [this] { return open_; })) << "gate never opened";
  }
  void Open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_cv_;
  bool open_ = false;
};

// What happened to each task, in order.
struct Log {
  std::mutex mutex;
  std::vector<std::string> ran;
  std::vector<std::pair<std::string, ShedReason>> shed;
  std::vector<std::chrono::seconds> retry_after;
  std::condition_variable changed;

  AdmissionTask Task(const std::string& name, Gate* gate = nullptr) {
    AdmissionTask task;
    task.run = [this, name, gate](std::chrono::nanoseconds) {
      if (gate != nullptr) gate->Wait();
      std::lock_guard lock(mutex);
      ran.push_back(name);
      changed.notify_all();
    };
    task.shed = [this, name](ShedReason reason, std::chrono::seconds after) {
      std::lock_guard lock(mutex);
      shed.emplace_back(name, reason);
      retry_after.push_back(after);
      changed.notify_all();
    };
    return task;
  }

  bool WaitForDone(std::size_t count) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, 10s, [&] { return ran.size() + shed.size() >= count; });
  }
};

// Submits a blocker and waits until the single worker holds it.
void Occupy(Admission& admission, Log& log, Gate& gate) {
  std::promise<void> started;
  AdmissionTask blocker = log.Task("blocker", &gate);
  auto run = blocker.run;
  blocker.run = [&started, run](std::chrono::nanoseconds waited) {
    started.set_value();
    run(waited);
  };
  admission.Submit("blocker", std::move(blocker));
  ASSERT_EQ(started.get_future().wait_for(10s), std::future_status::ready);
}

TEST(AdmissionTest, KeysTakeTurnsSoAFloodDoesNotDelayAnotherKey) {
  Admission admission({/*workers=*/1, /*max_queued=*/1000, /*max_queue_delay=*/10s});
  admission.Start();
  Log log;
  Gate gate;
  Occupy(admission, log, gate);
  for (int i = 0; i < 50; ++i) admission.Submit("flood", log.Task("flood-" + std::to_string(i)));
  admission.Submit("quiet", log.Task("quiet"));
  gate.Open();
  ASSERT_TRUE(log.WaitForDone(52));
  std::lock_guard lock(log.mutex);
  ASSERT_EQ(log.ran.size(), 52U);
  EXPECT_TRUE(log.shed.empty());
  // blocker, flood-0, then the quiet key's turn: not after 50 flood tasks.
  EXPECT_EQ(log.ran[0], "blocker");
  EXPECT_EQ(log.ran[1], "flood-0");
  EXPECT_EQ(log.ran[2], "quiet");
  EXPECT_EQ(log.ran[3], "flood-1");
  EXPECT_EQ(log.ran.back(), "flood-49");
}

TEST(AdmissionTest, AFullQueueShedsTheFloodingKeyNotANewcomer) {
  Admission admission({1, /*max_queued=*/4, 10s});
  admission.Start();
  Log log;
  Gate gate;
  Occupy(admission, log, gate);
  for (int i = 0; i < 6; ++i) admission.Submit("flood", log.Task("flood-" + std::to_string(i)));
  {
    // The queue holds 4; the flood's own newcomers 4 and 5 were shed.
    std::lock_guard lock(log.mutex);
    ASSERT_EQ(log.shed.size(), 2U);
    EXPECT_EQ(log.shed[0].first, "flood-4");
    EXPECT_EQ(log.shed[0].second, ShedReason::kQueueFull);
    EXPECT_EQ(log.shed[1].first, "flood-5");
  }
  // Another key's request still gets in: the flood's oldest makes room.
  admission.Submit("quiet", log.Task("quiet"));
  {
    std::lock_guard lock(log.mutex);
    ASSERT_EQ(log.shed.size(), 3U);
    EXPECT_EQ(log.shed[2].first, "flood-0");
  }
  EXPECT_EQ(admission.Stats().queued, 4U);
  EXPECT_EQ(admission.Stats().shed_queue_full, 3U);
  gate.Open();
  ASSERT_TRUE(log.WaitForDone(1 + 6 + 1));
  std::lock_guard lock(log.mutex);
  EXPECT_NE(std::find(log.ran.begin(), log.ran.end(), "quiet"), log.ran.end());
  for (auto after : log.retry_after) {
    EXPECT_GE(after.count(), 1);
    EXPECT_LE(after.count(), 60);
  }
}

TEST(AdmissionTest, ATaskThatWaitedTooLongIsShedNotRun) {
  Admission admission({1, 100, /*max_queue_delay=*/50ms});
  admission.Start();
  Log log;
  Gate gate;
  Occupy(admission, log, gate);
  admission.Submit("a", log.Task("stale"));
  std::this_thread::sleep_for(150ms);
  gate.Open();
  ASSERT_TRUE(log.WaitForDone(2));
  admission.Submit("a", log.Task("fresh"));
  ASSERT_TRUE(log.WaitForDone(3));
  std::lock_guard lock(log.mutex);
  ASSERT_EQ(log.shed.size(), 1U);
  EXPECT_EQ(log.shed[0].first, "stale");
  EXPECT_EQ(log.shed[0].second, ShedReason::kQueueDelay);
  EXPECT_EQ(log.ran, (std::vector<std::string>{"blocker", "fresh"}));
}

TEST(AdmissionTest, StopShedsWhatIsQueuedAndLetsTheRunningTaskFinish) {
  Admission admission({1, 100, 10s});
  admission.Start();
  Log log;
  Gate gate;
  Occupy(admission, log, gate);
  admission.Submit("a", log.Task("queued-1"));
  admission.Submit("b", log.Task("queued-2"));
  auto stopped = std::async(std::launch::async, [&] { admission.Stop(); });
  ASSERT_TRUE(log.WaitForDone(2));  // both queued tasks shed while the blocker runs
  gate.Open();
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
  admission.Submit("c", log.Task("late"));
  std::lock_guard lock(log.mutex);
  EXPECT_EQ(log.ran, (std::vector<std::string>{"blocker"}));
  ASSERT_EQ(log.shed.size(), 3U);
  for (const auto& [name, reason] : log.shed) EXPECT_EQ(reason, ShedReason::kStopping) << name;
}

TEST(AdmissionTest, ManyThreadsSubmittingLoseNothing) {
  Admission admission({4, 100'000, 10s});
  admission.Start();
  std::atomic<int> ran{0};
  std::atomic<int> shed{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        AdmissionTask task;
        task.run = [&](std::chrono::nanoseconds) { ++ran; };
        task.shed = [&](ShedReason, std::chrono::seconds) { ++shed; };
        admission.Submit("k" + std::to_string((t * 7 + i) % 13), std::move(task));
      }
    });
  }
  for (auto& thread : submitters) thread.join();
  admission.Stop();
  EXPECT_EQ(ran + shed, 8000);  // every task ran or was shed, exactly once
  EXPECT_EQ(shed.load(), static_cast<int>(admission.Stats().shed_stopping));
}

}  // namespace
}  // namespace citadel::http
