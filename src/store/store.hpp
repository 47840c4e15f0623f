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
#include <functional>
#include <map>
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

// The OS feed a device group follows unless told otherwise.
inline constexpr std::string_view kDefaultOsFeed = "retail";

struct DeviceGroup {
  std::string id;
  std::string tenant_id;
  std::string product_id;
  std::string name;
  std::int64_t created_at = 0;
  // Over-the-air updates (since schema v3): the OS feed the group follows
  // (an OS deployment to a feed reaches every group following it) and the
  // group's maintenance window, JSON text as the service validated it or ""
  // for "any time". The store does not interpret the window.
  std::string os_feed = std::string(kDefaultOsFeed);
  std::string maintenance_window{};
  // Failure reporting (since schema v4): devices of the group attach crash
  // dumps (the crashing thread's stack) to app crash reports.
  bool crash_dumps = false;
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
  // "Update now" (since schema v3): the next check-in reply tells the device
  // to refresh and install at once, outside its maintenance window.
  bool update_now = false;
  // Failure reports the device's full queue dropped, as it told the service
  // (since schema v4).
  std::int64_t reports_dropped = 0;
};

// A device's health in the registry, judged at a time `now` (since schema
// v6; the definition is the store's, so every listing and count agrees):
//
//   healthy    its last attestation was accepted (last_verdict "accepted"),
//              its current certificate is not revoked, and that certificate
//              is still valid at `now` (certificate_expires_at > now);
//   unhealthy  anything else: never attested, attestation refused (any
//              other verdict, including "accepted-unclaimed" until the
//              claimed device attests again), current certificate revoked,
//              or no certificate valid at `now` (none issued, or it lapsed
//              because the device did not attest again in time).
//
// Health needs no stored status: "accepted and not revoked" is indexed as
// an expression and the expiry is compared with `now` at query time, so a
// certificate lapsing turns its device unhealthy without any write.
enum class DeviceHealth { kAny, kHealthy, kUnhealthy };
// "" (any) | "healthy" | "unhealthy"
std::string_view DeviceHealthName(DeviceHealth health);
// The same definition for one device already read (e.g. to show it next to
// a listed device): last_verdict "accepted", not revoked, and
// certificate_expires_at > now.
bool IsDeviceHealthy(const Device& device, std::int64_t now);
// "healthy" | "unhealthy"; anything else is kInvalidArgument (for callers
// turning a query parameter into a filter; "" is not accepted: leave the
// filter at kAny instead).
Expected<DeviceHealth> ParseDeviceHealth(std::string_view name);

