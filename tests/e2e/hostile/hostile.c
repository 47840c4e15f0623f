/*
 * hostile: an app that tries, one attempt per run, to escape its sandbox.
 *
 *   hostile ATTEMPT [ARG...]      (the table at the bottom lists them)
 *
 * It prints exactly one verdict line on stdout and exits:
 *   DENIED <attempt> <step>=<ERRNO or reason> ...   exit 0: every step was stopped
 *   ESCAPED <attempt> <what>                        exit 1: a step succeeded
 *   ERROR <attempt> <why>                           exit 2: bad usage / refused to run
 * Attempts that the runtime stops by killing the app (fork-bomb,
 * memory-bomb) first print "ATTEMPT <attempt>"; the e2e test then checks
 * the runtime's view (OOM kill, pids limit reached) and that a neighbour
 * app still runs. A step that hangs ends the run after kStepTimeoutSeconds
 * with "DENIED <attempt> <step>=timeout".
 *
 * This is test code that deliberately does dangerous things. It never runs
 * as root (as root outside a sandbox, "mount a tmpfs on /tmp" would really
 * happen), and the attempts that would hurt the host if run unsandboxed
 * (kill -1, bombs, filling a disk) also need to be PID 1 of their own pid
 * namespace, i.e. inside the Citadel sandbox.
 *
 * Single-threaded; some attempts fork short-lived children.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <applibs/applibs.h>

enum { kStepTimeoutSeconds = 20, kTextSize = 2048 };

/* ---- verdict bookkeeping ------------------------------------------------ */

struct Outcome {
  bool escaped;
  char what[kTextSize];    /* ESCAPED: what succeeded */
  char reasons[kTextSize]; /* DENIED: step=ERRNO ... */
};

static const char* current_attempt = "?";
static const char* current_step = "start";

static void Append(char* buffer, const char* format, ...) __attribute__((format(printf, 2, 3)));
static void Append(char* buffer, const char* format, ...) {
  size_t used = strlen(buffer);
  if (used + 1 >= kTextSize) return;
  va_list arguments;
  va_start(arguments, format);
  (void)vsnprintf(buffer + used, kTextSize - used, format, arguments);
  va_end(arguments);
}

static const char* ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  return name != NULL ? name : "E?";
}

/* A step that was stopped, with the errno it got. */
static void Denied(struct Outcome* outcome, const char* step, int error) {
  Append(outcome->reasons, "%s%s=%s", outcome->reasons[0] != '\0' ? " " : "", step, ErrnoName(error));
}

/* A step that was stopped, with a reason that is not an errno. */
static void DeniedBecause(struct Outcome* outcome, const char* step, const char* reason) {
  Append(outcome->reasons, "%s%s=%s", outcome->reasons[0] != '\0' ? " " : "", step, reason);
}

static void Escaped(struct Outcome* outcome, const char* format, ...) __attribute__((format(printf, 2, 3)));
static void Escaped(struct Outcome* outcome, const char* format, ...) {
  if (outcome->escaped) Append(outcome->what, "; ");
  outcome->escaped = true;
  size_t used = strlen(outcome->what);
  va_list arguments;
  va_start(arguments, format);
  (void)vsnprintf(outcome->what + used, kTextSize - used, format, arguments);
  va_end(arguments);
}

/* One unbuffered line: it must reach the log even if we are killed next. */
static void PrintLine(const char* format, ...) __attribute__((format(printf, 1, 2)));
static void PrintLine(const char* format, ...) {
  char line[kTextSize + 256];
  va_list arguments;
  va_start(arguments, format);
  int length = vsnprintf(line, sizeof line - 1, format, arguments);
  va_end(arguments);
  if (length < 0) return;
  size_t size = (size_t)length < sizeof line - 2 ? (size_t)length : sizeof line - 2;
  line[size++] = '\n';
  for (size_t written = 0; written < size;) {
    ssize_t n = write(STDOUT_FILENO, line + written, size - written);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) written += (size_t)n;
  }
}

static void OnStepTimeout(int signal_number) {
  (void)signal_number;
  /* Async-signal context: only write(2) and _exit. */
  const char* parts[] = {"DENIED ", current_attempt, " ", current_step, "=timeout\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; ++i) {
    ssize_t ignored = write(STDOUT_FILENO, parts[i], strlen(parts[i]));
    (void)ignored;
  }
  _exit(0);
}

/* ---- small helpers ------------------------------------------------------ */

static bool InSandbox(void) { return getpid() == 1 && getuid() != 0; }

static long ParseLong(const char* text, long minimum, long maximum) {
  char* end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < minimum || value > maximum) return -1;
  return value;
}

static void TryOpen(struct Outcome* outcome, const char* path, int flags) {
  current_step = path;
  int fd = open(path, flags | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd >= 0) {
    Escaped(outcome, "opened %s", path);
    (void)close(fd);
  } else {
    Denied(outcome, path, errno);
  }
}

/* Fills `address` from a numeric IPv4/IPv6 literal and a port. */
static socklen_t MakeAddress(const char* literal, uint16_t port, struct sockaddr_storage* address) {
  memset(address, 0, sizeof *address);
  struct sockaddr_in* v4 = (struct sockaddr_in*)address;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)address;
  if (inet_pton(AF_INET, literal, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof *v4;
  }
  if (inet_pton(AF_INET6, literal, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof *v6;
  }
  return 0;
}

/* TCP: connect. UDP: connect then send one datagram. A step that completes
 * means a packet could leave: escaped. */
static void TryConnect(struct Outcome* outcome, const char* step, int type, const char* literal, uint16_t port) {
  current_step = step;
  struct sockaddr_storage address;
  socklen_t length = MakeAddress(literal, port, &address);
  int fd = socket(address.ss_family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Denied(outcome, step, errno);
    return;
  }
  struct timeval timeout = {.tv_sec = 5, .tv_usec = 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, (struct sockaddr*)&address, length) != 0) {
    Denied(outcome, step, errno);
  } else if (type == SOCK_STREAM) {
    Escaped(outcome, "%s: connected to %s port %u", step, literal, port);
  } else if (send(fd, "x", 1, 0) == 1) {
    Escaped(outcome, "%s: sent a datagram to %s port %u", step, literal, port);
  } else {
    Denied(outcome, step, errno);
  }
  (void)close(fd);
}

