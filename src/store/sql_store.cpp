#include "store/sql_store.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "common/time.hpp"
#include "store/migrations.hpp"

namespace citadel::store {
namespace {

// Serialises Migrate() across every replica sharing one PostgreSQL database
// (an arbitrary constant: "citadel" in ASCII). SQLite needs no equivalent:
// BEGIN IMMEDIATE already holds the database's single write lock.
constexpr std::string_view kMigrationLockSql = "SELECT pg_advisory_xact_lock(109342199509100)";

// Runs body with a pooled connection, as one autocommit statement sequence.
template <typename Body>
auto WithConnection(SqlConnectionPool& pool, Body&& body) -> std::invoke_result_t<Body, SqlConnection&> {
  using Result = std::invoke_result_t<Body, SqlConnection&>;
  auto lease = pool.Acquire();
  if (!lease) return Result(std::unexpected(std::move(lease).error()));
  return body(**lease);
}

// Runs body inside BEGIN ... COMMIT; any error (from body or COMMIT) rolls
// back, so a call either fully happens or not at all.
template <typename Body>
auto InTransaction(SqlConnectionPool& pool, Body&& body) -> std::invoke_result_t<Body, SqlConnection&> {
  using Result = std::invoke_result_t<Body, SqlConnection&>;
  auto lease = pool.Acquire();
  if (!lease) return Result(std::unexpected(std::move(lease).error()));
  SqlConnection& connection = **lease;
  if (auto begun = connection.Begin(); !begun) return Result(std::unexpected(std::move(begun).error()));
  Result result = body(connection);
  if (!result) {
    // A failed rollback leaves the connection mid-transaction; the pool
    // discards such connections on release.
    (void)connection.Rollback();
    return result;
  }
  if (auto committed = connection.Commit(); !committed) {
    (void)connection.Rollback();
    return Result(std::unexpected(std::move(committed).error()));
  }
  return result;
}

// Turns a driver error into one a caller can act on: unique and foreign-key
// violations get the caller's wording, anything else gets `context` prepended.
template <typename T>
Expected<T> Explain(Expected<T> result, std::string_view context, std::string_view already_exists = {},
                    std::string_view not_found = {}) {
  if (result) return result;
  const Error& error = result.error();
  if (error.code() == ErrorCode::kAlreadyExists && !already_exists.empty()) {
    return MakeError(ErrorCode::kAlreadyExists, std::string(already_exists));
  }
  if (error.code() == ErrorCode::kNotFound && !not_found.empty()) {
    return MakeError(ErrorCode::kNotFound, std::string(not_found));
  }
  return WrapError(error, context);
}

Expected<void> RequireNonEmpty(std::string_view value, std::string_view what) {
  if (value.empty()) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " must not be empty");
  return kOk;
}

Expected<std::int64_t> CheckLimit(std::int64_t limit) {
  if (limit <= 0) return MakeError(ErrorCode::kInvalidArgument, "limit must be positive");
  return limit > kMaxListLimit ? kMaxListLimit : limit;
}

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

constexpr std::string_view kTenantColumns = "id, name, created_at";
Tenant TenantFromRow(const SqlRow& row) { return Tenant{row.Text(0), row.Text(1), row.Int(2)}; }

constexpr std::string_view kTokenColumns = "id, tenant_id, name, role, token_hash, created_at, revoked";
Expected<ApiToken> TokenFromRow(const SqlRow& row) {
  auto role = ParseRole(row.Text(3));
  if (!role) return MakeError(ErrorCode::kInternal, "stored API token has an unknown role");
  return ApiToken{row.Text(0), row.Text(1), row.Text(2), *role, row.Text(4), row.Int(5), row.Bool(6)};
}

constexpr std::string_view kProductColumns = "id, tenant_id, name, description, created_at";
Product ProductFromRow(const SqlRow& row) {
  return Product{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4)};
}

constexpr std::string_view kGroupColumns =
    "id, tenant_id, product_id, name, created_at, os_feed, maintenance_window, crash_dumps";
DeviceGroup GroupFromRow(const SqlRow& row) {
  return DeviceGroup{row.Text(0), row.Text(1), row.Text(2), row.Text(3),
                     row.Int(4),  row.Text(5), row.Text(6), row.Bool(7)};
}
constexpr std::string_view kInsertGroupSql =
    "INSERT INTO device_groups (id, tenant_id, product_id, name, created_at, os_feed, maintenance_window, "
    "crash_dumps) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

constexpr std::string_view kDeviceColumns =
    "id, tenant_id, product_id, device_group_id, rot_backend, first_seen, last_seen, claimed_at, "
    "last_attested_at, last_verdict, os_version, runtime_version, uptime_seconds, free_memory_kb, "
    "certificate_serial, certificate_expires_at, revoked, update_now, reports_dropped";
Device DeviceFromRow(const SqlRow& row) {
  Device device;
  device.id = row.Text(0);
  device.tenant_id = row.Text(1);
  device.product_id = row.Text(2);
  device.device_group_id = row.Text(3);
  device.rot_backend = row.Text(4);
  device.first_seen = row.Int(5);
  device.last_seen = row.Int(6);
  device.claimed_at = row.Int(7);
  device.last_attested_at = row.Int(8);
  device.last_verdict = row.Text(9);
  device.os_version = row.Text(10);
  device.runtime_version = row.Text(11);
  device.uptime_seconds = row.Int(12);
  device.free_memory_kb = row.Int(13);
  device.certificate_serial = row.Text(14);
  device.certificate_expires_at = row.Int(15);
  device.revoked = row.Bool(16);
  device.update_now = row.Bool(17);
  device.reports_dropped = row.Int(18);
  return device;
}

constexpr std::string_view kCertificateColumns = "serial_hex, device_id, tenant_id, not_after, issued_at, revoked";
IssuedCertificate CertificateFromRow(const SqlRow& row) {
  return IssuedCertificate{row.Text(0), row.Text(1), row.Text(2), row.Int(3), row.Int(4), row.Bool(5)};
}

constexpr std::string_view kPolicyColumns = "tenant_id, kind, value, created_at";
PolicyRule PolicyFromRow(const SqlRow& row) { return PolicyRule{row.Text(0), row.Text(1), row.Text(2), row.Int(3)}; }

constexpr std::string_view kAuditColumns = "id, event_time, tenant_id, actor, action, target, details_json";
AuditEvent AuditFromRow(const SqlRow& row) {
  return AuditEvent{row.Int(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4), row.Text(5), row.Text(6)};
}

constexpr std::string_view kPublisherKeyColumns = "tenant_id, key_id, public_key_pem, name, created_at, revoked_at";
PublisherKey PublisherKeyFromRow(const SqlRow& row) {
  return PublisherKey{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4), row.Int(5)};
}

constexpr std::string_view kCapabilityColumns = "capability_id, tenant_id, device_id, document, created_at, revoked_at";
DevelopmentCapability CapabilityFromRow(const SqlRow& row) {
  return DevelopmentCapability{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4), row.Int(5)};
}

// ---- over-the-air updates

// A SHA-256 digest as the store keeps it: 64 lower-case hex digits, so that
// one image never has two spellings.
Expected<void> RequireSha256(std::string_view value, std::string_view what) {
  const bool hex = value.size() == 64 && std::all_of(value.begin(), value.end(), [](char c) {
                     return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                   });
  if (!hex) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " must be 64 lower-case hex digits");
  return kOk;
}

Expected<void> RequirePercent(std::int64_t percent) {
  if (percent < 0 || percent > 100) return MakeError(ErrorCode::kInvalidArgument, "percent must be 0..100");
  return kOk;
}

// A stored enumeration name that no longer parses means the row was written
// by something else than this store: an invariant broke, not the caller.
template <typename T>
Expected<T> Stored(Expected<T> parsed, std::string_view what) {
  if (parsed) return parsed;
  return MakeError(ErrorCode::kInternal, "stored " + std::string(what) + " has an unknown value");
}

// "image timestamp" or "director/<group> targets": names a metadata series.
std::string MetadataSeries(TufRepository repository, std::string_view scope, TufRole role) {
  std::string name(TufRepositoryName(repository));
  if (!scope.empty()) name += "/" + std::string(scope);
  name += " ";
  name += TufRoleName(role);
  return name;
}

constexpr std::string_view kRepositoryKeyColumns =
    "tenant_id, repository, role, key_id, public_key_json, sealed_private_key, created_at";
Expected<RepositoryKey> RepositoryKeyFromRow(const SqlRow& row) {
  CITADEL_TRY(TufRepository repository, Stored(ParseTufRepository(row.Text(1)), "repository key"));
  CITADEL_TRY(TufRole role, Stored(ParseTufRole(row.Text(2)), "repository key"));
  return RepositoryKey{row.Text(0), repository, role, row.Text(3), row.Text(4), row.Text(5), row.Int(6)};
}

constexpr std::string_view kMetadataColumns =
    "tenant_id, repository, scope, role, version, expires_at, document, created_at";
Expected<RepositoryMetadata> MetadataFromRow(const SqlRow& row) {
  CITADEL_TRY(TufRepository repository, Stored(ParseTufRepository(row.Text(1)), "repository metadata"));
  CITADEL_TRY(TufRole role, Stored(ParseTufRole(row.Text(3)), "repository metadata"));
  return RepositoryMetadata{row.Text(0), repository, row.Text(2), role,
                            row.Int(4),  row.Int(5), row.Text(6), row.Int(7)};
}

constexpr std::string_view kImageColumns =
    "tenant_id, sha256, length, kind, component_id, version, security_version, target_name, uploaded_at, "
    "uploaded_by";
Expected<Image> ImageFromRow(const SqlRow& row) {
  CITADEL_TRY(ImageKind kind, Stored(ParseImageKind(row.Text(3)), "image"));
  Image image;
  image.tenant_id = row.Text(0);
  image.sha256 = row.Text(1);
  image.length = row.Int(2);
  image.kind = kind;
  image.component_id = row.Text(4);
  image.version = row.Text(5);
  image.security_version = row.Int(6);
  image.target_name = row.Text(7);
  image.uploaded_at = row.Int(8);
  image.uploaded_by = row.Text(9);
  return image;
}

constexpr std::string_view kDeltaColumns = "tenant_id, from_sha256, to_sha256, delta_sha256, length, created_at";
ImageDelta DeltaFromRow(const SqlRow& row) {
  return ImageDelta{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4), row.Int(5)};
}

constexpr std::string_view kDeploymentColumns =
    "id, tenant_id, device_group_id, os_feed, target_names_json, percent, batches_json, state, created_at, "
    "updated_at, created_by";
Expected<Deployment> DeploymentFromRow(const SqlRow& row) {
  CITADEL_TRY(DeploymentState state, Stored(ParseDeploymentState(row.Text(7)), "deployment"));
  Deployment deployment;
  deployment.id = row.Text(0);
  deployment.tenant_id = row.Text(1);
  deployment.device_group_id = row.Text(2);
  deployment.os_feed = row.Text(3);
  deployment.target_names_json = row.Text(4);
  deployment.percent = row.Int(5);
  deployment.batches_json = row.Text(6);
  deployment.state = state;
  deployment.created_at = row.Int(8);
  deployment.updated_at = row.Int(9);
  deployment.created_by = row.Text(10);
  return deployment;
}

constexpr std::string_view kReportColumns =
    "tenant_id, device_id, deployment_id, target_name, state, reason, reported_at, updated_at";
Expected<UpdateReport> ReportFromRow(const SqlRow& row) {
  CITADEL_TRY(UpdateState state, Stored(ParseUpdateState(row.Text(4)), "update report"));
  return UpdateReport{row.Text(0), row.Text(1), row.Text(2), row.Text(3), state, row.Text(5), row.Int(6), row.Int(7)};
}

// A report's place in an update's life, to order two reports made in the
// same second (the device's clock has one-second resolution here).
constexpr std::string_view kStoredReportRank =
    "CASE device_update_reports.state WHEN 'downloading' THEN 0 WHEN 'installing' THEN 1 "
    "WHEN 'pending-reboot' THEN 2 ELSE 3 END";
constexpr std::string_view kIncomingReportRank =
    "CASE excluded.state WHEN 'downloading' THEN 0 WHEN 'installing' THEN 1 "
    "WHEN 'pending-reboot' THEN 2 ELSE 3 END";

// A query whose filters depend on the call. Only placeholders ($n) are
// appended to the SQL text; every value goes in as a parameter.
struct DynamicQuery {
  std::string sql;
  std::vector<SqlValue> params;

  // Binds value and returns its placeholder.
  std::string Bind(SqlValue value) {
    params.push_back(value);
    return "$" + std::to_string(params.size());
  }
  // " AND column = $n" when value is set; an empty filter field means "any".
  void AndEqualIfSet(std::string_view column, std::string_view value) {
    if (value.empty()) return;
    sql += " AND ";
    sql += column;
    sql += " = " + Bind(value);
  }
};

std::string Select(std::string_view columns, std::string_view rest) {
  std::string sql = "SELECT ";
  sql += columns;
  sql += ' ';
  sql += rest;
  return sql;
}

// The value a row decoder produces, whether it returns T or Expected<T>.
template <typename T>
struct DecodedValue {
  using Type = T;
};
template <typename T>
struct DecodedValue<Expected<T>> {
  using Type = T;
};
template <typename Decode>
using Decoded = typename DecodedValue<std::invoke_result_t<Decode, const SqlRow&>>::Type;

