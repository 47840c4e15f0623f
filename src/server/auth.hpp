// Who is calling, and what they may touch.
//
// Users and programs authenticate with API tokens (Authorization: Bearer).
// Devices authenticate with their device certificate (mutual TLS), verified
// against the CA of the tenant their certificate names.
//
// Security: token hashes are compared in constant time; a tenant-scoped
// caller asking for another tenant's resources gets the same 404 as for a
// resource that does not exist.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "http/http.hpp"
#include "server/tenant_ca.hpp"
#include "store/store.hpp"

namespace citadel::server {

struct Caller {
  std::string token_id;
  std::string tenant_id;  // empty for the operator
  store::Role role = store::Role::kReader;

  std::string Actor() const { return "token:" + token_id; }
  bool IsOperator() const { return role == store::Role::kOperator; }
  // True when the caller may act on tenant_id with at least `minimum`.
  bool Allows(std::string_view tenant_id, store::Role minimum) const;
  bool CanSeeTenant(std::string_view tenant_id) const;
};

// The SHA-256 (as HashApiToken) of the request's bearer token; nullopt when
// the Authorization header is not "Bearer <token>" of at most 512 bytes.
// The one reading of the header for every caller (authentication, metrics,
// fairness keys).
std::optional<std::string> BearerTokenHash(const http::Request& request);

// kUnauthenticated when the header is missing, malformed, or names an
// unknown or revoked token.
Expected<Caller> AuthenticateToken(store::Store& store, const http::Request& request);

struct DeviceCaller {
  std::string device_id;
  std::string tenant_id;
  std::string certificate_serial;
  // The registry row as authentication read it, for handlers that need
  // more of it (group, update-now flag) without reading it again.
  store::Device record;
};

// The tenant and device a device certificate's URI SAN names (unverified);
// kUnauthenticated when it is not a Citadel device certificate.
Expected<DeviceUriParts> DeviceCertificateSubject(const crypto::Certificate& leaf);

// Verifies the presented client certificate: chain to the tenant CA named in
// its URI SAN, purpose clientAuth, unexpired, the device's current and
// unrevoked certificate, device still claimed by that tenant.
Expected<DeviceCaller> AuthenticateDevice(store::Store& store, TenantCaCache& authorities, const http::Request& request,
                                          TimePoint now);

}  // namespace citadel::server
