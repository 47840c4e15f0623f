// Device registry at fleet scale (issue 7): list and count queries over
// 1,000,000 devices of one tenant, and a deployment to all of them, on
// SQLite and on PostgreSQL.
//
// Population is a fixture and uses bulk SQL through a connection of the
// store's own driver (one INSERT ... SELECT over a generated series); the
// measured queries go through the real Store API (ListDevices,
// CountDevicesUpTo, CountDevices, CreateDeployment). The data set is the
// same on both backends: device i gets its id, group, OS version and health
// from fixed hashes of i, so every group mixes versions and health.
//
//   groups   bench-main 60 %, bench-beta 25 %, bench-lab 10 %, bench-field 5 %
//   versions 1.0.0 40 %, 1.1.0 30 %, 1.2.0 20 %, 1.3.0 9 %, 0.9.0 1 %
//   health   90 % healthy, 3 % accepted with a lapsed certificate, 3 %
//            refused, 2 % revoked, 2 % never attested
//
// Every query runs --iterations times (bounded by --max-seconds) after a
// short warm-up; deep pages start at a random cursor in the middle half of
// the id space. A SQLite file is cached under --work-dir and reused when it
// holds the expected fleet. PostgreSQL is --postgres-url, or a throw-away
// server started on loopback with scripts/postgres-test-server.
#include <CLI/CLI.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/log.hpp"
#include "latencies.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sql_connection.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"