/* Runs `path` (optionally through the dynamic loader) as "--probe" in a
 * child whose stdout/stderr go to a pipe: the copy prints PROBE-RAN only
 * if it really executed. */
static void TryExecProbe(struct Outcome* outcome, const char* step, const char* path, bool via_loader) {
  current_step = step;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    Denied(outcome, step, errno);
    return;
  }
  pid_t child = fork();
  if (child < 0) {
    Denied(outcome, step, errno);
    (void)close(pipe_fds[0]);
    (void)close(pipe_fds[1]);
    return;
  }
  if (child == 0) {
    (void)dup2(pipe_fds[1], STDOUT_FILENO);
    (void)dup2(pipe_fds[1], STDERR_FILENO);
    static const char kLoader[] = "/lib64/ld-linux-x86-64.so.2";
    char* loader_argv[] = {(char*)kLoader, (char*)path, (char*)"--probe", NULL};
    char* direct_argv[] = {(char*)path, (char*)"--probe", NULL};
    extern char** environ;
    if (via_loader) {
      execve(kLoader, loader_argv, environ);
    } else {
      execve(path, direct_argv, environ);
    }
    char message[64];
    int length = snprintf(message, sizeof message, "EXECFAIL %s\n", ErrnoName(errno));
    if (length > 0) {
      ssize_t ignored = write(STDOUT_FILENO, message, (size_t)length);
      (void)ignored;
    }
    _exit(126);
  }
  (void)close(pipe_fds[1]);
  char output[512];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(pipe_fds[0], output + used, sizeof output - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (used == sizeof output - 1) break;
  }
  output[used] = '\0';
  (void)close(pipe_fds[0]);
  int status = 0;
  (void)waitpid(child, &status, 0);
  if (strstr(output, "PROBE-RAN") != NULL) {
    Escaped(outcome, "%s: executed %s%s", step, path, via_loader ? " through the dynamic loader" : "");
  } else if (strncmp(output, "EXECFAIL ", 9) == 0) {
    output[strcspn(output, "\n")] = '\0';
    DeniedBecause(outcome, step, output + 9);
  } else {
    DeniedBecause(outcome, step, via_loader ? "loader-could-not-map" : "did-not-run");
  }
}

/* Copies /proc/self/exe to `destination`, mode 0755. 0 or an errno. */
static int CopySelf(const char* destination) {
  int source = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (source < 0) return errno;
  int target = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (target < 0) {
    int error = errno;
    (void)close(source);
    return error;
  }
  int error = 0;
  char buffer[65536];
  for (;;) {
    ssize_t n = read(source, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = errno;
    if (n <= 0) break;
    if (write(target, buffer, (size_t)n) != n) {
      error = errno != 0 ? errno : EIO;
      break;
    }
  }
  if (error == 0 && fchmod(target, 0755) != 0) error = errno;
  (void)close(source);
  if (close(target) != 0 && error == 0) error = errno;
  return error;
}

/* ---- attempts: files ---------------------------------------------------- */

/* argv: OTHER_COMPONENT_ID [PATH...] */
static void AttemptReadOtherStorage(struct Outcome* outcome, int argc, char** argv) {
  const char* other = argc > 0 ? argv[0] : "00000000-0000-0000-0000-000000000001";
  const char* templates[] = {"/mnt/config/../%s",
                             "/mnt/config/../%s/mutable",
                             "/mnt/%s",
                             "/var/lib/citadel/apps/%s/storage.ext4",
                             "/var/lib/citadel/apps/%s/root/app_manifest.json",
                             "/proc/1/root/var/lib/citadel/apps/%s/storage.ext4"};
  char paths[sizeof templates / sizeof templates[0]][512];
  for (size_t i = 0; i < sizeof templates / sizeof templates[0]; ++i) {
    (void)snprintf(paths[i], sizeof paths[i], templates[i], other);
    TryOpen(outcome, paths[i], O_RDONLY);
  }
  for (int i = 1; i < argc; ++i) TryOpen(outcome, argv[i], O_RDONLY);
}

static void AttemptWriteImage(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  TryOpen(outcome, "/app/bin/hostile", O_WRONLY);
  TryOpen(outcome, "/app/x", O_WRONLY | O_CREAT | O_EXCL);
  if (outcome->escaped) (void)unlink("/app/x");
  current_step = "unlink-manifest";
  if (unlink("/app/app_manifest.json") == 0) {
    Escaped(outcome, "removed /app/app_manifest.json");
  } else {
    Denied(outcome, current_step, errno);
  }
  current_step = "chmod";
  if (chmod("/app/bin/hostile", 0777) == 0) {
    Escaped(outcome, "changed the mode of /app/bin/hostile");
  } else {
    Denied(outcome, current_step, errno);
  }
}

/* argv: [DIR...] (default: /tmp and the mutable storage directory) */
static void AttemptExecWritten(struct Outcome* outcome, int argc, char** argv) {
  const char* storage = Storage_GetMutableDirectory();
  const char* defaults[] = {"/tmp", storage != NULL ? storage : "/mnt/config"};
  int count = argc > 0 ? argc : 2;
  for (int i = 0; i < count; ++i) {
    const char* directory = argc > 0 ? argv[i] : defaults[i];
    char path[512];
    (void)snprintf(path, sizeof path, "%s/hostile-copy", directory);
    current_step = path;
    int error = CopySelf(path);
    if (error != 0) {
      char step[600];
      (void)snprintf(step, sizeof step, "copy:%s", directory);
      Denied(outcome, step, error);
      continue;
    }
    char step[600];
    (void)snprintf(step, sizeof step, "execve:%s", directory);
    TryExecProbe(outcome, step, path, false);
    (void)snprintf(step, sizeof step, "ld.so:%s", directory);
    TryExecProbe(outcome, step, path, true);
    (void)unlink(path);
  }

  /* An executable that never touches a file system. */
  current_step = "memfd_create";
  int memfd = memfd_create("hostile", 0);
  if (memfd < 0) {
    Denied(outcome, "memfd_create", errno);
    return;
  }
  char path[64];
  (void)snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
  int error = CopySelf(path);
  if (error != 0) {
    Denied(outcome, "memfd-copy", error);
  } else {
    TryExecProbe(outcome, "memfd-exec", path, false);
  }
  (void)close(memfd);
}

/* argv: QUOTA_KB */
static void AttemptFillStorage(struct Outcome* outcome, int argc, char** argv) {
  long quota_kb = argc > 0 ? ParseLong(argv[0], 1, 1048576) : 1048576;
  if (quota_kb < 0) quota_kb = 1048576;
  /* What EnsureStorageImage promises: usable < quota + 1 MiB + quota/16. */
  long long slack_kb = 1024 + quota_kb / 16;
  long long bound_kb = quota_kb + slack_kb;
  const char* directory = Storage_GetMutableDirectory();
  if (directory == NULL) directory = "/mnt/config";
  char path[512];
  (void)snprintf(path, sizeof path, "%s/fill", directory);
  current_step = "open";
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    Denied(outcome, "open", errno);
    return;
  }
  static char chunk[65536];
  memset(chunk, 0x5a, sizeof chunk);
  long long written = 0;
  int error = 0;
  current_step = "write";
  while (written / 1024 <= bound_kb + 1024) {
    ssize_t n = write(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : ENOSPC;
      break;
    }
    written += n;
  }
  if (error == 0) {
    current_step = "fsync";
    if (fsync(fd) != 0) error = errno;
  }
  long long written_kb = written / 1024;
  char reason[160];
  if (written_kb > bound_kb) {
    Escaped(outcome, "wrote %lld KiB into a %ld KiB quota (limit with slack %lld KiB)", written_kb, quota_kb, bound_kb);
  } else if (error != 0) {
    (void)snprintf(reason, sizeof reason, "%s(after-%lldKiB-quota-%ldKiB)", ErrnoName(error), written_kb, quota_kb);
    DeniedBecause(outcome, "write", reason);
  }
  /* A full file system must still serve reads. */
  current_step = "read-back";
  char first[4096];
  if (pread(fd, first, sizeof first, 0) != (ssize_t)sizeof first || memcmp(first, chunk, sizeof first) != 0) {
    DeniedBecause(outcome, "read-back", "FAILED");
  } else {
    DeniedBecause(outcome, "read-back", "ok");
  }
  (void)close(fd);
  (void)unlink(path);
}

