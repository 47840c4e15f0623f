#include "common/file.hpp"

#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace citadel {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() / ("citadel-file-test-" + std::to_string(random()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(dir_);
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

// Runs `write` in a forked child (which may change its limits and
// credentials) and returns what it reported: 0 for a kIo error, 1 for
// success, 2 for another error, 3 when the child could not be set up.
int InChild(const std::function<int()>& write) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(write());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

int Outcome(const Expected<void>& written) {
  if (written) return 1;
  return written.error().code() == ErrorCode::kIo ? 0 : 2;
}

TEST_F(FileTest, AtomicWriteReplacesContentAndSetsTheExactMode) {
  auto path = dir_ / "key.pem";
  ::umask(0);
  ASSERT_TRUE(WriteFileAtomic(path, "first", 0600));
  ASSERT_TRUE(WriteFileAtomic(path, "second", 0600));
  ::umask(022);
  EXPECT_EQ(*ReadFile(path), "second");
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(FileTest, ReadRefusesFilesOverTheBoundAndReportsMissingOnes) {
  auto path = dir_ / "big";
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100, 'x')));
  EXPECT_EQ(ReadFile(path, 99).error().code(), ErrorCode::kTooLarge);
  EXPECT_TRUE(ReadFile(path, 100));
  EXPECT_EQ(ReadFile(dir_ / "absent").error().code(), ErrorCode::kNotFound);
}

TEST_F(FileTest, WriteIntoAMissingDirectoryFailsCleanly) {
  auto result = WriteFileAtomic(dir_ / "no" / "such" / "file", "x");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kIo);
}

TEST_F(FileTest, ConcurrentWritersOfOnePathLeaveOneWholeVersionAndNoTemporaryFile) {
  constexpr int kWriters = 8;
  constexpr int kWritesEach = 25;
  auto path = dir_ / "state.json";
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  std::vector<int> failures(kWriters, 0);
  for (int writer = 0; writer < kWriters; ++writer) {
    writers.emplace_back([&, writer] {
      const std::string content(4096, static_cast<char>('a' + writer));
      for (int i = 0; i < kWritesEach; ++i) {
        if (!WriteFileAtomic(path, content)) ++failures[static_cast<std::size_t>(writer)];
      }
    });
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(std::count(failures.begin(), failures.end(), 0), kWriters);
  auto content = ReadFile(path);
  ASSERT_TRUE(content);
  ASSERT_EQ(content->size(), 4096u);
  EXPECT_EQ(std::count(content->begin(), content->end(), content->front()), 4096);
  EXPECT_EQ(Names(), std::vector<std::string>{"state.json"});
}

TEST_F(FileTest, ALeftoverOfACrashIsIgnoredByReadersAndTheNextWrite) {
  auto path = dir_ / "state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "old"));
  // What a crash between creating and renaming the temporary file leaves.
  ASSERT_TRUE(WriteFileAtomic(dir_ / ".state.json.tmp.0123456789abcdef", "half-writ"));
  EXPECT_EQ(*ReadFile(path), "old");
  ASSERT_TRUE(WriteFileAtomic(path, "new"));
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_EQ(Names(), (std::vector<std::string>{".state.json.tmp.0123456789abcdef", "state.json"}));
}

TEST_F(FileTest, AFailedWriteRemovesItsTemporaryFileAndKeepsTheOldContent) {
  auto path = dir_ / "state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "old"));
  // A file size limit makes write(2) fail with EFBIG part way.
  int outcome = InChild([&] {
    (void)::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{.rlim_cur = 10, .rlim_max = 10};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
    return Outcome(WriteFileAtomic(path, std::string(100, 'x')));
  });
  EXPECT_EQ(outcome, 0);
  EXPECT_EQ(*ReadFile(path), "old");
  EXPECT_EQ(Names(), std::vector<std::string>{"state.json"});
}

TEST_F(FileTest, AFailedRenameRemovesItsTemporaryFile) {
  auto path = dir_ / "occupied";
  ASSERT_TRUE(EnsureDirectory(path / "inside"));
  auto written = WriteFileAtomic(path, "x");
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code(), ErrorCode::kIo);
  EXPECT_EQ(Names(), std::vector<std::string>{"occupied"});
}

TEST_F(FileTest, ADirectoryThatCannotBeSyncedIsAnError) {
  // Write and search permission but no read: the file can be created and
  // renamed, the directory cannot be opened to sync it. Root bypasses the
  // check, so the child drops to nobody first.
  auto path = dir_ / "state.json";
  constexpr uid_t kNobody = 65534;
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(dir_.c_str(), kNobody, kNobody), 0);
  }
  fs::permissions(dir_, fs::perms::owner_write | fs::perms::owner_exec);
  int outcome = InChild([&] {
    if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
                             ::setresuid(kNobody, kNobody, kNobody) != 0)) {
      return 3;
    }
    return Outcome(WriteFileAtomic(path, "new"));
  });
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_EQ(outcome, 0);
  // The rename happened; it is the durability that is not assured.
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_EQ(Names(), std::vector<std::string>{"state.json"});
}

TEST_F(FileTest, EnsureDirectoryCreatesParents) {
  ASSERT_TRUE(EnsureDirectory(dir_ / "a" / "b", 0700));
  EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
}

}  // namespace
}  // namespace citadel