// Which claimed devices of a tenant ListDevices returns. Every combination of
// the optional fields is answered from index ranges read in id order
// (keyset pagination). A page reads at most two ranges of `limit` entries
// plus, with a health filter, a probe of at most 1,001 entries of the
// expiry index. One cost depends on the data: when more than 1,000 of the
// tenant's accepted devices are on the wanted side of `now` (lapsed for
// "unhealthy", valid for "healthy"), the filter's accepted devices are read
// in id order until `limit` of them match, about limit / (their share)
// index entries (on SQLite the expiry is checked in the index entry).
struct DeviceFilter {
  std::string tenant_id;                     // required
  std::string device_group_id;               // optional
  std::string os_version;                    // optional
  std::int64_t limit = 100;                  // > 0; values above 1000 are clamped to 1000
  std::string after_id;                      // keyset pagination: ids > after_id
  DeviceHealth health = DeviceHealth::kAny;  // optional (see DeviceHealth)
  std::int64_t now = 0;                      // the time health is judged at; > 0 when health is set
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

// ---------------------------------------------------------------- updates
// Over-the-air updates (docs/ARCHITECTURE.md, "Over-the-air updates"). Each
// enum is stored as its name; Parse* refuse anything else with
// kInvalidArgument, so they also validate names arriving from callers.

// A tenant's two TUF repositories (Uptane's split): the image repository
// says what exists and is genuine, the director what a group should run.
enum class TufRepository { kImage, kDirector };
std::string_view TufRepositoryName(TufRepository repository);  // "image" | "director"
Expected<TufRepository> ParseTufRepository(std::string_view name);

// TUF's top-level roles, named as in the metadata's "_type".
enum class TufRole { kRoot, kTargets, kSnapshot, kTimestamp };
std::string_view TufRoleName(TufRole role);  // "root" | "targets" | "snapshot" | "timestamp"
Expected<TufRole> ParseTufRole(std::string_view name);

enum class ImageKind { kApp, kOs };
std::string_view ImageKindName(ImageKind kind);  // "app" | "os"
Expected<ImageKind> ParseImageKind(std::string_view name);

enum class DeploymentState { kActive, kPaused, kRolledBack, kSuperseded };
// "active" | "paused" | "rolled-back" | "superseded"
std::string_view DeploymentStateName(DeploymentState state);
Expected<DeploymentState> ParseDeploymentState(std::string_view name);

// What a device reports about one target of one deployment.
enum class UpdateState { kDownloading, kInstalling, kPendingReboot, kCommitted, kFailed };
// "downloading" | "installing" | "pending-reboot" | "committed" | "failed"
std::string_view UpdateStateName(UpdateState state);
Expected<UpdateState> ParseUpdateState(std::string_view name);

// An online signing key of one of a tenant's repositories. Root keys are
// offline (the maker holds them), so role is never kRoot. SECURITY: the
// private key is sealed by the caller (AES-256-GCM under the service master
// key, like the tenant CA keys) before it reaches the store; the store never
// sees a plaintext key.
struct RepositoryKey {
  std::string tenant_id;
  TufRepository repository = TufRepository::kImage;
  TufRole role = TufRole::kTimestamp;
  std::string key_id;              // TUF key id (lower-case hex)
  std::string public_key_json;     // the TUF public key object, JSON text
  std::string sealed_private_key;  // base64 of the sealed private key
  std::int64_t created_at = 0;
};

// One signed metadata file of a repository, kept append-only so that every
// version a client may still ask for ("N.snapshot.json") stays servable.
struct RepositoryMetadata {
  std::string tenant_id;
  TufRepository repository = TufRepository::kImage;
  // "" for the image repository and for the director's (tenant-wide) root;
  // the device group id for a group's director targets/snapshot/timestamp.
  std::string scope;
  TufRole role = TufRole::kTimestamp;
  std::int64_t version = 0;  // >= 1
  std::int64_t expires_at = 0;
  std::string document;  // the signed file, byte for byte as served
  std::int64_t created_at = 0;
};

// An uploaded image, content-addressed by the SHA-256 of its bytes.
struct Image {
  std::string tenant_id;
  std::string sha256;  // lower-case hex
  std::int64_t length = 0;
  ImageKind kind = ImageKind::kApp;
  std::string component_id;  // the app id, or the OS component
  std::string version;
  std::int64_t security_version = 0;  // anti-rollback floor it raises to
  std::string target_name;            // its TUF target path, unique per tenant
  std::int64_t uploaded_at = 0;
  std::string uploaded_by;  // actor, e.g. "token:<id>"
};

struct ImageFilter {
  std::string tenant_id;          // required
  std::string component_id;       // optional
  std::int64_t limit = 100;       // > 0; clamped to 1000
  std::string after_target_name;  // keyset pagination: target names > this, ascending
};

// A delta that turns image from_sha256 into image to_sha256 (both the
// tenant's images); the delta file itself is content-addressed too.
struct ImageDelta {
  std::string tenant_id;
  std::string from_sha256;
  std::string to_sha256;
  std::string delta_sha256;
  std::int64_t length = 0;
  std::int64_t created_at = 0;
};

// A deployment is a rule, not per-device rows: "this group (or every group
// following this OS feed) should run these targets, at this percent".
struct Deployment {
  std::string id;
  std::string tenant_id;
  std::string device_group_id;           // exactly one of device_group_id and os_feed
  std::string os_feed;                   // is non-empty
  std::string target_names_json = "[]";  // JSON array of target names
  std::int64_t percent = 0;              // 0..100
  // Staged rollout schedule the service advances, JSON text, e.g.
  // [{"percent":10,"after_seconds":3600},...]; "" is stored as "[]".
  std::string batches_json = "[]";
  DeploymentState state = DeploymentState::kActive;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
  std::string created_by;
};

struct DeploymentFilter {
  std::string tenant_id;                // required
  std::string device_group_id;          // optional
  std::string os_feed;                  // optional
  std::vector<DeploymentState> states;  // optional: any of these
  std::int64_t limit = 100;             // > 0; clamped to 1000
};

// The latest state a device reported for one target of one deployment.
struct UpdateReport {
  std::string tenant_id;
  std::string device_id;
  std::string deployment_id;
  std::string target_name;
  UpdateState state = UpdateState::kDownloading;
  std::string reason;            // why it failed; "" otherwise
  std::int64_t reported_at = 0;  // when the device says it entered the state
  std::int64_t updated_at = 0;   // when the service recorded it
};

// ---------------------------------------------------------------- failure reporting
// Failure reports and the issues they are deduplicated into (docs/
// ARCHITECTURE.md, "Failure reporting"). The store counts and keeps; what
// makes two reports the same issue (the signature), the issue's title and
// whether a report reopens a resolved issue are the service's rules
// (server/failures.hpp), passed in.

enum class IssueState { kOpen, kResolved, kMuted };
std::string_view IssueStateName(IssueState state);  // "open" | "resolved" | "muted"
Expected<IssueState> ParseIssueState(std::string_view name);

struct FailureIssue {
  std::string id;
  std::string tenant_id;
  std::string product_id;
  std::string signature;      // lower-case hex SHA-256
  std::string failure_class;  // "app-crash", ...
  std::string component_id;
  std::string error_code;
  std::string title;
  std::string frames_json = "[]";  // the latest report's symbolized frames, JSON array
  IssueState state = IssueState::kOpen;
  bool regression = false;
  std::string resolved_in_version;  // "" unless resolved
  std::int64_t count = 0;           // sum of the reports' occurrences
  std::int64_t device_count = 0;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::vector<std::string> versions;  // every version seen, in the order first seen
};

struct FailureIssueFilter {
  std::string tenant_id;              // required
  std::string product_id;             // optional
  std::optional<IssueState> state{};  // optional
  std::string failure_class;          // optional
  std::int64_t since = 0;             // last_seen >= since
  std::int64_t limit = 100;           // > 0; clamped to 1000
  // Keyset pagination, most recently seen first: issues strictly after
  // (after_last_seen, after_id) in (last_seen DESC, id DESC) order. Unset
  // when after_id is empty.
  std::int64_t after_last_seen = 0;
  std::string after_id;
};

struct FailureIssueDevice {
  std::string device_id;
  std::int64_t count = 0;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
};

struct FailureIssueVersion {
  std::string version;
  std::int64_t count = 0;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
};

// One report as the service prepared it for ingest.
struct FailureReportRecord {
  std::string report_id;  // the device's idempotency key
  // The issue it belongs to: product + signature; the rest describes a new
  // issue (and refreshes title and frames of an existing one).
  std::string product_id;
  std::string signature;
  std::string new_issue_id;  // the id used if this report opens a new issue
  std::string failure_class;
  std::string component_id;
  std::string error_code;
  std::string title;
  std::string frames_json = "[]";
  std::string version;  // the component's version (the OS version for device-level events)
  std::int64_t occurrences = 1;
  std::int64_t occurred_at = 0;
  std::int64_t last_occurred_at = 0;
  std::string body;  // the report as JSON text, frames symbolized
};

// Whether a report of `version` reopens an issue resolved in
// `resolved_in_version` (as a regression).
using ReopensIssue = std::function<bool(std::string_view resolved_in_version, std::string_view version)>;

struct FailureIngestResult {
  std::vector<std::string> acknowledged;  // every report id of the batch, new or seen before
  std::int64_t new_reports = 0;           // of those, recorded by this call
};

// A stored report.
struct StoredFailureReport {
  std::string device_id;
  std::string report_id;
  std::string tenant_id;
  std::string issue_id;
  std::int64_t received_at = 0;
  std::int64_t occurred_at = 0;
  std::string failure_class;
  std::string version;
  std::int64_t occurrences = 1;
  std::string body;
};

struct FailureReportFilter {
  std::string tenant_id;  // required
  std::string device_id;  // exactly one of device_id and issue_id
  std::string issue_id;
  std::int64_t limit = 100;  // > 0; clamped to 1000
  // Keyset pagination, newest first: reports strictly after (after_occurred_at,
  // after_report_id) in (occurred_at DESC, report_id DESC) order; device
  // lists only. Unset when after_report_id is empty.
  std::int64_t after_occurred_at = 0;
  std::string after_report_id;
};

// One module of an uploaded symbol file.
struct SymbolModule {
  std::string tenant_id;
  std::string build_id;  // lower-case hex
  std::string name;
  std::string symbols;  // the module as symbol-file text (docs/PROTOCOL.md, "Symbol files")
  std::int64_t functions = 0;
  std::int64_t lines = 0;
  std::int64_t uploaded_at = 0;
};

// A check-in's telemetry. Counters are the device's totals since its
// runtime started; the store turns them into daily deltas.
struct TelemetrySample {
  std::string tenant_id;
  std::string device_id;
  std::int64_t now = 0;  // decides the UTC day
  std::int64_t uptime_seconds = 0;
  std::int64_t free_memory_kb = 0;
  // False for a check-in without the telemetry member (an older device):
  // the day's check-in, uptime and memory are recorded, no counter deltas.
  bool has_counters = true;
  std::int64_t app_restarts = 0;
  std::int64_t rx_bytes = 0;
  std::int64_t tx_bytes = 0;
};

// One device's day.
struct TelemetryDay {
  std::int64_t day = 0;  // Unix seconds of the UTC midnight
  std::int64_t check_ins = 0;
  std::int64_t max_uptime_seconds = 0;
  std::int64_t min_free_memory_kb = 0;
  std::int64_t app_restarts = 0;
  std::int64_t rx_bytes = 0;
  std::int64_t tx_bytes = 0;
};

// The growth of a counter between two samples: a counter that went down
// was reset (the runtime restarted), so all of its new value is growth.
std::int64_t CounterDelta(std::int64_t previous, std::int64_t current);

enum class NonceResult { kConsumed, kUnknownOrUsed, kExpired };

// Credential activation of a TPM attestation key (docs/ARCHITECTURE.md,
// "Credential activation"): the service made a credential that only the
// TPM holding the EK can open for that AK; the device proves it by
// returning the secret.
struct TpmActivation {
  std::string id;              // random, hex; names the activation to the device
  std::string device_id;       // SHA-256 hex of the AK's SPKI
  std::string ek_fingerprint;  // SHA-256 hex of the EK certificate (DER)
  std::string secret_hash;     // SHA-256 hex of the secret inside the credential
  std::int64_t expires_at = 0;
};
// Proven: the device's AK lives in the TPM whose EK certificate has this
// fingerprint.
struct TpmBinding {
  std::string device_id;
  std::string ek_fingerprint;
  std::int64_t bound_at = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual std::string_view Backend() const = 0;  // "sqlite" | "postgresql"
  // Told the duration of every store call (metrics); set before the store
  // is shared between threads. Backends without a notion of calls ignore it.
  virtual void SetCallObserver(std::function<void(double seconds)> observer) = 0;
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

