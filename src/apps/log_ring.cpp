#include "apps/log_ring.hpp"

#include <algorithm>

namespace citadel::apps {

LogRing::LogRing(std::size_t max_lines, std::size_t max_bytes)
    : max_lines_(std::max<std::size_t>(max_lines, 1)), max_bytes_(std::max<std::size_t>(max_bytes, kMaxLineBytes)) {}

void LogRing::Append(std::string_view chunk, TimePoint now) {
  std::lock_guard lock(mutex_);
  while (!chunk.empty()) {
    auto newline = chunk.find('\n');
    std::string_view piece = chunk.substr(0, newline);
    std::size_t room = kMaxLineBytes - partial_.size();
    if (piece.size() >= room) {
      // Cut an over-long line: store what fits, continue with the rest as a
      // new line.
      partial_.append(piece.substr(0, room));
      StoreLocked(std::exchange(partial_, {}), now);
      chunk.remove_prefix(room);
      continue;
    }
    partial_.append(piece);
    if (newline == std::string_view::npos) break;
    StoreLocked(std::exchange(partial_, {}), now);
    chunk.remove_prefix(newline + 1);
  }
}

void LogRing::Flush(TimePoint now) {
  std::lock_guard lock(mutex_);
  if (!partial_.empty()) StoreLocked(std::exchange(partial_, {}), now);
}

void LogRing::AppendLine(std::string_view line, TimePoint now) {
  std::lock_guard lock(mutex_);
  StoreLocked(std::string(line.substr(0, kMaxLineBytes)), now);
}

void LogRing::StoreLocked(std::string line, TimePoint now) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  bytes_ += line.size();
  lines_.push_back(LogLine{now, std::move(line)});
  while (lines_.size() > max_lines_ || bytes_ > max_bytes_) {
    bytes_ -= lines_.front().text.size();
    lines_.pop_front();
  }
}

std::vector<LogLine> LogRing::Tail(std::size_t count) const {
  std::lock_guard lock(mutex_);
  std::size_t first = lines_.size() > count ? lines_.size() - count : 0;
  return {lines_.begin() + static_cast<std::ptrdiff_t>(first), lines_.end()};
}

std::size_t LogRing::line_count() const {
  std::lock_guard lock(mutex_);
  return lines_.size();
}

std::size_t LogRing::byte_count() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace citadel::apps