// Fetches the first row and decodes it, or kNotFound with `not_found`.
template <typename Decode>
Expected<Decoded<Decode>> FetchOne(SqlConnection& connection, std::string_view sql,
                                   std::initializer_list<SqlValue> params, std::string_view not_found, Decode decode) {
  CITADEL_TRY(SqlResult result, connection.Execute(sql, params));
  if (result.rows.empty()) return MakeError(ErrorCode::kNotFound, std::string(not_found));
  return decode(result.rows.front());
}

template <typename Decode>
Expected<std::vector<Decoded<Decode>>> FetchAll(SqlConnection& connection, std::string_view sql,
                                                std::span<const SqlValue> params, Decode decode) {
  CITADEL_TRY(SqlResult result, connection.Execute(sql, params));
  std::vector<Decoded<Decode>> values;
  values.reserve(result.rows.size());
  for (const SqlRow& row : result.rows) {
    if constexpr (std::is_same_v<Decoded<Decode>, std::invoke_result_t<Decode, const SqlRow&>>) {
      values.push_back(decode(row));
    } else {
      CITADEL_TRY(auto value, decode(row));
      values.push_back(std::move(value));
    }
  }
  return values;
}

template <typename Decode>
Expected<std::vector<Decoded<Decode>>> FetchAll(SqlConnection& connection, std::string_view sql,
                                                std::initializer_list<SqlValue> params, Decode decode) {
  return FetchAll(connection, sql, std::span<const SqlValue>(params.begin(), params.size()), decode);
}

// An attestation or check-in without a version keeps the one on record.
constexpr std::string_view kLastSeenUpdate = "last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END";

}  // namespace

SqlStore::SqlStore(std::unique_ptr<SqlConnectionPool> pool) : pool_(std::move(pool)) {}

std::string_view SqlStore::Backend() const { return pool_->Backend(); }

void SqlStore::SetCallObserver(std::function<void(double seconds)> observer) {
  pool_->SetCallObserver(std::move(observer));
}

// ---------------------------------------------------------------- schema

Expected<void> SqlStore::Migrate() { return MigrateTo(LatestSchemaVersion()); }

Expected<void> SqlStore::MigrateTo(int target_version) {
  if (target_version < 1 || target_version > LatestSchemaVersion()) {
    return MakeError(ErrorCode::kInvalidArgument, "schema version " + std::to_string(target_version) +
                                                      " does not exist (1.." + std::to_string(LatestSchemaVersion()) +
                                                      ")");
  }
  auto migrated = InTransaction(*pool_, [target_version](SqlConnection& connection) -> Expected<void> {
    if (connection.Dialect() == SqlDialect::kPostgres) CITADEL_TRY_VOID(connection.Execute(kMigrationLockSql));
    CITADEL_TRY_VOID(
        connection.ExecuteScript("CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"));
    CITADEL_TRY(SqlResult current, connection.Execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    const std::int64_t version = current.rows.empty() ? 0 : current.rows.front().Int(0);
    if (version > LatestSchemaVersion()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "database schema version " + std::to_string(version) + " is newer than this build supports (" +
                           std::to_string(LatestSchemaVersion()) + "); upgrade citadel-server");
    }
    const std::string_view auto_id = connection.Dialect() == SqlDialect::kPostgres
                                         ? "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
                                         : "INTEGER PRIMARY KEY AUTOINCREMENT";
    for (const Migration& migration : Migrations()) {
      if (migration.version <= version || migration.version > target_version) continue;
      std::string script(migration.sql);
      for (auto at = script.find(kAutoIdPrimaryKeyToken); at != std::string::npos;
           at = script.find(kAutoIdPrimaryKeyToken, at)) {
        script.replace(at, kAutoIdPrimaryKeyToken.size(), auto_id);
      }
      auto applied = connection.ExecuteScript(script);
      if (!applied) return WrapError(applied.error(), "migration " + std::to_string(migration.version));
      CITADEL_TRY_VOID(
          connection.Execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                             {migration.version, migration.name, ToUnixSeconds(Clock::now())}));
    }
    return kOk;
  });
  return Explain(std::move(migrated), "migrating the store schema");
}

Expected<int> SqlStore::SchemaVersion() {
  auto version = WithConnection(*pool_, [](SqlConnection& connection) -> Expected<int> {
    CITADEL_TRY(bool exists, connection.TableExists("schema_migrations"));
    if (!exists) return 0;
    CITADEL_TRY(SqlResult result, connection.Execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    return result.rows.empty() ? 0 : static_cast<int>(result.rows.front().Int(0));
  });
  return Explain(std::move(version), "reading the schema version");
}

// ---------------------------------------------------------------- tenants

Expected<void> SqlStore::CreateTenant(const Tenant& tenant, const TenantCa& ca) {
  CITADEL_TRY_VOID(RequireNonEmpty(tenant.id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(tenant.name, "tenant name"));
  if (!ca.tenant_id.empty() && ca.tenant_id != tenant.id) {
    return MakeError(ErrorCode::kInvalidArgument, "the CA belongs to a different tenant");
  }
  auto created = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                                        {tenant.id, tenant.name, tenant.created_at}));
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO tenant_cas (tenant_id, root_certificate_pem, issuing_certificate_pem, sealed_root_key, "
        "sealed_issuing_key) VALUES ($1, $2, $3, $4, $5)",
        {tenant.id, ca.root_certificate_pem, ca.issuing_certificate_pem, ca.sealed_root_key, ca.sealed_issuing_key}));
    return kOk;
  });
  return Explain(std::move(created), "creating tenant " + Quoted(tenant.id),
                 "tenant " + Quoted(tenant.id) + " already exists");
}

Expected<Tenant> SqlStore::GetTenant(std::string_view id) {
  auto tenant = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kTenantColumns, "FROM tenants WHERE id = $1"), {id},
                    "tenant " + Quoted(id) + " not found", TenantFromRow);
  });
  return Explain(std::move(tenant), "reading tenant " + Quoted(id));
}

Expected<std::vector<Tenant>> SqlStore::ListTenants() {
  auto tenants = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection, Select(kTenantColumns, "FROM tenants ORDER BY created_at, id"), {}, TenantFromRow);
  });
  return Explain(std::move(tenants), "listing tenants");
}

Expected<TenantCa> SqlStore::GetTenantCa(std::string_view tenant_id) {
  auto ca = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection,
                    "SELECT tenant_id, root_certificate_pem, issuing_certificate_pem, sealed_root_key, "
                    "sealed_issuing_key FROM tenant_cas WHERE tenant_id = $1",
                    {tenant_id}, "CA of tenant " + Quoted(tenant_id) + " not found", [](const SqlRow& row) {
                      return TenantCa{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4)};
                    });
  });
  return Explain(std::move(ca), "reading the CA of tenant " + Quoted(tenant_id));
}

// ---------------------------------------------------------------- API tokens

Expected<void> SqlStore::CreateApiToken(const ApiToken& token) {
  CITADEL_TRY_VOID(RequireNonEmpty(token.id, "API token id"));
  CITADEL_TRY_VOID(RequireNonEmpty(token.token_hash, "API token hash"));
  auto created = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO api_tokens (id, tenant_id, name, role, token_hash, created_at, revoked) "
                           "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                           {token.id, SqlValue::TextOrNull(token.tenant_id), token.name, RoleName(token.role),
                            token.token_hash, token.created_at, token.revoked}));
    return kOk;
  });
  // The message must not echo the hash: it identifies a live credential.
  return Explain(std::move(created), "creating API token " + Quoted(token.id),
                 "an API token with that id or hash already exists",
                 "tenant " + Quoted(token.tenant_id) + " not found");
}

Expected<ApiToken> SqlStore::FindApiTokenByHash(std::string_view token_hash) {
  auto token = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kTokenColumns, "FROM api_tokens WHERE token_hash = $1"), {token_hash},
                    "no API token has that hash", TokenFromRow);
  });
  return Explain(std::move(token), "looking up an API token");
}

Expected<std::vector<ApiToken>> SqlStore::ListApiTokens(std::string_view tenant_id) {
  auto tokens = WithConnection(*pool_, [&](SqlConnection& connection) {
    // The operator's tokens have no tenant (NULL); two queries so that both
    // cases use the (tenant_id, created_at, id) index.
    return tenant_id.empty()
               ? FetchAll(connection,
                          Select(kTokenColumns, "FROM api_tokens WHERE tenant_id IS NULL ORDER BY created_at, id"), {},
                          TokenFromRow)
               : FetchAll(connection,
                          Select(kTokenColumns, "FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id"),
                          {tenant_id}, TokenFromRow);
  });
  return Explain(std::move(tokens), "listing API tokens");
}

Expected<void> SqlStore::RevokeApiToken(std::string_view tenant_id, std::string_view token_id) {
  auto revoked = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(
        SqlResult result,
        tenant_id.empty()
            ? connection.Execute("UPDATE api_tokens SET revoked = 1 WHERE id = $1 AND tenant_id IS NULL", {token_id})
            : connection.Execute("UPDATE api_tokens SET revoked = 1 WHERE id = $1 AND tenant_id = $2",
                                 {token_id, tenant_id}));
    if (result.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "API token " + Quoted(token_id) + " not found");
    }
    return kOk;
  });
  return Explain(std::move(revoked), "revoking API token " + Quoted(token_id));
}

// ---------------------------------------------------------------- products and groups

Expected<void> SqlStore::CreateProduct(const Product& product, const std::vector<DeviceGroup>& default_groups) {
  CITADEL_TRY_VOID(RequireNonEmpty(product.id, "product id"));
  CITADEL_TRY_VOID(RequireNonEmpty(product.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(product.name, "product name"));
  for (const DeviceGroup& group : default_groups) {
    CITADEL_TRY_VOID(RequireNonEmpty(group.id, "device group id"));
    CITADEL_TRY_VOID(RequireNonEmpty(group.os_feed, "OS feed"));
    if (group.tenant_id != product.tenant_id || group.product_id != product.id) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "default device group " + Quoted(group.id) + " does not belong to the new product");
    }
  }
  auto created = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO products (id, tenant_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
        {product.id, product.tenant_id, product.name, product.description, product.created_at}));
    for (const DeviceGroup& group : default_groups) {
      CITADEL_TRY_VOID(connection.Execute(
          kInsertGroupSql, {group.id, group.tenant_id, group.product_id, group.name, group.created_at, group.os_feed,
                            group.maintenance_window, group.crash_dumps}));
    }
    return kOk;
  });
  return Explain(std::move(created), "creating product " + Quoted(product.id),
                 "a product or device group with that id or name already exists",
                 "tenant " + Quoted(product.tenant_id) + " not found");
}

Expected<Product> SqlStore::GetProduct(std::string_view tenant_id, std::string_view product_id) {
  auto product = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kProductColumns, "FROM products WHERE tenant_id = $1 AND id = $2"),
                    {tenant_id, product_id}, "product " + Quoted(product_id) + " not found", ProductFromRow);
  });
  return Explain(std::move(product), "reading product " + Quoted(product_id));
}

Expected<std::vector<Product>> SqlStore::ListProducts(std::string_view tenant_id) {
  auto products = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection, Select(kProductColumns, "FROM products WHERE tenant_id = $1 ORDER BY created_at, id"),
                    {tenant_id}, ProductFromRow);
  });
  return Explain(std::move(products), "listing products");
}

Expected<void> SqlStore::CreateDeviceGroup(const DeviceGroup& group) {
  CITADEL_TRY_VOID(RequireNonEmpty(group.id, "device group id"));
  CITADEL_TRY_VOID(RequireNonEmpty(group.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(group.product_id, "product id"));
  CITADEL_TRY_VOID(RequireNonEmpty(group.name, "device group name"));
  CITADEL_TRY_VOID(RequireNonEmpty(group.os_feed, "OS feed"));
  auto created = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute(kInsertGroupSql, {group.id, group.tenant_id, group.product_id, group.name, group.created_at,
                                             group.os_feed, group.maintenance_window, group.crash_dumps}));
    return kOk;
  });
  return Explain(std::move(created), "creating device group " + Quoted(group.id),
                 "a device group with that id, or that name in the product, already exists",
                 "product " + Quoted(group.product_id) + " not found");
}

Expected<DeviceGroup> SqlStore::GetDeviceGroup(std::string_view tenant_id, std::string_view group_id) {
  auto group = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kGroupColumns, "FROM device_groups WHERE tenant_id = $1 AND id = $2"),
                    {tenant_id, group_id}, "device group " + Quoted(group_id) + " not found", GroupFromRow);
  });
  return Explain(std::move(group), "reading device group " + Quoted(group_id));
}

Expected<std::vector<DeviceGroup>> SqlStore::ListDeviceGroups(std::string_view tenant_id, std::string_view product_id) {
  auto groups = WithConnection(*pool_, [&](SqlConnection& connection) {
    return product_id.empty()
               ? FetchAll(connection,
                          Select(kGroupColumns, "FROM device_groups WHERE tenant_id = $1 ORDER BY created_at, id"),
                          {tenant_id}, GroupFromRow)
               : FetchAll(connection,
                          Select(kGroupColumns,
                                 "FROM device_groups WHERE tenant_id = $1 AND product_id = $2 ORDER BY created_at, id"),
                          {tenant_id, product_id}, GroupFromRow);
  });
  return Explain(std::move(groups), "listing device groups");
}

// ---------------------------------------------------------------- devices

