#include "device/schedule.hpp"

#include "http/http.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>

namespace citadel::device {

Random MakeRandom() {
  std::random_device device;
  std::seed_seq seed{device(), device(), device(), device()};
  return Random(seed);
}

Backoff::Backoff(Milliseconds initial, Milliseconds cap)
    : initial_(std::clamp(initial, kMinimumRetryDelay, std::max(cap, kMinimumRetryDelay))),
      cap_(std::max(cap, kMinimumRetryDelay)) {}

Milliseconds Backoff::Ceiling() const {
  // Doubling past the cap is pointless and would overflow after ~50 steps.
  Milliseconds ceiling = initial_;
  for (int i = 0; i < attempt_ && ceiling < cap_; ++i) ceiling *= 2;
  return std::min(ceiling, cap_);
}

Milliseconds Backoff::Next(Random& random) {
  Milliseconds ceiling = Ceiling();
  if (attempt_ < std::numeric_limits<int>::max()) ++attempt_;
  std::uniform_int_distribution<Milliseconds::rep> draw(kMinimumRetryDelay.count(), ceiling.count());
  return Milliseconds(draw(random));
}

TimePoint RenewalTime(TimePoint not_before, TimePoint not_after, double jitter_factor) {
  jitter_factor = std::clamp(jitter_factor, 1.0 - kRenewalJitter, 1.0 + kRenewalJitter);
  auto lifetime = std::chrono::duration<double>(not_after - not_before);
  if (lifetime.count() <= 0) return not_before;
  auto offset = std::chrono::duration_cast<Clock::duration>(lifetime * (kRenewalFraction * jitter_factor));
  return not_before + offset;
}

TimePoint RenewalTime(TimePoint not_before, TimePoint not_after, Random& random) {
  std::uniform_real_distribution<double> draw(1.0 - kRenewalJitter, 1.0 + kRenewalJitter);
  return RenewalTime(not_before, not_after, draw(random));
}

bool HasMoreThanAThirdLeft(TimePoint not_before, TimePoint not_after, TimePoint now) {
  auto lifetime = not_after - not_before;
  if (lifetime <= Clock::duration::zero() || now < not_before) return false;
  return (not_after - now) * 3 > lifetime;
}

Milliseconds Jittered(Milliseconds delay, double fraction, Random& random, Milliseconds floor) {
  std::uniform_real_distribution<double> draw(1.0 - fraction, 1.0 + fraction);
  auto scaled = Milliseconds(static_cast<Milliseconds::rep>(static_cast<double>(delay.count()) * draw(random)));
  return std::max(scaled, floor);
}

Milliseconds RetryAfterDelay(std::chrono::seconds retry_after, Random& random) {
  std::uniform_real_distribution<double> draw(0.0, 1.0);
  return std::max(http::RetryAfterWait(retry_after, draw(random)), kMinimumRetryDelay);
}

Expected<Milliseconds> ParseDuration(std::string_view text) {
  auto invalid = [&] {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid duration '" + std::string(text) + "' (use e.g. 500ms, 60s, 5m, 1h)");
  };
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || value < 0) return invalid();
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else {
    return invalid();
  }
  if (value > std::numeric_limits<std::int64_t>::max() / scale) return invalid();
  return Milliseconds(value * scale);
}

}  // namespace citadel::device
