#include "sandbox/helper.hpp"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/close_range.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd_passing.hpp"
#include "sandbox/app_filter.hpp"
#include "sandbox/cgroups.hpp"
#include "sandbox/landlock.hpp"
#include "sandbox/spec_json.hpp"
#include "sandbox/storage.hpp"

namespace citadel::sandbox {
namespace {

namespace fs = std::filesystem;

constexpr auto kSpecReadTimeout = std::chrono::seconds(5);
// Where the new root is assembled: a private mount namespace covers the
// host's /tmp with it; the sources are held as O_PATH fds opened before.
constexpr const char* kStagingDir = "/tmp";

std::unexpected<Error> StepError(std::string_view step, int error, ErrorCode code = ErrorCode::kIo) {
  return MakeError(code, std::string(step) + ": " + std::strerror(error));
}

// Sends one status message; best effort (the reader may be gone).
void SendStatus(std::string_view text, int fd_to_pass = -1) {
  (void)SendWithFd(kStatusFd, text, fd_to_pass, MSG_NOSIGNAL);
}

[[noreturn]] void Fail(const Error& error) {
  SendStatus("error " + std::to_string(static_cast<int>(error.code())) + " " + error.message());
  ::_exit(127);
}

void ResetSignals() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    (void)::sigaction(signal, &action, nullptr);
  }
  sigset_t all{};
  (void)::sigemptyset(&all);
  (void)::sigprocmask(SIG_SETMASK, &all, nullptr);
}

Expected<void> CloseFrom(int first) {
  if (::syscall(SYS_close_range, first, ~0U, 0) != 0) return StepError("closing inherited descriptors", errno);
  return kOk;
}

Expected<std::string> ReadSpecText() {
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + kSpecReadTimeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return MakeError(ErrorCode::kUnavailable, "reading the spec: timed out");
    pollfd wait{kSpecFd, POLLIN, 0};
    int ready = ::poll(&wait, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return StepError("reading the spec", errno);
    if (ready == 0) continue;
    std::array<char, 16384> buffer{};
    ssize_t got = ::read(kSpecFd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return StepError("reading the spec", errno);
    if (got == 0) return text;
    text.append(buffer.data(), static_cast<std::size_t>(got));
    if (text.size() > kMaxSpecBytes) return MakeError(ErrorCode::kTooLarge, "reading the spec: too large");
  }
}

Expected<void> CheckSpec(const LaunchSpec& spec) {
  const std::string& entry = spec.policy.entry_point;
  if (entry.empty() || entry.front() != '/' || entry.find("/../") != std::string::npos || entry.ends_with("/..") ||
      entry.find('\0') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "spec: entry point \"" + entry + "\" is not an absolute path in /app");
  }
  if (spec.uid < 61000 || spec.gid < 61000) {
    return MakeError(ErrorCode::kInvalidArgument, "spec: the app uid and gid must be >= 61000");
  }
  if (!spec.image_root.is_absolute())
    return MakeError(ErrorCode::kInvalidArgument, "spec: image_root must be absolute");
  if (spec.cgroup.empty()) return MakeError(ErrorCode::kInvalidArgument, "spec: no cgroup");
  if (spec.storage_image.has_value() != (spec.policy.storage_quota_bytes > 0)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "spec: storage_image must be given exactly when the policy has storage");
  }
  return kOk;
}

// Sources of bind mounts, opened before the staging tmpfs hides them.
struct Sources {
  UniqueFd image;
  UniqueFd usr;
  UniqueFd applibs;   // may be invalid: no applibs directory given
  UniqueFd ld_cache;  // may be invalid: the host has none
  std::vector<std::pair<std::string, UniqueFd>> devices;
  std::optional<LoopDevice> storage;
};

Expected<UniqueFd> OpenPath(const fs::path& path, std::string_view step, bool directory) {
  int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0)
    return MakeError(ErrorCode::kFailedPrecondition,
                     std::string(step) + ": " + path.string() + ": " + std::strerror(errno));
  return UniqueFd(fd);
}

