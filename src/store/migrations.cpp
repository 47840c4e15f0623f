#include "store/migrations.hpp"

#include <array>

namespace citadel::store {
namespace {

// Version 1: tenants, tokens, products, groups, devices, nonces,
// certificates, policy and audit.
//
// Unclaimed devices hold NULL tenant/product/group; the composite foreign
// key then makes it impossible to claim a device into a group of another
// product or tenant. Booleans are INTEGER 0/1 and times BIGINT Unix seconds
// so that the same SQL runs on SQLite and PostgreSQL.
constexpr std::string_view kInitialSchema = R"sql(
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE tenant_cas (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
  root_certificate_pem TEXT NOT NULL,
  issuing_certificate_pem TEXT NOT NULL,
  sealed_root_key TEXT NOT NULL,
  sealed_issuing_key TEXT NOT NULL
);

CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  tenant_id TEXT REFERENCES tenants (id),
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, created_at, id);

CREATE TABLE products (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  UNIQUE (tenant_id, id),
  UNIQUE (tenant_id, name)
);

CREATE TABLE device_groups (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE (tenant_id, product_id, id),
  UNIQUE (product_id, name),
  FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  tenant_id TEXT REFERENCES tenants (id),
  product_id TEXT,
  device_group_id TEXT,
  rot_backend TEXT NOT NULL,
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  claimed_at BIGINT NOT NULL DEFAULT 0,
  last_attested_at BIGINT NOT NULL DEFAULT 0,
  last_verdict TEXT NOT NULL DEFAULT '',
  os_version TEXT NOT NULL DEFAULT '',
  runtime_version TEXT NOT NULL DEFAULT '',
  uptime_seconds BIGINT NOT NULL DEFAULT 0,
  free_memory_kb BIGINT NOT NULL DEFAULT 0,
  certificate_serial TEXT NOT NULL DEFAULT '',
  certificate_expires_at BIGINT NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0,
  FOREIGN KEY (tenant_id, product_id, device_group_id)
    REFERENCES device_groups (tenant_id, product_id, id),
  CHECK ((tenant_id IS NULL) = (product_id IS NULL)),
  CHECK ((tenant_id IS NULL) = (device_group_id IS NULL))
);
-- ListDevices: keyset pagination by id within a tenant, optionally filtered.
CREATE INDEX devices_by_tenant ON devices (tenant_id, id);
CREATE INDEX devices_by_tenant_group ON devices (tenant_id, device_group_id, id);
CREATE INDEX devices_by_tenant_os_version ON devices (tenant_id, os_version, id);

CREATE TABLE nonces (
  hash TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL,
  used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

CREATE TABLE certificates (
  serial_hex TEXT PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices (id),
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  not_after BIGINT NOT NULL,
  issued_at BIGINT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX certificates_by_device ON certificates (device_id);

CREATE TABLE policy_rules (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  kind TEXT NOT NULL,
  value TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, kind, value)
);

-- Append-only. tenant_id is '' for platform events and deliberately has no
-- foreign key: the audit trail must outlive what it talks about.
CREATE TABLE audit_events (
  id {{AUTO_ID_PRIMARY_KEY}},
  event_time BIGINT NOT NULL,
  tenant_id TEXT NOT NULL DEFAULT '',
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '',
  details_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
)sql";

// Version 2: the tenant's app publisher keys and the AppDevelopment
// capabilities issued to its devices (docs/PROTOCOL.md, "App trust").
//
// revoked_at is NULL while a row is in force. A revoked key stays on record
// (and so cannot be registered again under the same id) so that the audit
// trail and `publisher-key list` keep explaining what images it signed. At
// most one capability per device is in force: the partial unique index
// makes a second one impossible even for two replicas racing.
constexpr std::string_view kAppTrustSchema = R"sql(
CREATE TABLE publisher_keys (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  key_id TEXT NOT NULL,
  public_key_pem TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT,
  PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE app_development_capabilities (
  capability_id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  device_id TEXT NOT NULL REFERENCES devices (id),
  document TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE UNIQUE INDEX app_development_in_force ON app_development_capabilities (device_id)
  WHERE revoked_at IS NULL;
CREATE INDEX app_development_by_tenant_device ON app_development_capabilities (tenant_id, device_id);
)sql";

constexpr std::array kMigrations = {
    Migration{1, "initial schema", kInitialSchema},
    Migration{2, "publisher keys and app development capabilities", kAppTrustSchema},
};

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

int LatestSchemaVersion() { return kMigrations.back().version; }

}  // namespace citadel::store