/* argv: [PATH...] extra paths of the device state directory */
static void AttemptReadDeviceKey(struct Outcome* outcome, int argc, char** argv) {
  const char* defaults[] = {"/var/lib/citadel/rot/tls.key", "/var/lib/citadel/rot/identity.key",
                            "/proc/1/root/var/lib/citadel/rot/tls.key", "/dev/tpm0", "/dev/tpmrm0"};
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; ++i) TryOpen(outcome, defaults[i], O_RDONLY);
  for (int i = 0; i < argc; ++i) TryOpen(outcome, argv[i], O_RDONLY);
  current_step = "DeviceAuth_SignDigest";
  uint8_t digest[32] = {0};
  uint8_t signature[80];
  size_t signature_length = sizeof signature;
  if (DeviceAuth_SignDigest(digest, signature, &signature_length) == 0) {
    Escaped(outcome, "DeviceAuth_SignDigest signed without the DeviceAuthentication capability");
  } else {
    Denied(outcome, current_step, errno);
  }
}

/* argv: [PATH...] the device certificate files */
static void AttemptReadOtherCert(struct Outcome* outcome, int argc, char** argv) {
  current_step = "DeviceAuth_GetCertificateChainPem";
  size_t length = 0;
  if (DeviceAuth_GetCertificateChainPem(NULL, &length) == 0) {
    Escaped(outcome, "DeviceAuth_GetCertificateChainPem answered without the DeviceAuthentication capability");
  } else {
    Denied(outcome, current_step, errno);
  }
  const char* defaults[] = {"/var/lib/citadel/certs/device.pem", "/var/lib/citadel/certs/chain.pem",
                            "/var/lib/citadel/certs/device-full-chain.pem"};
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; ++i) TryOpen(outcome, defaults[i], O_RDONLY);
  for (int i = 0; i < argc; ++i) TryOpen(outcome, argv[i], O_RDONLY);
}

/* Whether the file at `path` contains `marker` (bounded read). 1 yes, 0 no,
 * -errno when unreadable. */
static int FileContains(const char* path, const char* marker) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  static char content[1 << 20];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, content + used, sizeof content - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (used == sizeof content - 1) break;
  }
  (void)close(fd);
  size_t marker_length = strlen(marker);
  for (size_t i = 0; marker_length > 0 && i + marker_length <= used; ++i)
    if (memcmp(content + i, marker, marker_length) == 0) return 1;
  return 0;
}