Expected<Sources> OpenSources(const LaunchSpec& spec) {
  Sources sources;
  CITADEL_TRY(sources.image, OpenPath(spec.image_root, "image", true));
  CITADEL_TRY(sources.usr, OpenPath("/usr", "mount /usr", true));
  if (!spec.applibs_dir.empty()) {
    CITADEL_TRY(sources.applibs, OpenPath(spec.applibs_dir, "applibs", true));
  }
  std::error_code ec;
  if (fs::exists("/etc/ld.so.cache", ec)) {
    CITADEL_TRY(sources.ld_cache, OpenPath("/etc/ld.so.cache", "ld.so.cache", false));
  }
  for (const char* name : {"null", "zero", "full", "random", "urandom"}) {
    CITADEL_TRY(UniqueFd fd, OpenPath(fs::path("/dev") / name, "mount /dev", false));
    sources.devices.emplace_back(name, std::move(fd));
  }
  if (spec.storage_image) {
    auto loop = AttachLoopDevice(*spec.storage_image);
    if (!loop) return WrapError(loop.error(), "storage");
    sources.storage = std::move(*loop);
  }
  return sources;
}

std::string FdPath(const UniqueFd& fd) { return "/proc/self/fd/" + std::to_string(fd.get()); }

Expected<void> Mount(const std::string& source, const fs::path& target, const char* type, unsigned long flags,
                     const char* options, std::string_view step) {
  if (::mount(source.c_str(), target.c_str(), type, flags, options) != 0) {
    return MakeError(ErrorCode::kIo, std::string(step) + ": mounting " + target.string() + ": " + std::strerror(errno));
  }
  return kOk;
}

// A non-recursive bind of source, then remounted with exactly `flags`
// (plus the source's atime flags, which a remount may not change when the
// source mount is locked, e.g. when citadeld runs in a container).
Expected<void> Bind(const UniqueFd& source, const fs::path& target, unsigned long flags, std::string_view step) {
  CITADEL_TRY_VOID(Mount(FdPath(source), target, nullptr, MS_BIND, nullptr, step));
  struct statvfs info {};
  if (::statvfs(target.c_str(), &info) != 0) return StepError(std::string(step) + ": statvfs", errno);
  if ((info.f_flag & ST_NOATIME) != 0) flags |= MS_NOATIME;
  if ((info.f_flag & ST_NODIRATIME) != 0) flags |= MS_NODIRATIME;
  if ((info.f_flag & ST_RELATIME) != 0) flags |= MS_RELATIME;
  return Mount("", target, nullptr, MS_REMOUNT | MS_BIND | flags, nullptr, step);
}

Expected<void> MakeDirectories(const fs::path& root, const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    if (::mkdir((root / dir).c_str(), 0755) != 0 && errno != EEXIST) {
      return MakeError(ErrorCode::kIo, "root: mkdir /" + dir + ": " + std::strerror(errno));
    }
  }
  return kOk;
}

Expected<void> WriteNewFile(const fs::path& path, std::string_view text, std::string_view step) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return MakeError(ErrorCode::kIo, std::string(step) + ": creating " + path.string() + ": " + std::strerror(errno));
  UniqueFd owner(fd);
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return MakeError(ErrorCode::kIo, std::string(step) + ": writing " + path.string());
  }
  return kOk;
}

