// Store implemented once in SQL over a SqlConnectionPool; the SQLite and
// PostgreSQL backends only supply connections (sql_connection.hpp).
//
// Every method takes one connection from the pool for its duration and runs
// as one transaction: a single statement in autocommit, or an explicit
// BEGIN/COMMIT when it needs several. Invariants that two replicas could
// race on (single-use nonces, claim-once) are single conditional UPDATEs,
// so the database decides the one winner.
//
// Internal to citadel_store: callers use store.hpp and OpenStore().
#pragma once

#include <memory>

#include "store/sql_connection.hpp"
#include "store/store.hpp"

namespace citadel::store {

// Upper bound on the rows one List call returns; larger limits are clamped
// (pages continue with DeviceFilter::after_id).
inline constexpr std::int64_t kMaxListLimit = 1000;

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<SqlConnectionPool> pool);

  std::string_view Backend() const override;
  void SetCallObserver(std::function<void(double seconds)> observer) override;
  Expected<void> Migrate() override;
  // Applies pending migrations up to `version` only (Migrate() is
  // MigrateTo(LatestSchemaVersion())). Never downgrades: a database past
  // `version` is left alone. For tests that build an older database and for
  // staged upgrades.
  Expected<void> MigrateTo(int version);
  Expected<int> SchemaVersion() override;

  Expected<void> CreateTenant(const Tenant& tenant, const TenantCa& ca) override;
  Expected<Tenant> GetTenant(std::string_view id) override;
  Expected<std::vector<Tenant>> ListTenants() override;
  Expected<TenantCa> GetTenantCa(std::string_view tenant_id) override;

  Expected<void> CreateApiToken(const ApiToken& token) override;
  Expected<ApiToken> FindApiTokenByHash(std::string_view token_hash) override;
  Expected<std::vector<ApiToken>> ListApiTokens(std::string_view tenant_id) override;
  Expected<void> RevokeApiToken(std::string_view tenant_id, std::string_view token_id) override;

  Expected<void> CreateProduct(const Product& product, const std::vector<DeviceGroup>& default_groups) override;
  Expected<Product> GetProduct(std::string_view tenant_id, std::string_view product_id) override;
  Expected<std::vector<Product>> ListProducts(std::string_view tenant_id) override;
  Expected<void> CreateDeviceGroup(const DeviceGroup& group) override;
  Expected<DeviceGroup> GetDeviceGroup(std::string_view tenant_id, std::string_view group_id) override;
  Expected<std::vector<DeviceGroup>> ListDeviceGroups(std::string_view tenant_id, std::string_view product_id) override;

  Expected<void> RecordDeviceSeen(std::string_view device_id, std::string_view rot_backend, std::int64_t now) override;
  Expected<void> ClaimDevice(std::string_view device_id, std::string_view tenant_id, std::string_view product_id,
                             std::string_view group_id, std::int64_t now) override;
  Expected<Device> GetDevice(std::string_view device_id) override;
  Expected<std::vector<Device>> ListDevices(const DeviceFilter& filter) override;
  Expected<void> RecordAttestation(std::string_view device_id, std::string_view verdict, std::string_view os_version,
                                   std::int64_t now) override;
  Expected<void> RecordCheckIn(std::string_view device_id, std::string_view os_version,
                               std::string_view runtime_version, std::int64_t uptime_seconds,
                               std::int64_t free_memory_kb, std::int64_t now) override;

  Expected<void> CreateNonce(std::string_view nonce_hash, std::int64_t expires_at) override;
  Expected<NonceResult> ConsumeNonce(std::string_view nonce_hash, std::int64_t now) override;
  Expected<std::int64_t> PurgeExpiredNonces(std::int64_t before) override;

  Expected<void> CreateTpmActivation(const TpmActivation& activation, std::int64_t now) override;
  Expected<TpmActivation> TakeTpmActivation(std::string_view id, std::int64_t now) override;
  Expected<void> BindTpmKey(const TpmBinding& binding) override;
  Expected<std::optional<TpmBinding>> GetTpmBinding(std::string_view device_id) override;

  Expected<void> RecordCertificate(const IssuedCertificate& certificate) override;
  Expected<IssuedCertificate> GetCertificate(std::string_view serial_hex) override;
  Expected<void> RevokeCertificate(std::string_view serial_hex) override;

  Expected<void> AddPolicyRule(const PolicyRule& rule) override;
  Expected<void> RemovePolicyRule(std::string_view tenant_id, std::string_view kind, std::string_view value) override;
  Expected<std::vector<PolicyRule>> ListPolicyRules(std::string_view tenant_id) override;

  Expected<void> AddPublisherKey(const PublisherKey& key, std::int64_t max_active) override;
  Expected<std::vector<PublisherKey>> ListPublisherKeys(std::string_view tenant_id, bool include_revoked) override;
  Expected<void> RevokePublisherKey(std::string_view tenant_id, std::string_view key_id, std::int64_t now) override;

  Expected<void> ReplaceDevelopmentCapability(const DevelopmentCapability& capability) override;
  Expected<DevelopmentCapability> GetDevelopmentCapability(std::string_view tenant_id,
                                                           std::string_view device_id) override;
  Expected<void> RevokeDevelopmentCapability(std::string_view tenant_id, std::string_view device_id,
                                             std::int64_t now) override;

  Expected<void> PutRepositoryKey(const RepositoryKey& key) override;
  Expected<RepositoryKey> GetRepositoryKey(std::string_view tenant_id, TufRepository repository, TufRole role) override;
  Expected<std::vector<RepositoryKey>> ListRepositoryKeys(std::string_view tenant_id) override;

  Expected<void> AddRepositoryMetadata(const RepositoryMetadata& metadata) override;
  Expected<RepositoryMetadata> GetRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                     std::string_view scope, TufRole role,
                                                     std::int64_t version) override;
  Expected<RepositoryMetadata> GetLatestRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                           std::string_view scope, TufRole role) override;
  Expected<std::int64_t> PruneRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                 std::string_view scope, TufRole role,
                                                 std::int64_t keep_latest) override;

  Expected<void> AddImage(const Image& image) override;
  Expected<Image> GetImage(std::string_view tenant_id, std::string_view sha256) override;
  Expected<Image> GetImageByTargetName(std::string_view tenant_id, std::string_view target_name) override;
  Expected<std::vector<Image>> ListImages(const ImageFilter& filter) override;
  Expected<ImageDelta> AddImageDelta(const ImageDelta& delta) override;
  Expected<ImageDelta> GetImageDelta(std::string_view tenant_id, std::string_view from_sha256,
                                     std::string_view to_sha256) override;

  Expected<void> CreateDeployment(const Deployment& deployment, const std::vector<std::string>& supersede) override;
  Expected<Deployment> GetDeployment(std::string_view tenant_id, std::string_view deployment_id) override;
  Expected<std::vector<Deployment>> ListDeployments(const DeploymentFilter& filter) override;
  Expected<void> UpdateDeployment(std::string_view tenant_id, std::string_view deployment_id,
                                  DeploymentState expected_state, DeploymentState new_state, std::int64_t new_percent,
                                  std::int64_t updated_at) override;

  Expected<bool> RecordUpdateReport(const UpdateReport& report) override;
  Expected<std::map<UpdateState, std::int64_t>> CountUpdateReports(std::string_view tenant_id,
                                                                   std::string_view deployment_id) override;
  Expected<std::vector<UpdateReport>> ListUpdateReports(std::string_view tenant_id, std::string_view device_id,
                                                        std::int64_t limit) override;

  Expected<void> SetDeviceGroupUpdateSettings(std::string_view tenant_id, std::string_view group_id,
                                              std::string_view os_feed, std::string_view maintenance_window) override;
  Expected<std::vector<DeviceGroup>> ListDeviceGroupsByOsFeed(std::string_view tenant_id,
                                                              std::string_view os_feed) override;
  Expected<std::int64_t> CountDevices(std::string_view tenant_id, std::string_view group_id) override;
  Expected<std::int64_t> CountDevicesUpTo(const DeviceFilter& filter, std::int64_t at_most) override;
  Expected<bool> SetDeviceUpdateNow(std::string_view tenant_id, std::string_view device_id, bool update_now) override;

  Expected<FailureIngestResult> IngestFailureReports(std::string_view tenant_id, std::string_view device_id,
                                                     const std::vector<FailureReportRecord>& reports,
                                                     std::int64_t dropped, std::int64_t received_at,
                                                     const ReopensIssue& reopens) override;
  Expected<std::vector<FailureIssue>> ListFailureIssues(const FailureIssueFilter& filter) override;
  Expected<FailureIssue> GetFailureIssue(std::string_view tenant_id, std::string_view issue_id) override;
  Expected<std::vector<FailureIssueDevice>> ListFailureIssueDevices(std::string_view tenant_id,
                                                                    std::string_view issue_id,
                                                                    std::int64_t limit) override;
  Expected<std::vector<FailureIssueVersion>> ListFailureIssueVersions(std::string_view tenant_id,
                                                                      std::string_view issue_id) override;
  Expected<FailureIssue> SetFailureIssueState(std::string_view tenant_id, std::string_view issue_id, IssueState state,
                                              std::string_view resolved_in_version) override;
  Expected<std::vector<StoredFailureReport>> ListFailureReports(const FailureReportFilter& filter) override;
  Expected<std::int64_t> PruneFailureReports(std::int64_t before) override;
  Expected<void> PutSymbolModule(const SymbolModule& module) override;
  Expected<SymbolModule> GetSymbolModule(std::string_view tenant_id, std::string_view build_id) override;
  Expected<void> RecordTelemetry(const TelemetrySample& sample) override;
  Expected<void> RecordCheckInWithTelemetry(std::string_view os_version, std::string_view runtime_version,
                                            const TelemetrySample& sample) override;
  Expected<std::vector<TelemetryDay>> ListTelemetry(std::string_view tenant_id, std::string_view device_id,
                                                    std::int64_t since_day) override;
  Expected<std::int64_t> PruneTelemetry(std::int64_t before_day) override;
  Expected<void> SetDeviceGroupCrashDumps(std::string_view tenant_id, std::string_view group_id,
                                          bool crash_dumps) override;

  Expected<void> AppendAudit(const AuditEvent& event) override;
  Expected<std::vector<AuditEvent>> ListAudit(std::string_view tenant_id, std::int64_t limit) override;

 private:
  std::unique_ptr<SqlConnectionPool> pool_;
};

}  // namespace citadel::store