  // TPM credential activations. Create also drops every activation expired
  // at `now`.
  [[nodiscard]] virtual Expected<void> CreateTpmActivation(const TpmActivation& activation, std::int64_t now) = 0;
  // Atomically removes the activation and returns it: one try each, so a
  // wrong secret burns it. kNotFound when unknown, already taken, or
  // expired (now >= expires_at).
  virtual Expected<TpmActivation> TakeTpmActivation(std::string_view id, std::int64_t now) = 0;
  // Records the binding, replacing the device's earlier one.
  [[nodiscard]] virtual Expected<void> BindTpmKey(const TpmBinding& binding) = 0;
  // nullopt when the device's AK was never bound.
  virtual Expected<std::optional<TpmBinding>> GetTpmBinding(std::string_view device_id) = 0;

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

  // ---------------------------------------------------------------- updates
  // Tenant isolation: every method below names a tenant and reads or writes
  // only that tenant's rows; another tenant's ids read as kNotFound.

  // Online repository keys, one per (repository, role). PutRepositoryKey
  // fails with kAlreadyExists when that role has a key, kInvalidArgument for
  // role root, kNotFound for an unknown tenant. ListRepositoryKeys orders by
  // repository, role.
  [[nodiscard]] virtual Expected<void> PutRepositoryKey(const RepositoryKey& key) = 0;
  virtual Expected<RepositoryKey> GetRepositoryKey(std::string_view tenant_id, TufRepository repository,
                                                   TufRole role) = 0;
  virtual Expected<std::vector<RepositoryKey>> ListRepositoryKeys(std::string_view tenant_id) = 0;