Expected<void> SqlStore::RecordDeviceSeen(std::string_view device_id, std::string_view rot_backend, std::int64_t now) {
  CITADEL_TRY_VOID(RequireNonEmpty(device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(rot_backend, "root-of-trust backend"));
  auto recorded = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO devices (id, rot_backend, first_seen, last_seen) VALUES ($1, $2, $3, $3) "
        "ON CONFLICT (id) DO UPDATE SET last_seen = CASE WHEN excluded.last_seen > devices.last_seen "
        "THEN excluded.last_seen ELSE devices.last_seen END",
        {device_id, rot_backend, now}));
    return kOk;
  });
  return Explain(std::move(recorded), "recording device " + Quoted(device_id));
}

Expected<void> SqlStore::ClaimDevice(std::string_view device_id, std::string_view tenant_id,
                                     std::string_view product_id, std::string_view group_id, std::int64_t now) {
  CITADEL_TRY_VOID(RequireNonEmpty(device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(product_id, "product id"));
  CITADEL_TRY_VOID(RequireNonEmpty(group_id, "device group id"));
  auto claimed = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult group,
                connection.Execute("SELECT id FROM device_groups WHERE id = $1 AND tenant_id = $2 AND product_id = $3",
                                   {group_id, tenant_id, product_id}));
    if (group.rows.empty()) {
      return MakeError(ErrorCode::kNotFound,
                       "device group " + Quoted(group_id) + " of product " + Quoted(product_id) + " not found");
    }
    // The claim itself: one conditional UPDATE, so of any number of racing
    // callers (on any number of replicas) exactly one changes the row.
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE devices SET tenant_id = $2, product_id = $3, device_group_id = $4, "
                                   "claimed_at = $5 WHERE id = $1 AND tenant_id IS NULL",
                                   {device_id, tenant_id, product_id, group_id, now}));
    if (update.rows_affected == 1) return kOk;
    CITADEL_TRY(SqlResult holder, connection.Execute("SELECT tenant_id FROM devices WHERE id = $1", {device_id}));
    if (holder.rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) +
                                                 " has never contacted the service; power it on and connect it first");
    }
    if (holder.rows.front().Text(0) == tenant_id) {
      return MakeError(ErrorCode::kAlreadyExists, "device " + Quoted(device_id) + " is already claimed by this tenant");
    }
    // SECURITY: never name the other tenant.
    return MakeError(ErrorCode::kConflict, "device " + Quoted(device_id) + " is claimed by another tenant");
  });
  if (!claimed && (claimed.error().code() == ErrorCode::kNotFound || claimed.error().code() == ErrorCode::kConflict ||
                   claimed.error().code() == ErrorCode::kAlreadyExists)) {
    return claimed;
  }
  return Explain(std::move(claimed), "claiming device " + Quoted(device_id));
}

Expected<Device> SqlStore::GetDevice(std::string_view device_id) {
  auto device = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kDeviceColumns, "FROM devices WHERE id = $1"), {device_id},
                    "device " + Quoted(device_id) + " not found", DeviceFromRow);
  });
  return Explain(std::move(device), "reading device " + Quoted(device_id));
}

namespace {

// The stored half of device health (store.hpp, DeviceHealth): 1 when the
// last attestation was accepted and the current certificate is not revoked.
// Spelled token for token as in migration 6's indexes: SQLite and
// PostgreSQL use an expression index only for the same expression.
constexpr std::string_view kAttestedOk = "(CASE WHEN last_verdict = 'accepted' AND revoked = 0 THEN 1 ELSE 0 END)";

// The other half compares the certificate expiry with the caller's `now`,
// which no index can hold in id order. Among the accepted devices, the set
// on one side of `now` (lapsed, or still valid) is usually small: when the
// tenant has at most this many, they are read through the expiry index and
// sorted; otherwise they are dense enough to meet while reading the
// accepted devices in id order.
constexpr std::int64_t kSmallExpirySet = 1000;
// Read cap of the small-set branch. Twice the threshold, so that the set
// would have to grow by kSmallExpirySet between the probe and the read
// (two statements apart) to cut the page short; pages are never snapshots.
constexpr std::int64_t kSmallExpirySetCap = 2 * kSmallExpirySet;

// A device query whose UNION branches share one set of bound values. Values
// only some branches use are bound when first used: both databases refuse a
// parameter the statement does not mention.
class DeviceQuery {
 public:
  explicit DeviceQuery(const DeviceFilter& filter) : filter_(filter) {
    tenant_ = query.Bind(filter.tenant_id);
    after_ = query.Bind(filter.after_id);
    if (!filter.device_group_id.empty()) equalities_ += " AND device_group_id = " + query.Bind(filter.device_group_id);
    if (!filter.os_version.empty()) equalities_ += " AND os_version = " + query.Bind(filter.os_version);
  }

  // The filter's devices (after the cursor) that also meet `condition`:
  // with equalities on a prefix of one index, read in id order.
  std::string Range(std::string_view columns, std::string_view condition) const {
    std::string sql = Select(columns, "FROM devices WHERE tenant_id = " + tenant_ + " AND id > " + after_);
    sql += equalities_;
    if (!condition.empty()) {
      sql += " AND ";
      sql += condition;
    }
    return sql;
  }
  // Accepted, unrevoked devices on one side of `now`.
  std::string ExpiryCondition(bool lapsed, bool indexed) {
    if (now_.empty()) now_ = query.Bind(filter_.now);
    // "+ 0" keeps the planner off the expiry index where reading in id order
    // is the point.
    return std::string(kAttestedOk) + " = 1 AND certificate_expires_at" + (indexed ? "" : " + 0") +
           (lapsed ? " <= " : " > ") + now_;
  }
  // The same set when it is small: read tenant-wide through the expiry
  // index (capped), then filtered. Callers add ORDER BY/LIMIT.
  std::string SmallExpirySet(bool lapsed) {
    if (cap_.empty()) cap_ = query.Bind(kSmallExpirySetCap);
    std::string inner =
        Select(kDeviceColumns, "FROM devices WHERE tenant_id = " + tenant_ + " AND " + ExpiryCondition(lapsed, true) +
                                   " AND id > " + after_ + " LIMIT " + cap_);
    return Select(kDeviceColumns, "FROM (" + inner + ") small_set WHERE id > " + after_ + equalities_);
  }

  DynamicQuery query;

 private:
  const DeviceFilter& filter_;
  std::string tenant_;
  std::string after_;
  std::string now_;
  std::string equalities_;
  std::string cap_;
};

Expected<void> CheckHealthFilter(const DeviceFilter& filter) {
  if (filter.health != DeviceHealth::kAny && filter.now <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "a health filter needs the time to judge certificates at (now > 0)");
  }
  return kOk;
}

// Whether at most kSmallExpirySet of the tenant's accepted devices after
// the cursor are on the wanted side of `now`: a count over at most that
// many + 1 entries of the expiry index.
Expected<bool> IsSmallExpirySet(SqlConnection& connection, const DeviceFilter& filter, bool lapsed) {
  DynamicQuery probe;
  const std::string tenant = probe.Bind(filter.tenant_id);
  const std::string now = probe.Bind(filter.now);
  const std::string after = probe.Bind(filter.after_id);
  const std::string cap = probe.Bind(kSmallExpirySet + 1);
  probe.sql = "SELECT COUNT(*) FROM (SELECT 1 FROM devices WHERE tenant_id = " + tenant + " AND " +
              std::string(kAttestedOk) + " = 1 AND certificate_expires_at " + (lapsed ? "<= " : "> ") + now +
              " AND id > " + after + " LIMIT " + cap + ") probe";
  CITADEL_TRY(SqlResult result, connection.Execute(probe.sql, probe.params));
  return (result.rows.empty() ? 0 : result.rows.front().Int(0)) <= kSmallExpirySet;
}

// One SELECT (without ORDER BY/LIMIT) of a filter's devices: one index range.
using DeviceBranch = std::function<std::string(DeviceQuery& query, std::string_view columns)>;

// The disjoint branches whose union is the filter's set (health 0 or 1; one
// side of `now`), the densest first. Probes the expiry half when health is
// set.
Expected<std::vector<DeviceBranch>> DeviceBranches(SqlConnection& connection, const DeviceFilter& filter) {
  auto accepted = [](DeviceQuery& query, std::string_view columns) {
    return query.Range(columns, std::string(kAttestedOk) + " = 1");
  };
  auto not_accepted = [](DeviceQuery& query, std::string_view columns) {
    return query.Range(columns, std::string(kAttestedOk) + " = 0");
  };
  // The accepted devices on one side of `now`: the small set, or the dense one.
  auto expiry_branch = [&](bool lapsed) -> Expected<DeviceBranch> {
    CITADEL_TRY(bool small, IsSmallExpirySet(connection, filter, lapsed));
    if (small) {
      return DeviceBranch([lapsed](DeviceQuery& query, std::string_view) { return query.SmallExpirySet(lapsed); });
    }
    return DeviceBranch([lapsed](DeviceQuery& query, std::string_view columns) {
      return query.Range(columns, query.ExpiryCondition(lapsed, false));
    });
  };
  switch (filter.health) {
    case DeviceHealth::kAny:
      // No index is (tenant, group, version, id); the one with health in
      // between holds the two halves in id order.
      if (!filter.device_group_id.empty() && !filter.os_version.empty()) {
        return std::vector<DeviceBranch>{accepted, not_accepted};
      }
      return std::vector<DeviceBranch>{
          [](DeviceQuery& query, std::string_view columns) { return query.Range(columns, ""); }};
    case DeviceHealth::kHealthy: {
      CITADEL_TRY(DeviceBranch valid, expiry_branch(false));
      return std::vector<DeviceBranch>{std::move(valid)};
    }
    case DeviceHealth::kUnhealthy: {
      CITADEL_TRY(DeviceBranch lapsed, expiry_branch(true));
      return std::vector<DeviceBranch>{not_accepted, std::move(lapsed)};
    }
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown device health filter");
}

}  // namespace

// Every page is at most two index ranges of `limit` rows each, merged by the
// database, plus for a health filter one probe of at most kSmallExpirySet
// index entries. The one cost that depends on the data: when more than
// kSmallExpirySet of the tenant's accepted devices are on the wanted side
// of `now` yet few of them are in the filtered group or version, the page
// reads the filter's accepted devices until it has found `limit` of them.
Expected<std::vector<Device>> SqlStore::ListDevices(const DeviceFilter& filter) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY(std::int64_t limit, CheckLimit(filter.limit));
  CITADEL_TRY_VOID(CheckHealthFilter(filter));
  auto devices = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::vector<Device>> {
    CITADEL_TRY(std::vector<DeviceBranch> branches, DeviceBranches(connection, filter));
    DeviceQuery query(filter);
    const std::string page = " ORDER BY id LIMIT " + query.query.Bind(limit);
    if (branches.size() == 1) {
      query.query.sql = branches.front()(query, kDeviceColumns) + page;
    } else {
      // Each branch is ordered and limited on its own (an index range), the
      // union is ordered by the database, in its collation like any page.
      for (std::size_t i = 0; i < branches.size(); ++i) {
        if (i > 0) query.query.sql += " UNION ALL ";
        query.query.sql += Select(
            kDeviceColumns, "FROM (" + branches[i](query, kDeviceColumns) + page + ") branch" + std::to_string(i));
      }
      query.query.sql += page;
    }
    return FetchAll(connection, query.query.sql, query.query.params, DeviceFromRow);
  });
  return Explain(std::move(devices), "listing devices");
}

// Counts branch by branch, each up to what is left of at_most, so a dense
// first branch (e.g. the refused, revoked and never attested devices of a
// large group) ends the count before the sparser one is read.
Expected<std::int64_t> SqlStore::CountDevicesUpTo(const DeviceFilter& filter, std::int64_t at_most) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(CheckHealthFilter(filter));
  if (at_most <= 0) return MakeError(ErrorCode::kInvalidArgument, "the count bound must be positive");
  DeviceFilter whole = filter;
  whole.after_id.clear();  // every id is > ''
  auto count = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    CITADEL_TRY(std::vector<DeviceBranch> branches, DeviceBranches(connection, whole));
    std::int64_t counted = 0;
    for (const DeviceBranch& branch : branches) {
      if (counted >= at_most) break;
      DeviceQuery query(whole);
      const std::string rows = branch(query, "id");
      query.query.sql = "SELECT COUNT(*) FROM (" + rows + " LIMIT " + query.query.Bind(at_most - counted) + ") counted";
      CITADEL_TRY(SqlResult result, connection.Execute(query.query.sql, query.query.params));
      counted += result.rows.empty() ? 0 : result.rows.front().Int(0);
    }
    return std::min(counted, at_most);
  });
  return Explain(std::move(count), "counting devices");
}

Expected<void> SqlStore::RecordAttestation(std::string_view device_id, std::string_view verdict,
                                           std::string_view os_version, std::int64_t now) {
  CITADEL_TRY_VOID(RequireNonEmpty(verdict, "verdict"));
  auto recorded = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult result, connection.Execute("UPDATE devices SET last_attested_at = $2, last_verdict = $3, "
                                                     "os_version = CASE WHEN $4 = '' THEN os_version ELSE $4 END, " +
                                                         std::string(kLastSeenUpdate) + " WHERE id = $1",
                                                     {device_id, now, verdict, os_version}));
    if (result.rows_affected == 0) return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) + " not found");
    return kOk;
  });
  return Explain(std::move(recorded), "recording the attestation of device " + Quoted(device_id));
}

