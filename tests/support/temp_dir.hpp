// The one temporary-directory class of the test tree: a fresh directory,
// removed with everything in it when the object goes away. Header-only;
// every test binary has tests/ on its include path, so any test includes it
// as "support/temp_dir.hpp".
#pragma once

#include <stdlib.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace citadel::testing {

// Meant for designated initializers; the {} initializers let a caller leave
// a field out without -Wmissing-field-initializers.
struct TempDirOptions {
  // Where the directory is made (created if missing); empty means
  // ::testing::TempDir(), i.e. $TEST_TMPDIR or the system temp dir.
  std::filesystem::path parent{};
  // Set after creation in place of mkdtemp's 0700, e.g. 0755 for a tree an
  // app running under another uid must reach.
  std::optional<std::filesystem::perms> permissions{};
};

// One owner, not copyable. Creation never fails silently: if mkdtemp
// fails the test is marked failed and the process aborts, so no test goes
// on writing into a directory that does not exist (or, with an empty path,
// into the working directory).
class TempDir {
 public:
  // Makes <parent>/<label>-XXXXXX.
  explicit TempDir(std::string_view label = "citadel-test", const TempDirOptions& options = {}) {
    std::filesystem::path parent =
        options.parent.empty() ? std::filesystem::path(::testing::TempDir()) : options.parent;
    std::error_code ignored;
    std::filesystem::create_directories(parent, ignored);
    std::string pattern = (parent / (std::string(label) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      int error = errno;
      ADD_FAILURE() << "mkdtemp(" << pattern << "): " << std::strerror(error);
      std::abort();
    }
    path_ = pattern;
    if (options.permissions) std::filesystem::permissions(path_, *options.permissions);
  }

  // Extracted image trees and the like are read-only: every directory is
  // made writable before the tree is removed. Errors are ignored; a leftover
  // directory under the temp dir must not fail a test that passed.
  ~TempDir() {
    namespace fs = std::filesystem;
    std::error_code ignored;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
    std::error_code walk;
    for (fs::recursive_directory_iterator it(path_, fs::directory_options::skip_permission_denied, walk), end;
         !walk && it != end; it.increment(walk)) {
      // Made writable and searchable before the iterator descends into it.
      if (it->is_directory(ignored) && !it->is_symlink(ignored)) {
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ignored);
      }
    }
    fs::remove_all(path_, ignored);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace citadel::testing
