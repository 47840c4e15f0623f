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

// Version 3: over-the-air updates (docs/ARCHITECTURE.md, "Over-the-air
// updates"): the tenant's TUF repositories (online keys, sealed by the
// service, and every signed metadata version), uploaded images and deltas,
// deployments and the devices' update reports; groups gain an OS feed and a
// maintenance window, devices the "update now" flag.
//
// Deployments are rules: no per-device rows are written up front, only a
// report row when a device says something. A deployment names a group or an
// OS feed, never both (CHECK). The (tenant_id, id) unique indexes let child
// rows reference their parent within the tenant, so a deployment cannot name
// another tenant's group and a report cannot point at another tenant's
// deployment, whatever the calling code does. Enumerations are CHECKed TEXT
// so a stray value fails loudly instead of being misread later.
constexpr std::string_view kUpdatesSchema = R"sql(
ALTER TABLE device_groups ADD COLUMN os_feed TEXT NOT NULL DEFAULT 'retail';
ALTER TABLE device_groups ADD COLUMN maintenance_window TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX device_groups_by_tenant_id ON device_groups (tenant_id, id);
CREATE INDEX device_groups_by_tenant_os_feed ON device_groups (tenant_id, os_feed, created_at, id);

ALTER TABLE devices ADD COLUMN update_now INTEGER NOT NULL DEFAULT 0;

CREATE TABLE repository_keys (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  repository TEXT NOT NULL CHECK (repository IN ('image', 'director')),
  role TEXT NOT NULL CHECK (role IN ('targets', 'snapshot', 'timestamp')),
  key_id TEXT NOT NULL,
  public_key_json TEXT NOT NULL,
  sealed_private_key TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, repository, role)
);

-- Append-only; the primary key decides which of two replicas publishing the
-- same next version wins. Latest = highest version, read off the key.
CREATE TABLE repository_metadata (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  repository TEXT NOT NULL CHECK (repository IN ('image', 'director')),
  scope TEXT NOT NULL DEFAULT '',
  role TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
  version BIGINT NOT NULL CHECK (version >= 1),
  expires_at BIGINT NOT NULL,
  document TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, repository, scope, role, version)
);

CREATE TABLE images (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  sha256 TEXT NOT NULL,
  length BIGINT NOT NULL CHECK (length >= 0),
  kind TEXT NOT NULL CHECK (kind IN ('app', 'os')),
  component_id TEXT NOT NULL,
  version TEXT NOT NULL,
  security_version BIGINT NOT NULL DEFAULT 0,
  target_name TEXT NOT NULL,
  uploaded_at BIGINT NOT NULL,
  uploaded_by TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, sha256),
  UNIQUE (tenant_id, target_name)
);
CREATE INDEX images_by_tenant_component ON images (tenant_id, component_id, target_name);

CREATE TABLE image_deltas (
  tenant_id TEXT NOT NULL,
  from_sha256 TEXT NOT NULL,
  to_sha256 TEXT NOT NULL,
  delta_sha256 TEXT NOT NULL,
  length BIGINT NOT NULL CHECK (length >= 0),
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, from_sha256, to_sha256),
  FOREIGN KEY (tenant_id, from_sha256) REFERENCES images (tenant_id, sha256),
  FOREIGN KEY (tenant_id, to_sha256) REFERENCES images (tenant_id, sha256)
);

CREATE TABLE deployments (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  device_group_id TEXT,
  os_feed TEXT,
  target_names_json TEXT NOT NULL,
  percent INTEGER NOT NULL CHECK (percent >= 0 AND percent <= 100),
  batches_json TEXT NOT NULL DEFAULT '[]',
  state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'rolled-back', 'superseded')),
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  created_by TEXT NOT NULL DEFAULT '',
  UNIQUE (tenant_id, id),
  FOREIGN KEY (tenant_id, device_group_id) REFERENCES device_groups (tenant_id, id),
  CHECK ((device_group_id IS NULL) <> (os_feed IS NULL))
);
CREATE INDEX deployments_by_tenant ON deployments (tenant_id, created_at, id);
CREATE INDEX deployments_by_group ON deployments (tenant_id, device_group_id, state, created_at, id);
CREATE INDEX deployments_by_feed ON deployments (tenant_id, os_feed, state, created_at, id);