namespace {

// The device row's part of a check-in; kNotFound for a device never seen,
// or not of tenant_id when that is not empty.
Expected<void> UpdateCheckIn(SqlConnection& connection, std::string_view device_id, std::string_view os_version,
                             std::string_view runtime_version, std::int64_t uptime_seconds, std::int64_t free_memory_kb,
                             std::int64_t now, std::string_view tenant_id = {}) {
  CITADEL_TRY(
      SqlResult result,
      connection.Execute("UPDATE devices SET "
                         "os_version = CASE WHEN $3 = '' THEN os_version ELSE $3 END, "
                         "runtime_version = CASE WHEN $4 = '' THEN runtime_version ELSE $4 END, "
                         "uptime_seconds = $5, free_memory_kb = $6, " +
                             std::string(kLastSeenUpdate) + " WHERE id = $1 AND ($7 = '' OR tenant_id = $7)",
                         {device_id, now, os_version, runtime_version, uptime_seconds, free_memory_kb, tenant_id}));
  if (result.rows_affected == 0) return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) + " not found");
  return kOk;
}

}  // namespace

Expected<void> SqlStore::RecordCheckIn(std::string_view device_id, std::string_view os_version,
                                       std::string_view runtime_version, std::int64_t uptime_seconds,
                                       std::int64_t free_memory_kb, std::int64_t now) {
  auto recorded = WithConnection(*pool_, [&](SqlConnection& connection) {
    return UpdateCheckIn(connection, device_id, os_version, runtime_version, uptime_seconds, free_memory_kb, now);
  });
  return Explain(std::move(recorded), "recording the check-in of device " + Quoted(device_id));
}

// ---------------------------------------------------------------- nonces

Expected<void> SqlStore::CreateNonce(std::string_view nonce_hash, std::int64_t expires_at) {
  CITADEL_TRY_VOID(RequireNonEmpty(nonce_hash, "nonce hash"));
  auto created = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO nonces (hash, expires_at, used) VALUES ($1, $2, 0)", {nonce_hash, expires_at}));
    return kOk;
  });
  return Explain(std::move(created), "creating a nonce", "that nonce already exists");
}

Expected<NonceResult> SqlStore::ConsumeNonce(std::string_view nonce_hash, std::int64_t now) {
  auto consumed = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<NonceResult> {
    // One conditional UPDATE: the database lets exactly one caller flip
    // used from 0 to 1, however many race.
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE nonces SET used = 1 WHERE hash = $1 AND used = 0 AND expires_at > $2",
                                   {nonce_hash, now}));
    if (update.rows_affected == 1) return NonceResult::kConsumed;
    // Lost, or never valid: only the explanation is read here, nothing is
    // granted on it.
    CITADEL_TRY(SqlResult row, connection.Execute("SELECT used, expires_at FROM nonces WHERE hash = $1", {nonce_hash}));
    if (row.rows.empty() || row.rows.front().Bool(0)) return NonceResult::kUnknownOrUsed;
    return row.rows.front().Int(1) <= now ? NonceResult::kExpired : NonceResult::kUnknownOrUsed;
  });
  return Explain(std::move(consumed), "consuming a nonce");
}

Expected<std::int64_t> SqlStore::PurgeExpiredNonces(std::int64_t before) {
  auto purged = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    CITADEL_TRY(SqlResult result, connection.Execute("DELETE FROM nonces WHERE expires_at < $1", {before}));
    return result.rows_affected;
  });
  return Explain(std::move(purged), "purging expired nonces");
}

// ---------------------------------------------------------------- TPM keys

Expected<void> SqlStore::CreateTpmActivation(const TpmActivation& activation, std::int64_t now) {
  CITADEL_TRY_VOID(RequireNonEmpty(activation.id, "activation id"));
  CITADEL_TRY_VOID(RequireNonEmpty(activation.device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(activation.secret_hash, "secret hash"));
  auto created = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute("DELETE FROM tpm_activations WHERE expires_at <= $1", {now}));
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO tpm_activations (id, device_id, ek_fingerprint, secret_hash, expires_at) "
                           "VALUES ($1, $2, $3, $4, $5)",
                           {activation.id, activation.device_id, activation.ek_fingerprint, activation.secret_hash,
                            activation.expires_at}));
    return kOk;
  });
  return Explain(std::move(created), "creating a TPM activation");
}

Expected<TpmActivation> SqlStore::TakeTpmActivation(std::string_view id, std::int64_t now) {
  auto taken = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<TpmActivation> {
    // DELETE ... RETURNING: exactly one caller gets the row, however many race.
    CITADEL_TRY(SqlResult result, connection.Execute("DELETE FROM tpm_activations WHERE id = $1 "
                                                     "RETURNING id, device_id, ek_fingerprint, secret_hash, expires_at",
                                                     {id}));
    if (result.rows.empty()) return MakeError(ErrorCode::kNotFound, "no such activation (unknown or already used)");
    const SqlRow& row = result.rows.front();
    TpmActivation activation{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4)};
    if (now >= activation.expires_at) return MakeError(ErrorCode::kNotFound, "the activation expired");
    return activation;
  });
  return Explain(std::move(taken), "taking a TPM activation");
}

Expected<void> SqlStore::BindTpmKey(const TpmBinding& binding) {
  CITADEL_TRY_VOID(RequireNonEmpty(binding.device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(binding.ek_fingerprint, "EK fingerprint"));
  auto bound = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute("DELETE FROM tpm_bindings WHERE device_id = $1", {binding.device_id}));
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO tpm_bindings (device_id, ek_fingerprint, bound_at) VALUES ($1, $2, $3)",
                           {binding.device_id, binding.ek_fingerprint, binding.bound_at}));
    return kOk;
  });
  return Explain(std::move(bound), "binding a TPM key");
}

Expected<std::optional<TpmBinding>> SqlStore::GetTpmBinding(std::string_view device_id) {
  auto found = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::optional<TpmBinding>> {
    CITADEL_TRY(SqlResult result,
                connection.Execute("SELECT device_id, ek_fingerprint, bound_at FROM tpm_bindings WHERE device_id = $1",
                                   {device_id}));
    if (result.rows.empty()) return std::optional<TpmBinding>();
    const SqlRow& row = result.rows.front();
    return std::optional<TpmBinding>(TpmBinding{row.Text(0), row.Text(1), row.Int(2)});
  });
  return Explain(std::move(found), "reading a TPM binding");
}

// ---------------------------------------------------------------- certificates

Expected<void> SqlStore::RecordCertificate(const IssuedCertificate& certificate) {
  CITADEL_TRY_VOID(RequireNonEmpty(certificate.serial_hex, "certificate serial"));
  CITADEL_TRY_VOID(RequireNonEmpty(certificate.device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(certificate.tenant_id, "tenant id"));
  auto recorded = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO certificates (serial_hex, device_id, tenant_id, not_after, issued_at, revoked) "
                           "VALUES ($1, $2, $3, $4, $5, $6)",
                           {certificate.serial_hex, certificate.device_id, certificate.tenant_id, certificate.not_after,
                            certificate.issued_at, certificate.revoked}));
    // A device certificate chains to its tenant's CA, so the device must be
    // that tenant's.
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE devices SET certificate_serial = $1, certificate_expires_at = $2, "
                                   "revoked = $3 WHERE id = $4 AND tenant_id = $5",
                                   {certificate.serial_hex, certificate.not_after, certificate.revoked,
                                    certificate.device_id, certificate.tenant_id}));
    if (update.rows_affected == 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "device " + Quoted(certificate.device_id) + " is not claimed by the certificate's tenant");
    }
    return kOk;
  });
  return Explain(
      std::move(recorded), "recording certificate " + certificate.serial_hex,
      "certificate " + certificate.serial_hex + " already exists",
      "device " + Quoted(certificate.device_id) + " or tenant " + Quoted(certificate.tenant_id) + " not found");
}

Expected<IssuedCertificate> SqlStore::GetCertificate(std::string_view serial_hex) {
  auto certificate = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kCertificateColumns, "FROM certificates WHERE serial_hex = $1"), {serial_hex},
                    "certificate " + std::string(serial_hex) + " not found", CertificateFromRow);
  });
  return Explain(std::move(certificate), "reading certificate " + std::string(serial_hex));
}

Expected<void> SqlStore::RevokeCertificate(std::string_view serial_hex) {
  auto revoked = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE certificates SET revoked = 1 WHERE serial_hex = $1", {serial_hex}));
    if (update.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "certificate " + std::string(serial_hex) + " not found");
    }
    // Device.revoked describes the device's current certificate; an older
    // certificate's revocation leaves it alone.
    CITADEL_TRY_VOID(connection.Execute(
        "UPDATE devices SET revoked = 1 "
        "WHERE id = (SELECT device_id FROM certificates WHERE serial_hex = $1) AND certificate_serial = $1",
        {serial_hex}));
    return kOk;
  });
  return Explain(std::move(revoked), "revoking certificate " + std::string(serial_hex));
}

// ---------------------------------------------------------------- policy

Expected<void> SqlStore::AddPolicyRule(const PolicyRule& rule) {
  CITADEL_TRY_VOID(RequireNonEmpty(rule.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(rule.kind, "policy rule kind"));
  CITADEL_TRY_VOID(RequireNonEmpty(rule.value, "policy rule value"));
  auto added = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO policy_rules (tenant_id, kind, value, created_at) VALUES ($1, $2, $3, $4)",
                           {rule.tenant_id, rule.kind, rule.value, rule.created_at}));
    return kOk;
  });
  return Explain(std::move(added), "adding a policy rule",
                 "policy rule " + rule.kind + " " + Quoted(rule.value) + " already exists",
                 "tenant " + Quoted(rule.tenant_id) + " not found");
}

Expected<void> SqlStore::RemovePolicyRule(std::string_view tenant_id, std::string_view kind, std::string_view value) {
  auto removed = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult result,
                connection.Execute("DELETE FROM policy_rules WHERE tenant_id = $1 AND kind = $2 AND value = $3",
                                   {tenant_id, kind, value}));
    if (result.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "policy rule " + std::string(kind) + " " + Quoted(value) + " not found");
    }
    return kOk;
  });
  return Explain(std::move(removed), "removing a policy rule");
}

Expected<std::vector<PolicyRule>> SqlStore::ListPolicyRules(std::string_view tenant_id) {
  auto rules = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection, Select(kPolicyColumns, "FROM policy_rules WHERE tenant_id = $1 ORDER BY kind, value"),
                    {tenant_id}, PolicyFromRow);
  });
  return Explain(std::move(rules), "listing policy rules");
}

// ---------------------------------------------------------------- publisher keys

Expected<void> SqlStore::AddPublisherKey(const PublisherKey& key, std::int64_t max_active) {
  CITADEL_TRY_VOID(RequireNonEmpty(key.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(key.key_id, "publisher key id"));
  CITADEL_TRY_VOID(RequireNonEmpty(key.public_key_pem, "publisher key PEM"));
  CITADEL_TRY_VOID(RequireNonEmpty(key.name, "publisher key name"));
  auto added = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    // A resource bound, not a security invariant: two replicas racing on
    // PostgreSQL may both pass it, which only lets the list grow by one.
    CITADEL_TRY(SqlResult active,
                connection.Execute("SELECT COUNT(*) FROM publisher_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
                                   {key.tenant_id}));
    if (!active.rows.empty() && active.rows.front().Int(0) >= max_active) {
      return MakeError(ErrorCode::kConflict, "the tenant already has " + std::to_string(max_active) +
                                                 " active publisher keys; revoke one first");
    }
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO publisher_keys (tenant_id, key_id, public_key_pem, name, created_at, revoked_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        {key.tenant_id, key.key_id, key.public_key_pem, key.name, key.created_at,
         key.revoked_at == 0 ? SqlValue(nullptr) : SqlValue(key.revoked_at)}));
    return kOk;
  });
  if (!added && added.error().code() == ErrorCode::kConflict) return added;
  return Explain(std::move(added), "adding publisher key " + key.key_id,
                 "publisher key " + key.key_id + " is already registered for this tenant",
                 "tenant " + Quoted(key.tenant_id) + " not found");
}

Expected<std::vector<PublisherKey>> SqlStore::ListPublisherKeys(std::string_view tenant_id, bool include_revoked) {
  auto keys = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(
        connection,
        Select(kPublisherKeyColumns, include_revoked ? "FROM publisher_keys WHERE tenant_id = $1 "
                                                       "ORDER BY created_at, key_id"
                                                     : "FROM publisher_keys WHERE tenant_id = $1 AND revoked_at "
                                                       "IS NULL ORDER BY created_at, key_id"),
        {tenant_id}, PublisherKeyFromRow);
  });
  return Explain(std::move(keys), "listing publisher keys");
}

Expected<void> SqlStore::RevokePublisherKey(std::string_view tenant_id, std::string_view key_id, std::int64_t now) {
  auto revoked = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult update, connection.Execute("UPDATE publisher_keys SET revoked_at = $3 "
                                                     "WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL",
                                                     {tenant_id, key_id, now}));
    if (update.rows_affected == 1) return kOk;
    CITADEL_TRY(SqlResult row, connection.Execute("SELECT revoked_at FROM publisher_keys "
                                                  "WHERE tenant_id = $1 AND key_id = $2",
                                                  {tenant_id, key_id}));
    if (row.rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "publisher key " + std::string(key_id) + " not found");
    }
    return MakeError(ErrorCode::kConflict, "publisher key " + std::string(key_id) + " is already revoked");
  });
  if (!revoked && (revoked.error().code() == ErrorCode::kNotFound || revoked.error().code() == ErrorCode::kConflict)) {
    return revoked;
  }
  return Explain(std::move(revoked), "revoking publisher key " + std::string(key_id));
}

