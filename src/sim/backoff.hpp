// How a virtual device waits before it tries an operation again — the
// device side of the service's backpressure (issue 7):
//
//   503 or 429 with "Retry-After: S"  wait uniformly in [S, 1.5 S]: never
//                                     sooner than the service asked, and
//                                     spread so a shed fleet does not come
//                                     back in one wave;
//   any other failure                 exponential backoff with full jitter:
//                                     uniformly in [0, min(max, initial·2^n)]
//                                     for the n-th retry (n from 0).
//
// An operation is retried at most max_retries times; only then does it
// count as an error. Pure functions over an injected uniform source, so the
// tests fix the random numbers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string_view>

namespace citadel::sim {

using Milliseconds = std::chrono::milliseconds;

// Uniform numbers in [0, 1). Tests inject a fixed sequence.
using UniformSource = std::function<double()>;
// A source over a seeded Mersenne Twister (each device seeds its own).
UniformSource MakeUniformSource(std::uint64_t seed);

struct BackoffSettings {
  Milliseconds initial{250};
  Milliseconds max{30'000};
  int max_retries = 8;
};

// True for statuses that say "try again later": 408, 429, and 5xx.
bool IsRetryableStatus(int status);

// The wait before retry number `retry` (0 = the first retry). retry_after
// is honoured only for 429 and 503, as the service promises it there.
Milliseconds RetryDelay(const BackoffSettings& settings, int retry, int status,
                        std::optional<std::chrono::seconds> retry_after, const UniformSource& uniform);

}  // namespace citadel::sim
