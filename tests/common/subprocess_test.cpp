// RunSubprocess against real programs (/bin/sh, /bin/cat, /usr/bin/env):
// what the program gets (argv, environment, stdin, descriptors), what comes
// back (exit code, bounded stdout and stderr) and the time bound.
#include "common/subprocess.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace citadel {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTimeout{20'000};

SubprocessResult RunOk(const SubprocessOptions& options) {
  auto result = RunSubprocess(options);
  EXPECT_TRUE(result) << result.error().message();
  return result ? *result : SubprocessResult{};
}

SubprocessOptions Shell(const std::string& script) { return {.argv = {"/bin/sh", "-c", script}, .timeout = kTimeout}; }

TEST(SubprocessTest, CapturesStdoutStderrAndTheExitCodeSeparately) {
  auto result = RunOk(Shell("echo out; echo err >&2; exit 3"));
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.out, "out\n");
  EXPECT_EQ(result.err, "err\n");
  EXPECT_FALSE(result.out_truncated);
  EXPECT_FALSE(result.err_truncated);
}

TEST(SubprocessTest, MergesStderrIntoStdoutInTheOrderWritten) {
  SubprocessOptions options = Shell("echo one; echo two >&2; echo three");
  options.merge_stderr_into_stdout = true;
  auto result = RunOk(options);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "one\ntwo\nthree\n");
  EXPECT_EQ(result.err, "");
}

TEST(SubprocessTest, ArgumentsReachTheProgramUnchangedWithoutAShell) {
  auto result = RunOk(
      {.argv = {"/bin/sh", "-c", "printf '%s|' \"$@\"", "sh", "a b", "$HOME", "*", ";", ""}, .timeout = kTimeout});
  EXPECT_EQ(result.out, "a b|$HOME|*|;||");
}

TEST(SubprocessTest, FeedsStdinLargerThanAPipeWhileReadingStdout) {
  std::string input(1 << 20, '\0');
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>('a' + i % 26);
  auto result = RunOk({.argv = {"/bin/cat"}, .stdin_data = input, .timeout = kTimeout, .max_stdout_bytes = 2 << 20});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, input);
}

TEST(SubprocessTest, AProgramThatIgnoresItsStdinDoesNotHurtTheCaller) {
  // The pipe fills, the program exits, the next write gets EPIPE: the
  // SIGPIPE it raises must not kill this test.
  auto result =
      RunOk({.argv = {"/bin/sh", "-c", "exit 0"}, .stdin_data = std::string(1 << 20, 'x'), .timeout = kTimeout});
  EXPECT_EQ(result.exit_code, 0);
}

TEST(SubprocessTest, StdinIsEmptyByDefault) {
  auto result = RunOk({.argv = {"/bin/cat"}, .timeout = kTimeout});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "");
  auto empty = RunOk({.argv = {"/bin/cat"}, .stdin_data = "", .timeout = kTimeout});
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_EQ(empty.out, "");
}

TEST(SubprocessTest, StdoutOverItsBoundIsAnErrorOrTruncatedAsAsked) {
  SubprocessOptions options = Shell("head -c 100000 /dev/zero");
  options.max_stdout_bytes = 1000;
  auto refused = RunSubprocess(options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kTooLarge);

  options.stdout_overflow_is_error = false;
  auto result = RunOk(options);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.size(), 1000U);
  EXPECT_TRUE(result.out_truncated);

  options.max_stdout_bytes = 100000;  // exactly full is not truncated
  auto exact = RunOk(options);
  EXPECT_EQ(exact.out.size(), 100000U);
  EXPECT_FALSE(exact.out_truncated);
}

TEST(SubprocessTest, StderrIsCutToItsBound) {
  SubprocessOptions options = Shell("head -c 100000 /dev/zero >&2; echo done");
  options.max_stderr_bytes = 10;
  auto result = RunOk(options);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, "done\n");
  EXPECT_EQ(result.err.size(), 10U);
  EXPECT_TRUE(result.err_truncated);
}

TEST(SubprocessTest, TheEnvironmentIsExactlyTheOneGivenOrInherited) {
  auto given =
      RunOk({.argv = {"/usr/bin/env"}, .environment = std::vector<std::string>{"A=1", "B=two"}, .timeout = kTimeout});
  EXPECT_EQ(given.out, "A=1\nB=two\n");

  ASSERT_EQ(::setenv("CITADEL_SUBPROCESS_TEST", "inherited", 1), 0);
  auto inherited = RunOk({.argv = {"/usr/bin/env"}, .timeout = kTimeout});
  (void)::unsetenv("CITADEL_SUBPROCESS_TEST");
  EXPECT_NE(inherited.out.find("CITADEL_SUBPROCESS_TEST=inherited\n"), std::string::npos) << inherited.out;
}

TEST(SubprocessTest, NoDescriptorBeyondTheStandardOnesIsInherited) {
  // Not close-on-exec, so only RunSubprocess's own closing keeps it out.
  const int opened = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(opened, 0);
  const int leaked = ::fcntl(opened, F_DUPFD, 100);
  ::close(opened);
  ASSERT_GE(leaked, 100);
  auto result =
      RunOk({.argv = {"/usr/bin/test", "-e", "/proc/self/fd/" + std::to_string(leaked)}, .timeout = kTimeout});
  ::close(leaked);
  EXPECT_EQ(result.exit_code, 1);
}

TEST(SubprocessTest, AKilledProgramHasExitCodeMinusOne) {
  auto result = RunOk(Shell("kill -9 $$"));
  EXPECT_EQ(result.exit_code, -1);
}

TEST(SubprocessTest, AProgramThatCannotRunExitsWith127) {
  auto result = RunOk({.argv = {"/nonexistent/program"}, .timeout = kTimeout});
  EXPECT_EQ(result.exit_code, 127);
  EXPECT_EQ(result.err, "exec failed\n");
}

TEST(SubprocessTest, AnEmptyArgvOrABareNameIsRefused) {
  auto empty = RunSubprocess({.argv = {}});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::kInvalidArgument);
  auto bare = RunSubprocess({.argv = {"sh", "-c", "true"}});
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code(), ErrorCode::kInvalidArgument);
}

TEST(SubprocessTest, AProgramPastItsTimeoutIsKilled) {
  const auto start = std::chrono::steady_clock::now();
  auto result = RunSubprocess({.argv = {"/bin/sleep", "30"}, .timeout = milliseconds(200)});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(SubprocessTest, AProgramThatClosesItsOutputsAndLingersIsKilled) {
  const auto start = std::chrono::steady_clock::now();
  SubprocessOptions options = Shell("exec >&- 2>&-; exec sleep 30");
  options.timeout = milliseconds(300);
  auto result = RunSubprocess(options);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(result.error().message().find("did not exit"), std::string::npos) << result.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(SubprocessTest, DescribeCommandNamesTheProgramWithoutItsDirectory) {
  EXPECT_EQ(DescribeCommand({"/sbin/mkfs.ext4", "-q", "image"}), "mkfs.ext4 -q image");
  EXPECT_EQ(DescribeCommand({}), "");
}

}  // namespace
}  // namespace citadel