  // Signed metadata, append-only. AddRepositoryMetadata fails with
  // kAlreadyExists when that version exists: of two replicas publishing the
  // same next version exactly one wins; the loser re-reads the latest.
  [[nodiscard]] virtual Expected<void> AddRepositoryMetadata(const RepositoryMetadata& metadata) = 0;
  virtual Expected<RepositoryMetadata> GetRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                             std::string_view scope, TufRole role,
                                                             std::int64_t version) = 0;
  // The highest version; kNotFound when none was published.
  virtual Expected<RepositoryMetadata> GetLatestRepositoryMetadata(std::string_view tenant_id, TufRepository repository,
                                                                   std::string_view scope, TufRole role) = 0;
  // Deletes all but the keep_latest (>= 1) highest versions; returns how many
  // went. Refuses role root (kInvalidArgument): a device with an old root
  // walks every root version, so they all stay.
  [[nodiscard]] virtual Expected<std::int64_t> PruneRepositoryMetadata(std::string_view tenant_id,
                                                                       TufRepository repository, std::string_view scope,
                                                                       TufRole role, std::int64_t keep_latest) = 0;

  // Images. AddImage fails with kAlreadyExists when the tenant has an image
  // with that sha256 (uploads are idempotent: compare with GetImage), and
  // with kConflict when the target name already names another image.
  // ListImages orders by target name (keyset pagination, see ImageFilter).
  [[nodiscard]] virtual Expected<void> AddImage(const Image& image) = 0;
  virtual Expected<Image> GetImage(std::string_view tenant_id, std::string_view sha256) = 0;
  virtual Expected<Image> GetImageByTargetName(std::string_view tenant_id, std::string_view target_name) = 0;
  virtual Expected<std::vector<Image>> ListImages(const ImageFilter& filter) = 0;

