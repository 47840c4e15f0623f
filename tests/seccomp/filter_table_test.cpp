#include <seccomp.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <string>

#include "seccomp/seccomp_filter.hpp"

namespace citadel::seccomp {
namespace {

TEST(FilterTable, EveryDeniedSyscallIsKnownToLibseccompAndListedOnce) {
  std::set<std::string> names;
  for (const DeniedSyscall& denied : kDeniedSyscalls) {
    std::string name(denied.name);
    EXPECT_TRUE(names.insert(name).second) << name << " listed twice";
    // An unknown name would silently fall back to ENOSYS: unreported.
    EXPECT_NE(seccomp_syscall_resolve_name(name.c_str()), __NR_SCMP_ERROR) << name;
    EXPECT_TRUE(denied.error == EPERM || denied.error == EACCES) << name;
    EXPECT_FALSE(denied.reason.empty()) << name;
  }
}

TEST(FilterTable, ErrnoFollowsTheContract) {
  EXPECT_EQ(FindDeniedSyscall("mmap")->error, EACCES);
  EXPECT_EQ(FindDeniedSyscall("mmap")->when, DenyWhen::kWriteAndExecute);
  EXPECT_EQ(FindDeniedSyscall("mount")->error, EPERM);
  EXPECT_EQ(FindDeniedSyscall("setuid")->error, EPERM);
  EXPECT_EQ(FindDeniedSyscall("clone")->when, DenyWhen::kNewNamespace);
  EXPECT_FALSE(FindDeniedSyscall("execve").has_value());  // the app's own exec passes the filter
  EXPECT_FALSE(FindDeniedSyscall("read").has_value());
}

}  // namespace
}  // namespace citadel::seccomp
