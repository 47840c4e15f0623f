/*
 * blink: the smallest Citadel app. Toggles LED1 every 500 ms and logs each
 * toggle; pressing BUTTON_A (active low) pauses and resumes the blinking.
 *
 * It touches the device only through applibs, so it needs exactly the
 * manifest's Gpio ["LED1", "BUTTON_A"] and nothing else. SIGTERM (what the
 * runtime sends on `citadel device app stop`) ends the loop: the LED is
 * switched off and the app exits 0.
 *
 * Options (CmdArgs): --period-ms N (default 500), --count N (exit after N
 * toggles; 0 = run until SIGTERM, the default).
 *
 * Single-threaded.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <applibs/applibs.h>

static volatile sig_atomic_t stop_requested = 0;

static void OnTerminate(int signal_number) {
  (void)signal_number;
  stop_requested = 1;
}

static int InstallTerminationHandler(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = OnTerminate;
  sigemptyset(&action.sa_mask);
  /* No SA_RESTART: the sleep below must wake up on SIGTERM. */
  if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
  if (sigaction(SIGINT, &action, NULL) != 0) return -1;
  return 0;
}

/* Parses a decimal option value in [minimum, maximum]; -1 when invalid. */
static long ParseBounded(const char* text, long minimum, long maximum) {
  char* end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < minimum || value > maximum) return -1;
  return value;
}

/* Sleeps up to `milliseconds`; returns early on a signal. */
static void SleepMilliseconds(long milliseconds) {
  struct timespec duration = {.tv_sec = milliseconds / 1000, .tv_nsec = (milliseconds % 1000) * 1000000L};
  (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &duration, NULL);
}

int main(int argc, char** argv) {
  long period_ms = 500;
  long count = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--period-ms") == 0 && i + 1 < argc) {
      period_ms = ParseBounded(argv[++i], 10, 60000);
    } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
      count = ParseBounded(argv[++i], 0, 1000000000L);
    } else {
      Log_Debug("blink: unknown argument \"%s\" (options: --period-ms N, --count N)", argv[i]);
      return 2;
    }
    if (period_ms < 0 || count < 0) {
      Log_Debug("blink: bad value for %s (period 10..60000 ms, count >= 0)", argv[i - 1]);
      return 2;
    }
  }

  if (InstallTerminationHandler() != 0) {
    Log_Debug("blink: cannot install the SIGTERM handler: %s", strerror(errno));
    return 1;
  }

  int led = GPIO_OpenAsOutput("LED1", GPIO_Value_Low);
  if (led < 0) {
    Log_Debug("blink: cannot open LED1 as output: %s (does the manifest list Gpio \"LED1\"?)", strerror(errno));
    return 1;
  }
  /* The button is optional: without it the LED just blinks. */
  int button = GPIO_OpenAsInput("BUTTON_A");
  if (button < 0) Log_Debug("blink: BUTTON_A unavailable (%s); blinking without pause control", strerror(errno));

  Log_Debug("blink: started, LED1 toggles every %ld ms", period_ms);
  GPIO_Value_Type level = GPIO_Value_Low;
  GPIO_Value_Type last_button = GPIO_Value_High; /* active low: high = released */
  int paused = 0;
  long toggles = 0;
  int exit_code = 0;
  while (!stop_requested && (count == 0 || toggles < count)) {
    if (button >= 0) {
      GPIO_Value_Type pressed_level = GPIO_Value_High;
      if (GPIO_GetValue(button, &pressed_level) == 0) {
        if (last_button == GPIO_Value_High && pressed_level == GPIO_Value_Low) {
          paused = !paused;
          Log_Debug("blink: BUTTON_A pressed, blinking %s", paused ? "paused" : "resumed");
        }
        last_button = pressed_level;
      }
    }
    if (!paused) {
      level = level == GPIO_Value_Low ? GPIO_Value_High : GPIO_Value_Low;
      if (GPIO_SetValue(led, level) != 0) {
        Log_Debug("blink: setting LED1 failed: %s", strerror(errno));
        exit_code = 1;
        break;
      }
      ++toggles;
      Log_Debug("blink: LED1 %s (toggle %ld)", level == GPIO_Value_High ? "on" : "off", toggles);
    }
    SleepMilliseconds(period_ms);
  }

  if (GPIO_SetValue(led, GPIO_Value_Low) != 0) Log_Debug("blink: switching LED1 off failed: %s", strerror(errno));
  Log_Debug("blink: %s after %ld toggles", stop_requested ? "stopped by signal" : "finished", toggles);
  (void)close(led);
  if (button >= 0) (void)close(button);
  return exit_code;
}
