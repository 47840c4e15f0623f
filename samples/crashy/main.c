/*
 * crashy: a sample app that fails on purpose, for the failure-reporting
 * tests and demos (docs/ARCHITECTURE.md, "Failure reporting").
 *
 * Options (CmdArgs):
 *   --bug null     dereference a null pointer in ReadSensorConfig (SIGSEGV)
 *   --bug divide   divide by zero in ComputeAverage (SIGFPE)
 *   --bug exit     exit with status 3
 *   --bug none     do not fail
 *   --bug B1,B2..  failure k (counting from 0) is bug B(k mod count)
 *   --crashes N    fail only while the counter in its mutable storage
 *                  (crash-count-NAME) is below N, incrementing it (fsync'd)
 *                  before each failure; then keep running. Default: fail
 *                  on every start.
 *   --counter NAME the counter's name (the manifest passes its version, so
 *                  each release counts its own failures). Default "main".
 *   --crash-after S run S seconds before failing (so that an update's trial
 *                  sees a healthy start first). Default 0.
 *
 * While it runs without failing it sleeps until SIGTERM (what the runtime
 * sends on stop) and exits 0. Built with -g -O1 and a GNU build id, so a
 * crash report symbolizes to the function and line above.
 *
 * Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <applibs/applibs.h>

#include "bugs.h"

enum { kExitBugStatus = 3, kCounterTextBytes = 32 };

static volatile sig_atomic_t stop_requested = 0;

static void OnTerminate(int signal_number) {
  (void)signal_number;
  stop_requested = 1;
}

/* Parses a decimal in [0, 1000000000]; -1 when invalid. */
static long ParseCount(const char* text) {
  char* end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 1000000000L) return -1;
  return value;
}

/* The counter file's path in the mutable storage, or NULL without storage. */
static const char* CounterPath(const char* name) {
  static char path[512];
  const char* directory = Storage_GetMutableDirectory();
  if (directory == NULL) return NULL;
  int written = snprintf(path, sizeof path, "%s/crash-count-%s", directory, name);
  if (written < 0 || (size_t)written >= sizeof path) return NULL;
  return path;
}

static long ReadCounter(const char* path) {
  char text[kCounterTextBytes] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t got = read(fd, text, sizeof text - 1);
  (void)close(fd);
  if (got <= 0) return 0;
  text[got] = '\0';
  char* newline = strchr(text, '\n');
  if (newline != NULL) *newline = '\0';
  long value = ParseCount(text);
  return value < 0 ? 0 : value;
}

/* Writes the counter durably: the crash that follows must not lose it. */
static int WriteCounter(const char* path, long value) {
  char text[kCounterTextBytes];
  int length = snprintf(text, sizeof text, "%ld\n", value);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int result = write(fd, text, (size_t)length) == (ssize_t)length && fsync(fd) == 0 ? 0 : -1;
  if (close(fd) != 0) result = -1;
  return result;
}

/* The values the bugs get: through volatiles, so the compiler cannot see
 * (and fold) the fault at build time. */
static const struct SensorConfig* volatile no_config = NULL;
static volatile int no_values = 0;

static int IsKnownBug(const char* bug, size_t length) {
  static const char* const kBugs[] = {"null", "divide", "exit", "none"};
  for (size_t i = 0; i < sizeof kBugs / sizeof kBugs[0]; ++i) {
    if (strlen(kBugs[i]) == length && strncmp(bug, kBugs[i], length) == 0) return 1;
  }
  return 0;
}

/* Checks a comma-separated bug list; returns how many bugs it names, 0
 * when one is unknown. */
static size_t CountBugs(const char* list) {
  size_t count = 0;
  for (const char* start = list;; ++count) {
    const char* comma = strchr(start, ',');
    size_t length = comma == NULL ? strlen(start) : (size_t)(comma - start);
    if (!IsKnownBug(start, length)) return 0;
    if (comma == NULL) return count + 1;
    start = comma + 1;
  }
}

