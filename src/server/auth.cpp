#include "server/auth.hpp"

#include "server/data_dir.hpp"

namespace citadel::server {
namespace {

int Rank(store::Role role) {
  switch (role) {
    case store::Role::kOperator:
      return 4;
    case store::Role::kAdmin:
      return 3;
    case store::Role::kContributor:
      return 2;
    case store::Role::kReader:
      return 1;
  }
  return 0;
}

}  // namespace

bool Caller::CanSeeTenant(std::string_view tenant) const { return IsOperator() || tenant_id == tenant; }

bool Caller::Allows(std::string_view tenant, store::Role minimum) const {
  return CanSeeTenant(tenant) && Rank(role) >= Rank(minimum);
}

std::optional<std::string> BearerTokenHash(const http::Request& request) {
  constexpr std::string_view kBearer = "Bearer ";
  const std::string header = request.Header("authorization");
  if (!std::string_view(header).starts_with(kBearer) || header.size() > 512) return std::nullopt;
  return HashApiToken(std::string_view(header).substr(kBearer.size()));
}

Expected<Caller> AuthenticateToken(store::Store& store, const http::Request& request) {
  if (request.Header("authorization").empty()) {
    return MakeError(ErrorCode::kUnauthenticated, "missing Authorization header; send 'Authorization: Bearer <token>'");
  }
  const auto presented = BearerTokenHash(request);
  if (!presented) return MakeError(ErrorCode::kUnauthenticated, "Authorization header must be 'Bearer <token>'");
  const std::string& hash = *presented;
  auto token = store.FindApiTokenByHash(hash);
  if (!token) {
    if (token.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnauthenticated, "the token is not valid");
    }
    return std::unexpected(token.error());
  }
  // The lookup is by hash; compare again in constant time so that no index
  // behaviour can turn into a timing oracle on the stored value.
  if (!crypto::ConstantTimeEqual(token->token_hash, hash) || token->revoked) {
    return MakeError(ErrorCode::kUnauthenticated, "the token is not valid");
  }
  return Caller{token->id, token->tenant_id, token->role};
}

Expected<DeviceUriParts> DeviceCertificateSubject(const crypto::Certificate& leaf) {
  auto uris = leaf.UriSans();
  if (uris.size() != 1) return MakeError(ErrorCode::kUnauthenticated, "not a Citadel device certificate");
  auto parts = ParseDeviceUri(uris.front());
  if (!parts) return MakeError(ErrorCode::kUnauthenticated, "not a Citadel device certificate");
  return parts;
}

Expected<DeviceCaller> AuthenticateDevice(store::Store& store, TenantCaCache& authorities, const http::Request& request,
                                          TimePoint now) {
  if (request.peer_chain.empty()) {
    return MakeError(ErrorCode::kUnauthenticated, "no client certificate; attest to obtain one");
  }
  const auto& leaf = request.peer_chain.front();
  CITADEL_TRY(auto parts, DeviceCertificateSubject(leaf));
  auto authority = authorities.Get(parts.tenant_id);
  if (!authority) {
    if (authority.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnauthenticated, "certificate names an unknown tenant");
    }
    return std::unexpected(authority.error());
  }
  CITADEL_TRY_VOID(authorities.VerifyDevice(leaf, **authority, now));
  auto serial = leaf.SerialHex();
  auto issued = store.GetCertificate(serial);
  if (!issued) {
    if (issued.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnauthenticated, "device certificate unknown to this service");
    }
    return std::unexpected(issued.error());
  }
  if (issued->revoked || issued->device_id != parts.device_id || issued->tenant_id != parts.tenant_id) {
    return MakeError(ErrorCode::kUnauthenticated, "device certificate revoked");
  }
  auto device = store.GetDevice(parts.device_id);
  if (!device) return MakeError(ErrorCode::kUnauthenticated, "device unknown");
  if (device->revoked || device->tenant_id != parts.tenant_id) {
    return MakeError(ErrorCode::kUnauthenticated, "device is not claimed by the certificate's tenant");
  }
  return DeviceCaller{parts.device_id, parts.tenant_id, serial, std::move(*device)};
}

}  // namespace citadel::server
