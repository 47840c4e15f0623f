// update::FaultPoint in fresh child processes (the environment is read once
// per process): counting, killing at the N-th point, and off by default.
#include "update/fault.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::update {
namespace {

// Runs the child with `env` (NAME=VALUE entries only) and returns its wait
// status.
int RunChild(int points, const std::vector<std::string>& env) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    std::string count = std::to_string(points);
    char* argv[] = {const_cast<char*>(CITADEL_UPDATE_FAULT_CHILD), count.data(), nullptr};
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::string CountFile(const citadel::testing::TempDir& temp) { return (temp.path() / "count").string(); }

TEST(FaultPointTest, OffWithoutTheEnvironment) {
  int status = RunChild(5, {});
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FaultPointTest, CountsEveryPoint) {
  citadel::testing::TempDir temp("fault");
  int status = RunChild(5, {"CITADEL_FAULT_COUNT=" + CountFile(temp)});
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(ReadFile(CountFile(temp)).value(), "step:1\nstep:2\nstep:3\nstep:4\nstep:5\n");
}

TEST(FaultPointTest, KillsAtTheNthPoint) {
  citadel::testing::TempDir temp("fault");
  int status = RunChild(5, {"CITADEL_FAULT_AT=3", "CITADEL_FAULT_COUNT=" + CountFile(temp)});
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(ReadFile(CountFile(temp)).value(), "step:1\nstep:2\nstep:3\n");
}

TEST(FaultPointTest, PointBeyondTheLastIsNeverReached) {
  int status = RunChild(5, {"CITADEL_FAULT_AT=6"});
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FaultPointTest, MalformedSettingIsNotIgnored) {
  int status = RunChild(1, {"CITADEL_FAULT_AT=three"});
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGABRT);
}

}  // namespace
}  // namespace citadel::update