Expected<void> BuildEtc(const LaunchSpec& spec, const Sources& sources, const fs::path& etc) {
  constexpr unsigned long kFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  CITADEL_TRY_VOID(Mount("tmpfs", etc, "tmpfs", kFlags, "mode=0755,size=256k,nr_inodes=64", "mount /etc"));
  std::string uid = std::to_string(spec.uid);
  std::string gid = std::to_string(spec.gid);
  std::string hosts = spec.hosts_file.empty() ? "127.0.0.1\tlocalhost\n::1\tlocalhost\n" : spec.hosts_file;
  CITADEL_TRY_VOID(WriteNewFile(etc / "hosts", hosts, "mount /etc"));
  CITADEL_TRY_VOID(WriteNewFile(etc / "resolv.conf",
                                "# Apps reach no DNS server: names resolve from /etc/hosts only.\n"
                                "options attempts:1 timeout:1\n",
                                "mount /etc"));
  CITADEL_TRY_VOID(WriteNewFile(etc / "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n", "mount /etc"));
  CITADEL_TRY_VOID(WriteNewFile(etc / "passwd",
                                "root:x:0:0:root:/:/usr/sbin/nologin\napp:x:" + uid + ":" + gid + ":" +
                                    SanitisedHostname(spec.policy.name) + ":/tmp:/usr/sbin/nologin\n",
                                "mount /etc"));
  CITADEL_TRY_VOID(WriteNewFile(etc / "group", "root:x:0:\napp:x:" + gid + ":\n", "mount /etc"));
  if (sources.ld_cache) {
    CITADEL_TRY_VOID(WriteNewFile(etc / "ld.so.cache", "", "mount /etc"));
    CITADEL_TRY_VOID(Bind(sources.ld_cache, etc / "ld.so.cache", MS_RDONLY | kFlags, "mount /etc"));
  }
  return Mount("", etc, nullptr, MS_REMOUNT | MS_RDONLY | kFlags, "mode=0755,size=256k,nr_inodes=64", "mount /etc");
}

