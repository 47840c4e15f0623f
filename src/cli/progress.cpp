#include "cli/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>

#include "cli/table.hpp"

namespace citadel::cli {
namespace {

constexpr std::size_t kBarWidth = 24;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

std::string OneDecimal(double value) {
  std::array<char, 32> buffer{};
  // Cannot truncate: a 64-bit byte count in KiB and up has at most 17 digits.
  (void)std::snprintf(buffer.data(), buffer.size(), "%.1f", value);
  return buffer.data();
}

}  // namespace

ProgressSink ErrorStreamProgressSink(std::ostream& err) {
  // Only the real stderr can be a terminal; any other stream (a test's, a
  // captured one) gets the plain final line.
  return ProgressSink{&err, &err == &std::cerr && ::isatty(STDERR_FILENO) == 1};
}

std::string FormatBytes(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr std::array<const char*, 4> kUnits = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  return OneDecimal(value) + " " + kUnits[unit];
}

std::string FormatRate(std::uint64_t bytes, double seconds) {
  if (seconds <= 0.0) return "-";
  return FormatBytes(static_cast<std::uint64_t>(static_cast<double>(bytes) / seconds)) + "/s";
}

ProgressBar::ProgressBar(ProgressSink sink, const std::string& label, std::uint64_t total, std::uint64_t already,
                         SteadyClock clock)
    : sink_(sink),
      label_(SanitizeForTerminal(label)),
      total_(total),
      already_(std::min(already, total)),
      done_(already_),
      clock_(std::move(clock)),
      started_(clock_()) {}

ProgressBar::~ProgressBar() {
  if (sink_.out != nullptr && sink_.terminal && drawn_ && !finished_) *sink_.out << '\n' << std::flush;
}

double ProgressBar::ElapsedSeconds() const { return std::chrono::duration<double>(clock_() - started_).count(); }

std::string ProgressBar::BarLine() const {
  const std::uint64_t percent = total_ == 0 ? 100 : done_ * 100 / total_;
  const std::size_t filled = total_ == 0 ? kBarWidth : static_cast<std::size_t>(done_ * kBarWidth / total_);
  std::string bar = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "]";
  return label_ + " " + bar + " " + FormatBytes(done_) + " / " + FormatBytes(total_) + " " + std::to_string(percent) +
         "% " + FormatRate(done_ - already_, ElapsedSeconds());
}

std::string ProgressBar::SummaryLine() const {
  const double seconds = ElapsedSeconds();
  const std::uint64_t sent = done_ - already_;
  std::string line = label_ + ": " + FormatBytes(done_);
  if (done_ != total_) line += " of " + FormatBytes(total_);
  line += ", " + FormatBytes(sent) + " sent in " + OneDecimal(seconds) + " s";
  if (sent > 0) line += " (" + FormatRate(sent, seconds) + ")";
  return line;
}

void ProgressBar::Draw() {
  // "\x1b[K" erases what a longer earlier line left on the right.
  *sink_.out << '\r' << BarLine() << "\x1b[K" << std::flush;
  drawn_ = true;
  drawn_bytes_ = done_;
  last_draw_ = clock_();
}

void ProgressBar::Update(std::uint64_t done) {
  done_ = std::clamp(done, already_, total_);
  if (sink_.out == nullptr || !sink_.terminal || finished_) return;
  if (drawn_ && done_ != total_ && clock_() - last_draw_ < kRedrawInterval) return;
  Draw();
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  if (sink_.out == nullptr) return;
  if (sink_.terminal) {
    if (!drawn_ || drawn_bytes_ != done_) Draw();
    *sink_.out << '\n' << std::flush;
    return;
  }
  *sink_.out << SummaryLine() << '\n';
}

}  // namespace citadel::cli
