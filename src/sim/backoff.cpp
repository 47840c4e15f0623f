#include "sim/backoff.hpp"

#include "http/http.hpp"

#include <algorithm>
#include <charconv>
#include <memory>

namespace citadel::sim {

UniformSource MakeUniformSource(std::uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}

bool IsRetryableStatus(int status) { return status == 408 || status == 429 || (status >= 500 && status <= 599); }

Milliseconds RetryDelay(const BackoffSettings& settings, int retry, int status,
                        std::optional<std::chrono::seconds> retry_after, const UniformSource& uniform) {
  const double u = std::clamp(uniform(), 0.0, 1.0);
  if ((status == 429 || status == 503) && retry_after) return http::RetryAfterWait(*retry_after, u);
  // initial * 2^retry, capped without overflowing.
  std::int64_t ceiling = std::max<std::int64_t>(settings.initial.count(), 1);
  for (int i = 0; i < retry && ceiling < settings.max.count(); ++i) ceiling *= 2;
  ceiling = std::min<std::int64_t>(ceiling, settings.max.count());
  return Milliseconds(static_cast<std::int64_t>(static_cast<double>(ceiling) * u));
}

}  // namespace citadel::sim