/* argv: MARKER [HOST_PID...] */
static void AttemptReadProc1Environ(struct Outcome* outcome, int argc, char** argv) {
  if (argc < 1 || argv[0][0] == '\0') {
    DeniedBecause(outcome, "usage", "no-marker-given");
    return;
  }
  const char* marker = argv[0];
  current_step = "/proc/1/environ";
  int found = FileContains("/proc/1/environ", marker);
  if (found == 1) {
    Escaped(outcome, "/proc/1/environ holds the runtime's marker");
  } else {
    DeniedBecause(outcome, "/proc/1/environ", found == 0 ? "marker-absent" : ErrnoName(-found));
  }
  /* Every process this app can see, and the host pids the test names. */
  DIR* proc = opendir("/proc");
  int visible = 0;
  if (proc != NULL) {
    for (struct dirent* entry = readdir(proc); entry != NULL; entry = readdir(proc)) {
      if (ParseLong(entry->d_name, 2, 1L << 30) < 0) continue;
      char path[300];
      (void)snprintf(path, sizeof path, "/proc/%s/environ", entry->d_name);
      ++visible;
      if (FileContains(path, marker) == 1) Escaped(outcome, "%s holds the runtime's marker", path);
    }
    (void)closedir(proc);
  }
  char reason[32];
  (void)snprintf(reason, sizeof reason, "%d-others-no-marker", visible);
  if (!outcome->escaped) DeniedBecause(outcome, "/proc/*/environ", reason);
  for (int i = 1; i < argc; ++i) {
    char path[300];
    (void)snprintf(path, sizeof path, "/proc/%s/environ", argv[i]);
    current_step = path;
    found = FileContains(path, marker);
    if (found == 1) {
      Escaped(outcome, "%s holds the runtime's marker", path);
    } else {
      DeniedBecause(outcome, path, found == 0 ? "marker-absent" : ErrnoName(-found));
    }
  }
}

/* ---- attempts: peripherals --------------------------------------------- */

static void ReportOpen(struct Outcome* outcome, const char* step, int fd) {
  if (fd >= 0) {
    Escaped(outcome, "%s succeeded", step);
    (void)close(fd);
  } else {
    Denied(outcome, step, errno);
  }
}

/* argv: [NAME] (default LED2) */
static void AttemptOpenUnlistedGpio(struct Outcome* outcome, int argc, char** argv) {
  const char* name = argc > 0 ? argv[0] : "LED2";
  current_step = "GPIO_OpenAsOutput";
  ReportOpen(outcome, "GPIO_OpenAsOutput", GPIO_OpenAsOutput(name, GPIO_Value_High));
  current_step = "GPIO_OpenAsInput";
  ReportOpen(outcome, "GPIO_OpenAsInput", GPIO_OpenAsInput(name));
  TryOpen(outcome, "/dev/gpiochip0", O_RDWR);
  TryOpen(outcome, "/sys/class/gpio/export", O_WRONLY);
}

static void AttemptOpenUnlistedI2c(struct Outcome* outcome, int argc, char** argv) {
  const char* name = argc > 0 ? argv[0] : "I2C0";
  current_step = "I2CMaster_Open";
  ReportOpen(outcome, "I2CMaster_Open", I2CMaster_Open(name));
  TryOpen(outcome, "/dev/i2c-0", O_RDWR);
}

static void AttemptOpenUnlistedUart(struct Outcome* outcome, int argc, char** argv) {
  const char* name = argc > 0 ? argv[0] : "UART0";
  current_step = "UART_Open";
  ReportOpen(outcome, "UART_Open", UART_Open(name));
  TryOpen(outcome, "/dev/ttyS0", O_RDWR);
}

/* ---- attempts: network -------------------------------------------------- */

static int PortArgument(int argc, char** argv, struct Outcome* outcome) {
  long port = argc > 0 ? ParseLong(argv[0], 1, 65535) : -1;
  if (port < 0) DeniedBecause(outcome, "usage", "PORT-argument-missing");
  return (int)port;
}

/* argv: PORT */
static void AttemptConnectUnlistedIp(struct Outcome* outcome, int argc, char** argv) {
  int port = PortArgument(argc, argv, outcome);
  if (port > 0) TryConnect(outcome, "tcp:127.0.0.2", SOCK_STREAM, "127.0.0.2", (uint16_t)port);
}

static const char* GaiName(int code) {
  switch (code) {
    case EAI_NONAME:
      return "EAI_NONAME";
    case EAI_AGAIN:
      return "EAI_AGAIN";
    case EAI_FAIL:
      return "EAI_FAIL";
    case EAI_NODATA:
      return "EAI_NODATA";
    case EAI_ADDRFAMILY:
      return "EAI_ADDRFAMILY";
    case EAI_SERVICE:
      return "EAI_SERVICE";
    case EAI_MEMORY:
      return "EAI_MEMORY";
    default:
      return "EAI_OTHER";
  }
}

/* argv: PORT */
static void AttemptConnectUnlistedHost(struct Outcome* outcome, int argc, char** argv) {
  int port = PortArgument(argc, argv, outcome);
  if (port <= 0) return;
  current_step = "getaddrinfo";
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* results = NULL;
  int rc = getaddrinfo("forbidden.test", NULL, &hints, &results);
  if (rc != 0) {
    DeniedBecause(outcome, "resolve:forbidden.test", rc == EAI_SYSTEM ? ErrnoName(errno) : GaiName(rc));
    return;
  }
  for (struct addrinfo* entry = results; entry != NULL; entry = entry->ai_next) {
    char literal[INET6_ADDRSTRLEN] = "";
    const void* raw = entry->ai_family == AF_INET ? (const void*)&((struct sockaddr_in*)entry->ai_addr)->sin_addr
                                                  : (const void*)&((struct sockaddr_in6*)entry->ai_addr)->sin6_addr;
    if (inet_ntop(entry->ai_family, raw, literal, sizeof literal) == NULL) continue;
    char step[80];
    (void)snprintf(step, sizeof step, "tcp:forbidden.test=%s", literal);
    TryConnect(outcome, step, SOCK_STREAM, literal, (uint16_t)port);
  }
  freeaddrinfo(results);
}

/* argv: PORT */
static void AttemptConnectUdp(struct Outcome* outcome, int argc, char** argv) {
  int port = PortArgument(argc, argv, outcome);
  if (port <= 0) return;
  TryConnect(outcome, "udp-connect:127.0.0.2", SOCK_DGRAM, "127.0.0.2", (uint16_t)port);
  current_step = "udp-sendto:127.0.0.2";
  struct sockaddr_storage address;
  socklen_t length = MakeAddress("127.0.0.2", (uint16_t)port, &address);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Denied(outcome, current_step, errno);
    return;
  }
  if (sendto(fd, "x", 1, 0, (struct sockaddr*)&address, length) == 1) {
    Escaped(outcome, "sendto 127.0.0.2 port %d without connect", port);
  } else {
    Denied(outcome, current_step, errno);
  }
  (void)close(fd);
}

