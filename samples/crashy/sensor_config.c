/* The null-pointer bug (--bug null): ReadSensorConfig dereferences the
 * configuration it was given without checking it. */
#include "bugs.h"

__attribute__((noinline)) int ReadSensorConfig(const struct SensorConfig* config) {
  /* The crash: config is NULL, and this load faults at address 0. */
  int period = config->sample_period_ms; /* CRASH: null */
  return period > 0 ? period : 1000;
}
