// citadel-sim's fleet against the real service in-process (HTTPS on
// loopback, SQLite in a temporary directory): every device attests, claims
// itself with a tenant token, attests again, checks in with mutual TLS and
// uploads crash reports; the store then shows them claimed and the reports
// stored. A second run from the fleet file speaks for the same devices.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <set>

#include "common/file.hpp"
#include "server/service_fixture.hpp"
#include "sim/simulator.hpp"

namespace citadel::sim {
namespace {

using server::testing::ServiceFixture;
using server::testing::TenantAccess;

constexpr std::size_t kDevices = 50;

class SimServiceTest : public ServiceFixture {
 protected:
  SimOptions Options(const TenantAccess& tenant) {
    auto manufacturer_dir = dir_.path() / "manufacturer";
    EXPECT_TRUE(EnsureDirectory(manufacturer_dir, 0700));
    EXPECT_TRUE(WriteFileAtomic(manufacturer_dir / "manufacturer-ca.pem", manufacturer_.Pem()));
    EXPECT_TRUE(WriteFileAtomic(manufacturer_dir / "manufacturer-ca.key",
                                std::string(manufacturer_key_.ToPem()->reveal()), 0600));
    EXPECT_TRUE(WriteFileAtomic(dir_.path() / "service-ca.pem", service_ca_));
    SimOptions options;
    options.server_url = "https://127.0.0.1:" + std::to_string(service_->port());
    options.server_ca = dir_.path() / "service-ca.pem";
    options.manufacturer_dir = manufacturer_dir;
    options.devices = kDevices;
    options.connect_rate = 1000;
    options.threads = 2;
    options.check_ins = 2;
    options.check_in_interval = std::chrono::milliseconds(200);
    options.claim_token = tenant.token;
    options.tenant = tenant.id;
    options.device_group = tenant.group_id;
    options.reports_per_device = 2;
    options.seed = 7;
    return options;
  }

  static std::uint64_t Event(const FleetSummary& summary, std::string_view name) {
    for (const auto& [event, count] : summary.events) {
      if (event == name) return count;
    }
    return 0;
  }

  static const OperationSummary& Row(const FleetSummary& summary, OperationKind kind) {
    return summary.operations[static_cast<std::size_t>(kind)];
  }
};

TEST_F(SimServiceTest, FleetAttestsClaimsChecksInAndReports) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto result = RunSimulation(Options(tenant));
  ASSERT_TRUE(result) << result.error().message();
  const auto& summary = result->summary;
  EXPECT_EQ(summary.TotalErrors(), 0u) << FormatTable(summary);
  // Unclaimed first (an event), then accepted after the claim (the operation).
  EXPECT_EQ(Row(summary, OperationKind::kAttest).count, kDevices) << FormatTable(summary);
  EXPECT_EQ(Event(summary, "unclaimed_verdicts"), kDevices);
  EXPECT_EQ(Row(summary, OperationKind::kClaim).count, kDevices);
  EXPECT_EQ(Row(summary, OperationKind::kCheckIn).count, 2 * kDevices);
  EXPECT_EQ(Row(summary, OperationKind::kReport).count, 2 * kDevices);
  EXPECT_EQ(Row(summary, OperationKind::kUpdate).count, 0u);  // the tenant publishes nothing