CREATE TABLE device_update_reports (
  tenant_id TEXT NOT NULL,
  device_id TEXT NOT NULL REFERENCES devices (id),
  deployment_id TEXT NOT NULL,
  target_name TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('downloading', 'installing', 'pending-reboot', 'committed', 'failed')),
  reason TEXT NOT NULL DEFAULT '',
  reported_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (device_id, deployment_id, target_name),
  FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id)
);
-- Deployment progress (counts per state) without touching the table.
CREATE INDEX device_update_reports_by_deployment ON device_update_reports (tenant_id, deployment_id, state);
)sql";

// Version 4: failure reporting (docs/ARCHITECTURE.md, "Failure reporting").
// Issues are per (tenant, product, signature); a device's reports are keyed
// by (device_id, report_id), which makes a retried batch count once. The
// per-issue device and version rows carry their own counts so an issue page
// never scans the reports. Telemetry is one row per device per UTC day.
constexpr std::string_view kFailureReportingSchema = R"sql(
ALTER TABLE device_groups ADD COLUMN crash_dumps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN reports_dropped BIGINT NOT NULL DEFAULT 0;

CREATE TABLE failure_issues (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  signature TEXT NOT NULL,
  class TEXT NOT NULL,
  component_id TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '',
  frames_json TEXT NOT NULL DEFAULT '[]',
  state TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'muted')),
  regression INTEGER NOT NULL DEFAULT 0,
  resolved_in_version TEXT NOT NULL DEFAULT '',
  count BIGINT NOT NULL DEFAULT 0 CHECK (count >= 0),
  device_count BIGINT NOT NULL DEFAULT 0 CHECK (device_count >= 0),
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  UNIQUE (tenant_id, id),
  UNIQUE (tenant_id, product_id, signature),
  FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
-- The issue list: most recently seen first, keyset (last_seen, id).
CREATE INDEX failure_issues_by_last_seen ON failure_issues (tenant_id, last_seen, id);

CREATE TABLE failure_issue_devices (
  tenant_id TEXT NOT NULL,
  issue_id TEXT NOT NULL,
  device_id TEXT NOT NULL REFERENCES devices (id),
  count BIGINT NOT NULL CHECK (count >= 0),
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  PRIMARY KEY (issue_id, device_id),
  FOREIGN KEY (tenant_id, issue_id) REFERENCES failure_issues (tenant_id, id)
);
CREATE INDEX failure_issue_devices_by_last_seen ON failure_issue_devices (issue_id, last_seen);

CREATE TABLE failure_issue_versions (
  tenant_id TEXT NOT NULL,
  issue_id TEXT NOT NULL,
  version TEXT NOT NULL,
  count BIGINT NOT NULL CHECK (count >= 0),
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  PRIMARY KEY (issue_id, version),
  FOREIGN KEY (tenant_id, issue_id) REFERENCES failure_issues (tenant_id, id)
);

-- issue_id is NULL only inside the ingest transaction, between inserting
-- the report (the idempotency check) and counting it into its issue.
CREATE TABLE failure_reports (
  device_id TEXT NOT NULL REFERENCES devices (id),
  report_id TEXT NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  issue_id TEXT,
  received_at BIGINT NOT NULL,
  occurred_at BIGINT NOT NULL,
  class TEXT NOT NULL,
  version TEXT NOT NULL DEFAULT '',
  occurrences BIGINT NOT NULL DEFAULT 1,
  body TEXT NOT NULL,
  PRIMARY KEY (device_id, report_id),
  FOREIGN KEY (tenant_id, issue_id) REFERENCES failure_issues (tenant_id, id)
);
CREATE INDEX failure_reports_by_device ON failure_reports (tenant_id, device_id, occurred_at, report_id);
CREATE INDEX failure_reports_by_issue ON failure_reports (issue_id, occurred_at);
CREATE INDEX failure_reports_by_received ON failure_reports (received_at);

