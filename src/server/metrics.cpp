#include "server/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace citadel::server {

namespace {

// Request latency: 0.5 ms to 10 s, about three buckets per decade.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBuckets;
}

// A family whose series are created on first use and then found by a
// lookup under a shared lock (prometheus::Family::Add locks and compares
// label maps on every call, too slow for every request). The labels (and a
// histogram's buckets) are built only when a series is created: `add`
// receives the family and returns family.Add(...).
template <typename Metric>
class Series {
 public:
  explicit Series(prometheus::Family<Metric>& family) : family_(family) {}

  template <typename Add>
  Metric& Get(const std::string& key, const Add& add) {
    {
      std::shared_lock lock(mutex_);
      if (auto it = series_.find(key); it != series_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    auto [it, inserted] = series_.try_emplace(key, nullptr);
    if (inserted) it->second = &add(family_);
    return *it->second;
  }

 private:
  prometheus::Family<Metric>& family_;
  std::shared_mutex mutex_;
  std::unordered_map<std::string, Metric*> series_;
};

std::string StatusText(int status) { return std::to_string(status); }

}  // namespace

struct Metrics::Families {
  explicit Families(prometheus::Registry& registry)
      : requests(prometheus::BuildCounter()
                     .Name("citadel_http_requests_total")
                     .Help("HTTP requests answered, by method, route pattern and status code")
                     .Register(registry)),
        request_seconds(prometheus::BuildHistogram()
                            .Name("citadel_http_request_duration_seconds")
                            .Help("Time in the request handler, by method and route pattern")
                            .Register(registry)),
        queued_seconds(prometheus::BuildHistogram()
                           .Name("citadel_http_request_queue_seconds")
                           .Help("Time a request waited for a worker before its handler ran")
                           .Register(registry)),
        shed(prometheus::BuildCounter()
                 .Name("citadel_http_shed_total")
                 .Help("Requests answered 503 + Retry-After by admission before any handler ran, by reason")
                 .Register(registry)),
        rate_limited(prometheus::BuildCounter()
                         .Name("citadel_rate_limited_total")
                         .Help("Requests answered 429 + Retry-After by a rate limit, by scope (device, tenant)")
                         .Register(registry)),
        attestations(prometheus::BuildCounter()
                         .Name("citadel_attestations_total")
                         .Help("Attestations appraised, by verdict or refusal")
                         .Register(registry)),
        reports(prometheus::BuildCounter()
                    .Name("citadel_failure_reports_total")
                    .Help("Failure reports received in acknowledged batches: new, or repeated by a retried batch")
                    .Register(registry)),
        update_reports(prometheus::BuildCounter()
                           .Name("citadel_update_reports_total")
                           .Help("Devices' update reports received at check-in, by state")
                           .Register(registry)),
        deployment_actions(prometheus::BuildCounter()
                               .Name("citadel_deployment_actions_total")
                               .Help("Deployment changes made through the API, by action")
                               .Register(registry)),
        store_seconds(prometheus::BuildHistogram()
                          .Name("citadel_store_call_duration_seconds")
                          .Help("Time each store call held a database connection, by backend")
                          .Register(registry)),
        admission(prometheus::BuildGauge()
                      .Name("citadel_http_admission")
                      .Help("Request admission at scrape time: queued, running and workers")
                      .Register(registry)),
        request_series(requests),
        request_seconds_series(request_seconds),
        queued_seconds_series(queued_seconds),
        store_seconds_series(store_seconds),
        attestation_series(attestations) {}

  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& request_seconds;
  prometheus::Family<prometheus::Histogram>& queued_seconds;
  prometheus::Family<prometheus::Counter>& shed;
  prometheus::Family<prometheus::Counter>& rate_limited;
  prometheus::Family<prometheus::Counter>& attestations;
  prometheus::Family<prometheus::Counter>& reports;
  prometheus::Family<prometheus::Counter>& update_reports;
  prometheus::Family<prometheus::Counter>& deployment_actions;
  prometheus::Family<prometheus::Histogram>& store_seconds;
  prometheus::Family<prometheus::Gauge>& admission;