namespace {

using namespace citadel;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kTenant = "bench";
constexpr std::string_view kProduct = "bench-p";
constexpr std::string_view kMainGroup = "bench-main";
// The fixed "now" the fleet's certificates are dated against, so that a
// cached database stays valid.
constexpr std::int64_t kNow = 1'900'000'000;
constexpr std::int64_t kCountBound = 10'000;

double MillisecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

[[noreturn]] void Fail(const std::string& what, const Error& error) {
  std::cerr << "registry-bench: " << what << ": " << error.message() << "\n";
  std::exit(1);
}

template <typename T>
T Must(Expected<T> result, const std::string& what) {
  if (!result) Fail(what, result.error());
  return std::move(*result);
}
void Must(Expected<void> result, const std::string& what) {
  if (!result) Fail(what, result.error());
}

// A 0..1023 hash of device i, one per attribute (Weyl sequences with
// different odd multipliers, top 10 of 32 bits).
std::string Bucket(std::string_view multiplier) {
  return "(((i * " + std::string(multiplier) + ") % 4294967296) / 4194304)";
}

// INSERT ... SELECT generating `devices` rows; `series` names a relation
// with one column i = 0..devices-1, `hex8`/`hex56` format i-derived numbers.
std::string PopulationSql(store::SqlDialect dialect, std::int64_t devices) {
  const bool sqlite = dialect == store::SqlDialect::kSqlite;
  const std::string n = std::to_string(devices);
  // ids: 8 hex digits of a hash (so id order is unrelated to i) then i.
  const std::string id = sqlite ? "printf('%08x', (i * 2654435761) % 4294967296) || printf('%056x', i)"
                                : "lpad(to_hex((i * 2654435761) % 4294967296), 8, '0') || lpad(to_hex(i), 56, '0')";
  const std::string group = Bucket("2246822519");
  const std::string version = Bucket("3266489917");
  const std::string health = Bucket("668265263");
  const std::string seen = Bucket("374761393");
  // health buckets: [0, 922) healthy, [922, 953) lapsed, [953, 984) refused,
  // [984, 1004) revoked, [1004, 1024) never attested.
  std::string select =
      "SELECT " + id + ", '" + std::string(kTenant) + "', '" + std::string(kProduct) + "', CASE WHEN " + group +
      " < 614 THEN 'bench-main' WHEN " + group + " < 870 THEN 'bench-beta' WHEN " + group +
      " < 972 THEN 'bench-lab' ELSE 'bench-field' END, 'software', " + std::to_string(kNow - 90 * 86400) + ", " +
      std::to_string(kNow) + " - " + seen + " * 60, " + std::to_string(kNow - 60 * 86400) + ", CASE WHEN " + health +
      " < 1004 THEN " + std::to_string(kNow - 3600) + " ELSE 0 END, CASE WHEN " + health +
      " < 953 THEN 'accepted' WHEN " + health + " < 984 THEN 'not-genuine' WHEN " + health +
      " < 1004 THEN 'accepted' ELSE '' END, CASE WHEN " + version + " < 410 THEN '1.0.0' WHEN " + version +
      " < 717 THEN '1.1.0' WHEN " + version + " < 922 THEN '1.2.0' WHEN " + version +
      " < 1014 THEN '1.3.0' ELSE '0.9.0' END, '0.4.2', 86400, 65536, CASE WHEN " + health + " < 1004 THEN " + id +
      " ELSE '' END, CASE WHEN " + health + " < 922 THEN " + std::to_string(kNow + 82800) + " WHEN " + health +
      " < 953 THEN " + std::to_string(kNow - 3 * 86400) + " WHEN " + health + " < 1004 THEN " +
      std::to_string(kNow + 82800) + " ELSE 0 END, CASE WHEN " + health + " >= 984 AND " + health +
      " < 1004 THEN 1 ELSE 0 END";
  const std::string insert =
      "INSERT INTO devices (id, tenant_id, product_id, device_group_id, rot_backend, first_seen, last_seen, "
      "claimed_at, last_attested_at, last_verdict, os_version, runtime_version, uptime_seconds, free_memory_kb, "
      "certificate_serial, certificate_expires_at, revoked) ";
  if (sqlite) {
    return "WITH RECURSIVE series(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM series WHERE i < " + n + " - 1) " +
           insert + select + " FROM series";
  }
  return insert + select + " FROM generate_series(0::bigint, " + n + " - 1) AS series(i)";
}

struct Backend {
  std::string name;      // "sqlite" | "postgresql"
  std::string location;  // what OpenStore takes
};

// The store's tables and their row counts.
std::map<std::string, std::int64_t> CountRows(store::SqlConnectionPool& pool) {
  auto lease = Must(pool.Acquire(), "connecting");
  const bool sqlite = lease->Dialect() == store::SqlDialect::kSqlite;
  auto tables = Must(lease->Execute(sqlite ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                             "'sqlite_%' ORDER BY name"
                                           : "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                             "ORDER BY tablename"),
                     "listing tables");
  std::map<std::string, std::int64_t> counts;
  for (const auto& row : tables.rows) {
    const std::string table = row.Text(0);
    // Table names come from the catalogue, not from input.
    auto count = Must(lease->Execute("SELECT COUNT(*) FROM " + table), "counting " + table);
    counts[table] = count.rows.front().Int(0);
  }
  return counts;
}

// Creates the tenant, product and groups through the store, then the
// devices in bulk, unless the database already holds them (a cached file).
void Populate(const Backend& backend, store::Store& store, std::int64_t devices, bool json) {
  auto pool = Must(
      backend.name == "sqlite" ? store::OpenSqlitePool(backend.location) : store::OpenPostgresPool(backend.location, 1),
      "opening a fixture connection");
  store::DeviceFilter everyone;
  everyone.tenant_id = std::string(kTenant);
  auto existing = store.CountDevicesUpTo(everyone, devices + 1);
  const auto start = SteadyClock::now();
  bool cached = existing && *existing == devices;
  if (!cached) {
    if (existing && *existing != 0) {
      std::cerr << "registry-bench: " << backend.location << " holds another fleet; remove it or use another dir\n";
      std::exit(1);
    }
    Must(store.CreateTenant(store::Tenant{std::string(kTenant), "Bench", kNow - 100 * 86400},
                            store::TenantCa{std::string(kTenant), "root", "issuing", "sealed", "sealed"}),
         "creating the tenant");
    std::vector<store::DeviceGroup> groups;
    for (const char* name : {"bench-main", "bench-beta", "bench-lab", "bench-field"}) {
      groups.push_back(store::DeviceGroup{name, std::string(kTenant), std::string(kProduct), name, kNow - 100 * 86400});
    }
    Must(store.CreateProduct(store::Product{std::string(kProduct), std::string(kTenant), "Bench", "", kNow}, groups),
         "creating the product");
    auto lease = Must(pool->Acquire(), "connecting");
    const bool sqlite = lease->Dialect() == store::SqlDialect::kSqlite;
    // Fixture shortcuts, none of which the measured queries see: a large
    // cache, no per-row foreign-key checks (the rows reference the tenant,
    // product and groups just created), and the devices' secondary indexes
    // dropped and rebuilt from their own catalogue definitions after the
    // load (a sorted build instead of 1,000,000 random inserts into each).
    if (sqlite) {
      Must(lease->ExecuteScript("PRAGMA cache_size = -524288; PRAGMA foreign_keys = OFF"), "tuning the fixture");
    }
    Must(lease->Begin(), "beginning");
    if (!sqlite) {
      Must(lease->ExecuteScript("SET LOCAL session_replication_role = replica; "
                                "SET LOCAL maintenance_work_mem = '256MB'"),
           "tuning the fixture");
    }
    auto indexes = Must(
        lease->Execute(sqlite ? "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'devices' "
                                "AND sql IS NOT NULL"
                              : "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                                "AND tablename = 'devices' AND indexname NOT IN "
                                "(SELECT conname FROM pg_constraint WHERE conrelid = 'devices'::regclass)"),
        "reading the device indexes");
    for (const auto& index : indexes.rows) Must(lease->ExecuteScript("DROP INDEX " + index.Text(0)), "dropping");
    Must(lease->ExecuteScript(PopulationSql(lease->Dialect(), devices)), "inserting devices");
    for (const auto& index : indexes.rows) Must(lease->ExecuteScript(index.Text(1)), "rebuilding " + index.Text(0));
    Must(lease->Commit(), "committing");
    if (sqlite) Must(lease->ExecuteScript("PRAGMA foreign_keys = ON"), "restoring foreign keys");
    if (lease->Dialect() == store::SqlDialect::kPostgres) {
      // What autovacuum does after a bulk load: statistics for the planner
      // and the visibility map for index-only scans.
      Must(lease->ExecuteScript("VACUUM ANALYZE devices"), "vacuuming");
    }
  }
  const double seconds = MillisecondsSince(start) / 1000;
  if (json) {
    std::cout << Json{{"benchmark", "registry-population"},
                      {"backend", backend.name},
                      {"devices", devices},
                      {"cached", cached},
                      {"seconds", seconds}}
                     .dump()
              << "\n";
  } else {
    std::printf("%s: %lld devices %s in %.1f s\n", backend.name.c_str(), static_cast<long long>(devices),
                cached ? "reused from the cached file" : "populated", seconds);
  }
}

struct Query {
  std::string name;
  std::function<std::int64_t(std::mt19937_64&)> run;  // returns the rows (or the count)
};

std::string RandomMiddleCursor(std::mt19937_64& random) {
  std::uniform_int_distribution<std::uint32_t> prefix(0x40000000u, 0xbfffffffu);
  char buffer[9];
  (void)std::snprintf(buffer, sizeof buffer, "%08x", prefix(random));
  return std::string(buffer) + std::string(56, 'f');
}

struct Options {
  std::int64_t devices = 1'000'000;
  std::size_t iterations = 200;
  double max_seconds = 10;
  bool json = false;
};

void Measure(const Backend& backend, const Query& query, const Options& options) {
  std::mt19937_64 random(42);
  std::int64_t rows = 0;
  for (int warmup = 0; warmup < 3; ++warmup) rows = query.run(random);
  bench::Latencies latencies;
  const auto started = SteadyClock::now();
  for (std::size_t i = 0; i < options.iterations && MillisecondsSince(started) < options.max_seconds * 1000; ++i) {
    const auto start = SteadyClock::now();
    rows = query.run(random);
    latencies.ms.push_back(MillisecondsSince(start));
  }
  if (options.json) {
    std::cout << Json{{"benchmark", "registry-query"},
                      {"backend", backend.name},
                      {"query", query.name},
                      {"iterations", latencies.ms.size()},
                      {"rows", rows},
                      {"p50_ms", latencies.Percentile(0.5)},
                      {"p99_ms", latencies.Percentile(0.99)},
                      {"mean_ms", latencies.Mean()}}
                     .dump()
              << "\n";
  } else {
    std::printf("  %-52s %8lld rows  p50 %8.2f ms  p99 %8.2f ms  (n=%zu)\n", query.name.c_str(),
                static_cast<long long>(rows), latencies.Percentile(0.5), latencies.Percentile(0.99),
                latencies.ms.size());
  }
}

std::vector<Query> RegistryQueries(store::Store& store) {
  auto list = [&store](store::DeviceFilter filter, bool deep) {
    return [&store, filter, deep](std::mt19937_64& random) mutable -> std::int64_t {
      if (deep) filter.after_id = RandomMiddleCursor(random);
      auto page = Must(store.ListDevices(filter), "listing devices");
      return static_cast<std::int64_t>(page.size());
    };
  };
  auto count = [&store](const store::DeviceFilter& filter) {
    return [&store, filter](std::mt19937_64&) -> std::int64_t {
      return Must(store.CountDevicesUpTo(filter, kCountBound), "counting devices");
    };
  };
  auto filter = [](std::string group, std::string version, store::DeviceHealth health) {
    store::DeviceFilter f;
    f.tenant_id = std::string(kTenant);
    f.device_group_id = std::move(group);
    f.os_version = std::move(version);
    f.health = health;
    f.now = kNow;
    f.limit = 100;
    return f;
  };
  using store::DeviceHealth;
  const std::string main(kMainGroup);
  return {
      {"group, first page", list(filter(main, "", DeviceHealth::kAny), false)},
      {"group + version 1.2.0, first page", list(filter(main, "1.2.0", DeviceHealth::kAny), false)},
      {"group + rare version 0.9.0, first page", list(filter(main, "0.9.0", DeviceHealth::kAny), false)},
      {"group + healthy, first page", list(filter(main, "", DeviceHealth::kHealthy), false)},
      {"group + unhealthy, first page", list(filter(main, "", DeviceHealth::kUnhealthy), false)},
      {"group + version + healthy, first page", list(filter(main, "1.2.0", DeviceHealth::kHealthy), false)},
      {"group + version + unhealthy, first page", list(filter(main, "1.2.0", DeviceHealth::kUnhealthy), false)},
      {"group + version, deep page (random middle cursor)", list(filter(main, "1.2.0", DeviceHealth::kAny), true)},
      {"group + unhealthy, deep page (random middle cursor)", list(filter(main, "", DeviceHealth::kUnhealthy), true)},
      {"tenant + unhealthy, first page", list(filter("", "", DeviceHealth::kUnhealthy), false)},
      {"count group + unhealthy, up to 10,000", count(filter(main, "", DeviceHealth::kUnhealthy))},
      {"count group + version, up to 10,000", count(filter(main, "1.2.0", DeviceHealth::kAny))},
      {"count group, exact (CountDevices, 614k devices)",
       [&store, main](std::mt19937_64&) { return Must(store.CountDevices(kTenant, main), "counting the group"); }},
  };
}

// A deployment to every device: an OS deployment to the feed all groups
// follow, and an app deployment to the largest group. Counts every table's
// rows before and after.
void MeasureDeployment(const Backend& backend, store::Store& store, const Options& options) {
  auto pool = Must(
      backend.name == "sqlite" ? store::OpenSqlitePool(backend.location) : store::OpenPostgresPool(backend.location, 1),
      "opening a fixture connection");
  const auto before = CountRows(*pool);
  std::random_device entropy;
  const std::string suffix = std::to_string(entropy());
  store::Deployment os;
  os.id = "bench-os-" + suffix;
  os.tenant_id = std::string(kTenant);
  os.os_feed = std::string(store::kDefaultOsFeed);
  os.target_names_json = R"(["citadel-os-2.0.0.img"])";
  os.percent = 10;
  os.batches_json = R"([{"percent":10,"after_seconds":0},{"percent":50,"after_seconds":3600},)"
                    R"({"percent":100,"after_seconds":7200}])";
  os.created_at = os.updated_at = kNow;
  os.created_by = "bench";
  store::Deployment app = os;
  app.id = "bench-app-" + suffix;
  app.os_feed.clear();
  app.device_group_id = std::string(kMainGroup);
  app.target_names_json = R"(["apps/thermostat-1.4.0.img"])";

  auto start = SteadyClock::now();
  Must(store.CreateDeployment(os, {}), "creating the OS deployment");
  const double os_ms = MillisecondsSince(start);
  start = SteadyClock::now();
  Must(store.CreateDeployment(app, {}), "creating the app deployment");
  const double app_ms = MillisecondsSince(start);
  // What the deployment's progress costs: the devices in its scope (every
  // group of the feed) and the per-state report counts.
  start = SteadyClock::now();
  std::int64_t in_scope = 0;
  for (const auto& group : Must(store.ListDeviceGroupsByOsFeed(kTenant, os.os_feed), "listing the feed's groups")) {
    in_scope += Must(store.CountDevices(kTenant, group.id), "counting a group");
  }
  (void)Must(store.CountUpdateReports(kTenant, os.id), "counting reports");
  const double progress_ms = MillisecondsSince(start);
  const auto after = CountRows(*pool);

  Json written = Json::object();
  std::int64_t total = 0;
  for (const auto& [table, rows] : after) {
    const std::int64_t delta = rows - (before.contains(table) ? before.at(table) : 0);
    written[table] = delta;
    total += delta;
  }
  if (options.json) {
    std::cout << Json{{"benchmark", "registry-deployment"},   {"backend", backend.name},
                      {"devices_in_scope", in_scope},         {"create_os_feed_deployment_ms", os_ms},
                      {"create_group_deployment_ms", app_ms}, {"progress_ms", progress_ms},
                      {"rows_written_per_table", written},    {"rows_written_total", total}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("  deployment to the OS feed (%lld devices): created in %.2f ms; to %s: %.2f ms\n",
              static_cast<long long>(in_scope), os_ms, std::string(kMainGroup).c_str(), app_ms);
  std::printf("  its progress (count the scope's devices + reports per state): %.1f ms\n", progress_ms);
  std::printf("  rows written by both, per table (before -> after):\n");
  for (const auto& [table, rows] : after) {
    const std::int64_t was = before.contains(table) ? before.at(table) : 0;
    std::printf("    %-32s %9lld -> %9lld  (%+lld)\n", table.c_str(), static_cast<long long>(was),
                static_cast<long long>(rows), static_cast<long long>(rows - was));
  }
  std::printf("  total rows written: %lld\n", static_cast<long long>(total));
}

void RunBackend(const Backend& backend, const Options& options) {
  if (!options.json)
    std::printf("== %s (%s)\n", backend.name.c_str(), backend.name == "sqlite" ? backend.location.c_str() : "loopback");
  auto store = Must(store::OpenStore(backend.location), "opening the store");
  Must(store->Migrate(), "migrating");
  Populate(backend, *store, options.devices, options.json);
  for (const Query& query : RegistryQueries(*store)) Measure(backend, query, options);
  MeasureDeployment(backend, *store, options);
}

// Runs a command and returns its standard output (the server script's URL).
std::string CommandOutput(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  if (pclose(pipe) != 0) return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
  return output;
}

// Stops the throw-away PostgreSQL server however the run ends (Fail()
// exits): set once the server is up.
std::string& ServerStopCommand() {
  static std::string command;
  return command;
}
void StopServer() {
  if (!ServerStopCommand().empty()) (void)CommandOutput(ServerStopCommand());
  ServerStopCommand().clear();
}

// A port free on 127.0.0.1 right now (the kernel's choice), or 0.
int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Device registry at fleet scale: filtered, paginated lists and counts; a deployment to every device"};
  Options options;
  std::string backends = "both";
  std::string work_dir;
  std::string postgres_url;
  std::string server_script = "scripts/postgres-test-server";
  app.add_option("--devices", options.devices, "devices of the tenant")->capture_default_str();
  app.add_option("--iterations", options.iterations, "runs per query (upper bound)")->capture_default_str();
  app.add_option("--max-seconds", options.max_seconds, "time bound per query")->capture_default_str();
  app.add_option("--backend", backends, "sqlite, postgresql or both")
      ->check(CLI::IsMember({"sqlite", "postgresql", "both"}))
      ->capture_default_str();
  app.add_option("--work-dir", work_dir, "keeps the populated SQLite file for the next run (default: a temp dir)");
  app.add_option("--postgres-url", postgres_url, "an empty PostgreSQL database (default: start one on loopback)");
  app.add_option("--postgres-server-script", server_script, "starts the throw-away server")->capture_default_str();
  app.add_flag("--json", options.json, "one JSON object per line");
  CLI11_PARSE(app, argc, argv);
  log::Init("bench", log::Level::kError);
  if (options.devices <= 0 || options.iterations == 0) {
    std::cerr << "registry-bench: --devices and --iterations must be positive\n";
    return 2;
  }

  std::random_device random;
  const fs::path temp = fs::temp_directory_path() / ("citadel-registry-bench-" + std::to_string(random()));
  fs::create_directories(temp);
  const bool keep = !work_dir.empty();
  const fs::path dir = keep ? fs::path(work_dir) : temp;
  fs::create_directories(dir);

  if (backends != "postgresql") {
    const fs::path file = dir / ("registry-" + std::to_string(options.devices) + ".sqlite");
    RunBackend(Backend{"sqlite", file.string()}, options);
  }
  if (backends != "sqlite") {
    std::string url = postgres_url;
    const fs::path server_dir = temp / "postgres";
    if (url.empty()) {
      for (int attempt = 0; attempt < 3 && url.empty(); ++attempt) {
        url = CommandOutput(server_script + " start " + server_dir.string() + " " + std::to_string(FreeLoopbackPort()));
      }
      if (url.empty()) {
        std::cerr << "registry-bench: cannot start PostgreSQL with " << server_script << "; pass --postgres-url\n";
        return 1;
      }
      ServerStopCommand() = server_script + " stop " + server_dir.string();
      (void)std::atexit(StopServer);
    }
    RunBackend(Backend{"postgresql", url}, options);
    StopServer();
  }
  std::error_code ignored;
  fs::remove_all(temp, ignored);
  return 0;
}
