// The service's HTTP API (docs/PROTOCOL.md): one handler per route, each
// beginning with the same two steps — authenticate the caller, then check
// the tenant and role — before touching the store.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ttl_memo.hpp"
#include "http/http.hpp"
#include "server/attestation.hpp"
#include "server/tenant_ca.hpp"
#include "store/store.hpp"

namespace citadel::server {

class BlobStore;
class Repository;

struct ApiOptions {
  std::chrono::seconds check_in_interval{300};
  // SHA-256 (hex) of the token Prometheus presents at GET /metrics; empty:
  // only the operator token may read metrics.
  std::string metrics_token_hash;
};

class LoadControl;
class Metrics;

// The parts of a device's check-in reply that a whole tenant or group
// shares and few requests change: the tenant's publisher keys and the
// group's settings, remembered per process for kCheckInMemoAge (like the
// director version, server/repository.hpp). The handlers that change them
// forget the entry, so a change through this replica shows at once and one
// through another replica within kCheckInMemoAge (docs/ARCHITECTURE.md,
// "Check-in cost").
inline constexpr std::chrono::seconds kCheckInMemoAge{2};
struct CheckInMemo {
  static constexpr std::size_t kMaxEntries = 65536;
  TtlMemo<std::string, std::vector<store::PublisherKey>> publisher_keys{kCheckInMemoAge, kMaxEntries};
  TtlMemo<std::pair<std::string, std::string>, store::DeviceGroup> groups{kCheckInMemoAge, kMaxEntries};
};

struct ApiContext {
  store::Store& store;
  TenantCaCache& authorities;
  Attestor& attestor;
  const crypto::SecretBytes& master_key;
  Repository& repository;  // TUF repositories (server/repository.hpp)
  BlobStore& blobs;        // uploaded images and deltas (server/blob_store.hpp)
  LoadControl& load;       // rate limits, fairness keys (server/load_control.hpp)
  Metrics& metrics;        // Prometheus metrics (server/metrics.hpp)
  CheckInMemo& check_in_memo;
  ApiOptions options;
};

// Registers every route on router. ctx must outlive the router.
void RegisterRoutes(http::Router& router, ApiContext& ctx);
// Over-the-air updates: repository files and their management
// (api_repository.cpp); called by RegisterRoutes.
void RegisterRepositoryRoutes(http::Router& router, ApiContext& ctx);
// Deployments, group update settings, update-now (api_deployments.cpp);
// called by RegisterRoutes.
void RegisterDeploymentRoutes(http::Router& router, ApiContext& ctx);
// Failure reports, symbols, issues, device reports and telemetry
// (api_reports.cpp); called by RegisterRoutes.
void RegisterReportRoutes(http::Router& router, ApiContext& ctx);
// True for the request target of a symbol file upload
// ("/v1/tenants/{tenant}/symbols", any query): the one route whose body may
// exceed the server's 1 MiB (symbols::kMaxSymbolFileBytes).
bool IsSymbolUploadTarget(std::string_view target);

}  // namespace citadel::server
