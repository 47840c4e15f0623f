/* The app the sandbox tests run: reports what it sees as "key=value" lines
 * on fd 1. Mode is argv[1]; see sandbox_test.cpp for what each is for. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void Report(const char* key, const char* value) { dprintf(1, "%s=%s\n", key, value); }
static void ReportInt(const char* key, long value) { dprintf(1, "%s=%ld\n", key, value); }

/* errno of creating a file (0 on success). */
static int CreateErrno(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return errno;
  close(fd);
  unlink(path);
  return 0;
}

static void StatusField(const char* name) {
  FILE* file = fopen("/proc/self/status", "r");
  char line[256];
  size_t length = strlen(name);
  if (file == NULL) {
    Report(name, "unreadable");
    return;
  }
  while (fgets(line, sizeof line, file) != NULL) {
    if (strncmp(line, name, length) == 0 && line[length] == ':') {
      char* value = line + length + 1;
      while (*value == ' ' || *value == '\t') ++value;
      value[strcspn(value, "\n")] = 0;
      Report(name, value);
    }
  }
  fclose(file);
}

static void Identity(void) {
  char host[256] = {0};
  char link[256] = {0};
  struct rlimit core;
  struct stat info;
  ReportInt("pid", getpid());
  ReportInt("uid", getuid());
  ReportInt("euid", geteuid());
  ReportInt("gid", getgid());
  ReportInt("groups", getgroups(0, NULL));
  StatusField("CapInh");
  StatusField("CapPrm");
  StatusField("CapEff");
  StatusField("CapBnd");
  StatusField("CapAmb");
  StatusField("NoNewPrivs");
  StatusField("Seccomp");
  gethostname(host, sizeof host - 1);
  Report("hostname", host);
  getrlimit(RLIMIT_CORE, &core);
  ReportInt("core_limit", (long)core.rlim_max);
  if (readlink("/proc/self/fd/0", link, sizeof link - 1) > 0) Report("fd0", link);
  ReportInt("fd3_socket", fstat(3, &info) == 0 && S_ISSOCK(info.st_mode));
  Report("env_component", getenv("CITADEL_COMPONENT_ID") ? getenv("CITADEL_COMPONENT_ID") : "");
  Report("env_broker_fd", getenv("CITADEL_BROKER_FD") ? getenv("CITADEL_BROKER_FD") : "");
  Report("env_home", getenv("HOME") ? getenv("HOME") : "");
  /* Every open descriptor except the directory stream itself. */
  DIR* fds = opendir("/proc/self/fd");
  char list[512] = "";
  struct dirent* entry;
  while (fds != NULL && (entry = readdir(fds)) != NULL) {
    if (entry->d_name[0] == '.' || atoi(entry->d_name) == dirfd(fds)) continue;
    strncat(list, entry->d_name, sizeof list - strlen(list) - 2);
    strcat(list, ",");
  }
  if (fds != NULL) closedir(fds);
  Report("fds", list);
}

static void FileSystem(void) {
  ReportInt("root_write", CreateErrno("/probe-file"));
  ReportInt("app_write", CreateErrno("/app/probe-file"));
  ReportInt("usr_write", CreateErrno("/usr/probe-file"));
  ReportInt("etc_write", CreateErrno("/etc/probe-file"));
  ReportInt("tmp_write", CreateErrno("/tmp/probe-file"));
  /* A copy of this very program in /tmp must not run. */
  int in = open("/app/bin/probe", O_RDONLY);
  int out = open("/tmp/copy", O_WRONLY | O_CREAT | O_TRUNC, 0755);
  char buffer[65536];
  ssize_t got;
  while (in >= 0 && out >= 0 && (got = read(in, buffer, sizeof buffer)) > 0) {
    if (write(out, buffer, (size_t)got) != got) break;
  }
  if (out >= 0) close(out);
  if (in >= 0) close(in);
  char* args[] = {"/tmp/copy", "identity", NULL};
  char* env[] = {NULL};
  execve("/tmp/copy", args, env);
  ReportInt("tmp_exec", errno);
  struct stat info;
  const char* host_paths[] = {"/root", "/var", "/home", "/work", "/boot", "/sys", "/run", NULL};
  for (int i = 0; host_paths[i] != NULL; ++i) {
    char key[64];
    snprintf(key, sizeof key, "exists%s", host_paths[i]);
    ReportInt(key, stat(host_paths[i], &info) == 0);
  }
  ReportInt("usr_bin_sh", access("/bin/sh", X_OK) == 0);
  /* File permissions allow listing "/" (a 0755 tmpfs); Landlock does not. */
  DIR* root = opendir("/");
  ReportInt("root_list", root == NULL ? errno : 0);
  if (root != NULL) closedir(root);
  DIR* app = opendir("/app");
  ReportInt("app_list", app == NULL ? errno : 0);
  if (app != NULL) closedir(app);
  ReportInt("dev_write", CreateErrno("/dev/probe-file"));
  int null_fd = open("/dev/null", O_WRONLY);
  ReportInt("dev_null_write", null_fd >= 0 && write(null_fd, "x", 1) == 1);
}

