// Backpressure and fairness (docs/ARCHITECTURE.md, "Backpressure"):
// the fairness key each request is queued under, and the per-device and
// per-tenant rate limits handlers apply once they know the caller.
//
// Fairness keys ("t:<tenant>", "operator", "anonymous") are computed on an
// I/O thread, so only from what is proven without the store:
//   * a device certificate that verifies against its tenant's CA already
//     in memory (TenantCaCache::Peek) → that tenant, once per connection;
//   * a bearer token a handler authenticated in the last minute
//     (RememberToken) → its tenant, or "operator";
//   * GET /v1/health → "health" (a balancer's checks wait for no one);
//   * anything else (attestation, a first request, a forged claim) →
//     "anonymous". A forged certificate or token can therefore never take
//     another tenant's share of the workers.
//
// Rate limits are token buckets (rate per second, burst) kept in memory
// per replica, so with R replicas behind a balancer a caller gets up to R
// times the rate: set them per replica. A refusal is 429
// urn:citadel:problem:rate-limited with Retry-After, the seconds until a
// token is back.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/http.hpp"
#include "server/auth.hpp"
#include "server/tenant_ca.hpp"

namespace citadel::server {

class Metrics;

struct RateLimit {
  double per_second = 0;  // 0: unlimited
  double burst = 1;       // bucket size, at least 1
};

// Token buckets by key. Bounded: above max_keys, buckets that are full
// again (idle callers) are forgotten; a forgotten bucket starts full, which
// is what it would hold anyway.
class TokenBuckets {
 public:
  using SteadyClock = std::chrono::steady_clock;
  explicit TokenBuckets(RateLimit limit, std::size_t max_keys = 2'000'000);

  // Takes a token for key at `now`: nullopt when granted, else how long
  // until one is back.
  std::optional<std::chrono::milliseconds> Take(std::string_view key, SteadyClock::time_point now);

 private:
  struct Bucket {
    double tokens = 0;
    SteadyClock::time_point updated{};
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Bucket> buckets;
  };
  static constexpr std::size_t kShards = 16;

  void ForgetFullLocked(Shard& shard, SteadyClock::time_point now);

  const RateLimit limit_;
  const std::size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
};

struct LoadOptions {
  // A device checks in every few minutes; a download is a few dozen range
  // requests: 60 at once, then 2 a second.
  RateLimit device{2, 60};
  // All of a tenant's callers (tokens and devices), per replica.
  RateLimit tenant{5000, 10000};
};

class LoadControl {
 public:
  LoadControl(LoadOptions options, TenantCaCache& authorities, Metrics& metrics);

  // The request's fairness key (see the top of this file). I/O thread.
  http::ServerOptions::FairnessKey Classify(const http::Request& request);
  // Records that the request's bearer token authenticated as `caller`.
  void RememberToken(const http::Request& request, const Caller& caller);

  // Rate limits: nullopt to go on, else the 429 to answer.
  std::optional<http::Response> AdmitDevice(const DeviceCaller& device);
  std::optional<http::Response> AdmitTenant(std::string_view tenant_id);

 private:
  struct KnownToken {
    std::string key;
    std::chrono::steady_clock::time_point expires;
  };
  std::optional<http::Response> Limited(std::string_view scope, std::chrono::milliseconds wait);

  const LoadOptions options_;
  TenantCaCache& authorities_;
  Metrics& metrics_;
  TokenBuckets devices_;
  TokenBuckets tenants_;
  std::mutex tokens_mutex_;
  std::unordered_map<std::string, KnownToken> tokens_;  // by token hash
};

}  // namespace citadel::server
