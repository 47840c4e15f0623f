// Progress of a long transfer (an image upload) for the person watching it.
//
// On a terminal the bar is one line redrawn in place ("\r", erase to the end
// of the line) with the bytes done of the total, the percent and the rate.
// Anywhere else (a pipe, a CI log, a test) nothing is drawn while it runs,
// and Finish() prints one plain summary line. Commands in --json mode make
// an inert bar (a sink without a stream): their stdout is for machines and
// their stderr only for errors.
//
// Threading: one bar per transfer, used from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

namespace citadel::cli {

// Where a bar draws. Tests inject a string stream with either mode.
struct ProgressSink {
  std::ostream* out = nullptr;  // nullptr: draw nothing at all
  bool terminal = false;        // redraw in place; false: only the final line
};

// The sink for a command's error stream: terminal mode only when `err` is
// the process's std::cerr and file descriptor 2 is a TTY.
ProgressSink ErrorStreamProgressSink(std::ostream& err);

using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;

class ProgressBar {
 public:
  // `label` names what moves ("blink.img"). `already` bytes were there before
  // this run (a resumed upload): they count in the bar, not in the rate.
  ProgressBar(
      ProgressSink sink, const std::string& label, std::uint64_t total, std::uint64_t already = 0,
      SteadyClock clock = [] { return std::chrono::steady_clock::now(); });
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // Ends a bar that never finished (the transfer failed) with a newline on a
  // terminal, so the error that follows starts on its own line.
  ~ProgressBar();

  // `done` bytes of the total are there now. Redraws at most every 100 ms
  // (and always at the total) on a terminal; nothing otherwise.
  void Update(std::uint64_t done);
  // The last state and a newline on a terminal; elsewhere the summary line
  // "blink.img: 5.2 MiB, 3.0 MiB sent in 2.1 s (1.4 MiB/s)". Once.
  void Finish();

  // The line a terminal shows now (without "\r"), for tests.
  std::string BarLine() const;
  // The summary Finish() prints elsewhere (without the newline).
  std::string SummaryLine() const;

 private:
  double ElapsedSeconds() const;
  void Draw();

  ProgressSink sink_;
  std::string label_;
  std::uint64_t total_ = 0;
  std::uint64_t already_ = 0;
  std::uint64_t done_ = 0;
  SteadyClock clock_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_draw_{};
  std::uint64_t drawn_bytes_ = 0;  // done_ when last drawn
  bool drawn_ = false;
  bool finished_ = false;
};

// "512 B", "1.5 KiB", "3.2 MiB", "1.0 GiB" (binary units, one decimal).
std::string FormatBytes(std::uint64_t bytes);
// "2.5 MiB/s"; "-" when nothing can be said (no time has passed).
std::string FormatRate(std::uint64_t bytes, double seconds);

}  // namespace citadel::cli
