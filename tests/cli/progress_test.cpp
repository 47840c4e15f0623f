// The upload progress bar with an injected sink and clock: redrawn in place
// on a terminal, one summary line elsewhere, nothing without a stream.
#include "cli/progress.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace citadel::cli {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr std::uint64_t kMiB = 1024 * 1024;

class ProgressTest : public ::testing::Test {
 protected:
  SteadyClock Clock() {
    return [this] { return now_; };
  }
  void Advance(milliseconds by) { now_ += by; }

  std::ostringstream out_;
  steady_clock::time_point now_ = steady_clock::time_point(std::chrono::hours(1));
};

TEST(FormatBytesTest, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(5 * kMiB / 2), "2.5 MiB");
  EXPECT_EQ(FormatBytes(std::uint64_t{1} << 30), "1.0 GiB");
  EXPECT_EQ(FormatRate(3 * kMiB, 2.0), "1.5 MiB/s");
  EXPECT_EQ(FormatRate(100, 0.0), "-");
}

TEST_F(ProgressTest, TerminalRedrawsInPlaceWithDoneTotalPercentAndRate) {
  ProgressBar bar(ProgressSink{&out_, true}, "blink.img", 4 * kMiB, 0, Clock());
  Advance(milliseconds(1000));
  bar.Update(kMiB);
  EXPECT_EQ(out_.str(), "\r" + bar.BarLine() + "\x1b[K");
  EXPECT_EQ(bar.BarLine(), "blink.img [######------------------] 1.0 MiB / 4.0 MiB 25% 1.0 MiB/s");

  // Within 100 ms of the last draw nothing is drawn, unless it is the end.
  const auto drawn = out_.str();
  Advance(milliseconds(50));
  bar.Update(2 * kMiB);
  EXPECT_EQ(out_.str(), drawn);
  Advance(milliseconds(950));
  bar.Update(4 * kMiB);
  EXPECT_EQ(bar.BarLine(), "blink.img [########################] 4.0 MiB / 4.0 MiB 100% 2.0 MiB/s");
  bar.Finish();
  const auto text = out_.str();
  EXPECT_TRUE(text.ends_with("100% 2.0 MiB/s\x1b[K\n")) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line, redrawn";
  bar.Finish();  // once
  EXPECT_EQ(out_.str(), text);
}

TEST_F(ProgressTest, ElsewhereOnlyTheFinalSummaryLine) {
  ProgressBar bar(ProgressSink{&out_, false}, "rootfs.img", 3 * kMiB, kMiB, Clock());
  Advance(milliseconds(500));
  bar.Update(2 * kMiB);
  Advance(milliseconds(500));
  bar.Update(3 * kMiB);
  EXPECT_EQ(out_.str(), "");
  bar.Finish();
  // A resumed transfer: the rate counts only what this run sent.
  EXPECT_EQ(out_.str(), "rootfs.img: 3.0 MiB, 2.0 MiB sent in 1.0 s (2.0 MiB/s)\n");
  EXPECT_EQ(out_.str().find('\r'), std::string::npos);
  EXPECT_EQ(out_.str().find('\x1b'), std::string::npos);
}

TEST_F(ProgressTest, NoStreamDrawsNothing) {
  ProgressBar bar(ProgressSink{}, "blink.img", kMiB, 0, Clock());
  bar.Update(kMiB / 2);
  bar.Finish();
  EXPECT_NE(bar.SummaryLine().find("512.0 KiB"), std::string::npos);
}

TEST_F(ProgressTest, AnUnfinishedBarEndsItsLineOnATerminal) {
  {
    ProgressBar bar(ProgressSink{&out_, true}, "blink.img", 2 * kMiB, 0, Clock());
    bar.Update(kMiB);
  }
  EXPECT_TRUE(out_.str().ends_with("\x1b[K\n")) << out_.str();
  std::ostringstream plain;
  {
    ProgressBar bar(ProgressSink{&plain, false}, "blink.img", 2 * kMiB, 0, Clock());
    bar.Update(kMiB);
  }
  EXPECT_EQ(plain.str(), "") << "a failed transfer says nothing; the error does";
}

TEST_F(ProgressTest, LabelsCannotDriveTheTerminal) {
  ProgressBar bar(ProgressSink{&out_, false}, "evil\x1b[2J.img", kMiB, 0, Clock());
  bar.Update(kMiB);
  bar.Finish();
  EXPECT_EQ(out_.str().find("\x1b[2J"), std::string::npos) << out_.str();
}

TEST(ProgressSinkTest, OnlyTheProcessStderrCanBeATerminal) {
  std::ostringstream captured;
  auto sink = ErrorStreamProgressSink(captured);
  EXPECT_EQ(sink.out, &captured);
  EXPECT_FALSE(sink.terminal);
}

}  // namespace
}  // namespace citadel::cli