/* The bug at `index` of the list (modulo its length), in `out`. */
static void PickBug(const char* list, size_t count, long index, char* out, size_t out_size) {
  const char* start = list;
  for (long skip = index % (long)count; skip > 0; --skip) start = strchr(start, ',') + 1;
  const char* comma = strchr(start, ',');
  size_t length = comma == NULL ? strlen(start) : (size_t)(comma - start);
  if (length >= out_size) length = out_size - 1;
  memcpy(out, start, length);
  out[length] = '\0';
}

/* Counter names are short and plain (versions): letters, digits, . - _ */
static int IsCounterName(const char* name) {
  size_t length = strlen(name);
  if (length == 0 || length > 64) return 0;
  for (size_t i = 0; i < length; ++i) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
          c == '_')) {
      return 0;
    }
  }
  return 1;
}

static int Fail(const char* bug) {
  if (strcmp(bug, "null") == 0) {
    Log_Debug("crashy: reading the sensor configuration");
    return ReadSensorConfig(no_config);
  }
  if (strcmp(bug, "divide") == 0) {
    static const int values[1] = {0};
    Log_Debug("crashy: computing the average");
    return ComputeAverage(values, no_values);
  }
  if (strcmp(bug, "exit") == 0) {
    Log_Debug("crashy: exiting with status %d", kExitBugStatus);
    exit(kExitBugStatus);
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* bugs = "none";
  size_t bug_count = 1;
  const char* counter = "main";
  long crashes = -1; /* -1: fail on every start */
  long crash_after = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--bug") == 0 && i + 1 < argc) {
      bugs = argv[++i];
      bug_count = CountBugs(bugs);
      if (bug_count == 0) {
        Log_Debug("crashy: unknown bug in \"%s\" (null, divide, exit, none; comma-separated)", bugs);
        return 2;
      }
    } else if (strcmp(argv[i], "--counter") == 0 && i + 1 < argc) {
      counter = argv[++i];
      if (!IsCounterName(counter)) {
        Log_Debug("crashy: --counter wants letters, digits, '.', '-' or '_'");
        return 2;
      }
    } else if (strcmp(argv[i], "--crash-after") == 0 && i + 1 < argc) {
      crash_after = ParseCount(argv[++i]);
      if (crash_after < 0 || crash_after > 86400) {
        Log_Debug("crashy: --crash-after wants seconds 0..86400");
        return 2;
      }
    } else if (strcmp(argv[i], "--crashes") == 0 && i + 1 < argc) {
      crashes = ParseCount(argv[++i]);
      if (crashes < 0) {
        Log_Debug("crashy: --crashes wants a count 0..1000000000");
        return 2;
      }
    } else {
      Log_Debug(
          "crashy: unknown argument \"%s\" (options: --bug B[,B...], --crashes N, --counter NAME, "
          "--crash-after S)",
          argv[i]);
      return 2;
    }
  }

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = OnTerminate;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGTERM, &action, NULL) != 0) {
    Log_Debug("crashy: cannot install the SIGTERM handler: %s", strerror(errno));
    return 1;
  }

  long done = 0;
  int fail = 1;
  if (crashes >= 0) {
    const char* path = CounterPath(counter);
    if (path == NULL) {
      Log_Debug("crashy: --crashes needs MutableStorage in the manifest");
      return 1;
    }
    done = ReadCounter(path);
    fail = done < crashes;
  }
  char bug[16];
  PickBug(bugs, bug_count, done, bug, sizeof bug);
  if (fail && strcmp(bug, "none") != 0) {
    for (long waited = 0; waited < crash_after && !stop_requested; ++waited) {
      struct timespec second = {.tv_sec = 1, .tv_nsec = 0};
      (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &second, NULL);
    }
    if (stop_requested) return 0;
    if (crashes >= 0) {
      const char* path = CounterPath(counter);
      if (WriteCounter(path, done + 1) != 0) {
        Log_Debug("crashy: cannot write %s: %s", path, strerror(errno));
        return 1;
      }
      Log_Debug("crashy: failure %ld of %ld (%s)", done + 1, crashes, bug);
    }
    (void)Fail(bug);
  }

  Log_Debug("crashy: running");
  while (!stop_requested) {
    struct timespec second = {.tv_sec = 1, .tv_nsec = 0};
    (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &second, NULL);
  }
  Log_Debug("crashy: stopped by signal");
  return 0;
}
