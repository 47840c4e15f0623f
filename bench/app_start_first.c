/*
 * The app whose start app_start_bench measures: a static program whose
 * first action is to write its CLOCK_MONOTONIC time (a struct timespec,
 * 16 bytes) to fd 1. The clock is shared with the launcher (no time
 * namespace), so launcher-side "start requested" to this timestamp is the
 * start latency, independent of when the launcher reads the pipe.
 *
 * With argv[1] == "idle" it then stays alive (bounded, 120 s) so that the
 * benchmark can measure the memory an idle app and its sandbox cost.
 * Uses only write, clock_gettime (vDSO) and nanosleep: nothing a Citadel
 * seccomp filter reports.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  struct timespec now;
  (void)clock_gettime(CLOCK_MONOTONIC, &now);
  if (write(STDOUT_FILENO, &now, sizeof now) != (ssize_t)sizeof now) return 1;
  if (argc > 1 && strcmp(argv[1], "idle") == 0) {
    for (int i = 0; i < 120; ++i) {
      struct timespec second = {.tv_sec = 1, .tv_nsec = 0};
      (void)nanosleep(&second, NULL);
    }
  }
  return 0;
}
