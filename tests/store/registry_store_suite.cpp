// The device registry's filters (schema v6), on every backend: health as
// store.hpp defines it (accepted, not revoked, certificate valid at `now`),
// combined with group and version, keyset-paginated, and the bounded count.
// The second test builds more than kSmallExpirySet accepted devices on each
// side of `now` so that both ways of reading the expiry half are exercised.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "store/migrations.hpp"
#include "store_suite.hpp"

namespace citadel::store::test {
namespace {

constexpr std::int64_t kNow = 1'800'000'000;          // a fixed "now": no test reads the clock
constexpr std::string_view kRefused = "not-genuine";  // a refused verdict, as the attestor records it

std::string DeviceId(int n) {
  char buffer[65];
  // Not in insertion order; 64-bit so no n overflows (UBSan).
  const auto v = static_cast<std::uint64_t>(n);
  (void)std::snprintf(buffer, sizeof buffer, "%064" PRIx64, (v * 7919 % 65521) * 65536 + v);
  return buffer;
}

// Tenant "<t>", product "<t>-p", groups "<t>-g1" and "<t>-g2".
void SetUpTenant(Store& store, const std::string& tenant) {
  ASSERT_OK(store.CreateTenant(Tenant{tenant, "Tenant " + tenant, 1000},
                               TenantCa{tenant, "root", "issuing", "sealed-root", "sealed-issuing"}));
  ASSERT_OK(store.CreateProduct(Product{tenant + "-p", tenant, "Thermostat", "", 1000},
                                {DeviceGroup{tenant + "-g1", tenant, tenant + "-p", "Development", 1000},
                                 DeviceGroup{tenant + "-g2", tenant, tenant + "-p", "Production", 1000}}));
}

struct ExpectedDevice {
  std::string id;
  std::string group;
  std::string version;
  bool healthy = false;
};

// Every page of the filter, following after_id; bounded by `max_pages`.
std::vector<std::string> ListAllPages(Store& store, DeviceFilter filter, int max_pages = 200) {
  std::vector<std::string> ids;
  for (int page = 0; page < max_pages; ++page) {
    auto devices = store.ListDevices(filter);
    EXPECT_TRUE(devices.has_value()) << devices.error().message();
    if (!devices || devices->empty()) break;
    EXPECT_LE(static_cast<std::int64_t>(devices->size()), filter.limit);
    for (const Device& device : *devices) {
      EXPECT_EQ(device.tenant_id, filter.tenant_id);
      // The one-device definition agrees with the query's.
      if (filter.health != DeviceHealth::kAny) {
        EXPECT_EQ(IsDeviceHealthy(device, filter.now), filter.health == DeviceHealth::kHealthy) << device.id;
      }
      ids.push_back(device.id);
    }
    filter.after_id = devices->back().id;
  }
  return ids;
}

std::vector<std::string> Matching(const std::vector<ExpectedDevice>& devices, const DeviceFilter& filter) {
  std::vector<std::string> ids;
  for (const auto& device : devices) {
    if (!filter.device_group_id.empty() && device.group != filter.device_group_id) continue;
    if (!filter.os_version.empty() && device.version != filter.os_version) continue;
    if (filter.health == DeviceHealth::kHealthy && !device.healthy) continue;
    if (filter.health == DeviceHealth::kUnhealthy && device.healthy) continue;
    ids.push_back(device.id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string Describe(const DeviceFilter& filter) {
  return "group=" + filter.device_group_id + " version=" + filter.os_version +
         " health=" + std::string(DeviceHealthName(filter.health)) + " now=" + std::to_string(filter.now) +
         " limit=" + std::to_string(filter.limit);
}

// Lists and counts every combination of group, version and health against
// the expected devices.
void CheckEveryFilter(Store& store, const std::string& tenant, const std::vector<ExpectedDevice>& devices,
                      std::int64_t now, std::int64_t limit, const std::string& group, const std::string& version) {
  for (const std::string& group_filter : {std::string(), group}) {
    for (const std::string& version_filter : {std::string(), version}) {
      for (DeviceHealth health : {DeviceHealth::kAny, DeviceHealth::kHealthy, DeviceHealth::kUnhealthy}) {
        DeviceFilter filter{tenant, group_filter, version_filter, limit, "", health, now};
        const std::vector<std::string> expected = Matching(devices, filter);
        EXPECT_EQ(ListAllPages(store, filter), expected) << Describe(filter);
        const auto size = static_cast<std::int64_t>(expected.size());
        EXPECT_EQ(Value(store.CountDevicesUpTo(filter, size + 10)), size) << Describe(filter);
        EXPECT_EQ(Value(store.CountDevicesUpTo(filter, 3)), std::min<std::int64_t>(size, 3)) << Describe(filter);
        // A page starting in the middle continues exactly where the list does.
        if (expected.size() > 2) {
          filter.after_id = expected[expected.size() / 2];
          filter.limit = 2;
          auto page = store.ListDevices(filter);
          ASSERT_TRUE(page.has_value()) << page.error().message();
          ASSERT_EQ(page->size(), std::min<std::size_t>(2, expected.size() - expected.size() / 2 - 1))
              << Describe(filter);
          EXPECT_EQ(page->front().id, expected[expected.size() / 2 + 1]) << Describe(filter);
        }
      }
    }
  }
}

}  // namespace

TEST(DeviceHealthTest, NamesRoundTrip) {
  EXPECT_EQ(Value(ParseDeviceHealth("healthy")), DeviceHealth::kHealthy);
  EXPECT_EQ(Value(ParseDeviceHealth("unhealthy")), DeviceHealth::kUnhealthy);
  EXPECT_EQ(DeviceHealthName(DeviceHealth::kHealthy), "healthy");
  EXPECT_EQ(DeviceHealthName(DeviceHealth::kUnhealthy), "unhealthy");
  EXPECT_EQ(DeviceHealthName(DeviceHealth::kAny), "");
  EXPECT_EQ(CodeOf(ParseDeviceHealth("")), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(ParseDeviceHealth("Healthy")), ErrorCode::kInvalidArgument);
}

TEST_P(StoreSuite, SchemaIsAtLeastVersionSix) { EXPECT_GE(Value(store_->SchemaVersion()), 6); }

// Every way a device can be unhealthy, through the store's own writes.
TEST_P(StoreSuite, ListDevicesFiltersByHealthGroupAndVersion) {
  SetUpTenant(*store_, "acme");
  SetUpTenant(*store_, "globex");
  if (HasFatalFailure()) return;
  std::vector<ExpectedDevice> devices;
  // 6 states x 2 groups x 2 versions x 2 devices: every combination twice.
  for (int n = 0; n < 48; ++n) {
    const std::string id = DeviceId(n);
    const std::string group = (n / 6) % 2 == 0 ? "acme-g1" : "acme-g2";
    const std::string version = (n / 12) % 2 == 0 ? "1.0" : "2.0";
    const std::string serial = "c" + std::to_string(n);
    ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));
    ASSERT_OK(store_->ClaimDevice(id, "acme", "acme-p", group, 200));
    ASSERT_OK(store_->RecordCheckIn(id, version, "0.1", 1, 1, 300));
    bool healthy = false;
    switch (n % 6) {
      case 0:  // never attested
        break;
      case 1:  // accepted, certificate valid
        ASSERT_OK(store_->RecordAttestation(id, "accepted", version, 400));
        ASSERT_OK(store_->RecordCertificate(IssuedCertificate{serial, id, "acme", kNow + 1000, 400, false}));
        healthy = true;
        break;
      case 2:  // refused (a valid certificate from an earlier attestation does not help)
        ASSERT_OK(store_->RecordAttestation(id, "accepted", version, 400));
        ASSERT_OK(store_->RecordCertificate(IssuedCertificate{serial, id, "acme", kNow + 1000, 400, false}));
        ASSERT_OK(store_->RecordAttestation(id, kRefused, version, 500));
        break;
      case 3:  // accepted, current certificate revoked
        ASSERT_OK(store_->RecordAttestation(id, "accepted", version, 400));
        ASSERT_OK(store_->RecordCertificate(IssuedCertificate{serial, id, "acme", kNow + 1000, 400, false}));
        ASSERT_OK(store_->RevokeCertificate(serial));
        break;
      case 4:  // accepted, certificate lapsed
        ASSERT_OK(store_->RecordAttestation(id, "accepted", version, 400));
        ASSERT_OK(store_->RecordCertificate(IssuedCertificate{serial, id, "acme", kNow - 10, 400, false}));
        break;
      default:  // accepted, certificate expiring at exactly `now`: no longer valid
        ASSERT_OK(store_->RecordAttestation(id, "accepted", version, 400));
        ASSERT_OK(store_->RecordCertificate(IssuedCertificate{serial, id, "acme", kNow, 400, false}));
        break;
    }
    devices.push_back({id, group, version, healthy});
  }
  // Another tenant's healthy devices and an unclaimed one stay out.
  for (int n = 100; n < 103; ++n) {
    ASSERT_OK(store_->RecordDeviceSeen(DeviceId(n), "software", 100));
    ASSERT_OK(store_->ClaimDevice(DeviceId(n), "globex", "globex-p", "globex-g1", 200));
    ASSERT_OK(store_->RecordAttestation(DeviceId(n), "accepted", "1.0", 400));
    ASSERT_OK(store_->RecordCertificate(
        IssuedCertificate{"g" + std::to_string(n), DeviceId(n), "globex", kNow + 1000, 400, false}));
  }
  ASSERT_OK(store_->RecordDeviceSeen(DeviceId(200), "software", 100));

  CheckEveryFilter(*store_, "acme", devices, kNow, 3, "acme-g1", "2.0");
  if (HasFatalFailure()) return;

  // Health follows the writes: a refused device attested again is healthy.
  ASSERT_OK(store_->RecordAttestation(devices[2].id, "accepted", "", 600));
  ASSERT_OK(store_->RecordCertificate(IssuedCertificate{"again", devices[2].id, "acme", kNow + 1000, 600, false}));
  devices[2].healthy = true;
  CheckEveryFilter(*store_, "acme", devices, kNow, 5, "acme-g1", "1.0");
  if (HasFatalFailure()) return;

  // And time: once the certificates lapse, no device is healthy.
  for (auto& device : devices) device.healthy = false;
  CheckEveryFilter(*store_, "acme", devices, kNow + 1000, 4, "acme-g2", "2.0");
  if (HasFatalFailure()) return;

  EXPECT_EQ(CodeOf(store_->ListDevices(DeviceFilter{"acme", "", "", 5, "", DeviceHealth::kHealthy, 0})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CountDevicesUpTo(DeviceFilter{"acme", "", "", 5, "", DeviceHealth::kUnhealthy, 0}, 10)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CountDevicesUpTo(DeviceFilter{"acme", "", "", 5, "", DeviceHealth::kAny, 0}, 0)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CountDevicesUpTo(DeviceFilter{"", "", "", 5, "", DeviceHealth::kAny, 0}, 10)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Value(store_->CountDevicesUpTo(DeviceFilter{"globex", "", "", 5, "", DeviceHealth::kHealthy, kNow}, 10)),
            3);
}

// More than kSmallExpirySet (1000) accepted devices on one side of `now`,
// then on the other: rows written directly, as a large fleet's would be.
TEST_P(StoreSuite, ListDevicesByHealthWhenManyCertificatesLapsedOrNot) {
  SetUpTenant(*store_, "acme");
  if (HasFatalFailure()) return;
  constexpr int kDevices = 2600;
  std::vector<ExpectedDevice> devices;
  std::vector<std::int64_t> expiries;
  {
    auto pool = backend_->OpenPool();
    ASSERT_OK(pool);
    auto lease = (*pool)->Acquire();
    ASSERT_OK(lease);
    SqlConnection& connection = **lease;
    ASSERT_OK(connection.Begin());
    for (int n = 0; n < kDevices; ++n) {
      // Per 4: accepted until kNow + 100, accepted until kNow + 10000,
      // accepted but lapsed, refused.
      const int state = n % 4;
      const std::string id = DeviceId(n);
      const std::string group = n % 3 == 0 ? "acme-g1" : "acme-g2";
      const std::string version = (n / 7) % 2 == 0 ? "1.0" : "2.0";
      const std::string verdict = state == 3 ? std::string(kRefused) : "accepted";
      const std::int64_t expires = state == 0   ? kNow + 100
                                   : state == 1 ? kNow + 10000
                                   : state == 2 ? kNow - 5
                                                : kNow + 10000;
      auto inserted = connection.Execute(
          "INSERT INTO devices (id, tenant_id, product_id, device_group_id, rot_backend, first_seen, last_seen, "
          "claimed_at, last_attested_at, last_verdict, os_version, certificate_serial, certificate_expires_at, "
          "revoked) VALUES ($1, $2, $3, $4, $5, $6, $6, $6, $6, $7, $8, $1, $9, 0)",
          {id, "acme", "acme-p", group, "software", std::int64_t{100}, verdict, version, expires});
      ASSERT_TRUE(inserted.has_value()) << inserted.error().message();
      devices.push_back({id, group, version, false});
      expiries.push_back(state == 3 ? 0 : expires);
    }
    ASSERT_OK(connection.Commit());
  }
  // At kNow: 1300 accepted and valid (the dense side), 650 lapsed (the small side).
  for (std::size_t i = 0; i < devices.size(); ++i) devices[i].healthy = expiries[i] > kNow;
  CheckEveryFilter(*store_, "acme", devices, kNow, 400, "acme-g1", "2.0");
  if (HasFatalFailure()) return;
  // At kNow + 500: 1300 lapsed (dense), 650 valid (small).
  for (std::size_t i = 0; i < devices.size(); ++i) devices[i].healthy = expiries[i] > kNow + 500;
  CheckEveryFilter(*store_, "acme", devices, kNow + 500, 400, "acme-g2", "1.0");
}

}  // namespace citadel::store::test