  // Deltas. AddImageDelta is idempotent: it returns the delta on record for
  // (from, to), which is `delta` unless another was recorded first (then the
  // caller serves that one). kNotFound unless both images are the tenant's.
  [[nodiscard]] virtual Expected<ImageDelta> AddImageDelta(const ImageDelta& delta) = 0;
  virtual Expected<ImageDelta> GetImageDelta(std::string_view tenant_id, std::string_view from_sha256,
                                             std::string_view to_sha256) = 0;

  // Deployments. CreateDeployment records `deployment` (state active or
  // paused) and, in the same transaction, marks the deployments named in
  // `supersede` superseded (at deployment.created_at). Each of those must be
  // the tenant's and still active or paused: otherwise nothing happens and
  // the call fails with kNotFound or kConflict (another replica moved it; re-
  // read and decide again). Which deployments a new one supersedes is the
  // caller's policy (e.g. same scope and component). kNotFound when the
  // device group is not the tenant's.
  [[nodiscard]] virtual Expected<void> CreateDeployment(const Deployment& deployment,
                                                        const std::vector<std::string>& supersede) = 0;
  virtual Expected<Deployment> GetDeployment(std::string_view tenant_id, std::string_view deployment_id) = 0;
  // Newest first (created_at, then id, descending).
  virtual Expected<std::vector<Deployment>> ListDeployments(const DeploymentFilter& filter) = 0;
  // Compare-and-set: sets state and percent only while the state is still
  // expected_state; kConflict when it moved (re-read and decide again),
  // kNotFound for a deployment the tenant does not have. The store does not
  // judge transitions; the service does.
  [[nodiscard]] virtual Expected<void> UpdateDeployment(std::string_view tenant_id, std::string_view deployment_id,
                                                        DeploymentState expected_state, DeploymentState new_state,
                                                        std::int64_t new_percent, std::int64_t updated_at) = 0;