/* argv: ALLOWED_PORT FORBIDDEN_PORT. A UDP socket the runtime connected to
 * an allowed address (127.0.0.1:ALLOWED_PORT), then every way of naming
 * another destination per datagram: sendto, sendmsg and sendmmsg with
 * 127.0.0.2:FORBIDDEN_PORT, and sendto with an address on a unix socket (the
 * descriptor-swap route: between a check and the call another thread could
 * dup2 the UDP socket over it). Then a plain send() on the connected socket
 * must still work: "ALLOWED-SEND ok" or "ALLOWED-SEND <errno>". */
static void AttemptUdpRedirect(struct Outcome* outcome, int argc, char** argv) {
  if (argc < 2) {
    DeniedBecause(outcome, "arguments", "missing-ALLOWED_PORT-FORBIDDEN_PORT");
    return;
  }
  long allowed_port = ParseLong(argv[0], 1, 65535);
  long forbidden_port = ParseLong(argv[1], 1, 65535);
  if (allowed_port < 0 || forbidden_port < 0) {
    DeniedBecause(outcome, "arguments", "bad-port");
    return;
  }
  struct sockaddr_storage allowed, forbidden;
  socklen_t allowed_length = MakeAddress("127.0.0.1", (uint16_t)allowed_port, &allowed);
  socklen_t forbidden_length = MakeAddress("127.0.0.2", (uint16_t)forbidden_port, &forbidden);

  current_step = "udp-connect:allowed";
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&allowed, allowed_length) != 0) {
    PrintLine("ERROR %s the allowed UDP connect failed: %s", current_attempt, ErrnoName(errno));
    if (fd >= 0) (void)close(fd);
    return;
  }
  static const char kPayload[] = "redirected";
  struct iovec data = {.iov_base = (void*)kPayload, .iov_len = sizeof kPayload - 1};

  current_step = "sendto-redirect:127.0.0.2";
  if (sendto(fd, kPayload, data.iov_len, 0, (struct sockaddr*)&forbidden, forbidden_length) >= 0) {
    Escaped(outcome, "sendto redirected a connected UDP socket to 127.0.0.2");
  } else {
    Denied(outcome, current_step, errno);
  }

  current_step = "sendmsg-redirect:127.0.0.2";
  struct msghdr message = {.msg_name = &forbidden, .msg_namelen = forbidden_length, .msg_iov = &data, .msg_iovlen = 1};
  if (sendmsg(fd, &message, 0) >= 0) {
    Escaped(outcome, "sendmsg redirected a connected UDP socket to 127.0.0.2");
  } else {
    Denied(outcome, current_step, errno);
  }

  current_step = "sendmmsg-redirect:127.0.0.2";
  struct mmsghdr messages[1] = {{.msg_hdr = message, .msg_len = 0}};
  if (sendmmsg(fd, messages, 1, 0) > 0) {
    Escaped(outcome, "sendmmsg redirected a connected UDP socket to 127.0.0.2");
  } else {
    Denied(outcome, current_step, errno);
  }

  /* The path need not exist: let through, this would fail with ENOENT. */
  current_step = "unix-sendto-with-address";
  int unix_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un unix_address = {.sun_family = AF_UNIX};
  (void)snprintf(unix_address.sun_path, sizeof unix_address.sun_path, "/tmp/hostile-dgram");
  if (unix_fd < 0) {
    Denied(outcome, current_step, errno);
  } else if (sendto(unix_fd, "x", 1, 0, (struct sockaddr*)&unix_address, sizeof unix_address) >= 0) {
    Escaped(outcome, "sendto with an address was let through on a unix socket (descriptor-swap race open)");
  } else {
    Denied(outcome, current_step, errno);
  }
  if (unix_fd >= 0) (void)close(unix_fd);

  current_step = "allowed-send";
  if (send(fd, "allowed", 7, 0) == 7) {
    PrintLine("ALLOWED-SEND ok");
  } else {
    PrintLine("ALLOWED-SEND %s", ErrnoName(errno));
  }
  (void)close(fd);
}

/* argv: PORT */
static void AttemptConnectIpv6(struct Outcome* outcome, int argc, char** argv) {
  int port = PortArgument(argc, argv, outcome);
  if (port > 0) TryConnect(outcome, "tcp:[::1]", SOCK_STREAM, "::1", (uint16_t)port);
}

static void AttemptRawSocket(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  struct {
    const char* step;
    int domain, type, protocol;
  } const kinds[] = {
      {"AF_INET/SOCK_RAW", AF_INET, SOCK_RAW, IPPROTO_ICMP},
      {"AF_INET6/SOCK_RAW", AF_INET6, SOCK_RAW, IPPROTO_ICMPV6},
      {"AF_PACKET/SOCK_RAW", AF_PACKET, SOCK_RAW, (int)htons(ETH_P_ALL)},
      {"AF_PACKET/SOCK_DGRAM", AF_PACKET, SOCK_DGRAM, (int)htons(ETH_P_IP)},
  };
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; ++i) {
    current_step = kinds[i].step;
    int fd = socket(kinds[i].domain, kinds[i].type | SOCK_CLOEXEC, kinds[i].protocol);
    ReportOpen(outcome, kinds[i].step, fd);
  }
}

