// The service's HTTP API (docs/PROTOCOL.md): one handler per route, each
// beginning with the same two steps — authenticate the caller, then check
// the tenant and role — before touching the store.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

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

struct ApiContext {
  store::Store& store;
  TenantCaCache& authorities;
  Attestor& attestor;
  const crypto::SecretBytes& master_key;
  Repository& repository;  // TUF repositories (server/repository.hpp)
  BlobStore& blobs;        // uploaded images and deltas (server/blob_store.hpp)
  LoadControl& load;       // rate limits, fairness keys (server/load_control.hpp)
  Metrics& metrics;        // Prometheus metrics (server/metrics.hpp)
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
