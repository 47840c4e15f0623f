// Test helper for power_cut_test: opens the report queue in argv[1] and
// appends reports numbered argv[2], argv[2]+1, ... until killed (at most
// argv[3] of them), printing each number on stdout once its Append
// returned, i.e. once the report is durable. Exit 2 on any error.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "reports/report_queue.hpp"
#include "reports/testing_report.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    (void)std::fprintf(stderr, "usage: %s QUEUE_DIR FIRST_NUMBER MAX_COUNT\n", argv[0]);
    return 2;
  }
  const std::uint64_t first = std::strtoull(argv[2], nullptr, 10);
  const std::uint64_t count = std::strtoull(argv[3], nullptr, 10);
  // Large limits: nothing is dropped, so every confirmed report must stay.
  auto queue = citadel::reports::ReportQueue::Open(argv[1], {.max_reports = 1u << 20, .max_bytes = 1u << 30});
  if (!queue) {
    (void)std::fprintf(stderr, "open: %s\n", queue.error().message().c_str());
    return 2;
  }
  for (std::uint64_t number = first; number < first + count; ++number) {
    // Vary the size so that cuts land at different offsets of the write.
    auto appended = (*queue)->Append(citadel::reports::testing::MakeReport(number, (number * 37) % 900));
    if (!appended) {
      (void)std::fprintf(stderr, "append: %s\n", appended.error().message().c_str());
      return 2;
    }
    // One write(2) per number: the pipe holds whole lines.
    const std::string line = std::to_string(number) + "\n";
    if (::write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 2;
  }
  return 0;
}