-- One module of an uploaded symbol file, as its own symbol-file text.
CREATE TABLE symbol_modules (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  build_id TEXT NOT NULL,
  name TEXT NOT NULL,
  symbols TEXT NOT NULL,
  functions BIGINT NOT NULL DEFAULT 0,
  lines BIGINT NOT NULL DEFAULT 0,
  uploaded_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, build_id)
);

-- day: Unix seconds of the UTC midnight. The counter_* columns keep the
-- device's last reported counters so the next check-in stores deltas.
CREATE TABLE device_telemetry (
  device_id TEXT NOT NULL REFERENCES devices (id),
  day BIGINT NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  check_ins BIGINT NOT NULL DEFAULT 0,
  max_uptime_seconds BIGINT NOT NULL DEFAULT 0,
  min_free_memory_kb BIGINT NOT NULL DEFAULT 0,
  app_restarts BIGINT NOT NULL DEFAULT 0,
  rx_bytes BIGINT NOT NULL DEFAULT 0,
  tx_bytes BIGINT NOT NULL DEFAULT 0,
  counter_uptime_seconds BIGINT NOT NULL DEFAULT 0,
  counter_app_restarts BIGINT NOT NULL DEFAULT 0,
  counter_rx_bytes BIGINT NOT NULL DEFAULT 0,
  counter_tx_bytes BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, day)
);
CREATE INDEX device_telemetry_by_day ON device_telemetry (day);
)sql";

// TPM attestation keys: credential activations in flight (5 minutes, one
// try each) and the bindings they prove (this AK lives in the TPM holding
// that EK). device_id is the AK's device id; the device may not be in
// `devices` yet (the binding comes before the registry step).
constexpr std::string_view kTpmSchema = R"sql(
CREATE TABLE tpm_activations (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  ek_fingerprint TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX tpm_activations_by_expiry ON tpm_activations (expires_at);

CREATE TABLE tpm_bindings (
  device_id TEXT PRIMARY KEY,
  ek_fingerprint TEXT NOT NULL,
  bound_at BIGINT NOT NULL
);
)sql";

// Version 6: registry queries at fleet scale (docs/ARCHITECTURE.md, "Store
// schema"). Device health (store.hpp, DeviceHealth) is "accepted and not
// revoked", indexed as an expression so that no stored status can drift,
// plus the certificate expiry compared with the caller's `now`. Each list
// shape (tenant, group, version, group and version) gets an index ending
// in (health, id), so a filtered page is one index range read in id order;
// the trailing expiry lets SQLite reject a lapsed (or valid) certificate
// from the index entry, before reading the row. The expiry index finds the
// few accepted devices whose certificate lapsed (or the few still valid)
// without reading the rest. Both databases match an expression index only
// against the same expression: SqlStore spells it exactly like this
// (kAttestedOk in sql_store.cpp). last_seen stays unindexed on purpose:
// every check-in writes it, and an index on it would cost each check-in an
// index update (and PostgreSQL its HOT update).
constexpr std::string_view kRegistrySchema = R"sql(
CREATE INDEX devices_health_by_tenant ON devices
  (tenant_id, (CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END), id,
   certificate_expires_at);
CREATE INDEX devices_health_by_group ON devices
  (tenant_id, device_group_id, (CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END), id,
   certificate_expires_at);
CREATE INDEX devices_health_by_version ON devices
  (tenant_id, os_version, (CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END), id,
   certificate_expires_at);
CREATE INDEX devices_health_by_group_version ON devices
  (tenant_id, device_group_id, os_version, (CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END),
   id, certificate_expires_at);
CREATE INDEX devices_attested_by_expiry ON devices
  (tenant_id, (CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END), certificate_expires_at, id);
)sql";

constexpr std::array kMigrations = {
    Migration{1, "initial schema", kInitialSchema},
    Migration{2, "publisher keys and app development capabilities", kAppTrustSchema},
    Migration{3, "updates: repositories, images, deployments", kUpdatesSchema},
    Migration{4, "failure reporting: issues, reports, symbols, telemetry", kFailureReportingSchema},
    Migration{5, "TPM attestation keys: credential activations and bindings", kTpmSchema},
    Migration{6, "registry: device health and filter indexes", kRegistrySchema},
};

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

int LatestSchemaVersion() { return kMigrations.back().version; }

}  // namespace citadel::store
