// When citadeld acts: retry backoff, certificate renewal, jittered waits.
// Pure functions of their inputs and a random source, so tests can check
// the bounds without waiting.
//
// Jitter exists so that a fleet that lost the service at the same moment
// does not come back at the same moment (thundering herd); it is not a
// security property, so a seeded PRNG is fine.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string_view>

#include "common/error.hpp"
#include "common/time.hpp"

namespace citadel::device {

using Milliseconds = std::chrono::milliseconds;
using Random = std::mt19937_64;

// A PRNG seeded from std::random_device.
Random MakeRandom();

// Never retry sooner than this, whatever the jitter draws: a retry loop
// must not become a tight loop.
inline constexpr Milliseconds kMinimumRetryDelay{100};

// Exponential backoff with "full jitter" (AWS architecture blog, 2015):
// attempt n waits a uniform time in [kMinimumRetryDelay, min(cap, initial*2^n)].
// The cap wins over `initial` (tests run with a cap below one second).
// Not thread-safe; one per retry loop.
class Backoff {
 public:
  explicit Backoff(Milliseconds initial = std::chrono::seconds(1), Milliseconds cap = std::chrono::seconds(60));

  // The ceiling of the next delay (before jitter).
  Milliseconds Ceiling() const;
  // Draws the next delay and advances the schedule.
  Milliseconds Next(Random& random);
  // After a success: the next failure starts again at `initial`.
  void Reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }

 private:
  Milliseconds initial_;
  Milliseconds cap_;
  int attempt_ = 0;
};

// Renewal happens at 2/3 of the certificate's lifetime, scaled by a jitter
// factor drawn uniformly from [1 - kRenewalJitter, 1 + kRenewalJitter]:
// between 60% and 73% of the lifetime, leaving a third of it (8 h for a
// 24 h certificate) to ride out a service outage.
inline constexpr double kRenewalFraction = 2.0 / 3.0;
inline constexpr double kRenewalJitter = 0.10;

// jitter_factor must be in [1 - kRenewalJitter, 1 + kRenewalJitter].
TimePoint RenewalTime(TimePoint not_before, TimePoint not_after, double jitter_factor);
TimePoint RenewalTime(TimePoint not_before, TimePoint not_after, Random& random);

// True while the certificate still has more than a third of its lifetime
// left at `now`: a restarted runtime keeps using it instead of attesting.
bool HasMoreThanAThirdLeft(TimePoint not_before, TimePoint not_after, TimePoint now);

// Scales a delay by a factor uniform in [1 - fraction, 1 + fraction],
// never returning less than `floor`.
Milliseconds Jittered(Milliseconds delay, double fraction, Random& random,
                      Milliseconds floor = std::chrono::seconds(1));

// Backpressure: the wait for a 429/503's Retry-After
// (http::RetryAfterWait, uniform in [S, 1.5 S]), never below
// kMinimumRetryDelay.
Milliseconds RetryAfterDelay(std::chrono::seconds retry_after, Random& random);

// Parses "500ms", "60s", "5m", "1h" or a bare number of seconds. Refuses
// negative, empty and unknown-unit values.
Expected<Milliseconds> ParseDuration(std::string_view text);

}  // namespace citadel::device