static void AttemptOwnResolver(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  /* A DNS query for example.test/A, id 0x4854. */
  static const uint8_t kQuery[] = {0x48, 0x54, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 7,    'e',  'x',  'a',  'm',  'p',  'l',  'e',
                                   4,    't',  'e',  's',  't',  0,    0x00, 0x01, 0x00, 0x01};
  struct sockaddr_storage address;
  socklen_t length = MakeAddress("127.0.0.2", 53, &address);
  current_step = "dns-sendto:127.0.0.2:53";
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Denied(outcome, current_step, errno);
    return;
  }
  if (sendto(fd, kQuery, sizeof kQuery, 0, (struct sockaddr*)&address, length) == (ssize_t)sizeof kQuery) {
    Escaped(outcome, "sent a DNS query to 127.0.0.2:53");
  } else {
    Denied(outcome, current_step, errno);
  }
  current_step = "dns-connect:127.0.0.2:53";
  if (connect(fd, (struct sockaddr*)&address, length) != 0) {
    Denied(outcome, current_step, errno);
  } else if (send(fd, kQuery, sizeof kQuery, 0) == (ssize_t)sizeof kQuery) {
    Escaped(outcome, "sent a DNS query to 127.0.0.2:53 on a connected socket");
  } else {
    Denied(outcome, current_step, errno);
  }
  (void)close(fd);
}

/* argv: PORT */
static void AttemptListenUnlistedPort(struct Outcome* outcome, int argc, char** argv) {
  int port = PortArgument(argc, argv, outcome);
  if (port <= 0) return;
  const int types[] = {SOCK_STREAM, SOCK_DGRAM};
  for (size_t i = 0; i < 2; ++i) {
    const char* step = types[i] == SOCK_STREAM ? "tcp-bind" : "udp-bind";
    current_step = step;
    struct sockaddr_storage address;
    socklen_t length = MakeAddress("0.0.0.0", (uint16_t)port, &address);
    int fd = socket(AF_INET, types[i] | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      Denied(outcome, step, errno);
      continue;
    }
    if (bind(fd, (struct sockaddr*)&address, length) != 0) {
      Denied(outcome, step, errno);
    } else if (types[i] == SOCK_DGRAM) {
      Escaped(outcome, "bound udp port %d", port);
    } else if (listen(fd, 4) == 0) {
      Escaped(outcome, "listening on tcp port %d", port);
    } else {
      Denied(outcome, "tcp-listen", errno);
    }
    (void)close(fd);
  }
}

/* argv: SOCKET_PATH [ABSTRACT_NAME] */
static void AttemptUnixSocket(struct Outcome* outcome, int argc, char** argv) {
  const char* path = argc > 0 ? argv[0] : "/var/lib/citadel/dev.sock";
  for (int i = 0; i < 2; ++i) {
    bool abstract = i == 1;
    if (abstract && argc < 2) break;
    const char* name = abstract ? argv[1] : path;
    const char* step = abstract ? "abstract" : "path";
    current_step = step;
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t name_length = strlen(name);
    size_t offset = abstract ? 1 : 0; /* abstract: leading NUL */
    if (name_length + offset >= sizeof address.sun_path) {
      DeniedBecause(outcome, step, "name-too-long");
      continue;
    }
    memcpy(address.sun_path + offset, name, name_length);
    socklen_t length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + offset + name_length + (abstract ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      Denied(outcome, step, errno);
      continue;
    }
    if (connect(fd, (struct sockaddr*)&address, length) == 0) {
      Escaped(outcome, "connected to %s unix socket %s", step, name);
    } else {
      Denied(outcome, step, errno);
    }
    (void)close(fd);
  }
}

/* ---- attempts: processes and privileges -------------------------------- */

/* A child that only waits to be killed (bounded). */
static pid_t ForkIdleChild(int seconds) {
  pid_t child = fork();
  if (child == 0) {
    struct timespec pause_time = {.tv_sec = seconds, .tv_nsec = 0};
    (void)nanosleep(&pause_time, NULL);
    _exit(0);
  }
  return child;
}

static void ReapChild(pid_t child) {
  if (child <= 0) return;
  (void)kill(child, SIGKILL);
  (void)waitpid(child, NULL, 0);
}

static void TryPtraceAttach(struct Outcome* outcome, const char* step, pid_t pid) {
  current_step = step;
  if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) == 0) {
    Escaped(outcome, "%s: PTRACE_ATTACH to pid %d succeeded", step, (int)pid);
    (void)ptrace(PTRACE_DETACH, pid, NULL, NULL);
  } else {
    Denied(outcome, step, errno);
  }
}

/* argv: [PID] (a host process, e.g. the neighbour app) */
static void AttemptPtrace(struct Outcome* outcome, int argc, char** argv) {
  if (argc > 0) {
    long pid = ParseLong(argv[0], 1, 1L << 30);
    if (pid > 0) TryPtraceAttach(outcome, "attach:argv-pid", (pid_t)pid);
  }
  TryPtraceAttach(outcome, "attach:pid1", 1);
  pid_t child = ForkIdleChild(kStepTimeoutSeconds);
  if (child < 0) {
    Denied(outcome, "fork", errno);
    return;
  }
  TryPtraceAttach(outcome, "attach:own-child", child);
  current_step = "process_vm_readv:own-child";
  char local[16];
  static char remote_probe[16] = "hostile-probe";
  struct iovec local_iov = {.iov_base = local, .iov_len = sizeof local};
  struct iovec remote_iov = {.iov_base = remote_probe, .iov_len = sizeof remote_probe};
  if (process_vm_readv(child, &local_iov, 1, &remote_iov, 1, 0) > 0) {
    Escaped(outcome, "process_vm_readv read the child's memory");
  } else {
    Denied(outcome, current_step, errno);
  }
  ReapChild(child);
}

/* argv: PID (the neighbour, as the host sees it) */
static void AttemptKillOther(struct Outcome* outcome, int argc, char** argv) {
  if (argc > 0) {
    long pid = ParseLong(argv[0], 2, 1L << 30);
    current_step = "kill:argv-pid";
    if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0) {
      Escaped(outcome, "kill(%ld, SIGKILL) succeeded", pid);
    } else {
      Denied(outcome, current_step, pid > 0 ? errno : EINVAL);
    }
  }
  /* PID 1 of its own namespace with no children: -1 reaches no one. */
  current_step = "kill:-1";
  if (kill(-1, SIGKILL) == 0) {
    Escaped(outcome, "kill(-1, SIGKILL) signalled some process");
  } else {
    Denied(outcome, current_step, errno);
  }
}