  // Device update reports: one row per (device, deployment, target), written
  // only when a device reports. RecordUpdateReport upserts; a report older
  // than the stored one (reported_at; at equal times, an earlier state in
  // downloading < installing < pending-reboot < committed|failed) is ignored,
  // so retries and reordering are harmless. Returns whether it was stored.
  // kNotFound unless the device and the deployment are the tenant's.
  [[nodiscard]] virtual Expected<bool> RecordUpdateReport(const UpdateReport& report) = 0;
  // Devices per state (every state present, zeros included); kNotFound for
  // a deployment the tenant does not have.
  virtual Expected<std::map<UpdateState, std::int64_t>> CountUpdateReports(std::string_view tenant_id,
                                                                           std::string_view deployment_id) = 0;
  // The device's reports, most recently reported first; limit as in
  // DeviceFilter.
  virtual Expected<std::vector<UpdateReport>> ListUpdateReports(std::string_view tenant_id, std::string_view device_id,
                                                                std::int64_t limit) = 0;

  // Group update settings (see DeviceGroup); kNotFound for a group the tenant
  // does not have.
  [[nodiscard]] virtual Expected<void> SetDeviceGroupUpdateSettings(std::string_view tenant_id,
                                                                    std::string_view group_id, std::string_view os_feed,
                                                                    std::string_view maintenance_window) = 0;
  // Ordered by created_at, id.
  virtual Expected<std::vector<DeviceGroup>> ListDeviceGroupsByOsFeed(std::string_view tenant_id,
                                                                      std::string_view os_feed) = 0;
  // Claimed devices in the group (0 for a group the tenant does not have).
  // Exact, so its cost grows with the group (a COUNT over its index range).
  virtual Expected<std::int64_t> CountDevices(std::string_view tenant_id, std::string_view group_id) = 0;
  // The devices ListDevices(filter) would return over all its pages, counted
  // up to at_most (> 0; the result is min(count, at_most)), so that a page
  // can say "1,234 devices" or "more than 10,000" at a cost bounded by
  // at_most index entries. filter.limit and filter.after_id are ignored.
  virtual Expected<std::int64_t> CountDevicesUpTo(const DeviceFilter& filter, std::int64_t at_most) = 0;
  // Sets or clears the device's update_now flag; returns whether it changed.
  // Clearing is an atomic take: of check-ins racing to clear a set flag,
  // exactly one gets true. kNotFound unless the device is the tenant's.
  [[nodiscard]] virtual Expected<bool> SetDeviceUpdateNow(std::string_view tenant_id, std::string_view device_id,
                                                          bool update_now) = 0;

  // ---------------------------------------------------------------- failure reporting
  // Tenant isolation as for updates: another tenant's ids read as kNotFound.