  ASSERT_EQ(result->devices.size(), kDevices);
  std::set<std::string> ids;
  for (const auto& [id, os_version] : result->devices) {
    ids.insert(id);
    auto device = Store().GetDevice(id);
    ASSERT_TRUE(device) << id;
    EXPECT_EQ(device->tenant_id, tenant.id);
    EXPECT_EQ(device->device_group_id, tenant.group_id);
    EXPECT_EQ(device->os_version, "1.0.0");
    EXPECT_FALSE(device->certificate_serial.empty());
    store::FailureReportFilter filter;
    filter.tenant_id = tenant.id;
    filter.device_id = id;
    auto reports = Store().ListFailureReports(filter);
    ASSERT_TRUE(reports) << reports.error().message();
    EXPECT_EQ(reports->size(), 2u) << id;
  }
  EXPECT_EQ(ids.size(), kDevices);  // every device its own identity
}

TEST_F(SimServiceTest, FleetFileKeepsTheSameDevicesAcrossRuns) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto options = Options(tenant);
  options.devices = 10;
  options.check_ins = 1;
  options.reports_per_device = 0;
  options.fleet_file = dir_.path() / "fleet.json";
  auto first = RunSimulation(options);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->summary.TotalErrors(), 0u) << FormatTable(first->summary);
  EXPECT_EQ(first->reused_devices, 0u);
  struct stat info {};
  ASSERT_EQ(::stat(options.fleet_file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  auto second = RunSimulation(options);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(second->summary.TotalErrors(), 0u) << FormatTable(second->summary);
  EXPECT_EQ(second->reused_devices, 10u);
  EXPECT_EQ(second->devices, first->devices);
  // Already claimed: accepted at once, nothing to claim.
  EXPECT_EQ(Row(second->summary, OperationKind::kAttest).count, 10u);
  EXPECT_EQ(Row(second->summary, OperationKind::kClaim).count, 0u);
  EXPECT_EQ(Row(second->summary, OperationKind::kCheckIn).count, 10u);
}

TEST_F(SimServiceTest, DroppedConnectionsAreRetriedNotFailed) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto options = Options(tenant);
  options.devices = 10;
  options.drop_rate = 0.2;
  options.seed = 11;
  auto result = RunSimulation(options);
  ASSERT_TRUE(result) << result.error().message();
  const auto& summary = result->summary;
  EXPECT_EQ(summary.TotalErrors(), 0u) << FormatTable(summary);
  std::uint64_t retries = 0;
  for (const auto& row : summary.operations) retries += row.retries;
  const std::uint64_t dropped = Event(summary, "dropped_requests");
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(retries, dropped);  // each drop cost exactly one retry
  EXPECT_EQ(Row(summary, OperationKind::kReport).count, 20u);
}

TEST_F(SimServiceTest, UnreachableServiceFailsAfterRetries) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto options = Options(tenant);
  options.devices = 2;
  options.max_retries = 2;
  options.server_url = "https://127.0.0.1:1";  // nothing listens there
  auto result = RunSimulation(options);
  ASSERT_TRUE(result) << result.error().message();
  const auto& attest = Row(result->summary, OperationKind::kAttest);
  EXPECT_EQ(attest.count, 2u);
  EXPECT_EQ(attest.errors, 2u);
  EXPECT_EQ(attest.retries, 4u);
  EXPECT_EQ(Row(result->summary, OperationKind::kCheckIn).count, 0u);
}

TEST_F(SimServiceTest, CheckInTogetherStartsCheckInsOnlyAfterTheWholeFleetAttested) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto options = Options(tenant);
  options.devices = 20;
  options.connect_rate = 20;  // attestations spread over a second
  options.reports_per_device = 0;
  options.check_in_together = true;
  auto result = RunSimulation(options);
  ASSERT_TRUE(result) << result.error().message();
  const auto& summary = result->summary;
  EXPECT_EQ(summary.TotalErrors(), 0u) << FormatTable(summary);
  const auto& attest = Row(summary, OperationKind::kAttest);
  const auto& check_in = Row(summary, OperationKind::kCheckIn);
  EXPECT_EQ(check_in.count, 40u);
  EXPECT_GE(check_in.active_from_seconds, attest.active_from_seconds + attest.active_seconds)
      << "a check-in began before the last attestation ended";
}

TEST_F(SimServiceTest, CheckInServerTakesTheMutualTlsRequestsInsteadOfTheService) {
  auto tenant = CreateTenantAccess("Sim Maker");
  auto options = Options(tenant);
  options.devices = 3;
  options.check_ins = 1;
  options.reports_per_device = 0;
  options.max_retries = 1;
  options.check_in_server = "https://127.0.0.1:1";  // nothing listens there
  auto result = RunSimulation(options);
  ASSERT_TRUE(result) << result.error().message();
  // Attestation went to the service; every check-in went to the other
  // server, and failed there, and the service never saw one.
  EXPECT_EQ(Row(result->summary, OperationKind::kAttest).errors, 0u);
  EXPECT_EQ(Row(result->summary, OperationKind::kAttest).count, 3u);
  EXPECT_EQ(Row(result->summary, OperationKind::kCheckIn).errors, 3u);
  store::DeviceFilter filter;
  filter.tenant_id = tenant.id;
  auto devices = Store().ListDevices(filter);
  ASSERT_TRUE(devices);
  ASSERT_EQ(devices->size(), 3u);
  for (const auto& device : *devices) EXPECT_EQ(device.free_memory_kb, 0) << "a check-in reached the service";
}

}  // namespace
}  // namespace citadel::sim