// ---------------------------------------------------------------- development capabilities

Expected<void> SqlStore::ReplaceDevelopmentCapability(const DevelopmentCapability& capability) {
  CITADEL_TRY_VOID(RequireNonEmpty(capability.capability_id, "capability id"));
  CITADEL_TRY_VOID(RequireNonEmpty(capability.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(capability.device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(capability.document, "capability document"));
  auto replaced = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult device, connection.Execute("SELECT id FROM devices WHERE id = $1 AND tenant_id = $2",
                                                     {capability.device_id, capability.tenant_id}));
    if (device.rows.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "device " + Quoted(capability.device_id) + " is not claimed by this tenant");
    }
    CITADEL_TRY_VOID(
        connection.Execute("UPDATE app_development_capabilities SET revoked_at = $2 "
                           "WHERE device_id = $1 AND revoked_at IS NULL",
                           {capability.device_id, capability.created_at}));
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO app_development_capabilities (capability_id, tenant_id, device_id, document, created_at, "
        "revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        {capability.capability_id, capability.tenant_id, capability.device_id, capability.document,
         capability.created_at}));
    return kOk;
  });
  if (!replaced && replaced.error().code() == ErrorCode::kFailedPrecondition) return replaced;
  // kAlreadyExists also covers a replica that inserted a capability for the
  // same device between our UPDATE and INSERT (the partial unique index).
  return Explain(std::move(replaced), "recording a development capability for device " + Quoted(capability.device_id),
                 "another development capability was issued for device " + Quoted(capability.device_id) +
                     " at the same time; retry",
                 "device " + Quoted(capability.device_id) + " not found");
}

Expected<DevelopmentCapability> SqlStore::GetDevelopmentCapability(std::string_view tenant_id,
                                                                   std::string_view device_id) {
  auto capability = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection,
                    Select(kCapabilityColumns,
                           "FROM app_development_capabilities "
                           "WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL"),
                    {tenant_id, device_id}, "device " + Quoted(device_id) + " has no development capability",
                    CapabilityFromRow);
  });
  return Explain(std::move(capability), "reading the development capability of device " + Quoted(device_id));
}

Expected<void> SqlStore::RevokeDevelopmentCapability(std::string_view tenant_id, std::string_view device_id,
                                                     std::int64_t now) {
  auto revoked = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult update, connection.Execute("UPDATE app_development_capabilities SET revoked_at = $3 "
                                                     "WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL",
                                                     {tenant_id, device_id, now}));
    if (update.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) + " has no development capability");
    }
    return kOk;
  });
  return Explain(std::move(revoked), "revoking the development capability of device " + Quoted(device_id));
}

// ---------------------------------------------------------------- repositories

Expected<void> SqlStore::PutRepositoryKey(const RepositoryKey& key) {
  CITADEL_TRY_VOID(RequireNonEmpty(key.tenant_id, "tenant id"));
  if (key.role == TufRole::kRoot) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "root keys stay offline; the service holds only targets, snapshot and timestamp keys");
  }
  CITADEL_TRY_VOID(RequireNonEmpty(key.key_id, "key id"));
  CITADEL_TRY_VOID(RequireNonEmpty(key.public_key_json, "public key"));
  CITADEL_TRY_VOID(RequireNonEmpty(key.sealed_private_key, "sealed private key"));
  const std::string what = "the " + MetadataSeries(key.repository, "", key.role) + " key";
  auto put = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO repository_keys (tenant_id, repository, role, key_id, public_key_json, sealed_private_key, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {key.tenant_id, TufRepositoryName(key.repository), TufRoleName(key.role), key.key_id, key.public_key_json,
         key.sealed_private_key, key.created_at}));
    return kOk;
  });
  return Explain(std::move(put), "storing " + what, what + " already exists",
                 "tenant " + Quoted(key.tenant_id) + " not found");
}

Expected<RepositoryKey> SqlStore::GetRepositoryKey(std::string_view tenant_id, TufRepository repository, TufRole role) {
  const std::string what = "the " + MetadataSeries(repository, "", role) + " key";
  auto key = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(
        connection,
        Select(kRepositoryKeyColumns, "FROM repository_keys WHERE tenant_id = $1 AND repository = $2 AND role = $3"),
        {tenant_id, TufRepositoryName(repository), TufRoleName(role)}, what + " not found", RepositoryKeyFromRow);
  });
  return Explain(std::move(key), "reading " + what);
}

Expected<std::vector<RepositoryKey>> SqlStore::ListRepositoryKeys(std::string_view tenant_id) {
  auto keys = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(
        connection,
        Select(kRepositoryKeyColumns, "FROM repository_keys WHERE tenant_id = $1 ORDER BY repository, role"),
        {tenant_id}, RepositoryKeyFromRow);
  });
  return Explain(std::move(keys), "listing repository keys");
}

Expected<void> SqlStore::AddRepositoryMetadata(const RepositoryMetadata& metadata) {
  CITADEL_TRY_VOID(RequireNonEmpty(metadata.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(metadata.document, "metadata document"));
  if (metadata.version < 1) return MakeError(ErrorCode::kInvalidArgument, "metadata versions start at 1");
  const std::string what = "version " + std::to_string(metadata.version) + " of the " +
                           MetadataSeries(metadata.repository, metadata.scope, metadata.role) + " metadata";
  auto added = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    // A plain INSERT: the primary key makes exactly one of racing
    // publishers of the same version succeed.
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO repository_metadata (tenant_id, repository, scope, role, version, expires_at, document, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {metadata.tenant_id, TufRepositoryName(metadata.repository), metadata.scope, TufRoleName(metadata.role),
         metadata.version, metadata.expires_at, metadata.document, metadata.created_at}));
    return kOk;
  });
  return Explain(std::move(added), "publishing " + what, what + " already exists",
                 "tenant " + Quoted(metadata.tenant_id) + " not found");
}

Expected<RepositoryMetadata> SqlStore::GetRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                             std::string_view scope, TufRole role,
                                                             std::int64_t version) {
  const std::string what =
      "version " + std::to_string(version) + " of the " + MetadataSeries(repository, scope, role) + " metadata";
  auto metadata = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection,
                    Select(kMetadataColumns,
                           "FROM repository_metadata WHERE tenant_id = $1 AND repository = $2 AND scope = $3 "
                           "AND role = $4 AND version = $5"),
                    {tenant_id, TufRepositoryName(repository), scope, TufRoleName(role), version}, what + " not found",
                    MetadataFromRow);
  });
  return Explain(std::move(metadata), "reading " + what);
}

Expected<RepositoryMetadata> SqlStore::GetLatestRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                                   std::string_view scope, TufRole role) {
  const std::string what = "the " + MetadataSeries(repository, scope, role) + " metadata";
  auto metadata = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection,
                    Select(kMetadataColumns,
                           "FROM repository_metadata WHERE tenant_id = $1 AND repository = $2 AND scope = $3 "
                           "AND role = $4 ORDER BY version DESC LIMIT 1"),
                    {tenant_id, TufRepositoryName(repository), scope, TufRoleName(role)},
                    what + " has not been published", MetadataFromRow);
  });
  return Explain(std::move(metadata), "reading the latest of " + what);
}

Expected<std::int64_t> SqlStore::PruneRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                         std::string_view scope, TufRole role,
                                                         std::int64_t keep_latest) {
  if (role == TufRole::kRoot) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "root metadata is never pruned: devices with an old root walk every version");
  }
  if (keep_latest < 1) return MakeError(ErrorCode::kInvalidArgument, "keep at least the latest version");
  auto pruned = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    // Everything below the keep_latest-th highest version; with fewer
    // versions than that the subquery is NULL and nothing matches.
    CITADEL_TRY(
        SqlResult result,
        connection.Execute("DELETE FROM repository_metadata WHERE tenant_id = $1 AND repository = $2 "
                           "AND scope = $3 AND role = $4 AND version < ("
                           "SELECT version FROM repository_metadata WHERE tenant_id = $1 AND repository = $2 "
                           "AND scope = $3 AND role = $4 ORDER BY version DESC LIMIT 1 OFFSET $5)",
                           {tenant_id, TufRepositoryName(repository), scope, TufRoleName(role), keep_latest - 1}));
    return result.rows_affected;
  });
  return Explain(std::move(pruned), "pruning the " + MetadataSeries(repository, scope, role) + " metadata");
}

// ---------------------------------------------------------------- images

Expected<void> SqlStore::AddImage(const Image& image) {
  CITADEL_TRY_VOID(RequireNonEmpty(image.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireSha256(image.sha256, "image sha256"));
  CITADEL_TRY_VOID(RequireNonEmpty(image.component_id, "component id"));
  CITADEL_TRY_VOID(RequireNonEmpty(image.version, "image version"));
  CITADEL_TRY_VOID(RequireNonEmpty(image.target_name, "target name"));
  if (image.length < 0) return MakeError(ErrorCode::kInvalidArgument, "image length must not be negative");
  auto added = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    // DO NOTHING on either unique key, then find out which one it was: the
    // same content (an idempotent re-upload) or a name already taken.
    CITADEL_TRY(SqlResult insert,
                connection.Execute(
                    "INSERT INTO images (tenant_id, sha256, length, kind, component_id, version, "
                    "security_version, target_name, uploaded_at, uploaded_by) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    {image.tenant_id, image.sha256, image.length, ImageKindName(image.kind), image.component_id,
                     image.version, image.security_version, image.target_name, image.uploaded_at, image.uploaded_by}));
    if (insert.rows_affected == 1) return kOk;
    CITADEL_TRY(SqlResult same, connection.Execute("SELECT 1 FROM images WHERE tenant_id = $1 AND sha256 = $2",
                                                   {image.tenant_id, image.sha256}));
    if (!same.rows.empty()) {
      return MakeError(ErrorCode::kAlreadyExists, "image " + image.sha256 + " is already uploaded");
    }
    return MakeError(ErrorCode::kConflict, "target name " + Quoted(image.target_name) + " already names another image");
  });
  if (!added && (added.error().code() == ErrorCode::kAlreadyExists || added.error().code() == ErrorCode::kConflict)) {
    return added;
  }
  return Explain(std::move(added), "adding image " + image.sha256, {},
                 "tenant " + Quoted(image.tenant_id) + " not found");
}

Expected<Image> SqlStore::GetImage(std::string_view tenant_id, std::string_view sha256) {
  auto image = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kImageColumns, "FROM images WHERE tenant_id = $1 AND sha256 = $2"),
                    {tenant_id, sha256}, "image " + std::string(sha256) + " not found", ImageFromRow);
  });
  return Explain(std::move(image), "reading image " + std::string(sha256));
}

Expected<Image> SqlStore::GetImageByTargetName(std::string_view tenant_id, std::string_view target_name) {
  auto image = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kImageColumns, "FROM images WHERE tenant_id = $1 AND target_name = $2"),
                    {tenant_id, target_name}, "no image has target name " + Quoted(target_name), ImageFromRow);
  });
  return Explain(std::move(image), "reading image " + Quoted(target_name));
}

Expected<std::vector<Image>> SqlStore::ListImages(const ImageFilter& filter) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY(std::int64_t limit, CheckLimit(filter.limit));
  // Each variant matches an index prefix, ordered by target name.
  DynamicQuery query{Select(kImageColumns, "FROM images WHERE tenant_id = $1 AND target_name > $2"),
                     {SqlValue(filter.tenant_id), SqlValue(filter.after_target_name)}};
  query.AndEqualIfSet("component_id", filter.component_id);
  query.sql += " ORDER BY target_name LIMIT " + query.Bind(limit);
  auto images = WithConnection(
      *pool_, [&](SqlConnection& connection) { return FetchAll(connection, query.sql, query.params, ImageFromRow); });
  return Explain(std::move(images), "listing images");
}

Expected<ImageDelta> SqlStore::AddImageDelta(const ImageDelta& delta) {
  CITADEL_TRY_VOID(RequireNonEmpty(delta.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireSha256(delta.from_sha256, "delta base sha256"));
  CITADEL_TRY_VOID(RequireSha256(delta.to_sha256, "delta result sha256"));
  CITADEL_TRY_VOID(RequireSha256(delta.delta_sha256, "delta sha256"));
  if (delta.from_sha256 == delta.to_sha256) {
    return MakeError(ErrorCode::kInvalidArgument, "a delta needs two different images");
  }
  if (delta.length < 0) return MakeError(ErrorCode::kInvalidArgument, "delta length must not be negative");
  auto added = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<ImageDelta> {
    // The first delta recorded for a pair stays: replicas that computed the
    // same pair at once all end up serving that one.
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO image_deltas (tenant_id, from_sha256, to_sha256, delta_sha256, length, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, from_sha256, to_sha256) DO NOTHING",
        {delta.tenant_id, delta.from_sha256, delta.to_sha256, delta.delta_sha256, delta.length, delta.created_at}));
    return FetchOne(
        connection,
        Select(kDeltaColumns, "FROM image_deltas WHERE tenant_id = $1 AND from_sha256 = $2 AND to_sha256 = $3"),
        {delta.tenant_id, delta.from_sha256, delta.to_sha256}, "the delta vanished after insertion", DeltaFromRow);
  });
  return Explain(std::move(added), "adding the delta " + delta.from_sha256 + " -> " + delta.to_sha256, {},
                 "image " + delta.from_sha256 + " or " + delta.to_sha256 + " not found");
}