static void AttemptMount(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  current_step = "mount-tmpfs:/tmp";
  if (mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m") == 0) {
    Escaped(outcome, "mounted a tmpfs on /tmp");
  } else {
    Denied(outcome, current_step, errno);
  }
  current_step = "bind:/->/tmp";
  if (mount("/", "/tmp", NULL, MS_BIND | MS_REC, NULL) == 0) {
    Escaped(outcome, "bind-mounted / on /tmp");
  } else {
    Denied(outcome, current_step, errno);
  }
  current_step = "umount:/app";
  if (umount2("/app", MNT_DETACH) == 0) {
    Escaped(outcome, "unmounted /app");
  } else {
    Denied(outcome, current_step, errno);
  }
}

static void AttemptUnshare(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  const struct {
    const char* step;
    int flags;
  } kinds[] = {{"CLONE_NEWUSER", CLONE_NEWUSER}, {"CLONE_NEWNS", CLONE_NEWNS}, {"CLONE_NEWNET", CLONE_NEWNET}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; ++i) {
    current_step = kinds[i].step;
    if (unshare(kinds[i].flags) == 0) {
      Escaped(outcome, "unshare(%s) succeeded", kinds[i].step);
    } else {
      Denied(outcome, kinds[i].step, errno);
    }
  }
}

static void AttemptSetuid(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  current_step = "setuid(0)";
  if (setuid(0) == 0)
    Escaped(outcome, "setuid(0) succeeded");
  else
    Denied(outcome, current_step, errno);
  current_step = "setgid(0)";
  if (setgid(0) == 0)
    Escaped(outcome, "setgid(0) succeeded");
  else
    Denied(outcome, current_step, errno);
  current_step = "setresuid(0)";
  if (setresuid(0, 0, 0) == 0)
    Escaped(outcome, "setresuid(0,0,0) succeeded");
  else
    Denied(outcome, current_step, errno);
  current_step = "setgroups";
  gid_t root_group = 0;
  if (setgroups(1, &root_group) == 0)
    Escaped(outcome, "setgroups({0}) succeeded");
  else
    Denied(outcome, current_step, errno);
}

/* ---- attempts: memory ---------------------------------------------------- */

static void AttemptWxMemory(struct Outcome* outcome, int argc, char** argv) {
  (void)argc;
  (void)argv;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  current_step = "mmap-rwx";
  void* rwx = mmap(NULL, page, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (rwx != MAP_FAILED) {
    Escaped(outcome, "mmap(PROT_READ|PROT_WRITE|PROT_EXEC) succeeded");
    (void)munmap(rwx, page);
  } else {
    Denied(outcome, current_step, errno);
  }

  current_step = "mprotect-rw-to-rwx";
  void* rw = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (rw == MAP_FAILED) {
    Denied(outcome, "mmap-rw", errno);
  } else {
    if (mprotect(rw, page, PROT_READ | PROT_WRITE | PROT_EXEC) == 0) {
      Escaped(outcome, "mprotect(RW -> RWX) succeeded");
    } else {
      Denied(outcome, current_step, errno);
    }
    current_step = "pkey_mprotect-rwx";
    if (pkey_mprotect(rw, page, PROT_READ | PROT_WRITE | PROT_EXEC, -1) == 0) {
      Escaped(outcome, "pkey_mprotect(RWX) succeeded");
    } else {
      Denied(outcome, current_step, errno);
    }
    (void)munmap(rw, page);
  }

  /* Two views of one memfd, one writable and one executable. */
  current_step = "memfd_create";
  int memfd = memfd_create("wx", MFD_CLOEXEC);
  if (memfd < 0) {
    Denied(outcome, current_step, errno);
    return;
  }
  current_step = "memfd-views";
  if (ftruncate(memfd, (off_t)page) != 0) {
    Denied(outcome, "ftruncate", errno);
  } else {
    void* writable = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    void* executable = mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_SHARED, memfd, 0);
    if (writable != MAP_FAILED && executable != MAP_FAILED) {
      Escaped(outcome, "memfd mapped both writable and executable");
    } else {
      Denied(outcome, current_step, errno);
    }
    if (writable != MAP_FAILED) (void)munmap(writable, page);
    if (executable != MAP_FAILED) (void)munmap(executable, page);
  }
  (void)close(memfd);
}

/* ---- attempts stopped by a kill (print ATTEMPT first) ------------------ */

/* argv: [MAX_PROCESSES] (default 4096) */
static void AttemptForkBomb(struct Outcome* outcome, int argc, char** argv) {
  long max = argc > 0 ? ParseLong(argv[0], 1, 30000) : 4096;
  if (max < 0) max = 4096;
  static pid_t children[30000];
  long count = 0;
  int error = 0;
  current_step = "fork";
  while (count < max) {
    pid_t child = ForkIdleChild(kStepTimeoutSeconds);
    if (child < 0) {
      error = errno;
      break;
    }
    children[count++] = child;
  }
  if (error == 0) {
    Escaped(outcome, "forked %ld processes without hitting a limit", count);
  } else {
    char reason[64];
    (void)snprintf(reason, sizeof reason, "%s(after-%ld-processes)", ErrnoName(error), count);
    DeniedBecause(outcome, "fork", reason);
    /* Stay at the limit a moment so the runtime's counters show it. */
    struct timespec hold = {.tv_sec = 2, .tv_nsec = 0};
    (void)nanosleep(&hold, NULL);
  }
  for (long i = 0; i < count; ++i) (void)kill(children[i], SIGKILL);
  for (long i = 0; i < count; ++i) (void)waitpid(children[i], NULL, 0);
}