Expected<void> BuildDev(const Sources& sources, const fs::path& dev) {
  // The tmpfs itself is nodev; the device binds are mounts of their own.
  CITADEL_TRY_VOID(
      Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=32", "mount /dev"));
  for (const auto& [name, fd] : sources.devices) {
    CITADEL_TRY_VOID(WriteNewFile(dev / name, "", "mount /dev"));
    // Device binds keep "dev" (their own mount flags); nothing else may.
    CITADEL_TRY_VOID(Bind(fd, dev / name, MS_NOSUID | MS_NOEXEC, "mount /dev"));
  }
  for (const auto& [link, target] :
       std::array<std::pair<const char*, const char*>, 4>{{{"fd", "/proc/self/fd"},
                                                           {"stdin", "/proc/self/fd/0"},
                                                           {"stdout", "/proc/self/fd/1"},
                                                           {"stderr", "/proc/self/fd/2"}}}) {
    if (::symlink(target, (dev / link).c_str()) != 0) return StepError("mount /dev: symlink", errno);
  }
  return Mount("", dev, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "mode=0755,size=64k,nr_inodes=32", "mount /dev");
}

Expected<void> MountStorage(const LaunchSpec& spec, Sources& sources, const fs::path& target) {
  CITADEL_TRY_VOID(Mount(sources.storage->path, target, "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", "storage"));
  sources.storage.reset();  // the mount holds the device now; autoclear follows it
  struct stat info {};
  if (::stat(target.c_str(), &info) != 0) return StepError("storage: stat", errno);
  if (info.st_uid != spec.uid || info.st_gid != spec.gid) {
    // First use (or a new slot): the app owns its storage root.
    if (::chown(target.c_str(), spec.uid, spec.gid) != 0) return StepError("storage: chown", errno);
    if (::chmod(target.c_str(), 0700) != 0) return StepError("storage: chmod", errno);
  }
  return kOk;
}

Expected<void> BuildRoot(const LaunchSpec& spec, Sources& sources) {
  constexpr unsigned long kReadOnly = MS_RDONLY | MS_NOSUID | MS_NODEV;
  const fs::path root = kStagingDir;
  if (::mount("", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return StepError("mount namespace: private", errno);
  CITADEL_TRY_VOID(Mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k,nr_inodes=64", "root"));
  CITADEL_TRY_VOID(
      MakeDirectories(root, {"app", "usr", "opt", "opt/citadel", "opt/citadel/lib", "etc", "tmp", "proc", "dev"}));
  if (sources.storage) CITADEL_TRY_VOID(MakeDirectories(root, {"mnt", "mnt/config"}));
  for (const auto& [link, target] : std::array<std::pair<const char*, const char*>, 5>{{{"bin", "usr/bin"},
                                                                                        {"sbin", "usr/sbin"},
                                                                                        {"lib", "usr/lib"},
                                                                                        {"lib64", "usr/lib64"},
                                                                                        {"lib32", "usr/lib32"}}}) {
    if (::symlink(target, (root / link).c_str()) != 0) return StepError("root: symlink", errno);
  }
  CITADEL_TRY_VOID(Bind(sources.image, root / "app", kReadOnly, "mount /app"));
  CITADEL_TRY_VOID(Bind(sources.usr, root / "usr", kReadOnly, "mount /usr"));
  if (sources.applibs) CITADEL_TRY_VOID(Bind(sources.applibs, root / "opt/citadel/lib", kReadOnly, "mount applibs"));
  CITADEL_TRY_VOID(BuildEtc(spec, sources, root / "etc"));
  CITADEL_TRY_VOID(
      Mount("tmpfs", root / "tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m", "mount /tmp"));
  if (sources.storage) CITADEL_TRY_VOID(MountStorage(spec, sources, root / "mnt/config"));
  CITADEL_TRY_VOID(Mount("proc", root / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, "mount /proc"));
  CITADEL_TRY_VOID(BuildDev(sources, root / "dev"));
  sources = Sources{};

  if (::chdir(root.c_str()) != 0) return StepError("pivot_root: chdir", errno);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return StepError("pivot_root", errno);
  if (::umount2(".", MNT_DETACH) != 0) return StepError("pivot_root: detaching the old root", errno);
  if (::chdir("/") != 0) return StepError("pivot_root: chdir /", errno);
  return Mount("", "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=64k,nr_inodes=64",
               "root: read-only");
}

Expected<void> DropCapabilityBoundingSet() {
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return StepError("capabilities: dropping the bounding set", errno);
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return StepError("capabilities: clearing ambient", errno);
  }
  return kOk;
}

Expected<void> SwitchToAppUser(const LaunchSpec& spec) {
  if (::setgroups(0, nullptr) != 0) return StepError("credentials: setgroups", errno);
  if (::setresgid(spec.gid, spec.gid, spec.gid) != 0) return StepError("credentials: setresgid", errno);
  if (::setresuid(spec.uid, spec.uid, spec.uid) != 0) return StepError("credentials: setresuid", errno);
  // Changing uid from 0 clears permitted and effective; inheritable is
  // cleared explicitly and everything is checked.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, 2> data{};
  if (::syscall(SYS_capset, &header, data.data()) != 0) return StepError("credentials: capset", errno);
  if (::syscall(SYS_capget, &header, data.data()) != 0) return StepError("credentials: capget", errno);
  for (const auto& set : data) {
    if (set.effective != 0 || set.permitted != 0 || set.inheritable != 0) {
      return MakeError(ErrorCode::kInternal, "credentials: capabilities remain after setresuid");
    }
  }
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0 || ruid != spec.uid ||
      euid != spec.uid || suid != spec.uid || rgid != spec.gid || egid != spec.gid || sgid != spec.gid) {
    return MakeError(ErrorCode::kInternal, "credentials: the app ids did not take effect");
  }
  return kOk;
}

Expected<void> SetupFds() {
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) return StepError("fds: /dev/null", errno);
  if (null_fd != kSpecFd) {
    if (::dup2(null_fd, kSpecFd) < 0) return StepError("fds: dup2", errno);
    (void)::close(null_fd);
  }
  CITADEL_TRY_VOID(CloseFrom(kStatusFd + 1));
  if (::fcntl(kStatusFd, F_SETFD, FD_CLOEXEC) != 0) return StepError("fds: status channel", errno);
  return kOk;
}

Expected<void> CheckEntryPoint(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "entry point: " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(info.st_mode) || ::access(path.c_str(), X_OK) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "entry point: " + path + " is not an executable file");
  }
  return kOk;
}

