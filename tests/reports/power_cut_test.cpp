// Acceptance 3 (issue 5): the report queue survives a kill at any moment.
// queue_writer appends reports and prints each number once Append returned;
// this test SIGKILLs it after a random delay, hundreds of times, and after
// each kill opens the queue: it opens without error, every confirmed
// report is there and parses, and at most one unconfirmed report (the one
// in flight) appears, and only as the next number.
//
// SIGKILL is a process crash, not a power cut: the page cache survives it.
// What it shows is that no moment of Append, Open (temporary-file cleanup)
// or the drop path leaves the directory unreadable; durability against a
// real power cut rests on WriteFileAtomic's fsyncs.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "reports/report_queue.hpp"
#include "reports/testing_report.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::reports {
namespace {

using citadel::testing::Must;
using citadel::testing::TempDir;
using Steady = std::chrono::steady_clock;

constexpr int kKillPoints = 300;
constexpr auto kTimeBudget = std::chrono::seconds(60);
constexpr std::uint64_t kNumbersPerRun = 100'000;
// Reports kept between runs, so that Open always has a directory to read.
constexpr std::size_t kKeep = 20;

struct Run {
  std::vector<std::uint64_t> confirmed;
  std::string unparsed;  // a partial last line (never expected)
};

// Starts the writer, lets it run for `delay`, kills it, and returns the
// numbers it confirmed.
Run KillWriterAfter(const std::filesystem::path& dir, std::uint64_t first, std::chrono::microseconds delay) {
  int pipe_fds[2];
  EXPECT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    const std::string first_text = std::to_string(first), count_text = std::to_string(kNumbersPerRun);
    ::execl(CITADEL_QUEUE_WRITER, CITADEL_QUEUE_WRITER, dir.c_str(), first_text.c_str(), count_text.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  // Read while it runs (a full pipe would stall it), then kill and drain.
  const auto kill_at = Steady::now() + delay;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - Steady::now());
    if (left.count() <= 0) break;
    pollfd poll_fd{pipe_fds[0], POLLIN, 0};
    if (::poll(&poll_fd, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) break;  // the writer ended on its own (an error)
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;)
    output.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer ended on its own: " << status;

  Run run;
  std::size_t start = 0;
  for (std::size_t end; (end = output.find('\n', start)) != std::string::npos; start = end + 1) {
    run.confirmed.push_back(std::stoull(output.substr(start, end - start)));
  }
  run.unparsed = output.substr(start);
  return run;
}

TEST(ReportQueuePowerCutTest, KillAtHundredsOfPointsLosesAtMostTheReportInFlight) {
  TempDir dir;
  const auto queue_dir = dir.path() / "reports";
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> delay_us(500, 40'000);
  std::set<std::uint64_t> expected;  // confirmed and not acknowledged
  const auto started = Steady::now();
  int killed_mid_append = 0;

  for (int point = 0; point < kKillPoints; ++point) {
    ASSERT_LT(Steady::now() - started, kTimeBudget) << "only " << point << " kill points in the time budget";
    const std::uint64_t first = static_cast<std::uint64_t>(point + 1) * kNumbersPerRun;
    const auto run = KillWriterAfter(queue_dir, first, std::chrono::microseconds(delay_us(random)));
    ASSERT_TRUE(run.unparsed.empty()) << "a partial line: " << run.unparsed;
    expected.insert(run.confirmed.begin(), run.confirmed.end());
    const std::uint64_t in_flight = run.confirmed.empty() ? first : run.confirmed.back() + 1;

    auto queue = ReportQueue::Open(queue_dir, {.max_reports = 1u << 20, .max_bytes = 1u << 30});
    ASSERT_TRUE(queue) << "kill point " << point << ": " << queue.error().message();
    const auto batch = (*queue)->Peek(1u << 20, std::size_t{1} << 40);
    std::set<std::uint64_t> present;
    std::vector<std::string> ids;
    for (const auto& report : batch.reports) {
      present.insert(testing::NumberOf(report));
      ids.push_back(report.report_id);
    }
    for (auto number : expected) ASSERT_TRUE(present.contains(number)) << "confirmed report " << number << " lost";
    std::vector<std::uint64_t> unconfirmed;
    for (auto number : present) {
      if (!expected.contains(number)) unconfirmed.push_back(number);
    }
    ASSERT_LE(unconfirmed.size(), 1u) << "kill point " << point;
    if (!unconfirmed.empty()) {
      ASSERT_EQ(unconfirmed.front(), in_flight) << "an unconfirmed report other than the one in flight";
      expected.insert(in_flight);
      ++killed_mid_append;
    }
    EXPECT_EQ(batch.dropped, 0);

    // Acknowledge all but the newest few, as an upload would.
    if (ids.size() > kKeep) {
      std::vector<std::string> acknowledged(ids.begin(), ids.end() - kKeep);
      ASSERT_EQ(Must((*queue)->Acknowledge(acknowledged)), acknowledged.size());
      for (std::size_t i = 0; i < acknowledged.size(); ++i) expected.erase(testing::NumberOf(batch.reports[i]));
    }
  }
  RecordProperty("kill_points", kKillPoints);
  RecordProperty("killed_after_rename_before_confirm", killed_mid_append);
  std::printf("%d kill points in %.1f s; %d left a report that was not confirmed yet\n", kKillPoints,
              std::chrono::duration<double>(Steady::now() - started).count(), killed_mid_append);
}

}  // namespace
}  // namespace citadel::reports