/* argv: [LIMIT_MIB]: touches memory 1 MiB at a time until killed, refused
 * (ENOMEM), or past LIMIT_MIB (default 1024): then it escaped the limit. */
static void AttemptMemoryBomb(struct Outcome* outcome, int argc, char** argv) {
  long limit_mib = argc > 0 ? ParseLong(argv[0], 1, 1 << 20) : 1024;
  if (limit_mib < 0) limit_mib = 1024;
  const size_t chunk = 1 << 20;
  long touched = 0;
  current_step = "mmap";
  while (touched <= limit_mib) {
    char* block = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED) {
      char reason[64];
      (void)snprintf(reason, sizeof reason, "%s(after-%ld-MiB)", ErrnoName(errno), touched);
      DeniedBecause(outcome, "mmap", reason);
      return;
    }
    memset(block, 0xa5, chunk); /* make every page resident */
    ++touched;
  }
  Escaped(outcome, "touched %ld MiB, more than the %ld MiB limit, without being stopped", touched, limit_mib);
}

/* ---- the table ---------------------------------------------------------- */

typedef void (*AttemptFunction)(struct Outcome* outcome, int argc, char** argv);

struct Attempt {
  const char* name;
  AttemptFunction run;
  const char* arguments;
  bool killed_by_limit; /* print ATTEMPT first; expected end: killed */
  bool destructive;     /* only inside the sandbox (pid 1, not root) */
};

static const struct Attempt kAttempts[] = {
    {"read-other-storage", AttemptReadOtherStorage, "OTHER_COMPONENT_ID [PATH...]", false, false},
    {"open-unlisted-gpio", AttemptOpenUnlistedGpio, "[NAME]", false, false},
    {"open-unlisted-i2c", AttemptOpenUnlistedI2c, "[NAME]", false, false},
    {"open-unlisted-uart", AttemptOpenUnlistedUart, "[NAME]", false, false},
    {"connect-unlisted-ip", AttemptConnectUnlistedIp, "PORT", false, false},
    {"connect-unlisted-host", AttemptConnectUnlistedHost, "PORT", false, false},
    {"connect-udp", AttemptConnectUdp, "PORT", false, false},
    {"udp-redirect", AttemptUdpRedirect, "ALLOWED_PORT FORBIDDEN_PORT", false, false},
    {"connect-ipv6", AttemptConnectIpv6, "PORT", false, false},
    {"raw-socket", AttemptRawSocket, "", false, false},
    {"own-resolver", AttemptOwnResolver, "", false, false},
    {"listen-unlisted-port", AttemptListenUnlistedPort, "PORT", false, false},
    {"ptrace", AttemptPtrace, "[PID]", false, false},
    {"kill-other", AttemptKillOther, "PID", false, true},
    {"mount", AttemptMount, "", false, false},
    {"unshare", AttemptUnshare, "", false, false},
    {"setuid", AttemptSetuid, "", false, false},
    {"write-image", AttemptWriteImage, "", false, false},
    {"exec-written", AttemptExecWritten, "[DIR...]", false, false},
    {"wx-memory", AttemptWxMemory, "", false, false},
    {"fork-bomb", AttemptForkBomb, "[MAX_PROCESSES]", true, true},
    {"memory-bomb", AttemptMemoryBomb, "[LIMIT_MIB]", true, true},
    {"fill-storage", AttemptFillStorage, "QUOTA_KB", false, true},
    {"read-device-key", AttemptReadDeviceKey, "[PATH...]", false, false},
    {"read-other-cert", AttemptReadOtherCert, "[PATH...]", false, false},
    {"read-proc1-environ", AttemptReadProc1Environ, "MARKER [HOST_PID...]", false, false},
    {"unix-socket", AttemptUnixSocket, "SOCKET_PATH [ABSTRACT_NAME]", false, false},
};

static void PrintUsage(void) {
  PrintLine("ERROR usage: hostile ATTEMPT [ARG...]; attempts:");
  for (size_t i = 0; i < sizeof kAttempts / sizeof kAttempts[0]; ++i)
    PrintLine("  %s %s", kAttempts[i].name, kAttempts[i].arguments);
}

int main(int argc, char** argv) {
  /* A copy of this program that exec-written managed to run. */
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
    PrintLine("PROBE-RAN");
    return 0;
  }
  if (argc < 2) {
    PrintUsage();
    return 2;
  }
  const struct Attempt* attempt = NULL;
  for (size_t i = 0; i < sizeof kAttempts / sizeof kAttempts[0]; ++i)
    if (strcmp(argv[1], kAttempts[i].name) == 0) attempt = &kAttempts[i];
  if (attempt == NULL) {
    PrintUsage();
    return 2;
  }
  current_attempt = attempt->name;
  /* As root outside a sandbox, "mount a tmpfs on /tmp" or "kill -1" would
   * really happen to the host: never run as root. */
  if (getuid() == 0 || geteuid() == 0) {
    PrintLine("ERROR %s refusing to run as root (run it as an app under citadeld)", attempt->name);
    return 2;
  }
  if (attempt->destructive && !InSandbox()) {
    PrintLine("ERROR %s refusing to run outside the sandbox (pid %d, uid %d)", attempt->name, (int)getpid(),
              (int)getuid());
    return 2;
  }
  if (attempt->killed_by_limit) {
    PrintLine("ATTEMPT %s", attempt->name);
  } else {
    signal(SIGALRM, OnStepTimeout);
    alarm(kStepTimeoutSeconds);
  }
  signal(SIGPIPE, SIG_IGN);

  static struct Outcome outcome;
  attempt->run(&outcome, argc - 2, argv + 2);
  alarm(0);
  if (outcome.escaped) {
    PrintLine("ESCAPED %s %s", attempt->name, outcome.what);
    return 1;
  }
  PrintLine("DENIED %s %s", attempt->name, outcome.reasons[0] != '\0' ? outcome.reasons : "nothing-attempted");
  return 0;
}
