#include "server/load_control.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

#include "server/api_support.hpp"
#include "server/metrics.hpp"

namespace citadel::server {

namespace {

constexpr std::chrono::seconds kTokenMemory{60};
constexpr std::size_t kMaxRememberedTokens = 100'000;

double Refilled(double tokens, std::chrono::steady_clock::duration elapsed, const RateLimit& limit) {
  return std::min(limit.burst, tokens + std::chrono::duration<double>(elapsed).count() * limit.per_second);
}

}  // namespace

TokenBuckets::TokenBuckets(RateLimit limit, std::size_t max_keys)
    : limit_{limit.per_second, std::max(1.0, limit.burst)},
      max_per_shard_(std::max<std::size_t>(1, max_keys / kShards)) {}

void TokenBuckets::ForgetFullLocked(Shard& shard, SteadyClock::time_point now) {
  std::erase_if(shard.buckets, [&](const auto& entry) {
    return Refilled(entry.second.tokens, now - entry.second.updated, limit_) >= limit_.burst;
  });
}

std::optional<std::chrono::milliseconds> TokenBuckets::Take(std::string_view key, SteadyClock::time_point now) {
  if (limit_.per_second <= 0) return std::nullopt;
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard lock(shard.mutex);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) ForgetFullLocked(shard, now);
    it = shard.buckets.emplace(std::string(key), Bucket{limit_.burst, now}).first;
  }
  Bucket& bucket = it->second;
  bucket.tokens = Refilled(bucket.tokens, now - bucket.updated, limit_);
  bucket.updated = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return std::nullopt;
  }
  double wait_seconds = (1 - bucket.tokens) / limit_.per_second;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(wait_seconds * 1000)));
}

LoadControl::LoadControl(LoadOptions options, TenantCaCache& authorities, Metrics& metrics)
    : options_(options),
      authorities_(authorities),
      metrics_(metrics),
      devices_(options.device),
      tenants_(options.tenant) {}

http::ServerOptions::FairnessKey LoadControl::Classify(const http::Request& request) {
  // A balancer's health checks get their own turn: a busy replica answers
  // them promptly instead of being taken out of rotation for being busy.
  if (request.path == "/v1/health") return {"health", false};
  if (!request.peer_chain.empty()) {
    const auto& leaf = request.peer_chain.front();
    auto subject = DeviceCertificateSubject(leaf);
    if (subject) {
      auto authority = authorities_.Peek(subject->tenant_id);
      if (authority && authorities_.VerifyDevice(leaf, *authority, Clock::now())) {
        return {"t:" + subject->tenant_id, /*per_connection=*/true};
      }
    }
  }
  if (auto hash = BearerTokenHash(request)) {
    std::lock_guard lock(tokens_mutex_);
    if (auto it = tokens_.find(*hash); it != tokens_.end() && it->second.expires > std::chrono::steady_clock::now()) {
      return {it->second.key, false};
    }
  }
  return {"anonymous", false};
}

void LoadControl::RememberToken(const http::Request& request, const Caller& caller) {
  auto hash = BearerTokenHash(request);
  if (!hash) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(tokens_mutex_);
  if (tokens_.size() >= kMaxRememberedTokens) {
    std::erase_if(tokens_, [&](const auto& entry) { return entry.second.expires <= now; });
    if (tokens_.size() >= kMaxRememberedTokens) tokens_.clear();
  }
  tokens_[std::move(*hash)] = {caller.IsOperator() ? "operator" : "t:" + caller.tenant_id, now + kTokenMemory};
}

std::optional<http::Response> LoadControl::Limited(std::string_view scope, std::chrono::milliseconds wait) {
  metrics_.RateLimited(scope);
  const std::int64_t seconds = std::max<std::int64_t>(1, (wait.count() + 999) / 1000);
  http::Response response =
      Problem(429, "rate-limited", "Too Many Requests",
              "the " + std::string(scope) + " rate limit is reached; retry after " + std::to_string(seconds) + " s");
  response.headers.emplace_back("Retry-After", std::to_string(seconds));
  return response;
}

std::optional<http::Response> LoadControl::AdmitDevice(const DeviceCaller& device) {
  const auto now = std::chrono::steady_clock::now();
  if (auto wait = devices_.Take(device.device_id, now)) return Limited("device", *wait);
  if (auto wait = tenants_.Take(device.tenant_id, now)) return Limited("tenant", *wait);
  return std::nullopt;
}

std::optional<http::Response> LoadControl::AdmitTenant(std::string_view tenant_id) {
  if (auto wait = tenants_.Take(tenant_id, std::chrono::steady_clock::now())) return Limited("tenant", *wait);
  return std::nullopt;
}

}  // namespace citadel::server