Expected<ImageDelta> SqlStore::GetImageDelta(std::string_view tenant_id, std::string_view from_sha256,
                                             std::string_view to_sha256) {
  const std::string what = "the delta " + std::string(from_sha256) + " -> " + std::string(to_sha256);
  auto delta = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(
        connection,
        Select(kDeltaColumns, "FROM image_deltas WHERE tenant_id = $1 AND from_sha256 = $2 AND to_sha256 = $3"),
        {tenant_id, from_sha256, to_sha256}, what + " not found", DeltaFromRow);
  });
  return Explain(std::move(delta), "reading " + what);
}

// ---------------------------------------------------------------- deployments

Expected<void> SqlStore::CreateDeployment(const Deployment& deployment, const std::vector<std::string>& supersede) {
  CITADEL_TRY_VOID(RequireNonEmpty(deployment.id, "deployment id"));
  CITADEL_TRY_VOID(RequireNonEmpty(deployment.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(deployment.target_names_json, "deployment targets"));
  CITADEL_TRY_VOID(RequirePercent(deployment.percent));
  if (deployment.device_group_id.empty() == deployment.os_feed.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a deployment names either a device group or an OS feed");
  }
  if (deployment.state != DeploymentState::kActive && deployment.state != DeploymentState::kPaused) {
    return MakeError(ErrorCode::kInvalidArgument, "a new deployment is active or paused");
  }
  for (const std::string& id : supersede) {
    CITADEL_TRY_VOID(RequireNonEmpty(id, "superseded deployment id"));
    if (id == deployment.id) return MakeError(ErrorCode::kInvalidArgument, "a deployment cannot supersede itself");
  }
  const std::string_view batches = deployment.batches_json.empty() ? std::string_view("[]") : deployment.batches_json;
  auto created = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    auto inserted = Explain(
        connection.Execute("INSERT INTO deployments (id, tenant_id, device_group_id, os_feed, target_names_json, "
                           "percent, batches_json, state, created_at, updated_at, created_by) "
                           "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                           {deployment.id, deployment.tenant_id, SqlValue::TextOrNull(deployment.device_group_id),
                            SqlValue::TextOrNull(deployment.os_feed), deployment.target_names_json, deployment.percent,
                            batches, DeploymentStateName(deployment.state), deployment.created_at,
                            deployment.updated_at, deployment.created_by}),
        "inserting", "deployment " + Quoted(deployment.id) + " already exists",
        deployment.device_group_id.empty() ? "tenant " + Quoted(deployment.tenant_id) + " not found"
                                           : "device group " + Quoted(deployment.device_group_id) + " not found");
    if (!inserted) return std::unexpected(std::move(inserted).error());
    // Compare-and-set on each: one that another replica already moved
    // fails the whole call, so the caller decides again on fresh state.
    for (const std::string& id : supersede) {
      CITADEL_TRY(SqlResult update,
                  connection.Execute("UPDATE deployments SET state = 'superseded', updated_at = $3 "
                                     "WHERE tenant_id = $1 AND id = $2 AND state IN ('active', 'paused')",
                                     {deployment.tenant_id, id, deployment.created_at}));
      if (update.rows_affected == 1) continue;
      CITADEL_TRY(SqlResult current,
                  connection.Execute("SELECT state FROM deployments WHERE tenant_id = $1 AND id = $2",
                                     {deployment.tenant_id, id}));
      if (current.rows.empty()) return MakeError(ErrorCode::kNotFound, "deployment " + Quoted(id) + " not found");
      return MakeError(ErrorCode::kConflict, "deployment " + Quoted(id) + " is already " +
                                                 current.rows.front().Text(0) + "; it cannot be superseded");
    }
    return kOk;
  });
  return Explain(std::move(created), "creating deployment " + Quoted(deployment.id));
}

Expected<Deployment> SqlStore::GetDeployment(std::string_view tenant_id, std::string_view deployment_id) {
  auto deployment = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection, Select(kDeploymentColumns, "FROM deployments WHERE tenant_id = $1 AND id = $2"),
                    {tenant_id, deployment_id}, "deployment " + Quoted(deployment_id) + " not found",
                    DeploymentFromRow);
  });
  return Explain(std::move(deployment), "reading deployment " + Quoted(deployment_id));
}

Expected<std::vector<Deployment>> SqlStore::ListDeployments(const DeploymentFilter& filter) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY(std::int64_t limit, CheckLimit(filter.limit));
  DynamicQuery query{Select(kDeploymentColumns, "FROM deployments WHERE tenant_id = $1"), {SqlValue(filter.tenant_id)}};
  query.AndEqualIfSet("device_group_id", filter.device_group_id);
  query.AndEqualIfSet("os_feed", filter.os_feed);
  // Deduplicated and in one order, so equal filters share one statement.
  const std::set<DeploymentState> states(filter.states.begin(), filter.states.end());
  if (!states.empty()) {
    std::string placeholders;
    for (DeploymentState state : states) {
      placeholders += (placeholders.empty() ? "" : ", ") + query.Bind(DeploymentStateName(state));
    }
    query.sql += " AND state IN (" + placeholders + ")";
  }
  query.sql += " ORDER BY created_at DESC, id DESC LIMIT " + query.Bind(limit);
  auto deployments = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection, query.sql, query.params, DeploymentFromRow);
  });
  return Explain(std::move(deployments), "listing deployments");
}

Expected<void> SqlStore::UpdateDeployment(std::string_view tenant_id, std::string_view deployment_id,
                                          DeploymentState expected_state, DeploymentState new_state,
                                          std::int64_t new_percent, std::int64_t updated_at) {
  CITADEL_TRY_VOID(RequirePercent(new_percent));
  auto updated = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    // One conditional UPDATE: of replicas racing from the same state,
    // exactly one moves it.
    CITADEL_TRY(SqlResult update, connection.Execute("UPDATE deployments SET state = $4, percent = $5, updated_at = $6 "
                                                     "WHERE tenant_id = $1 AND id = $2 AND state = $3",
                                                     {tenant_id, deployment_id, DeploymentStateName(expected_state),
                                                      DeploymentStateName(new_state), new_percent, updated_at}));
    if (update.rows_affected == 1) return kOk;
    CITADEL_TRY(SqlResult current, connection.Execute("SELECT state FROM deployments WHERE tenant_id = $1 AND id = $2",
                                                      {tenant_id, deployment_id}));
    if (current.rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "deployment " + Quoted(deployment_id) + " not found");
    }
    return MakeError(ErrorCode::kConflict, "deployment " + Quoted(deployment_id) + " is " +
                                               current.rows.front().Text(0) + ", no longer " +
                                               std::string(DeploymentStateName(expected_state)));
  });
  return Explain(std::move(updated), "updating deployment " + Quoted(deployment_id));
}

// ---------------------------------------------------------------- update reports

Expected<bool> SqlStore::RecordUpdateReport(const UpdateReport& report) {
  CITADEL_TRY_VOID(RequireNonEmpty(report.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(report.device_id, "device id"));
  CITADEL_TRY_VOID(RequireNonEmpty(report.deployment_id, "deployment id"));
  CITADEL_TRY_VOID(RequireNonEmpty(report.target_name, "target name"));
  auto recorded = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<bool> {
    CITADEL_TRY(SqlResult device, connection.Execute("SELECT 1 FROM devices WHERE id = $1 AND tenant_id = $2",
                                                     {report.device_id, report.tenant_id}));
    if (device.rows.empty())
      return MakeError(ErrorCode::kNotFound, "device " + Quoted(report.device_id) + " not found");
    CITADEL_TRY(SqlResult deployment, connection.Execute("SELECT 1 FROM deployments WHERE id = $1 AND tenant_id = $2",
                                                         {report.deployment_id, report.tenant_id}));
    if (deployment.rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "deployment " + Quoted(report.deployment_id) + " not found");
    }
    // The stored report is replaced only by a newer one, so a retried or
    // reordered report never takes the state backwards.
    CITADEL_TRY(SqlResult upsert,
                connection.Execute(
                    "INSERT INTO device_update_reports (tenant_id, device_id, deployment_id, target_name, state, "
                    "reason, reported_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                    "ON CONFLICT (device_id, deployment_id, target_name) DO UPDATE SET state = excluded.state, "
                    "reason = excluded.reason, reported_at = excluded.reported_at, updated_at = excluded.updated_at "
                    "WHERE device_update_reports.reported_at < excluded.reported_at "
                    "OR (device_update_reports.reported_at = excluded.reported_at AND " +
                        std::string(kStoredReportRank) + " <= " + std::string(kIncomingReportRank) + ")",
                    {report.tenant_id, report.device_id, report.deployment_id, report.target_name,
                     UpdateStateName(report.state), report.reason, report.reported_at, report.updated_at}));
    return upsert.rows_affected > 0;
  });
  return Explain(std::move(recorded), "recording an update report of device " + Quoted(report.device_id));
}

Expected<std::map<UpdateState, std::int64_t>> SqlStore::CountUpdateReports(std::string_view tenant_id,
                                                                           std::string_view deployment_id) {
  auto counts = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::map<UpdateState, std::int64_t>> {
    CITADEL_TRY(SqlResult deployment, connection.Execute("SELECT 1 FROM deployments WHERE id = $1 AND tenant_id = $2",
                                                         {deployment_id, tenant_id}));
    if (deployment.rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "deployment " + Quoted(deployment_id) + " not found");
    }
    CITADEL_TRY(SqlResult rows, connection.Execute("SELECT state, COUNT(*) FROM device_update_reports "
                                                   "WHERE tenant_id = $1 AND deployment_id = $2 GROUP BY state",
                                                   {tenant_id, deployment_id}));
    std::map<UpdateState, std::int64_t> result;
    for (UpdateState state : {UpdateState::kDownloading, UpdateState::kInstalling, UpdateState::kPendingReboot,
                              UpdateState::kCommitted, UpdateState::kFailed}) {
      result[state] = 0;
    }
    for (const SqlRow& row : rows.rows) {
      CITADEL_TRY(UpdateState state, Stored(ParseUpdateState(row.Text(0)), "update report"));
      result[state] = row.Int(1);
    }
    return result;
  });
  return Explain(std::move(counts), "counting the reports of deployment " + Quoted(deployment_id));
}

Expected<std::vector<UpdateReport>> SqlStore::ListUpdateReports(std::string_view tenant_id, std::string_view device_id,
                                                                std::int64_t limit) {
  CITADEL_TRY(std::int64_t bounded, CheckLimit(limit));
  auto reports = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection,
                    Select(kReportColumns,
                           "FROM device_update_reports WHERE tenant_id = $1 AND device_id = $2 "
                           "ORDER BY reported_at DESC, deployment_id, target_name LIMIT $3"),
                    {tenant_id, device_id, bounded}, ReportFromRow);
  });
  return Explain(std::move(reports), "listing the update reports of device " + Quoted(device_id));
}

// ---------------------------------------------------------------- group and device update settings

Expected<void> SqlStore::SetDeviceGroupUpdateSettings(std::string_view tenant_id, std::string_view group_id,
                                                      std::string_view os_feed, std::string_view maintenance_window) {
  CITADEL_TRY_VOID(RequireNonEmpty(os_feed, "OS feed"));
  auto updated = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult update, connection.Execute("UPDATE device_groups SET os_feed = $3, maintenance_window = $4 "
                                                     "WHERE tenant_id = $1 AND id = $2",
                                                     {tenant_id, group_id, os_feed, maintenance_window}));
    if (update.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "device group " + Quoted(group_id) + " not found");
    }
    return kOk;
  });
  return Explain(std::move(updated), "setting the update settings of device group " + Quoted(group_id));
}

Expected<std::vector<DeviceGroup>> SqlStore::ListDeviceGroupsByOsFeed(std::string_view tenant_id,
                                                                      std::string_view os_feed) {
  auto groups = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(
        connection,
        Select(kGroupColumns, "FROM device_groups WHERE tenant_id = $1 AND os_feed = $2 ORDER BY created_at, id"),
        {tenant_id, os_feed}, GroupFromRow);
  });
  return Explain(std::move(groups), "listing the device groups of OS feed " + Quoted(os_feed));
}

Expected<std::int64_t> SqlStore::CountDevices(std::string_view tenant_id, std::string_view group_id) {
  auto count = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    CITADEL_TRY(SqlResult result,
                connection.Execute("SELECT COUNT(*) FROM devices WHERE tenant_id = $1 AND device_group_id = $2",
                                   {tenant_id, group_id}));
    return result.rows.empty() ? 0 : result.rows.front().Int(0);
  });
  return Explain(std::move(count), "counting the devices of group " + Quoted(group_id));
}

Expected<bool> SqlStore::SetDeviceUpdateNow(std::string_view tenant_id, std::string_view device_id, bool update_now) {
  auto changed = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<bool> {
    // Conditional on the old value, so clearing is a take: one winner.
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE devices SET update_now = $3 WHERE id = $1 AND tenant_id = $2 "
                                   "AND update_now <> $3",
                                   {device_id, tenant_id, update_now}));
    if (update.rows_affected == 1) return true;
    CITADEL_TRY(SqlResult device,
                connection.Execute("SELECT 1 FROM devices WHERE id = $1 AND tenant_id = $2", {device_id, tenant_id}));
    if (device.rows.empty()) return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) + " not found");
    return false;
  });
  return Explain(std::move(changed), "setting update-now on device " + Quoted(device_id));
}

// ---------------------------------------------------------------- failure reporting

