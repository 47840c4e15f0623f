/*
 * crashy's bugs, each in its own source file so that a symbolized crash
 * names a known function, file and line.
 */
#ifndef CITADEL_SAMPLES_CRASHY_BUGS_H
#define CITADEL_SAMPLES_CRASHY_BUGS_H

struct SensorConfig {
  int sample_period_ms;
  int threshold;
};

/* Reads the sensor configuration through `config`; crashy passes NULL. */
int ReadSensorConfig(const struct SensorConfig* config);

/* The average of `count` values; crashy passes count 0. */
int ComputeAverage(const int* values, int count);

#endif
