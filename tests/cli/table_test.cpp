#include "cli/table.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

namespace citadel::cli {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(TableTest, AlignsColumnsToTheWidestCell) {
  Table table({"ID", "NAME", "ROLE"});
  table.AddRow({"1", "ci-pipeline", "contributor"});
  table.AddRow({"12345", "me", "admin"});
  EXPECT_EQ(table.ToString(),
            "ID     NAME         ROLE\n"
            "1      ci-pipeline  contributor\n"
            "12345  me           admin\n");
}

TEST(TableTest, ColumnsStartAtTheSameOffsetInEveryLine) {
  Table table({"DEVICE", "OS", "LAST SEEN"});
  table.AddRow({"3f2a9c0d17b4", "1.0.0", "3m ago"});
  table.AddRow({"a", "10.20.300", "never"});
  auto lines = Lines(table.ToString());
  ASSERT_EQ(lines.size(), 3u);
  auto os_offset = lines[0].find("OS");
  auto seen_offset = lines[0].find("LAST SEEN");
  EXPECT_EQ(lines[1].find("1.0.0"), os_offset);
  EXPECT_EQ(lines[2].find("10.20.300"), os_offset);
  EXPECT_EQ(lines[1].find("3m ago"), seen_offset);
  EXPECT_EQ(lines[2].find("never"), seen_offset);
}

TEST(TableTest, NoTrailingBlanksAndShortRowsArePadded) {
  Table table({"A", "B", "C"});
  table.AddRow({"x"});
  table.AddRow({"y", "long value"});
  for (const auto& line : Lines(table.ToString())) {
    ASSERT_FALSE(line.empty());
    EXPECT_NE(line.back(), ' ') << "'" << line << "'";
  }
  EXPECT_EQ(table.row_count(), 2u);
}

TEST(TableTest, WidthCountsUtf8CodePointsNotBytes) {
  Table table({"NAME", "X"});
  table.AddRow({"Zürich", "1"});
  table.AddRow({"Bern", "2"});
  auto lines = Lines(table.ToString());
  // "Zürich" is 6 columns (7 bytes): "X" column starts at column 8 in all rows.
  EXPECT_EQ(lines[0], "NAME    X");
  EXPECT_EQ(lines[1], "Zürich  1");
  EXPECT_EQ(lines[2], "Bern    2");
  EXPECT_EQ(DisplayWidth("Zürich"), 6u);
}

TEST(TableTest, ControlCharactersCannotReachTheTerminal) {
  Table table({"NAME"});
  table.AddRow({"evil\x1b[2Jname\n"});
  auto text = table.ToString();
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(text.find("evil?[2Jname?"), std::string::npos);
}

TEST(TableTest, KeyValuesAreAligned) {
  std::ostringstream out;
  RenderKeyValues(out, {{"ID", "abc"}, {"Last seen", "3m ago"}});
  EXPECT_EQ(out.str(), "ID:         abc\nLast seen:  3m ago\n");
}

TEST(RelativeTimeTest, PastAndFuture) {
  auto now = FromUnixSeconds(1'800'000'000);
  using std::chrono::seconds;
  EXPECT_EQ(FormatRelativeTime(now, now), "just now");
  EXPECT_EQ(FormatRelativeTime(now - seconds(42), now), "42s ago");
  EXPECT_EQ(FormatRelativeTime(now - seconds(3 * 60 + 59), now), "3m ago");
  EXPECT_EQ(FormatRelativeTime(now - seconds(5 * 3600), now), "5h ago");
  EXPECT_EQ(FormatRelativeTime(now - seconds(2 * 86400 + 10), now), "2d ago");
  EXPECT_EQ(FormatRelativeTime(now + seconds(3 * 3600 + 5), now), "in 3h");
  EXPECT_EQ(FormatRelativeTime(now - seconds(90LL * 86400), now),
            FormatRfc3339(now - seconds(90LL * 86400)).substr(0, 10));
}

TEST(RelativeTimeTest, TextForms) {
  auto now = FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(FormatRelativeTimeText("", now), "never");
  EXPECT_EQ(FormatRelativeTimeText(FormatRfc3339(now - std::chrono::minutes(3)), now), "3m ago");
  EXPECT_EQ(FormatRelativeTimeText("yesterday", now), "yesterday");
}

TEST(ShortenIdTest, CutsLongIdsOnly) {
  EXPECT_EQ(ShortenId(std::string(64, 'a')), std::string(12, 'a'));
  EXPECT_EQ(ShortenId("abc"), "abc");
}

}  // namespace
}  // namespace citadel::cli
