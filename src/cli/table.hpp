// Human output helpers for the CLI: aligned tables, key/value blocks,
// relative times and shortened IDs. Machine output (--json) never goes
// through here.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/time.hpp"

namespace citadel::cli {

// A plain-text table: column widths come from the widest cell (counted in
// UTF-8 code points, so "é" is one column), columns are separated by two
// spaces, and the last column is not padded (no trailing blanks).
class Table {
 public:
  explicit Table(std::vector<std::string> headers);

  // Rows shorter than the header are padded with empty cells; longer rows
  // are cut to the header's width.
  void AddRow(std::vector<std::string> cells);
  std::size_t row_count() const { return rows_.size(); }

  void Render(std::ostream& out) const;
  std::string ToString() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "NAME:   value" lines with the values aligned.
void RenderKeyValues(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& rows);

// Number of terminal columns a UTF-8 string takes (code points; control
// characters count as zero).
std::size_t DisplayWidth(std::string_view text);

// Replaces control characters (including ESC) with '?', so that a value a
// device or another user chose cannot move the cursor or recolour the
// terminal of whoever lists it.
std::string SanitizeForTerminal(std::string_view text);

// "just now", "42s ago", "3m ago", "5h ago", "2d ago", "in 3h"; times more
// than 30 days away are shown as the date ("2026-01-31").
std::string FormatRelativeTime(TimePoint t, TimePoint now);

// Renders an RFC 3339 string the way FormatRelativeTime does; "" -> "never";
// text that does not parse is returned unchanged.
std::string FormatRelativeTimeText(std::string_view rfc3339, TimePoint now);

// First 12 characters of a long ID, for list views; show and --json print
// the full ID.
std::string ShortenId(std::string_view id, std::size_t length = 12);

}  // namespace citadel::cli
