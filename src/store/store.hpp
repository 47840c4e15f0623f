// The service's persistent state, behind one interface with two backends:
// sqlite/ (embedded default, one file under --data) and postgres/ (for
// scale-out: N service replicas on one PostgreSQL). The backend is chosen in
// one place, OpenStore(). Both run the same versioned schema migrations and
// pass the same test suite (tests/store/store_suite.cpp).
//
// Contract: every method is thread-safe and synchronous; each call is one
// transaction. Times are Unix seconds. IDs are opaque strings chosen by the
// caller (the service generates them). Methods that enforce an invariant
// (single-use nonces, claim-once) do so atomically in the database, so that
// two replicas racing cannot both win.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel::store {

struct Tenant {
  std::string id;
  std::string name;
  std::int64_t created_at = 0;
};

// A tenant's two-level CA (root -> issuing CA -> device certificates). Both
// private keys are sealed (AES-256-GCM under the service master key) before
// they reach the store, so a database dump alone does not yield them
// (docs/THREAT_MODEL.md, "Tenant CA keys").
struct TenantCa {
  std::string tenant_id;
  std::string root_certificate_pem;
  std::string issuing_certificate_pem;
  std::string sealed_root_key;     // base64 of the sealed PKCS#8 PEM
  std::string sealed_issuing_key;  // base64 of the sealed PKCS#8 PEM
};

enum class Role { kOperator, kAdmin, kContributor, kReader };
std::string_view RoleName(Role role);
Expected<Role> ParseRole(std::string_view name);

// An API token. Only the SHA-256 of the token is stored.
struct ApiToken {
  std::string id;
  std::string tenant_id;  // empty for the platform operator
  std::string name;
  Role role = Role::kReader;
  std::string token_hash;  // lower-case hex SHA-256 of the token text
  std::int64_t created_at = 0;
  bool revoked = false;
};

struct Product {
  std::string id;
  std::string tenant_id;
  std::string name;
  std::string description;
  std::int64_t created_at = 0;
};

struct DeviceGroup {
  std::string id;
  std::string tenant_id;
  std::string product_id;
  std::string name;
  std::int64_t created_at = 0;
};

struct Device {
  std::string id;               // hex SHA-256 of the identity SPKI
  std::string tenant_id;        // empty while unclaimed
  std::string product_id;       // empty while unclaimed
  std::string device_group_id;  // empty while unclaimed
  std::string rot_backend;      // "software" | "tpm2"
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t claimed_at = 0;
  std::int64_t last_attested_at = 0;
  std::string last_verdict;  // "accepted", or a problem type
  std::string os_version;
  std::string runtime_version;
  std::int64_t uptime_seconds = 0;
  std::int64_t free_memory_kb = 0;
  std::string certificate_serial;  // current certificate
  std::int64_t certificate_expires_at = 0;
  bool revoked = false;  // the current certificate is revoked
};

struct DeviceFilter {
  std::string tenant_id;        // required
  std::string device_group_id;  // optional
  std::string os_version;       // optional
  std::int64_t limit = 100;     // > 0; values above 1000 are clamped to 1000
  std::string after_id;         // keyset pagination: ids > after_id
};

struct IssuedCertificate {
  std::string serial_hex;
  std::string device_id;
  std::string tenant_id;
  std::int64_t not_after = 0;
  std::int64_t issued_at = 0;
  bool revoked = false;
};

// Per-tenant appraisal policy entries, e.g. kind "revoked-os-version" with
// value "1.2.0", or kind "revoked-runtime-digest" with a hex digest.
struct PolicyRule {
  std::string tenant_id;
  std::string kind;
  std::string value;
  std::int64_t created_at = 0;
};

struct AuditEvent {
  std::int64_t id = 0;  // assigned by the store
  std::int64_t time = 0;
  std::string tenant_id;     // empty for platform-level events
  std::string actor;         // "token:<id>", "device:<id>", "system"
  std::string action;        // e.g. "device.claim", "attestation.verdict"
  std::string target;        // e.g. a device id
  std::string details_json;  // small JSON object
};

