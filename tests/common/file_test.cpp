#include "common/file.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <random>

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
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

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

TEST_F(FileTest, EnsureDirectoryCreatesParents) {
  ASSERT_TRUE(EnsureDirectory(dir_ / "a" / "b", 0700));
  EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
}

}  // namespace
}  // namespace citadel