  Series<prometheus::Counter> request_series;
  Series<prometheus::Histogram> request_seconds_series;
  Series<prometheus::Histogram> queued_seconds_series;
  Series<prometheus::Histogram> store_seconds_series;
  // Once per attestation; the other counters are rarer or cheap to miss.
  Series<prometheus::Counter> attestation_series;
  std::mutex gauges_mutex;  // Render() sets the admission gauges then collects
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), families_(std::make_unique<Families>(*registry_)) {}

Metrics::~Metrics() = default;

void Metrics::Request(std::string_view method, std::string_view route, int status, double handler_seconds,
                      double queued_seconds) {
  const std::string_view route_label = route.empty() ? std::string_view("unmatched") : route;
  const std::string status_label = StatusText(status);
  const std::string key = std::string(method) + ' ' + std::string(route_label);
  auto labels = [&] {
    return prometheus::Labels{{"method", std::string(method)}, {"route", std::string(route_label)}};
  };
  auto histogram = [&](prometheus::Family<prometheus::Histogram>& family) -> prometheus::Histogram& {
    return family.Add(labels(), LatencyBuckets());
  };
  families_->request_series
      .Get(key + ' ' + status_label,
           [&](prometheus::Family<prometheus::Counter>& family) -> prometheus::Counter& {
             prometheus::Labels with_code = labels();
             with_code.emplace("code", status_label);
             return family.Add(with_code);
           })
      .Increment();
  families_->request_seconds_series.Get(key, histogram).Observe(handler_seconds);
  families_->queued_seconds_series.Get(key, histogram).Observe(queued_seconds);
}

void Metrics::Shed(http::ShedReason reason) {
  families_->shed.Add({{"reason", std::string(http::ShedReasonName(reason))}}).Increment();
}

void Metrics::RateLimited(std::string_view scope) {
  families_->rate_limited.Add({{"scope", std::string(scope)}}).Increment();
}

void Metrics::Attestation(std::string_view outcome) {
  families_->attestation_series
      .Get(std::string(outcome),
           [&](prometheus::Family<prometheus::Counter>& family) -> prometheus::Counter& {
             return family.Add({{"outcome", std::string(outcome)}});
           })
      .Increment();
}

void Metrics::ReportsIngested(std::uint64_t new_reports, std::uint64_t repeated_reports) {
  if (new_reports > 0) families_->reports.Add({{"kind", "new"}}).Increment(static_cast<double>(new_reports));
  if (repeated_reports > 0) {
    families_->reports.Add({{"kind", "repeated"}}).Increment(static_cast<double>(repeated_reports));
  }
}

void Metrics::UpdateReport(std::string_view state) {
  families_->update_reports.Add({{"state", std::string(state)}}).Increment();
}

void Metrics::DeploymentAction(std::string_view action) {
  families_->deployment_actions.Add({{"action", std::string(action)}}).Increment();
}

void Metrics::StoreCall(std::string_view backend, double seconds) {
  families_->store_seconds_series
      .Get(std::string(backend),
           [&](prometheus::Family<prometheus::Histogram>& family) -> prometheus::Histogram& {
             return family.Add({{"backend", std::string(backend)}}, LatencyBuckets());
           })
      .Observe(seconds);
}

void Metrics::SetAdmissionSource(std::function<http::AdmissionStats()> source) {
  admission_source_ = std::move(source);
}

std::string Metrics::Render() const {
  {
    std::lock_guard lock(families_->gauges_mutex);
    if (admission_source_) {
      http::AdmissionStats stats = admission_source_();
      families_->admission.Add({{"state", "queued"}}).Set(static_cast<double>(stats.queued));
      families_->admission.Add({{"state", "running"}}).Set(static_cast<double>(stats.running));
      families_->admission.Add({{"state", "workers"}}).Set(static_cast<double>(stats.workers));
    }
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace citadel::server
