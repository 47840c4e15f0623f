// Cgroups on the real hierarchy: limits are written where the kernel reads
// them, KillAll empties a group, Remove deletes it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/file.hpp"
#include "sandbox/cgroups.hpp"
#include "test_support.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

std::string Trimmed(const fs::path& file) {
  auto text = ReadFile(file);
  if (!text) return "<" + text.error().message() + ">";
  while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
  return *text;
}

TEST(SandboxCgroupsTest, DetectFindsAHierarchyWithMemoryAndPids) {
  auto cgroups = Cgroups::Detect();
  ASSERT_TRUE(cgroups.has_value()) << cgroups.error().message();
}

TEST(SandboxCgroupsTest, CreateWritesTheLimits) {
  auto cgroups = Cgroups::Detect();
  ASSERT_TRUE(cgroups.has_value()) << cgroups.error().message();
  std::string id = test_support::UniqueComponentId("limits");
  auto created = cgroups->Create(id, 48ull << 20, 17);
  ASSERT_TRUE(created.has_value()) << created.error().message();
  auto leaves = cgroups->LeafDirectories(id);
  if (cgroups->version() == Cgroups::Version::kV2) {
    EXPECT_EQ(*created, leaves[0].string());
    EXPECT_EQ(Trimmed(leaves[0] / "memory.max"), std::to_string(48ull << 20));
    EXPECT_EQ(Trimmed(leaves[0] / "pids.max"), "17");
  } else {
    EXPECT_EQ(*created, leaves[0].string() + "\n" + leaves[1].string());
    EXPECT_EQ(Trimmed(leaves[0] / "memory.limit_in_bytes"), std::to_string(48ull << 20));
    if (fs::exists(leaves[0] / "memory.memsw.limit_in_bytes")) {
      EXPECT_EQ(Trimmed(leaves[0] / "memory.memsw.limit_in_bytes"), std::to_string(48ull << 20));
    }
    EXPECT_EQ(Trimmed(leaves[1] / "pids.max"), "17");
  }
  // Created again with other limits (an app update): both directions work.
  ASSERT_TRUE(cgroups->Create(id, 96ull << 20, 20).has_value());
  ASSERT_TRUE(cgroups->Create(id, 16ull << 20, 20).has_value());
  auto stats = cgroups->Read(id);
  ASSERT_TRUE(stats.has_value()) << stats.error().message();
  EXPECT_EQ(stats->pids, 0u);
  EXPECT_EQ(stats->oom_kills, 0u);
  ASSERT_TRUE(cgroups->Remove(id).has_value());
  for (const auto& leaf : leaves) EXPECT_FALSE(fs::exists(leaf)) << leaf;
}

TEST(SandboxCgroupsTest, RefusesComponentIdsThatAreNotPlainNames) {
  auto cgroups = Cgroups::Detect();
  ASSERT_TRUE(cgroups.has_value());
  for (const char* bad : {"", ".", "..", "a/b", "../escape", "a b"}) {
    auto created = cgroups->Create(bad, 1 << 20, 1);
    ASSERT_FALSE(created.has_value()) << bad;
    EXPECT_EQ(created.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(SandboxCgroupsTest, KillAllEmptiesTheGroupAndRemoveDeletesIt) {
  auto cgroups = Cgroups::Detect();
  ASSERT_TRUE(cgroups.has_value());
  std::string id = test_support::UniqueComponentId("kill");
  auto created = cgroups->Create(id, 64ull << 20, 16);
  ASSERT_TRUE(created.has_value()) << created.error().message();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    (void)::close(ready[0]);
    if (!JoinCgroup(*created)) ::_exit(3);
    (void)!::write(ready[1], "x", 1);
    for (int i = 0; i < 3; ++i) {
      if (::fork() == 0) break;  // a small tree of processes
    }
    ::sleep(60);
    ::_exit(0);
  }
  (void)::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  (void)::close(ready[0]);
  std::uint32_t pids = 0;
  for (int i = 0; i < 200 && pids < 4; ++i) {
    auto stats = cgroups->Read(id);
    ASSERT_TRUE(stats.has_value());
    pids = stats->pids;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(pids, 4u);
  // Not empty: Remove refuses (after its bounded wait).
  auto early = cgroups->Remove(id);
  EXPECT_FALSE(early.has_value());
  ASSERT_TRUE(cgroups->KillAll(id).has_value());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));
  // The grandchildren were reparented; the pids controller counts them
  // until their new parent reaps them.
  for (int i = 0; i < 400 && pids > 0; ++i) {
    auto stats = cgroups->Read(id);
    ASSERT_TRUE(stats.has_value());
    pids = stats->pids;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(pids, 0u);
  auto removed = cgroups->Remove(id);
  ASSERT_TRUE(removed.has_value()) << removed.error().message();
  EXPECT_TRUE(cgroups->Remove(id).has_value()) << "removing a missing group is not an error";
}

// The cgroup2 mount's line of /proc/self/mountinfo with "favordynmods"
// taken out of its super options: everything else must survive a toggle.
std::string Cgroup2MountLineWithoutFavour() {
  auto text = ReadFile("/proc/self/mountinfo");
  if (!text) return "<" + text.error().message() + ">";
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(" - cgroup2 ") == std::string::npos) continue;
    for (const std::string& option : {std::string(",favordynmods"), std::string("favordynmods,")}) {
      if (auto at = line.find(option); at != std::string::npos) line.erase(at, option.size());
    }
    return line;
  }
  return "<no cgroup2 mount>";
}

// The CI machine has a cgroup2 mount (beside the v1 hierarchies); this
// fails, rather than skips, where it has none. Only turning it on is
// asserted: citadelds started by tests running beside this one turn it on
// too, so "off" is not a state this test can hold.
TEST(SandboxCgroupsTest, FavordynmodsTurnsOnByRemountKeepingEveryOtherOption) {
  auto before = FavoursDynamicModifications();
  ASSERT_TRUE(before.has_value()) << before.error().message();
  const std::string line_before = Cgroup2MountLineWithoutFavour();
  ASSERT_EQ(line_before.find('<'), std::string::npos) << line_before;
  struct Restore {
    bool mode;
    ~Restore() { (void)SetFavourDynamicModifications(mode); }
  } restore{*before};

  auto set = SetFavourDynamicModifications(true);
  ASSERT_TRUE(set.has_value()) << set.error().message();
  auto now = FavoursDynamicModifications();
  ASSERT_TRUE(now.has_value()) << now.error().message();
  EXPECT_TRUE(*now);
  EXPECT_NE(ReadFile("/proc/self/mountinfo").value_or("").find("favordynmods"), std::string::npos);
  EXPECT_EQ(Cgroup2MountLineWithoutFavour(), line_before);
}

}  // namespace
}  // namespace citadel::sandbox