namespace {

constexpr std::string_view kIssueColumns =
    "id, tenant_id, product_id, signature, class, component_id, error_code, title, frames_json, state, regression, "
    "resolved_in_version, count, device_count, first_seen, last_seen";
Expected<FailureIssue> IssueFromRow(const SqlRow& row) {
  CITADEL_TRY(IssueState state, Stored(ParseIssueState(row.Text(9)), "failure issue"));
  FailureIssue issue;
  issue.id = row.Text(0);
  issue.tenant_id = row.Text(1);
  issue.product_id = row.Text(2);
  issue.signature = row.Text(3);
  issue.failure_class = row.Text(4);
  issue.component_id = row.Text(5);
  issue.error_code = row.Text(6);
  issue.title = row.Text(7);
  issue.frames_json = row.Text(8);
  issue.state = state;
  issue.regression = row.Bool(10);
  issue.resolved_in_version = row.Text(11);
  issue.count = row.Int(12);
  issue.device_count = row.Int(13);
  issue.first_seen = row.Int(14);
  issue.last_seen = row.Int(15);
  return issue;
}

constexpr std::string_view kFailureReportColumns =
    "device_id, report_id, tenant_id, issue_id, received_at, occurred_at, class, version, occurrences, body";
StoredFailureReport FailureReportFromRow(const SqlRow& row) {
  return StoredFailureReport{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4),
                             row.Int(5),  row.Text(6), row.Text(7), row.Int(8),  row.Text(9)};
}

constexpr std::string_view kSymbolModuleColumns = "tenant_id, build_id, name, symbols, functions, lines, uploaded_at";
SymbolModule SymbolModuleFromRow(const SqlRow& row) {
  return SymbolModule{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4), row.Int(5), row.Int(6)};
}

constexpr std::string_view kTelemetryColumns =
    "day, check_ins, max_uptime_seconds, min_free_memory_kb, app_restarts, rx_bytes, tx_bytes";
TelemetryDay TelemetryFromRow(const SqlRow& row) {
  return TelemetryDay{row.Int(0), row.Int(1), row.Int(2), row.Int(3), row.Int(4), row.Int(5), row.Int(6)};
}

constexpr std::int64_t kSecondsPerDay = 24 * 60 * 60;

Expected<void> RequireTenantDevice(SqlConnection& connection, std::string_view tenant_id, std::string_view device_id) {
  CITADEL_TRY(SqlResult device,
              connection.Execute("SELECT 1 FROM devices WHERE id = $1 AND tenant_id = $2", {device_id, tenant_id}));
  if (device.rows.empty()) return MakeError(ErrorCode::kNotFound, "device " + Quoted(device_id) + " not found");
  return kOk;
}

// Counts one new report into its issue's per-device or per-version row;
// returns whether the row is new (a device or version the issue had not seen).
Expected<bool> CountInto(SqlConnection& connection, std::string_view table, std::string_view key_column,
                         std::string_view tenant_id, std::string_view issue_id, std::string_view key,
                         std::int64_t occurrences, std::int64_t first, std::int64_t last) {
  const std::string table_name(table);
  const std::string column(key_column);
  CITADEL_TRY(SqlResult inserted,
              connection.Execute("INSERT INTO " + table_name + " (tenant_id, issue_id, " + column +
                                     ", count, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6) "
                                     "ON CONFLICT (issue_id, " +
                                     column + ") DO NOTHING",
                                 {tenant_id, issue_id, key, occurrences, first, last}));
  if (inserted.rows_affected == 1) return true;
  CITADEL_TRY_VOID(connection.Execute(
      "UPDATE " + table_name +
          " SET count = count + $3, first_seen = CASE WHEN first_seen > $4 THEN $4 ELSE first_seen END, "
          "last_seen = CASE WHEN last_seen < $5 THEN $5 ELSE last_seen END WHERE issue_id = $1 AND " +
          column + " = $2",
      {issue_id, key, occurrences, first, last}));
  return false;
}

// Counts one new report into its issue (created open when new).
Expected<std::string> CountIntoIssue(SqlConnection& connection, std::string_view tenant_id, std::string_view device_id,
                                     const FailureReportRecord& report, std::int64_t first, std::int64_t last,
                                     const ReopensIssue& reopens) {
  auto created = connection.Execute(
      "INSERT INTO failure_issues (id, tenant_id, product_id, signature, class, component_id, error_code, title, "
      "frames_json, state, regression, resolved_in_version, count, device_count, first_seen, last_seen) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', 0, '', 0, 0, $10, $11) "
      "ON CONFLICT (tenant_id, product_id, signature) DO NOTHING",
      {report.new_issue_id, tenant_id, report.product_id, report.signature, report.failure_class, report.component_id,
       report.error_code, report.title, report.frames_json, first, last});
  if (!created) {
    if (created.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kInvalidArgument, "product " + Quoted(report.product_id) + " not found");
    }
    return std::unexpected(std::move(created).error());
  }
  CITADEL_TRY(SqlResult found, connection.Execute("SELECT id, state, resolved_in_version FROM failure_issues "
                                                  "WHERE tenant_id = $1 AND product_id = $2 AND signature = $3",
                                                  {tenant_id, report.product_id, report.signature}));
  if (found.rows.empty()) return MakeError(ErrorCode::kInternal, "the issue just upserted is missing");
  const std::string issue_id = found.rows.front().Text(0);
  CITADEL_TRY(IssueState state, Stored(ParseIssueState(found.rows.front().Text(1)), "failure issue"));
  const std::string resolved_in = found.rows.front().Text(2);
  // A resolved issue recurring in a newer version is a regression; older
  // versions (devices not updated yet) are counted and leave it resolved.
  const bool reopen = state == IssueState::kResolved && reopens && reopens(resolved_in, report.version);

  CITADEL_TRY(bool new_device, CountInto(connection, "failure_issue_devices", "device_id", tenant_id, issue_id,
                                         device_id, report.occurrences, first, last));
  CITADEL_TRY_VOID(CountInto(connection, "failure_issue_versions", "version", tenant_id, issue_id, report.version,
                             report.occurrences, first, last));
  std::string update =
      "UPDATE failure_issues SET count = count + $3, device_count = device_count + $4, "
      "first_seen = CASE WHEN first_seen > $5 THEN $5 ELSE first_seen END, "
      "last_seen = CASE WHEN last_seen < $6 THEN $6 ELSE last_seen END, title = $7, frames_json = $8";
  if (reopen) update += ", state = 'open', regression = 1, resolved_in_version = ''";
  update += " WHERE id = $1 AND tenant_id = $2";
  CITADEL_TRY_VOID(connection.Execute(
      update, {issue_id, tenant_id, report.occurrences, static_cast<std::int64_t>(new_device ? 1 : 0), first, last,
               report.title, report.frames_json}));
  return issue_id;
}

}  // namespace

Expected<FailureIngestResult> SqlStore::IngestFailureReports(std::string_view tenant_id, std::string_view device_id,
                                                             const std::vector<FailureReportRecord>& reports,
                                                             std::int64_t dropped, std::int64_t received_at,
                                                             const ReopensIssue& reopens) {
  CITADEL_TRY_VOID(RequireNonEmpty(tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(device_id, "device id"));
  for (const FailureReportRecord& report : reports) {
    CITADEL_TRY_VOID(RequireNonEmpty(report.report_id, "report id"));
    CITADEL_TRY_VOID(RequireNonEmpty(report.product_id, "product id"));
    CITADEL_TRY_VOID(RequireNonEmpty(report.signature, "signature"));
    CITADEL_TRY_VOID(RequireNonEmpty(report.new_issue_id, "issue id"));
    CITADEL_TRY_VOID(RequireNonEmpty(report.failure_class, "failure class"));
    if (report.occurrences < 1) return MakeError(ErrorCode::kInvalidArgument, "occurrences must be at least 1");
  }
  auto ingested = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<FailureIngestResult> {
    CITADEL_TRY_VOID(RequireTenantDevice(connection, tenant_id, device_id));
    FailureIngestResult result;
    for (const FailureReportRecord& report : reports) result.acknowledged.push_back(report.report_id);
    // Issues are updated in signature order, so two batches touching the
    // same issues lock them in the same order (no deadlock on PostgreSQL).
    std::vector<const FailureReportRecord*> ordered;
    ordered.reserve(reports.size());
    for (const FailureReportRecord& report : reports) ordered.push_back(&report);
    std::stable_sort(ordered.begin(), ordered.end(), [](const FailureReportRecord* a, const FailureReportRecord* b) {
      return std::tie(a->product_id, a->signature) < std::tie(b->product_id, b->signature);
    });
    for (const FailureReportRecord* next : ordered) {
      const FailureReportRecord& report = *next;
      // Device clocks run ahead sometimes; nothing is seen after it arrived.
      const std::int64_t first = report.occurred_at > 0 ? std::min(report.occurred_at, received_at) : received_at;
      const std::int64_t last = std::clamp(report.last_occurred_at, first, received_at);
      // The idempotency check and the claim in one statement: of a batch
      // and its retry (on any replica), exactly one inserts the row.
      CITADEL_TRY(SqlResult inserted,
                  connection.Execute("INSERT INTO failure_reports (device_id, report_id, tenant_id, issue_id, "
                                     "received_at, occurred_at, class, version, occurrences, body) "
                                     "VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $9) "
                                     "ON CONFLICT (device_id, report_id) DO NOTHING",
                                     {device_id, report.report_id, tenant_id, received_at, first, report.failure_class,
                                      report.version, report.occurrences, report.body}));
      if (inserted.rows_affected == 0) continue;
      ++result.new_reports;
      CITADEL_TRY(std::string issue_id, CountIntoIssue(connection, tenant_id, device_id, report, first, last, reopens));
      CITADEL_TRY_VOID(
          connection.Execute("UPDATE failure_reports SET issue_id = $3 WHERE device_id = $1 AND report_id = $2",
                             {device_id, report.report_id, issue_id}));
    }
    if (result.new_reports > 0 && dropped > 0) {
      CITADEL_TRY_VOID(connection.Execute("UPDATE devices SET reports_dropped = reports_dropped + $2 WHERE id = $1",
                                          {device_id, dropped}));
    }
    return result;
  });
  if (!ingested &&
      (ingested.error().code() == ErrorCode::kInvalidArgument || ingested.error().code() == ErrorCode::kNotFound)) {
    return ingested;
  }
  return Explain(std::move(ingested), "ingesting the failure reports of device " + Quoted(device_id));
}

Expected<std::vector<FailureIssue>> SqlStore::ListFailureIssues(const FailureIssueFilter& filter) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY(std::int64_t limit, CheckLimit(filter.limit));
  DynamicQuery query{Select(kIssueColumns, "FROM failure_issues WHERE tenant_id = $1"), {SqlValue(filter.tenant_id)}};
  query.AndEqualIfSet("product_id", filter.product_id);
  if (filter.state) query.AndEqualIfSet("state", IssueStateName(*filter.state));
  query.AndEqualIfSet("class", filter.failure_class);
  if (filter.since > 0) query.sql += " AND last_seen >= " + query.Bind(filter.since);
  if (!filter.after_id.empty()) {
    const std::string seen = query.Bind(filter.after_last_seen);
    const std::string id = query.Bind(filter.after_id);
    query.sql += " AND (last_seen < " + seen + " OR (last_seen = " + seen + " AND id < " + id + "))";
  }
  query.sql += " ORDER BY last_seen DESC, id DESC LIMIT " + query.Bind(limit);
  auto issues = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::vector<FailureIssue>> {
    CITADEL_TRY(std::vector<FailureIssue> page, FetchAll(connection, query.sql, query.params, IssueFromRow));
    if (page.empty()) return page;
    // The page's versions in one query.
    DynamicQuery versions{"SELECT issue_id, version FROM failure_issue_versions WHERE tenant_id = $1 AND issue_id IN (",
                          {SqlValue(filter.tenant_id)}};
    for (std::size_t i = 0; i < page.size(); ++i) versions.sql += (i == 0 ? "" : ", ") + versions.Bind(page[i].id);
    versions.sql += ") ORDER BY issue_id, first_seen, version";
    CITADEL_TRY(SqlResult rows, connection.Execute(versions.sql, versions.params));
    std::map<std::string, std::vector<std::string>> by_issue;
    for (const SqlRow& row : rows.rows) by_issue[row.Text(0)].push_back(row.Text(1));
    for (FailureIssue& issue : page) issue.versions = std::move(by_issue[issue.id]);
    return page;
  });
  return Explain(std::move(issues), "listing failure issues");
}

Expected<FailureIssue> SqlStore::GetFailureIssue(std::string_view tenant_id, std::string_view issue_id) {
  auto issue = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<FailureIssue> {
    CITADEL_TRY(FailureIssue found,
                FetchOne(connection, Select(kIssueColumns, "FROM failure_issues WHERE tenant_id = $1 AND id = $2"),
                         {tenant_id, issue_id}, "issue " + Quoted(issue_id) + " not found", IssueFromRow));
    CITADEL_TRY(SqlResult rows, connection.Execute("SELECT version FROM failure_issue_versions WHERE tenant_id = $1 "
                                                   "AND issue_id = $2 ORDER BY first_seen, version",
                                                   {tenant_id, issue_id}));
    for (const SqlRow& row : rows.rows) found.versions.push_back(row.Text(0));
    return found;
  });
  return Explain(std::move(issue), "reading issue " + Quoted(issue_id));
}