  // Ingests one batch of a device's reports in ONE transaction. A report
  // whose (device_id, report_id) is on record is acknowledged and not
  // counted again. Each new report is counted into the issue of its
  // (product, signature), created open when new: count += occurrences,
  // per-device and per-version counts, first/last seen; a resolved issue
  // that `reopens` says the report's version reopens becomes open with
  // regression set. `dropped` is added to the device's reports_dropped when
  // the batch held a new report (so a retried batch does not add it twice).
  // kNotFound unless the device is the tenant's; kInvalidArgument for a
  // product that is not the tenant's.
  [[nodiscard]] virtual Expected<FailureIngestResult> IngestFailureReports(
      std::string_view tenant_id, std::string_view device_id, const std::vector<FailureReportRecord>& reports,
      std::int64_t dropped, std::int64_t received_at, const ReopensIssue& reopens) = 0;
  virtual Expected<std::vector<FailureIssue>> ListFailureIssues(const FailureIssueFilter& filter) = 0;
  virtual Expected<FailureIssue> GetFailureIssue(std::string_view tenant_id, std::string_view issue_id) = 0;
  // Most recently seen first.
  virtual Expected<std::vector<FailureIssueDevice>> ListFailureIssueDevices(std::string_view tenant_id,
                                                                            std::string_view issue_id,
                                                                            std::int64_t limit) = 0;
  // In the order first seen.
  virtual Expected<std::vector<FailureIssueVersion>> ListFailureIssueVersions(std::string_view tenant_id,
                                                                              std::string_view issue_id) = 0;
  // Sets the state; resolving records resolved_in_version and clears
  // regression, any other state clears resolved_in_version. Returns the
  // issue as stored. kNotFound for an issue the tenant does not have.
  [[nodiscard]] virtual Expected<FailureIssue> SetFailureIssueState(std::string_view tenant_id,
                                                                    std::string_view issue_id, IssueState state,
                                                                    std::string_view resolved_in_version) = 0;
  virtual Expected<std::vector<StoredFailureReport>> ListFailureReports(const FailureReportFilter& filter) = 0;
  // Deletes reports received before `before`; issue counts remain.
  virtual Expected<std::int64_t> PruneFailureReports(std::int64_t before) = 0;

  // Symbol modules, one per (tenant, build id); a new upload replaces it.
  [[nodiscard]] virtual Expected<void> PutSymbolModule(const SymbolModule& module) = 0;
  virtual Expected<SymbolModule> GetSymbolModule(std::string_view tenant_id, std::string_view build_id) = 0;

  // Telemetry: one row per device per UTC day (check-ins, max uptime, min
  // free memory, counter deltas). kNotFound unless the device is the tenant's.
  [[nodiscard]] virtual Expected<void> RecordTelemetry(const TelemetrySample& sample) = 0;
  // A device's check-in in one transaction (one commit instead of two):
  // RecordCheckIn's update of the device row (versions, uptime and free
  // memory from `sample`) and RecordTelemetry's day row. Nothing is written
  // when either fails; kNotFound unless the device is the sample's tenant's.
  [[nodiscard]] virtual Expected<void> RecordCheckInWithTelemetry(std::string_view os_version,
                                                                  std::string_view runtime_version,
                                                                  const TelemetrySample& sample) = 0;
  // Days >= since_day, oldest first.
  virtual Expected<std::vector<TelemetryDay>> ListTelemetry(std::string_view tenant_id, std::string_view device_id,
                                                            std::int64_t since_day) = 0;
  // Deletes rows of days before `before_day`; returns how many.
  virtual Expected<std::int64_t> PruneTelemetry(std::int64_t before_day) = 0;

  // The group's crash_dumps flag; kNotFound for a group the tenant does not have.
  [[nodiscard]] virtual Expected<void> SetDeviceGroupCrashDumps(std::string_view tenant_id, std::string_view group_id,
                                                                bool crash_dumps) = 0;

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
