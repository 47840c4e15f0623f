// The service's HTTP API (docs/PROTOCOL.md): one handler per route, each
// beginning with the same two steps — authenticate the caller, then check
// the tenant and role — before touching the store.
#pragma once

#include <chrono>

#include "http/http.hpp"
#include "server/attestation.hpp"
#include "server/tenant_ca.hpp"
#include "store/store.hpp"

namespace citadel::server {

struct ApiOptions {
  std::chrono::seconds check_in_interval{300};
};

struct ApiContext {
  store::Store& store;
  TenantCaCache& authorities;
  Attestor& attestor;
  const crypto::SecretBytes& master_key;
  ApiOptions options;
};

// Registers every route on router. ctx must outlive the router.
void RegisterRoutes(http::Router& router, ApiContext& ctx);

}  // namespace citadel::server
