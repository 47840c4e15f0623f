#include "cli/table.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>

namespace citadel::cli {

std::size_t DisplayWidth(std::string_view text) {
  std::size_t width = 0;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    bool continuation = (byte & 0xC0) == 0x80;
    bool control = byte < 0x20 || byte == 0x7F;
    if (!continuation && !control) ++width;
  }
  return width;
}

std::string SanitizeForTerminal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte == 0x7F) ? '?' : c;
  }
  return out;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& cell : cells) cell = SanitizeForTerminal(cell);
  rows_.push_back(std::move(cells));
}

void Table::Render(std::ostream& out) const {
  std::vector<std::size_t> widths(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], DisplayWidth(row[i]));
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);

  auto write_row = [&](const std::vector<std::string>& row) {
    // Trailing empty cells would only add blanks at the end of the line.
    std::size_t last = row.size();
    while (last > 1 && row[last - 1].empty()) --last;
    std::string line;
    for (std::size_t i = 0; i < last; ++i) {
      line += row[i];
      if (i + 1 < last) line.append(widths[i] - DisplayWidth(row[i]) + 2, ' ');
    }
    out << line << '\n';
  };
  write_row(headers_);
  for (const auto& row : rows_) write_row(row);
}

std::string Table::ToString() const {
  std::ostringstream out;
  Render(out);
  return out.str();
}

void RenderKeyValues(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, DisplayWidth(key) + 1);
  for (const auto& [key, value] : rows) {
    std::string line = key + ":";
    line.append(width - DisplayWidth(key) - 1 + 2, ' ');
    line += SanitizeForTerminal(value);
    out << line << '\n';
  }
}

std::string FormatRelativeTime(TimePoint t, TimePoint now) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  auto delta = duration_cast<seconds>(now - t).count();
  bool future = delta < 0;
  std::int64_t magnitude = future ? -delta : delta;
  if (magnitude < 5) return "just now";
  constexpr std::int64_t kMinute = 60, kHour = 60 * kMinute, kDay = 24 * kHour;
  if (magnitude > 30 * kDay) return FormatRfc3339(t).substr(0, 10);
  std::string amount;
  if (magnitude < kMinute) {
    amount = std::to_string(magnitude) + "s";
  } else if (magnitude < kHour) {
    amount = std::to_string(magnitude / kMinute) + "m";
  } else if (magnitude < kDay) {
    amount = std::to_string(magnitude / kHour) + "h";
  } else {
    amount = std::to_string(magnitude / kDay) + "d";
  }
  return future ? "in " + amount : amount + " ago";
}

std::string FormatRelativeTimeText(std::string_view rfc3339, TimePoint now) {
  if (rfc3339.empty()) return "never";
  auto parsed = ParseRfc3339(rfc3339);
  if (!parsed) return std::string(rfc3339);
  return FormatRelativeTime(*parsed, now);
}

std::string ShortenId(std::string_view id, std::size_t length) {
  return std::string(id.substr(0, std::min(length, id.size())));
}

}  // namespace citadel::cli