static void Storage(int argc, char** argv) {
  struct stat info;
  if (stat("/mnt/config", &info) != 0) {
    ReportInt("storage_stat", errno);
    return;
  }
  ReportInt("storage_uid", (long)info.st_uid);
  if (argc > 2 && strcmp(argv[2], "fill") == 0) {
    int fd = open("/mnt/config/fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char chunk[4096];
    long total = 0;
    int error = 0;
    memset(chunk, 'x', sizeof chunk);
    if (fd < 0) error = errno;
    for (int i = 0; fd >= 0 && i < 100000; ++i) {
      ssize_t put = write(fd, chunk, sizeof chunk);
      if (put < 0) {
        error = errno;
        break;
      }
      total += put;
      if (put < (ssize_t)sizeof chunk) {
        /* A short write: the next one reports why. */
        continue;
      }
    }
    if (fd >= 0 && fsync(fd) != 0 && error == 0) error = errno;
    if (fd >= 0) close(fd);
    ReportInt("filled", total);
    ReportInt("fill_errno", error);
    unlink("/mnt/config/fill");
  }
  if (argc > 3 && strcmp(argv[2], "write") == 0) {
    char path[256];
    snprintf(path, sizeof path, "/mnt/config/%s", argv[3]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ReportInt("marker_written", fd >= 0 && write(fd, argv[3], strlen(argv[3])) > 0);
    if (fd >= 0) close(fd);
  }
  DIR* dir = opendir("/mnt/config");
  char list[1024] = "";
  struct dirent* entry;
  while (dir != NULL && (entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] == '.') continue;
    strncat(list, entry->d_name, sizeof list - strlen(list) - 2);
    strcat(list, ",");
  }
  if (dir != NULL) closedir(dir);
  Report("storage_entries", list);
  ReportInt("storage_write", CreateErrno("/mnt/config/probe-file"));
}

static void Processes(void) {
  DIR* dir = opendir("/proc");
  char list[1024] = "";
  struct dirent* entry;
  while (dir != NULL && (entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    strncat(list, entry->d_name, sizeof list - strlen(list) - 2);
    strcat(list, ",");
  }
  if (dir != NULL) closedir(dir);
  Report("proc_pids", list);
}

static void Memory(long mib) {
  size_t size = (size_t)mib << 20;
  char* block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) {
    ReportInt("mmap_errno", errno);
    return;
  }
  for (size_t offset = 0; offset < size; offset += 4096) block[offset] = 1;
  Report("allocated", "yes");
}

static void Forks(void) {
  pid_t children[256];
  int count = 0;
  int error = 0;
  while (count < 256) {
    pid_t pid = fork();
    if (pid == 0) {
      pause();
      _exit(0);
    }
    if (pid < 0) {
      error = errno;
      break;
    }
    children[count++] = pid;
  }
  ReportInt("forked", count);
  ReportInt("fork_errno", error);
  for (int i = 0; i < count; ++i) kill(children[i], SIGKILL);
  for (int i = 0; i < count; ++i) waitpid(children[i], NULL, 0);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "identity";
  if (strcmp(mode, "identity") == 0) Identity();
  if (strcmp(mode, "fs") == 0) FileSystem();
  if (strcmp(mode, "storage") == 0) Storage(argc, argv);
  if (strcmp(mode, "proc") == 0) Processes();
  if (strcmp(mode, "memory") == 0) Memory(argc > 2 ? atol(argv[2]) : 256);
  if (strcmp(mode, "pids") == 0) Forks();
  Report("done", "1");
  return 0;
}