Expected<std::vector<FailureIssueDevice>> SqlStore::ListFailureIssueDevices(std::string_view tenant_id,
                                                                            std::string_view issue_id,
                                                                            std::int64_t limit) {
  CITADEL_TRY(std::int64_t bounded, CheckLimit(limit));
  auto devices = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection,
                    "SELECT device_id, count, first_seen, last_seen FROM failure_issue_devices "
                    "WHERE tenant_id = $1 AND issue_id = $2 ORDER BY last_seen DESC, device_id LIMIT $3",
                    {tenant_id, issue_id, bounded}, [](const SqlRow& row) {
                      return FailureIssueDevice{row.Text(0), row.Int(1), row.Int(2), row.Int(3)};
                    });
  });
  return Explain(std::move(devices), "listing the devices of issue " + Quoted(issue_id));
}

Expected<std::vector<FailureIssueVersion>> SqlStore::ListFailureIssueVersions(std::string_view tenant_id,
                                                                              std::string_view issue_id) {
  auto versions = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection,
                    "SELECT version, count, first_seen, last_seen FROM failure_issue_versions "
                    "WHERE tenant_id = $1 AND issue_id = $2 ORDER BY first_seen, version",
                    {tenant_id, issue_id}, [](const SqlRow& row) {
                      return FailureIssueVersion{row.Text(0), row.Int(1), row.Int(2), row.Int(3)};
                    });
  });
  return Explain(std::move(versions), "listing the versions of issue " + Quoted(issue_id));
}

Expected<FailureIssue> SqlStore::SetFailureIssueState(std::string_view tenant_id, std::string_view issue_id,
                                                      IssueState state, std::string_view resolved_in_version) {
  auto updated = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    const bool resolved = state == IssueState::kResolved;
    CITADEL_TRY(SqlResult update, connection.Execute("UPDATE failure_issues SET state = $3, resolved_in_version = $4, "
                                                     "regression = CASE WHEN $5 = 1 THEN 0 ELSE regression END "
                                                     "WHERE tenant_id = $1 AND id = $2",
                                                     {tenant_id, issue_id, IssueStateName(state),
                                                      resolved ? resolved_in_version : std::string_view(), resolved}));
    if (update.rows_affected == 0) return MakeError(ErrorCode::kNotFound, "issue " + Quoted(issue_id) + " not found");
    return kOk;
  });
  if (!updated) return Explain(Expected<FailureIssue>(std::unexpected(updated.error())), "changing an issue's state");
  return GetFailureIssue(tenant_id, issue_id);
}

Expected<std::vector<StoredFailureReport>> SqlStore::ListFailureReports(const FailureReportFilter& filter) {
  CITADEL_TRY_VOID(RequireNonEmpty(filter.tenant_id, "tenant id"));
  CITADEL_TRY(std::int64_t limit, CheckLimit(filter.limit));
  if (filter.device_id.empty() == filter.issue_id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "name exactly one of a device and an issue");
  }
  DynamicQuery query{
      Select(kFailureReportColumns, "FROM failure_reports WHERE tenant_id = $1 AND issue_id IS NOT NULL"),
      {SqlValue(filter.tenant_id)}};
  query.AndEqualIfSet("device_id", filter.device_id);
  query.AndEqualIfSet("issue_id", filter.issue_id);
  if (!filter.after_report_id.empty()) {
    const std::string at = query.Bind(filter.after_occurred_at);
    const std::string id = query.Bind(filter.after_report_id);
    query.sql += " AND (occurred_at < " + at + " OR (occurred_at = " + at + " AND report_id < " + id + "))";
  }
  query.sql += " ORDER BY occurred_at DESC, report_id DESC LIMIT " + query.Bind(limit);
  auto reports = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection, query.sql, query.params, FailureReportFromRow);
  });
  return Explain(std::move(reports), "listing failure reports");
}

Expected<std::int64_t> SqlStore::PruneFailureReports(std::int64_t before) {
  auto pruned = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    CITADEL_TRY(SqlResult result, connection.Execute("DELETE FROM failure_reports WHERE received_at < $1", {before}));
    return result.rows_affected;
  });
  return Explain(std::move(pruned), "pruning failure reports");
}

Expected<void> SqlStore::PutSymbolModule(const SymbolModule& module) {
  CITADEL_TRY_VOID(RequireNonEmpty(module.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(module.build_id, "build id"));
  auto put = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(connection.Execute(
        "INSERT INTO symbol_modules (tenant_id, build_id, name, symbols, functions, lines, uploaded_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, build_id) DO UPDATE SET name = excluded.name, "
        "symbols = excluded.symbols, functions = excluded.functions, lines = excluded.lines, "
        "uploaded_at = excluded.uploaded_at",
        {module.tenant_id, module.build_id, module.name, module.symbols, module.functions, module.lines,
         module.uploaded_at}));
    return kOk;
  });
  return Explain(std::move(put), "storing the symbols of build id " + Quoted(module.build_id), {},
                 "tenant " + Quoted(module.tenant_id) + " not found");
}

Expected<SymbolModule> SqlStore::GetSymbolModule(std::string_view tenant_id, std::string_view build_id) {
  auto module = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchOne(connection,
                    Select(kSymbolModuleColumns, "FROM symbol_modules WHERE tenant_id = $1 AND build_id = $2"),
                    {tenant_id, build_id}, "no symbols for build id " + Quoted(build_id), SymbolModuleFromRow);
  });
  return Explain(std::move(module), "reading the symbols of build id " + Quoted(build_id));
}

namespace {

Expected<void> CheckTelemetrySample(const TelemetrySample& sample) {
  CITADEL_TRY_VOID(RequireNonEmpty(sample.tenant_id, "tenant id"));
  CITADEL_TRY_VOID(RequireNonEmpty(sample.device_id, "device id"));
  if (sample.now < 0) return MakeError(ErrorCode::kInvalidArgument, "time must not be negative");
  return kOk;
}

// The day's telemetry row (inside the caller's transaction, which has
// checked that the device is the tenant's).
Expected<void> WriteTelemetryRow(SqlConnection& connection, const TelemetrySample& sample) {
  const std::int64_t day = sample.now - (sample.now % kSecondsPerDay);
  CITADEL_TRY(SqlResult previous,
              connection.Execute("SELECT counter_uptime_seconds, counter_app_restarts, counter_rx_bytes, "
                                 "counter_tx_bytes FROM device_telemetry WHERE device_id = $1 "
                                 "ORDER BY day DESC LIMIT 1",
                                 {sample.device_id}));
  std::int64_t uptime = 0;
  std::int64_t restarts = 0;
  std::int64_t rx = 0;
  std::int64_t tx = 0;
  if (!previous.rows.empty()) {
    const SqlRow& row = previous.rows.front();
    uptime = row.Int(0);
    restarts = row.Int(1);
    rx = row.Int(2);
    tx = row.Int(3);
  }
  std::int64_t delta_restarts = 0;
  std::int64_t delta_rx = 0;
  std::int64_t delta_tx = 0;
  if (sample.has_counters) {
    // Uptime going down means the runtime restarted: its counters began
    // again at zero, so every counter's value is new growth.
    const bool restarted = sample.uptime_seconds < uptime;
    delta_restarts =
        restarted ? std::max<std::int64_t>(sample.app_restarts, 0) : CounterDelta(restarts, sample.app_restarts);
    delta_rx = restarted ? std::max<std::int64_t>(sample.rx_bytes, 0) : CounterDelta(rx, sample.rx_bytes);
    delta_tx = restarted ? std::max<std::int64_t>(sample.tx_bytes, 0) : CounterDelta(tx, sample.tx_bytes);
    restarts = sample.app_restarts;
    rx = sample.rx_bytes;
    tx = sample.tx_bytes;
  }
  CITADEL_TRY_VOID(connection.Execute(
      "INSERT INTO device_telemetry (device_id, day, tenant_id, check_ins, max_uptime_seconds, min_free_memory_kb, "
      "app_restarts, rx_bytes, tx_bytes, counter_uptime_seconds, counter_app_restarts, counter_rx_bytes, "
      "counter_tx_bytes) VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $4, $9, $10, $11) "
      "ON CONFLICT (device_id, day) DO UPDATE SET check_ins = device_telemetry.check_ins + 1, "
      "max_uptime_seconds = CASE WHEN excluded.max_uptime_seconds > device_telemetry.max_uptime_seconds "
      "THEN excluded.max_uptime_seconds ELSE device_telemetry.max_uptime_seconds END, "
      "min_free_memory_kb = CASE WHEN excluded.min_free_memory_kb < device_telemetry.min_free_memory_kb "
      "THEN excluded.min_free_memory_kb ELSE device_telemetry.min_free_memory_kb END, "
      "app_restarts = device_telemetry.app_restarts + excluded.app_restarts, "
      "rx_bytes = device_telemetry.rx_bytes + excluded.rx_bytes, "
      "tx_bytes = device_telemetry.tx_bytes + excluded.tx_bytes, "
      "counter_uptime_seconds = excluded.counter_uptime_seconds, "
      "counter_app_restarts = excluded.counter_app_restarts, counter_rx_bytes = excluded.counter_rx_bytes, "
      "counter_tx_bytes = excluded.counter_tx_bytes",
      {sample.device_id, day, sample.tenant_id, sample.uptime_seconds, sample.free_memory_kb, delta_restarts, delta_rx,
       delta_tx, restarts, rx, tx}));
  return kOk;
}

}  // namespace

Expected<void> SqlStore::RecordTelemetry(const TelemetrySample& sample) {
  CITADEL_TRY_VOID(CheckTelemetrySample(sample));
  auto recorded = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(RequireTenantDevice(connection, sample.tenant_id, sample.device_id));
    return WriteTelemetryRow(connection, sample);
  });
  if (!recorded && recorded.error().code() == ErrorCode::kNotFound) return recorded;
  return Explain(std::move(recorded), "recording the telemetry of device " + Quoted(sample.device_id));
}

Expected<void> SqlStore::RecordCheckInWithTelemetry(std::string_view os_version, std::string_view runtime_version,
                                                    const TelemetrySample& sample) {
  CITADEL_TRY_VOID(CheckTelemetrySample(sample));
  auto recorded = InTransaction(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    // The update finds the row only when the device is the tenant's.
    CITADEL_TRY_VOID(UpdateCheckIn(connection, sample.device_id, os_version, runtime_version, sample.uptime_seconds,
                                   sample.free_memory_kb, sample.now, sample.tenant_id));
    return WriteTelemetryRow(connection, sample);
  });
  if (!recorded && recorded.error().code() == ErrorCode::kNotFound) return recorded;
  return Explain(std::move(recorded), "recording the check-in of device " + Quoted(sample.device_id));
}

Expected<std::vector<TelemetryDay>> SqlStore::ListTelemetry(std::string_view tenant_id, std::string_view device_id,
                                                            std::int64_t since_day) {
  auto days = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection,
                    Select(kTelemetryColumns,
                           "FROM device_telemetry WHERE tenant_id = $1 AND device_id = $2 AND day >= $3 ORDER BY day"),
                    {tenant_id, device_id, since_day}, TelemetryFromRow);
  });
  return Explain(std::move(days), "listing the telemetry of device " + Quoted(device_id));
}

Expected<std::int64_t> SqlStore::PruneTelemetry(std::int64_t before_day) {
  auto pruned = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<std::int64_t> {
    CITADEL_TRY(SqlResult result, connection.Execute("DELETE FROM device_telemetry WHERE day < $1", {before_day}));
    return result.rows_affected;
  });
  return Explain(std::move(pruned), "pruning telemetry");
}

Expected<void> SqlStore::SetDeviceGroupCrashDumps(std::string_view tenant_id, std::string_view group_id,
                                                  bool crash_dumps) {
  auto updated = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY(SqlResult update,
                connection.Execute("UPDATE device_groups SET crash_dumps = $3 WHERE tenant_id = $1 AND id = $2",
                                   {tenant_id, group_id, crash_dumps}));
    if (update.rows_affected == 0) {
      return MakeError(ErrorCode::kNotFound, "device group " + Quoted(group_id) + " not found");
    }
    return kOk;
  });
  return Explain(std::move(updated), "setting crash dumps of device group " + Quoted(group_id));
}

// ---------------------------------------------------------------- audit

Expected<void> SqlStore::AppendAudit(const AuditEvent& event) {
  CITADEL_TRY_VOID(RequireNonEmpty(event.actor, "audit actor"));
  CITADEL_TRY_VOID(RequireNonEmpty(event.action, "audit action"));
  const std::string_view details = event.details_json.empty() ? std::string_view("{}") : event.details_json;
  auto appended = WithConnection(*pool_, [&](SqlConnection& connection) -> Expected<void> {
    CITADEL_TRY_VOID(
        connection.Execute("INSERT INTO audit_events (event_time, tenant_id, actor, action, target, details_json) "
                           "VALUES ($1, $2, $3, $4, $5, $6)",
                           {event.time, event.tenant_id, event.actor, event.action, event.target, details}));
    return kOk;
  });
  return Explain(std::move(appended), "appending an audit event");
}

Expected<std::vector<AuditEvent>> SqlStore::ListAudit(std::string_view tenant_id, std::int64_t limit) {
  CITADEL_TRY(std::int64_t bounded, CheckLimit(limit));
  auto events = WithConnection(*pool_, [&](SqlConnection& connection) {
    return FetchAll(connection,
                    Select(kAuditColumns, "FROM audit_events WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2"),
                    {tenant_id, bounded}, AuditFromRow);
  });
  return Explain(std::move(events), "listing audit events");
}

}  // namespace citadel::store