// A tenant's app publisher key: devices of the tenant install images signed
// by its active keys (docs/PROTOCOL.md, "App trust").
struct PublisherKey {
  std::string tenant_id;
  std::string key_id;          // lower-case hex SHA-256 of the DER SPKI
  std::string public_key_pem;  // SPKI PEM, as the service normalised it
  std::string name;
  std::int64_t created_at = 0;
  std::int64_t revoked_at = 0;  // 0 while active
};

// A signed AppDevelopment capability for one device. `document` is the
// envelope exactly as issued (JSON text); the store does not interpret it.
struct DevelopmentCapability {
  std::string capability_id;
  std::string tenant_id;
  std::string device_id;
  std::string document;
  std::int64_t created_at = 0;
  std::int64_t revoked_at = 0;  // 0 while in force
};

enum class NonceResult { kConsumed, kUnknownOrUsed, kExpired };

class Store {
 public:
  virtual ~Store() = default;

  virtual std::string_view Backend() const = 0;  // "sqlite" | "postgresql"
  // Applies pending schema migrations; safe to call from several replicas.
  [[nodiscard]] virtual Expected<void> Migrate() = 0;
  virtual Expected<int> SchemaVersion() = 0;

  // Tenants and their CAs.
  [[nodiscard]] virtual Expected<void> CreateTenant(const Tenant& tenant, const TenantCa& ca) = 0;
  virtual Expected<Tenant> GetTenant(std::string_view id) = 0;
  virtual Expected<std::vector<Tenant>> ListTenants() = 0;
  virtual Expected<TenantCa> GetTenantCa(std::string_view tenant_id) = 0;

  // API tokens. FindApiTokenByHash also returns revoked tokens: the caller
  // must check `revoked`. tenant_id "" means the platform operator's tokens.
  [[nodiscard]] virtual Expected<void> CreateApiToken(const ApiToken& token) = 0;
  virtual Expected<ApiToken> FindApiTokenByHash(std::string_view token_hash) = 0;
  virtual Expected<std::vector<ApiToken>> ListApiTokens(std::string_view tenant_id) = 0;
  [[nodiscard]] virtual Expected<void> RevokeApiToken(std::string_view tenant_id, std::string_view token_id) = 0;

  // Products and device groups.
  [[nodiscard]] virtual Expected<void> CreateProduct(const Product& product,
                                                     const std::vector<DeviceGroup>& default_groups) = 0;
  virtual Expected<Product> GetProduct(std::string_view tenant_id, std::string_view product_id) = 0;
  virtual Expected<std::vector<Product>> ListProducts(std::string_view tenant_id) = 0;
  [[nodiscard]] virtual Expected<void> CreateDeviceGroup(const DeviceGroup& group) = 0;
  virtual Expected<DeviceGroup> GetDeviceGroup(std::string_view tenant_id, std::string_view group_id) = 0;
  virtual Expected<std::vector<DeviceGroup>> ListDeviceGroups(std::string_view tenant_id,
                                                              std::string_view product_id) = 0;

  // Devices. RecordDeviceSeen creates an unclaimed device on first contact.
  [[nodiscard]] virtual Expected<void> RecordDeviceSeen(std::string_view device_id, std::string_view rot_backend,
                                                        std::int64_t now) = 0;
  // Binds an unclaimed device to a tenant, product and group. Fails with
  // kConflict when another tenant holds it (message names no tenant), with
  // kAlreadyExists when the caller's tenant already holds it, and kNotFound
  // when the service has never seen the device (or the group is not one of
  // the tenant's product's groups).
  [[nodiscard]] virtual Expected<void> ClaimDevice(std::string_view device_id, std::string_view tenant_id,
                                                   std::string_view product_id, std::string_view group_id,
                                                   std::int64_t now) = 0;
  virtual Expected<Device> GetDevice(std::string_view device_id) = 0;
  virtual Expected<std::vector<Device>> ListDevices(const DeviceFilter& filter) = 0;
  // RecordAttestation and RecordCheckIn: an empty version keeps the one on
  // record; kNotFound for a device never seen.
  [[nodiscard]] virtual Expected<void> RecordAttestation(std::string_view device_id, std::string_view verdict,
                                                         std::string_view os_version, std::int64_t now) = 0;
  [[nodiscard]] virtual Expected<void> RecordCheckIn(std::string_view device_id, std::string_view os_version,
                                                     std::string_view runtime_version, std::int64_t uptime_seconds,
                                                     std::int64_t free_memory_kb, std::int64_t now) = 0;

