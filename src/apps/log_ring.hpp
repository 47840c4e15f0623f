// A bounded, time-stamped log of one app's stdout/stderr: the last
// max_lines lines within max_bytes of text. Bytes arrive in arbitrary
// chunks from the app's pipe; a line ends at '\n', and an over-long line is
// cut at kMaxLineBytes so an app writing without newlines cannot grow
// memory.
//
// Security contract: app output is untrusted text. It is stored as given
// (the CLI sanitises it for terminals); the bounds hold whatever the app
// writes.
//
// Threading: all methods are safe from any thread (internal mutex).
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.hpp"

namespace citadel::apps {

inline constexpr std::size_t kDefaultLogLines = 256;
inline constexpr std::size_t kDefaultLogBytes = 64 * 1024;
inline constexpr std::size_t kMaxLineBytes = 4096;

struct LogLine {
  TimePoint time;
  std::string text;  // without the trailing newline
};

class LogRing {
 public:
  explicit LogRing(std::size_t max_lines = kDefaultLogLines, std::size_t max_bytes = kDefaultLogBytes);

  // Appends raw pipe bytes; complete lines are stored with `now`.
  void Append(std::string_view chunk, TimePoint now);
  // Stores any partial line (the pipe closed).
  void Flush(TimePoint now);
  // Stores one complete line (e.g. "[citadeld] exited with status 1").
  void AppendLine(std::string_view line, TimePoint now);

  // The last `count` stored lines, oldest first.
  std::vector<LogLine> Tail(std::size_t count) const;
  std::size_t line_count() const;
  std::size_t byte_count() const;

 private:
  void StoreLocked(std::string line, TimePoint now);

  const std::size_t max_lines_;
  const std::size_t max_bytes_;
  mutable std::mutex mutex_;
  std::deque<LogLine> lines_;
  std::size_t bytes_ = 0;
  std::string partial_;
};

}  // namespace citadel::apps
