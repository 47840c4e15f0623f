/* The division bug (--bug divide): ComputeAverage divides by the number of
 * values, which may be zero. */
#include "bugs.h"

__attribute__((noinline)) int ComputeAverage(const int* values, int count) {
  int sum = 0;
  for (int i = 0; i < count; ++i) sum += values[i];
  /* The crash: count is 0, an integer division by zero (SIGFPE). */
  return sum / count; /* CRASH: divide */
}