  // Attestation nonces: single use, expiring. Only the hash is stored. A
  // nonce is valid while now < expires_at.
  [[nodiscard]] virtual Expected<void> CreateNonce(std::string_view nonce_hash, std::int64_t expires_at) = 0;
  // Atomically marks the nonce used. Exactly one caller ever gets kConsumed.
  virtual Expected<NonceResult> ConsumeNonce(std::string_view nonce_hash, std::int64_t now) = 0;
  // Removes nonces that expired before `before`; returns how many.
  virtual Expected<std::int64_t> PurgeExpiredNonces(std::int64_t before) = 0;

  // Device certificates. RecordCertificate also sets the device's current
  // certificate serial and expiry (kFailedPrecondition unless the device is
  // claimed by the certificate's tenant). RevokeCertificate marks the device
  // revoked when the serial is its current certificate.
  [[nodiscard]] virtual Expected<void> RecordCertificate(const IssuedCertificate& certificate) = 0;
  virtual Expected<IssuedCertificate> GetCertificate(std::string_view serial_hex) = 0;
  [[nodiscard]] virtual Expected<void> RevokeCertificate(std::string_view serial_hex) = 0;

  // Appraisal policy.
  [[nodiscard]] virtual Expected<void> AddPolicyRule(const PolicyRule& rule) = 0;
  [[nodiscard]] virtual Expected<void> RemovePolicyRule(std::string_view tenant_id, std::string_view kind,
                                                        std::string_view value) = 0;
  virtual Expected<std::vector<PolicyRule>> ListPolicyRules(std::string_view tenant_id) = 0;

  // Publisher keys. AddPublisherKey fails with kAlreadyExists when the
  // tenant has that key id on record (revoked or not), and with kConflict
  // when the tenant already has max_active active keys (a resource bound:
  // replicas racing may exceed it by a few). ListPublisherKeys orders by
  // created_at, key_id.
  [[nodiscard]] virtual Expected<void> AddPublisherKey(const PublisherKey& key, std::int64_t max_active) = 0;
  virtual Expected<std::vector<PublisherKey>> ListPublisherKeys(std::string_view tenant_id, bool include_revoked) = 0;
  // kNotFound for a key the tenant does not have; kConflict when it is
  // already revoked.
  [[nodiscard]] virtual Expected<void> RevokePublisherKey(std::string_view tenant_id, std::string_view key_id,
                                                          std::int64_t now) = 0;

  // AppDevelopment capabilities: at most one in force per device.
  // ReplaceDevelopmentCapability revokes the one in force (at
  // capability.created_at) and records the new one, atomically; it fails
  // with kFailedPrecondition unless the device is claimed by
  // capability.tenant_id.
  [[nodiscard]] virtual Expected<void> ReplaceDevelopmentCapability(const DevelopmentCapability& capability) = 0;
  // The capability in force for the device within the tenant; kNotFound
  // when there is none.
  virtual Expected<DevelopmentCapability> GetDevelopmentCapability(std::string_view tenant_id,
                                                                   std::string_view device_id) = 0;
  // Revokes the capability in force; kNotFound when there is none.
  [[nodiscard]] virtual Expected<void> RevokeDevelopmentCapability(std::string_view tenant_id,
                                                                   std::string_view device_id, std::int64_t now) = 0;

  // Audit log: append-only. ListAudit returns the tenant's events newest
  // first (tenant_id "" = platform events); limit as in DeviceFilter.
  [[nodiscard]] virtual Expected<void> AppendAudit(const AuditEvent& event) = 0;
  virtual Expected<std::vector<AuditEvent>> ListAudit(std::string_view tenant_id, std::int64_t limit) = 0;
};

// Opens the backend named by `location`: "postgresql://..." (or
// "postgres://...") selects PostgreSQL; anything else is a SQLite file path.
// Does not migrate; call Migrate().
Expected<std::unique_ptr<Store>> OpenStore(std::string_view location);

}  // namespace citadel::store