// Everything from the new namespaces to execve; returns only on failure.
Error RunApp(const LaunchSpec& spec) {
  std::string entry = "/app" + spec.policy.entry_point;
  std::vector<std::string> args{entry};
  args.insert(args.end(), spec.policy.cmd_args.begin(), spec.policy.cmd_args.end());
  std::vector<std::string> env{
      "PATH=/app/bin:/usr/bin:/bin",          "HOME=/tmp",
      "LD_LIBRARY_PATH=/opt/citadel/lib",     "CITADEL_COMPONENT_ID=" + spec.policy.component_id,
      "CITADEL_APP_NAME=" + spec.policy.name, "CITADEL_BROKER_FD=" + std::to_string(kBrokerFd)};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (std::string& var : env) envp.push_back(var.data());
  envp.push_back(nullptr);

  // Opened here, inside the new mount namespace: a bind mount's source
  // must be a mount of the caller's own namespace.
  auto sources = OpenSources(spec);
  if (!sources) return sources.error();
  if (auto built = BuildRoot(spec, *sources); !built) return built.error();
  std::string hostname = SanitisedHostname(spec.policy.name);
  if (::sethostname(hostname.data(), hostname.size()) != 0) return StepError("hostname", errno).error();
  auto landlock = ApplyAppLandlock(spec.storage_image.has_value());
  if (!landlock) return landlock.error();
  if (*landlock == 0) {
    constexpr std::string_view kWarning =
        "citadel-sandbox: warning: the kernel has no Landlock; continuing without it\n";
    (void)!::write(2, kWarning.data(), kWarning.size());
  }
  if (auto dropped = DropCapabilityBoundingSet(); !dropped) return dropped.error();
  if (auto switched = SwitchToAppUser(spec); !switched) return switched.error();
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return StepError("no_new_privs", errno).error();
  rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) return StepError("rlimit core", errno).error();
  if (auto fds = SetupFds(); !fds) return fds.error();
  if (auto checked = CheckEntryPoint(entry); !checked) return checked.error();

  auto filter = LoadFilterForApp(spec.seccomp_program);
  if (!filter) return filter.error().Wrap("seccomp");
  // From here on only what the filter allows, which may exclude sendmsg:
  // send, read, close and execve. citadeld copies the listener out of this
  // process (pidfd_getfd) before it answers; closing it earlier would leave
  // the filter without a listener.
  if (*filter) {
    SendStatus("ready " + std::to_string(filter->get()));
    char answer = 0;
    ssize_t got = 0;
    do {
      got = ::read(kStatusFd, &answer, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) ::_exit(127);  // citadeld gave up on this launch
  } else {
    SendStatus("ready");
  }
  filter->Reset();
  ::execve(argv[0], argv.data(), envp.data());
  return StepError("execve " + entry, errno).error();
}

}  // namespace

int RunSandboxHelper() {
  ResetSignals();
  if (auto closed = CloseFrom(kStatusFd + 1); !closed) Fail(closed.error());
  auto text = ReadSpecText();
  if (!text) Fail(text.error());
  auto spec = LaunchSpecFromJson(*text);
  if (!spec) Fail(spec.error().Wrap("spec"));
  if (auto checked = CheckSpec(*spec); !checked) Fail(checked.error());
  // Launch() moved this process into the app's groups before it sent the
  // spec; checked before the clone so the app starts inside its limits.
  if (auto joined = CheckInCgroup(spec->cgroup.string(), ::getpid()); !joined) Fail(joined.error().Wrap("cgroup"));

  constexpr unsigned long kFlags =
      CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_PARENT;
  long pid = ::syscall(SYS_clone, kFlags | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid < 0) Fail(StepError("clone (namespaces)", errno).error());
  if (pid == 0) Fail(RunApp(*spec));
  SendStatus("pid " + std::to_string(pid));
  return 0;
}

}  // namespace citadel::sandbox
