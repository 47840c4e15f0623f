// Behaviour every Store backend must have. Each test runs on a fresh
// database from the backend's StoreBackend.
#include "store_suite.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <latch>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "store/migrations.hpp"
#include "store/sql_store.hpp"

namespace citadel::store::test {
namespace {

constexpr int kRacers = 8;

Tenant MakeTenant(const std::string& id) { return Tenant{id, "Tenant " + id, 1000}; }

TenantCa MakeCa(const std::string& tenant_id) {
  return TenantCa{tenant_id, "-----BEGIN CERTIFICATE-----\nroot-" + tenant_id + "\n-----END CERTIFICATE-----\n",
                  "-----BEGIN CERTIFICATE-----\nissuing-" + tenant_id + "\n-----END CERTIFICATE-----\n",
                  "sealed-root-" + tenant_id, "sealed-issuing-" + tenant_id};
}

// A tenant with one product "<tenant>-p" and groups "<tenant>-g1", "<tenant>-g2".
void CreateTenantWithProduct(Store& store, const std::string& tenant_id) {
  ASSERT_OK(store.CreateTenant(MakeTenant(tenant_id), MakeCa(tenant_id)));
  const std::string product_id = tenant_id + "-p";
  ASSERT_OK(store.CreateProduct(Product{product_id, tenant_id, "Thermostat", "", 1100},
                                {DeviceGroup{tenant_id + "-g1", tenant_id, product_id, "Development", 1100},
                                 DeviceGroup{tenant_id + "-g2", tenant_id, product_id, "Production", 1100}}));
}

std::string DeviceId(int n) {
  char buffer[65];
  (void)std::snprintf(buffer, sizeof buffer, "%064x", n);
  return buffer;
}

}  // namespace

void StoreMigrationSuite::SetUp() {
  backend_ = GetParam().make();
  backend_->Prepare();
  if (HasFatalFailure()) return;
  auto store = backend_->Open();
  ASSERT_TRUE(store.has_value()) << store.error().message();
  store_ = std::move(*store);
}

void StoreMigrationSuite::TearDown() {
  store_.reset();
  if (backend_) backend_->Cleanup();
}

void StoreSuite::SetUp() {
  StoreMigrationSuite::SetUp();
  if (HasFatalFailure()) return;
  ASSERT_OK(store_->Migrate());
}

// ---------------------------------------------------------------- migrations

TEST_P(StoreMigrationSuite, FreshDatabaseIsAtVersionZeroAndMigratesToLatest) {
  auto before = store_->SchemaVersion();
  ASSERT_OK(before);
  EXPECT_EQ(*before, 0);
  ASSERT_OK(store_->Migrate());
  auto after = store_->SchemaVersion();
  ASSERT_OK(after);
  EXPECT_EQ(*after, LatestSchemaVersion());
  EXPECT_GE(LatestSchemaVersion(), 1);
}

TEST_P(StoreMigrationSuite, MigrateIsIdempotent) {
  ASSERT_OK(store_->Migrate());
  ASSERT_OK(store_->CreateTenant(MakeTenant("t1"), MakeCa("t1")));
  ASSERT_OK(store_->Migrate());
  ASSERT_OK(store_->Migrate());
  auto version = store_->SchemaVersion();
  ASSERT_OK(version);
  EXPECT_EQ(*version, LatestSchemaVersion());
  // Re-running did not recreate (and so empty) the tables.
  auto tenant = store_->GetTenant("t1");
  ASSERT_OK(tenant);
  EXPECT_EQ(tenant->name, "Tenant t1");
}

TEST_P(StoreMigrationSuite, TwoReplicasMigratingAtOnceBothSucceed) {
  std::vector<std::unique_ptr<Store>> replicas;
  for (int i = 0; i < 4; ++i) {
    auto replica = backend_->Open();
    ASSERT_OK(replica);
    replicas.push_back(std::move(*replica));
  }
  std::latch start(static_cast<std::ptrdiff_t>(replicas.size()));
  std::vector<std::optional<Error>> errors(replicas.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto migrated = replicas[i]->Migrate();
      if (!migrated) errors[i] = migrated.error();
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) EXPECT_FALSE(error.has_value()) << error->message();
  auto version = store_->SchemaVersion();
  ASSERT_OK(version);
  EXPECT_EQ(*version, LatestSchemaVersion());
  ASSERT_OK(replicas[0]->CreateTenant(MakeTenant("t1"), MakeCa("t1")));
  EXPECT_OK(store_->GetTenant("t1"));
}

// ---------------------------------------------------------------- tenants

TEST_P(StoreSuite, TenantAndCaRoundTrip) {
  ASSERT_OK(store_->CreateTenant(Tenant{"acme", "Acme Corp", 1234}, MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(Tenant{"globex", "Globex", 1235}, MakeCa("globex")));

  auto tenant = store_->GetTenant("acme");
  ASSERT_OK(tenant);
  EXPECT_EQ(tenant->id, "acme");
  EXPECT_EQ(tenant->name, "Acme Corp");
  EXPECT_EQ(tenant->created_at, 1234);

  auto ca = store_->GetTenantCa("acme");
  ASSERT_OK(ca);
  const TenantCa expected = MakeCa("acme");
  EXPECT_EQ(ca->tenant_id, "acme");
  EXPECT_EQ(ca->root_certificate_pem, expected.root_certificate_pem);
  EXPECT_EQ(ca->issuing_certificate_pem, expected.issuing_certificate_pem);
  EXPECT_EQ(ca->sealed_root_key, expected.sealed_root_key);
  EXPECT_EQ(ca->sealed_issuing_key, expected.sealed_issuing_key);

  auto tenants = store_->ListTenants();
  ASSERT_OK(tenants);
  ASSERT_EQ(tenants->size(), 2u);
  EXPECT_EQ((*tenants)[0].id, "acme");
  EXPECT_EQ((*tenants)[1].id, "globex");

  EXPECT_EQ(CodeOf(store_->CreateTenant(Tenant{"acme", "Again", 1}, MakeCa("acme"))), ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->GetTenant("nobody")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetTenantCa("nobody")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->CreateTenant(Tenant{"initech", "Initech", 1}, MakeCa("acme"))), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->GetTenant("initech")), ErrorCode::kNotFound);
}

// ---------------------------------------------------------------- API tokens

TEST_P(StoreSuite, ApiTokenFoundByHashAndRevoked) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  const std::string hash_admin(64, 'a');
  const std::string hash_reader(64, 'b');
  const std::string hash_operator(64, 'c');
  ASSERT_OK(store_->CreateApiToken(ApiToken{"tok-1", "acme", "ci", Role::kAdmin, hash_admin, 10, false}));
  ASSERT_OK(store_->CreateApiToken(ApiToken{"tok-2", "acme", "dash", Role::kReader, hash_reader, 11, false}));
  ASSERT_OK(store_->CreateApiToken(ApiToken{"tok-op", "", "root", Role::kOperator, hash_operator, 12, false}));

  auto found = store_->FindApiTokenByHash(hash_admin);
  ASSERT_OK(found);
  EXPECT_EQ(found->id, "tok-1");
  EXPECT_EQ(found->tenant_id, "acme");
  EXPECT_EQ(found->name, "ci");
  EXPECT_EQ(found->role, Role::kAdmin);
  EXPECT_EQ(found->token_hash, hash_admin);
  EXPECT_EQ(found->created_at, 10);
  EXPECT_FALSE(found->revoked);

  auto operator_token = store_->FindApiTokenByHash(hash_operator);
  ASSERT_OK(operator_token);
  EXPECT_EQ(operator_token->tenant_id, "");
  EXPECT_EQ(operator_token->role, Role::kOperator);

  auto tenant_tokens = store_->ListApiTokens("acme");
  ASSERT_OK(tenant_tokens);
  ASSERT_EQ(tenant_tokens->size(), 2u);
  EXPECT_EQ((*tenant_tokens)[0].id, "tok-1");
  EXPECT_EQ((*tenant_tokens)[1].id, "tok-2");
  auto platform_tokens = store_->ListApiTokens("");
  ASSERT_OK(platform_tokens);
  ASSERT_EQ(platform_tokens->size(), 1u);
  EXPECT_EQ((*platform_tokens)[0].id, "tok-op");

  // Another tenant (or the platform scope) cannot revoke acme's token.
  EXPECT_EQ(CodeOf(store_->RevokeApiToken("", "tok-1")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RevokeApiToken("globex", "tok-1")), ErrorCode::kNotFound);
  ASSERT_OK(store_->FindApiTokenByHash(hash_admin));
  EXPECT_FALSE(store_->FindApiTokenByHash(hash_admin)->revoked);

  ASSERT_OK(store_->RevokeApiToken("acme", "tok-1"));
  auto revoked = store_->FindApiTokenByHash(hash_admin);
  ASSERT_OK(revoked);
  EXPECT_TRUE(revoked->revoked);
  EXPECT_FALSE(store_->FindApiTokenByHash(hash_reader)->revoked);
  EXPECT_OK(store_->RevokeApiToken("acme", "tok-1"));  // idempotent
  EXPECT_EQ(CodeOf(store_->RevokeApiToken("acme", "tok-missing")), ErrorCode::kNotFound);

  EXPECT_EQ(CodeOf(store_->FindApiTokenByHash(std::string(64, 'f'))), ErrorCode::kNotFound);
  auto duplicate = store_->CreateApiToken(ApiToken{"tok-3", "acme", "dup", Role::kReader, hash_reader, 13, false});
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().code(), ErrorCode::kAlreadyExists);
  // SECURITY: the hash of a live token never appears in an error.
  EXPECT_EQ(duplicate.error().message().find(hash_reader), std::string::npos) << duplicate.error().message();
  EXPECT_EQ(CodeOf(store_->CreateApiToken(ApiToken{"tok-4", "nobody", "x", Role::kReader, std::string(64, 'd'), 1})),
            ErrorCode::kNotFound);
}

// ---------------------------------------------------------------- products and groups

TEST_P(StoreSuite, ProductIsCreatedWithItsDefaultGroups) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  const std::vector<DeviceGroup> groups = {
      DeviceGroup{"g-dev", "acme", "p1", "Development", 500},
      DeviceGroup{"g-test", "acme", "p1", "Field Test", 500},
      DeviceGroup{"g-prod", "acme", "p1", "Production", 500},
  };
  ASSERT_OK(store_->CreateProduct(Product{"p1", "acme", "Thermostat", "Smart thermostat", 500}, groups));

  auto product = store_->GetProduct("acme", "p1");
  ASSERT_OK(product);
  EXPECT_EQ(product->name, "Thermostat");
  EXPECT_EQ(product->description, "Smart thermostat");
  EXPECT_EQ(product->tenant_id, "acme");
  EXPECT_EQ(product->created_at, 500);

  auto listed = store_->ListDeviceGroups("acme", "p1");
  ASSERT_OK(listed);
  std::set<std::string> names;
  for (const DeviceGroup& group : *listed) {
    EXPECT_EQ(group.product_id, "p1");
    EXPECT_EQ(group.tenant_id, "acme");
    names.insert(group.name);
  }
  EXPECT_EQ(names, (std::set<std::string>{"Development", "Field Test", "Production"}));

  auto group = store_->GetDeviceGroup("acme", "g-prod");
  ASSERT_OK(group);
  EXPECT_EQ(group->name, "Production");

  // Atomic: a failing default group leaves no product behind.
  auto clash = store_->CreateProduct(Product{"p2", "acme", "Fridge", "", 600},
                                     {DeviceGroup{"g-dev", "acme", "p2", "Development", 600}});
  EXPECT_EQ(CodeOf(clash), ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->GetProduct("acme", "p2")), ErrorCode::kNotFound);

  EXPECT_EQ(CodeOf(store_->CreateProduct(Product{"p3", "acme", "Oven", "", 600},
                                         {DeviceGroup{"g-x", "acme", "p1", "Development", 600}})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CreateProduct(Product{"p4", "acme", "Thermostat", "", 600}, {})), ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->CreateProduct(Product{"p5", "nobody", "Lamp", "", 600}, {})), ErrorCode::kNotFound);

  auto products = store_->ListProducts("acme");
  ASSERT_OK(products);
  ASSERT_EQ(products->size(), 1u);
  EXPECT_EQ((*products)[0].id, "p1");
}

TEST_P(StoreSuite, DeviceGroupsAreListedByProductAndTenant) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  ASSERT_OK(store_->CreateProduct(Product{"acme-q", "acme", "Fridge", "", 1200},
                                  {DeviceGroup{"acme-q-g1", "acme", "acme-q", "Development", 1200}}));
  ASSERT_OK(store_->CreateDeviceGroup(DeviceGroup{"acme-q-g2", "acme", "acme-q", "Beta", 1300}));

  auto of_q = store_->ListDeviceGroups("acme", "acme-q");
  ASSERT_OK(of_q);
  ASSERT_EQ(of_q->size(), 2u);
  EXPECT_EQ((*of_q)[0].id, "acme-q-g1");
  EXPECT_EQ((*of_q)[1].id, "acme-q-g2");

  auto of_p = store_->ListDeviceGroups("acme", "acme-p");
  ASSERT_OK(of_p);
  EXPECT_EQ(of_p->size(), 2u);
  auto all_acme = store_->ListDeviceGroups("acme", "");
  ASSERT_OK(all_acme);
  EXPECT_EQ(all_acme->size(), 4u);
  for (const DeviceGroup& group : *all_acme) EXPECT_EQ(group.tenant_id, "acme");

  // Tenant isolation: globex sees none of acme's groups or products.
  auto cross = store_->ListDeviceGroups("globex", "acme-q");
  ASSERT_OK(cross);
  EXPECT_TRUE(cross->empty());
  EXPECT_EQ(CodeOf(store_->GetDeviceGroup("globex", "acme-q-g1")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetProduct("globex", "acme-q")), ErrorCode::kNotFound);

  EXPECT_EQ(CodeOf(store_->CreateDeviceGroup(DeviceGroup{"x", "acme", "missing", "X", 1})), ErrorCode::kNotFound);
  // A group cannot point at another tenant's product.
  EXPECT_EQ(CodeOf(store_->CreateDeviceGroup(DeviceGroup{"y", "globex", "acme-q", "Y", 1})), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->CreateDeviceGroup(DeviceGroup{"acme-q-g3", "acme", "acme-q", "Beta", 1})),
            ErrorCode::kAlreadyExists);
}

// ---------------------------------------------------------------- devices

TEST_P(StoreSuite, RecordDeviceSeenIsIdempotent) {
  const std::string id = DeviceId(1);
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 200));
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 150));  // late, out of order

  auto device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->id, id);
  EXPECT_EQ(device->rot_backend, "software");
  EXPECT_EQ(device->first_seen, 100);
  EXPECT_EQ(device->last_seen, 200);
  EXPECT_EQ(device->tenant_id, "");
  EXPECT_EQ(device->product_id, "");
  EXPECT_EQ(device->device_group_id, "");
  EXPECT_EQ(device->claimed_at, 0);
  EXPECT_FALSE(device->revoked);
  EXPECT_EQ(CodeOf(store_->GetDevice(DeviceId(2))), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, ClaimDeviceOnceAndReportsWhoHoldsIt) {
  CreateTenantWithProduct(*store_, "tenant-alpha");
  CreateTenantWithProduct(*store_, "tenant-bravo");
  const std::string id = DeviceId(7);
  ASSERT_OK(store_->RecordDeviceSeen(id, "tpm2", 100));

  // Into a group of another product: refused, device stays unclaimed.
  EXPECT_EQ(CodeOf(store_->ClaimDevice(id, "tenant-alpha", "tenant-alpha-p", "tenant-bravo-g1", 150)),
            ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetDevice(id)->tenant_id, "");

  ASSERT_OK(store_->ClaimDevice(id, "tenant-alpha", "tenant-alpha-p", "tenant-alpha-g2", 200));
  auto device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->tenant_id, "tenant-alpha");
  EXPECT_EQ(device->product_id, "tenant-alpha-p");
  EXPECT_EQ(device->device_group_id, "tenant-alpha-g2");
  EXPECT_EQ(device->claimed_at, 200);

  auto again = store_->ClaimDevice(id, "tenant-alpha", "tenant-alpha-p", "tenant-alpha-g1", 300);
  EXPECT_EQ(CodeOf(again), ErrorCode::kAlreadyExists);

  auto other = store_->ClaimDevice(id, "tenant-bravo", "tenant-bravo-p", "tenant-bravo-g1", 300);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kConflict);
  // SECURITY: the loser learns nothing about who holds the device.
  EXPECT_EQ(other.error().message().find("tenant-alpha"), std::string::npos) << other.error().message();

  device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->tenant_id, "tenant-alpha");
  EXPECT_EQ(device->device_group_id, "tenant-alpha-g2");
  EXPECT_EQ(device->claimed_at, 200);

  EXPECT_EQ(CodeOf(store_->ClaimDevice(DeviceId(8), "tenant-alpha", "tenant-alpha-p", "tenant-alpha-g1", 300)),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetDevice(DeviceId(8))), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, ConcurrentClaimsHaveExactlyOneWinner) {
  std::vector<std::string> tenants;
  for (int i = 0; i < kRacers; ++i) {
    tenants.push_back("racer-" + std::to_string(i));
    CreateTenantWithProduct(*store_, tenants.back());
    if (HasFatalFailure()) return;
  }
  const std::string id = DeviceId(42);
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));

  std::latch start(kRacers);
  std::vector<std::optional<ErrorCode>> outcomes(kRacers);  // nullopt = claimed
  std::vector<std::thread> threads;
  threads.reserve(kRacers);
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      const std::string& tenant = tenants[static_cast<std::size_t>(i)];
      start.arrive_and_wait();
      auto claimed = store_->ClaimDevice(id, tenant, tenant + "-p", tenant + "-g1", 200 + i);
      if (!claimed) outcomes[static_cast<std::size_t>(i)] = claimed.error().code();
    });
  }
  for (auto& thread : threads) thread.join();

  int winners = 0;
  std::string winner;
  for (int i = 0; i < kRacers; ++i) {
    const auto& outcome = outcomes[static_cast<std::size_t>(i)];
    if (!outcome.has_value()) {
      ++winners;
      winner = tenants[static_cast<std::size_t>(i)];
    } else {
      EXPECT_EQ(*outcome, ErrorCode::kConflict) << "racer " << i;
    }
  }
  EXPECT_EQ(winners, 1);
  auto device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->tenant_id, winner);
  EXPECT_EQ(device->device_group_id, winner + "-g1");
}

TEST_P(StoreSuite, AttestationAndCheckInUpdateTheDevice) {
  const std::string id = DeviceId(3);
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));
  ASSERT_OK(store_->RecordAttestation(id, "accepted", "1.2.0", 300));
  auto device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->last_verdict, "accepted");
  EXPECT_EQ(device->last_attested_at, 300);
  EXPECT_EQ(device->os_version, "1.2.0");
  EXPECT_EQ(device->last_seen, 300);

  // A rejected attestation without a version keeps the known one.
  ASSERT_OK(store_->RecordAttestation(id, "urn:citadel:problem:bad-signature", "", 400));
  device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->last_verdict, "urn:citadel:problem:bad-signature");
  EXPECT_EQ(device->os_version, "1.2.0");

  ASSERT_OK(store_->RecordCheckIn(id, "1.3.0", "0.9.1", 3600, 20480, 500));
  device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->os_version, "1.3.0");
  EXPECT_EQ(device->runtime_version, "0.9.1");
  EXPECT_EQ(device->uptime_seconds, 3600);
  EXPECT_EQ(device->free_memory_kb, 20480);
  EXPECT_EQ(device->last_seen, 500);
  EXPECT_EQ(device->first_seen, 100);

  EXPECT_EQ(CodeOf(store_->RecordAttestation(DeviceId(4), "accepted", "1.0", 1)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RecordCheckIn(DeviceId(4), "1.0", "1.0", 1, 1, 1)), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, ListDevicesFiltersAndPaginates) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  if (HasFatalFailure()) return;
  std::vector<std::string> all, in_g1, on_v2, in_g1_on_v2;
  for (int n = 0; n < 30; ++n) {
    const std::string id = DeviceId(1000 + n * 7919 % 4096);  // not inserted in id order
    ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));
    const bool g1 = n % 3 == 0;
    const bool v2 = n % 2 == 0;
    ASSERT_OK(store_->ClaimDevice(id, "acme", "acme-p", g1 ? "acme-g1" : "acme-g2", 200));
    ASSERT_OK(store_->RecordCheckIn(id, v2 ? "2.0" : "1.0", "0.1", 1, 1, 300));
    all.push_back(id);
    if (g1) in_g1.push_back(id);
    if (v2) on_v2.push_back(id);
    if (g1 && v2) in_g1_on_v2.push_back(id);
  }
  for (int n = 0; n < 5; ++n) {  // other tenant's and unclaimed devices stay out
    ASSERT_OK(store_->RecordDeviceSeen(DeviceId(9000 + n), "software", 100));
    if (n % 2 == 0) ASSERT_OK(store_->ClaimDevice(DeviceId(9000 + n), "globex", "globex-p", "globex-g1", 200));
  }
  for (auto* ids : {&all, &in_g1, &on_v2, &in_g1_on_v2}) std::sort(ids->begin(), ids->end());

  auto list_all_pages = [&](DeviceFilter filter) {
    std::vector<std::string> ids;
    for (int page = 0; page < 100; ++page) {
      auto devices = store_->ListDevices(filter);
      EXPECT_TRUE(devices.has_value()) << devices.error().message();
      if (!devices || devices->empty()) break;
      EXPECT_LE(static_cast<std::int64_t>(devices->size()), filter.limit);
      for (const Device& device : *devices) {
        EXPECT_EQ(device.tenant_id, "acme");
        if (!filter.device_group_id.empty()) {
          EXPECT_EQ(device.device_group_id, filter.device_group_id);
        }
        if (!filter.os_version.empty()) {
          EXPECT_EQ(device.os_version, filter.os_version);
        }
        ids.push_back(device.id);
      }
      filter.after_id = devices->back().id;
    }
    return ids;
  };

  EXPECT_EQ(list_all_pages(DeviceFilter{"acme", "", "", 7, ""}), all);
  EXPECT_EQ(list_all_pages(DeviceFilter{"acme", "", "", 100, ""}), all);
  EXPECT_EQ(list_all_pages(DeviceFilter{"acme", "acme-g1", "", 4, ""}), in_g1);
  EXPECT_EQ(list_all_pages(DeviceFilter{"acme", "", "2.0", 4, ""}), on_v2);
  EXPECT_EQ(list_all_pages(DeviceFilter{"acme", "acme-g1", "2.0", 2, ""}), in_g1_on_v2);

  auto first_page = store_->ListDevices(DeviceFilter{"acme", "", "", 5, ""});
  ASSERT_OK(first_page);
  ASSERT_EQ(first_page->size(), 5u);
  EXPECT_EQ(first_page->front().id, all.front());
  auto past_end = store_->ListDevices(DeviceFilter{"acme", "", "", 5, all.back()});
  ASSERT_OK(past_end);
  EXPECT_TRUE(past_end->empty());
  auto none = store_->ListDevices(DeviceFilter{"acme", "no-such-group", "", 5, ""});
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto globex = store_->ListDevices(DeviceFilter{"globex", "", "", 100, ""});
  ASSERT_OK(globex);
  EXPECT_EQ(globex->size(), 3u);

  EXPECT_EQ(CodeOf(store_->ListDevices(DeviceFilter{"", "", "", 5, ""})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->ListDevices(DeviceFilter{"acme", "", "", 0, ""})), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------- nonces

TEST_P(StoreSuite, NonceIsConsumedExactlyOnceUnderRace) {
  const std::string hash(64, '1');
  ASSERT_OK(store_->CreateNonce(hash, 1000));

  std::latch start(kRacers);
  std::vector<std::optional<NonceResult>> results(kRacers);
  std::vector<std::thread> threads;
  threads.reserve(kRacers);
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto result = store_->ConsumeNonce(hash, 500);
      if (result) results[static_cast<std::size_t>(i)] = *result;
    });
  }
  for (auto& thread : threads) thread.join();

  int consumed = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.has_value()) << "a ConsumeNonce call failed";
    if (*result == NonceResult::kConsumed) {
      ++consumed;
    } else {
      EXPECT_EQ(*result, NonceResult::kUnknownOrUsed);
    }
  }
  EXPECT_EQ(consumed, 1);
  auto replay = store_->ConsumeNonce(hash, 501);
  ASSERT_OK(replay);
  EXPECT_EQ(*replay, NonceResult::kUnknownOrUsed);
}

// A TPM activation is taken once, by one caller, however many race; a
// taken, unknown or expired one is kNotFound; the binding it leads to is
// read back and replaced by a later one.
TEST_P(StoreSuite, TpmActivationIsTakenExactlyOnceUnderRace) {
  const TpmActivation activation{"act-1", std::string(64, 'a'), std::string(64, 'e'), std::string(64, 's'), 1000};
  ASSERT_OK(store_->CreateTpmActivation(activation, 500));
  EXPECT_EQ(CodeOf(store_->CreateTpmActivation(activation, 500)), ErrorCode::kAlreadyExists);

  std::latch start(kRacers);
  std::vector<std::optional<TpmActivation>> taken(kRacers);
  std::vector<ErrorCode> codes(kRacers, ErrorCode::kInternal);
  std::vector<std::thread> threads;
  threads.reserve(kRacers);
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto result = store_->TakeTpmActivation("act-1", 600);
      if (result) {
        taken[static_cast<std::size_t>(i)] = *result;
      } else {
        codes[static_cast<std::size_t>(i)] = result.error().code();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  int winners = 0;
  for (int i = 0; i < kRacers; ++i) {
    if (taken[static_cast<std::size_t>(i)]) {
      ++winners;
      EXPECT_EQ(taken[static_cast<std::size_t>(i)]->device_id, activation.device_id);
      EXPECT_EQ(taken[static_cast<std::size_t>(i)]->ek_fingerprint, activation.ek_fingerprint);
      EXPECT_EQ(taken[static_cast<std::size_t>(i)]->secret_hash, activation.secret_hash);
      EXPECT_EQ(taken[static_cast<std::size_t>(i)]->expires_at, 1000);
    } else {
      EXPECT_EQ(codes[static_cast<std::size_t>(i)], ErrorCode::kNotFound);
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(CodeOf(store_->TakeTpmActivation("act-1", 601)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->TakeTpmActivation("never", 601)), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, TpmActivationExpiresAndBindingsAreReplaced) {
  ASSERT_OK(store_->CreateTpmActivation({"act-2", std::string(64, 'b'), "ek", "hash", 1000}, 500));
  EXPECT_EQ(CodeOf(store_->TakeTpmActivation("act-2", 1000)), ErrorCode::kNotFound);  // at expiry: gone
  // Creating another activation later drops the expired ones.
  ASSERT_OK(store_->CreateTpmActivation({"act-3", std::string(64, 'c'), "ek", "hash", 3000}, 1500));
  ASSERT_OK(store_->CreateTpmActivation({"act-4", std::string(64, 'c'), "ek", "hash", 1400}, 1000));
  ASSERT_OK(store_->CreateTpmActivation({"act-5", std::string(64, 'c'), "ek", "hash", 9000}, 2000));
  EXPECT_EQ(CodeOf(store_->TakeTpmActivation("act-4", 1300)), ErrorCode::kNotFound) << "dropped at 2000";
  EXPECT_TRUE(store_->TakeTpmActivation("act-3", 2500).has_value());

  const std::string device(64, 'd');
  auto none = store_->GetTpmBinding(device);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  ASSERT_OK(store_->BindTpmKey({device, "ek-1", 100}));
  ASSERT_OK(store_->BindTpmKey({device, "ek-2", 200}));
  auto bound = store_->GetTpmBinding(device);
  ASSERT_OK(bound);
  ASSERT_TRUE(bound->has_value());
  EXPECT_EQ((*bound)->ek_fingerprint, "ek-2");
  EXPECT_EQ((*bound)->bound_at, 200);
  EXPECT_EQ(CodeOf(store_->BindTpmKey({"", "ek", 1})), ErrorCode::kInvalidArgument);
}

TEST_P(StoreSuite, NonceExpiresAndUnknownNoncesAreRejected) {
  const std::string hash(64, '2');
  ASSERT_OK(store_->CreateNonce(hash, 1000));
  EXPECT_EQ(CodeOf(store_->CreateNonce(hash, 2000)), ErrorCode::kAlreadyExists);

  auto at_expiry = store_->ConsumeNonce(hash, 1000);
  ASSERT_OK(at_expiry);
  EXPECT_EQ(*at_expiry, NonceResult::kExpired);
  auto later = store_->ConsumeNonce(hash, 5000);
  ASSERT_OK(later);
  EXPECT_EQ(*later, NonceResult::kExpired);
  auto unknown = store_->ConsumeNonce(std::string(64, '3'), 10);
  ASSERT_OK(unknown);
  EXPECT_EQ(*unknown, NonceResult::kUnknownOrUsed);

  const std::string fresh(64, '4');
  ASSERT_OK(store_->CreateNonce(fresh, 1000));
  auto just_in_time = store_->ConsumeNonce(fresh, 999);
  ASSERT_OK(just_in_time);
  EXPECT_EQ(*just_in_time, NonceResult::kConsumed);
}

TEST_P(StoreSuite, PurgeRemovesOnlyExpiredNonces) {
  ASSERT_OK(store_->CreateNonce(std::string(64, 'a'), 100));
  ASSERT_OK(store_->CreateNonce(std::string(64, 'b'), 200));
  ASSERT_OK(store_->CreateNonce(std::string(64, 'c'), 300));
  auto purged = store_->PurgeExpiredNonces(250);
  ASSERT_OK(purged);
  EXPECT_EQ(*purged, 2);

  auto gone = store_->ConsumeNonce(std::string(64, 'a'), 50);
  ASSERT_OK(gone);
  EXPECT_EQ(*gone, NonceResult::kUnknownOrUsed);
  auto kept = store_->ConsumeNonce(std::string(64, 'c'), 250);
  ASSERT_OK(kept);
  EXPECT_EQ(*kept, NonceResult::kConsumed);

  auto again = store_->PurgeExpiredNonces(250);
  ASSERT_OK(again);
  EXPECT_EQ(*again, 0);
}

// ---------------------------------------------------------------- certificates

TEST_P(StoreSuite, CertificatesAreRecordedAndRevoked) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  const std::string id = DeviceId(5);
  ASSERT_OK(store_->RecordDeviceSeen(id, "software", 100));

  // Not yet claimed: no tenant CA may certify it.
  EXPECT_EQ(CodeOf(store_->RecordCertificate(IssuedCertificate{"01", id, "acme", 9000, 100, false})),
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(CodeOf(store_->GetCertificate("01")), ErrorCode::kNotFound);

  ASSERT_OK(store_->ClaimDevice(id, "acme", "acme-p", "acme-g1", 150));
  ASSERT_OK(store_->RecordCertificate(IssuedCertificate{"0a01", id, "acme", 86600, 200, false}));
  auto certificate = store_->GetCertificate("0a01");
  ASSERT_OK(certificate);
  EXPECT_EQ(certificate->serial_hex, "0a01");
  EXPECT_EQ(certificate->device_id, id);
  EXPECT_EQ(certificate->tenant_id, "acme");
  EXPECT_EQ(certificate->not_after, 86600);
  EXPECT_EQ(certificate->issued_at, 200);
  EXPECT_FALSE(certificate->revoked);
  auto device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->certificate_serial, "0a01");
  EXPECT_EQ(device->certificate_expires_at, 86600);
  EXPECT_FALSE(device->revoked);

  ASSERT_OK(store_->RecordCertificate(IssuedCertificate{"0a02", id, "acme", 172000, 86000, false}));
  device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_EQ(device->certificate_serial, "0a02");
  EXPECT_EQ(device->certificate_expires_at, 172000);

  // Revoking a superseded certificate leaves the device's current one alone.
  ASSERT_OK(store_->RevokeCertificate("0a01"));
  EXPECT_TRUE(store_->GetCertificate("0a01")->revoked);
  EXPECT_FALSE(store_->GetDevice(id)->revoked);

  ASSERT_OK(store_->RevokeCertificate("0a02"));
  EXPECT_TRUE(store_->GetCertificate("0a02")->revoked);
  device = store_->GetDevice(id);
  ASSERT_OK(device);
  EXPECT_TRUE(device->revoked);
  EXPECT_EQ(device->certificate_serial, "0a02");

  EXPECT_EQ(CodeOf(store_->RevokeCertificate("ffff")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RecordCertificate(IssuedCertificate{"0a02", id, "acme", 1, 1, false})),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->RecordCertificate(IssuedCertificate{"0b01", id, "globex", 1, 1, false})),
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(CodeOf(store_->RecordCertificate(IssuedCertificate{"0c01", DeviceId(6), "acme", 1, 1, false})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetCertificate("0b01")), ErrorCode::kNotFound);
}

// ---------------------------------------------------------------- policy

TEST_P(StoreSuite, PolicyRulesAreAddedListedAndRemoved) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  ASSERT_OK(store_->AddPolicyRule(PolicyRule{"acme", "revoked-os-version", "1.2.0", 10}));
  ASSERT_OK(store_->AddPolicyRule(PolicyRule{"acme", "revoked-runtime-digest", std::string(64, 'e'), 11}));
  ASSERT_OK(store_->AddPolicyRule(PolicyRule{"acme", "revoked-os-version", "1.1.0", 12}));
  ASSERT_OK(store_->AddPolicyRule(PolicyRule{"globex", "revoked-os-version", "9.9.9", 13}));

  EXPECT_EQ(CodeOf(store_->AddPolicyRule(PolicyRule{"acme", "revoked-os-version", "1.2.0", 20})),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->AddPolicyRule(PolicyRule{"nobody", "revoked-os-version", "1.2.0", 20})),
            ErrorCode::kNotFound);

  auto rules = store_->ListPolicyRules("acme");
  ASSERT_OK(rules);
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[0].kind, "revoked-os-version");
  EXPECT_EQ((*rules)[0].value, "1.1.0");
  EXPECT_EQ((*rules)[0].created_at, 12);
  EXPECT_EQ((*rules)[1].value, "1.2.0");
  EXPECT_EQ((*rules)[2].kind, "revoked-runtime-digest");
  for (const PolicyRule& rule : *rules) EXPECT_EQ(rule.tenant_id, "acme");

  ASSERT_OK(store_->RemovePolicyRule("acme", "revoked-os-version", "1.2.0"));
  EXPECT_EQ(CodeOf(store_->RemovePolicyRule("acme", "revoked-os-version", "1.2.0")), ErrorCode::kNotFound);
  // One tenant cannot remove another's rule.
  EXPECT_EQ(CodeOf(store_->RemovePolicyRule("acme", "revoked-os-version", "9.9.9")), ErrorCode::kNotFound);
  rules = store_->ListPolicyRules("acme");
  ASSERT_OK(rules);
  EXPECT_EQ(rules->size(), 2u);
  auto globex = store_->ListPolicyRules("globex");
  ASSERT_OK(globex);
  ASSERT_EQ(globex->size(), 1u);
  EXPECT_EQ((*globex)[0].value, "9.9.9");
}

// ---------------------------------------------------------------- audit

TEST_P(StoreSuite, AuditIsNewestFirstAndPerTenant) {
  const std::vector<AuditEvent> events = {
      AuditEvent{0, 100, "acme", "token:t1", "product.create", "p1", R"({"name":"Thermostat"})"},
      AuditEvent{0, 101, "globex", "token:t9", "product.create", "p9", "{}"},
      AuditEvent{0, 102, "acme", "device:abc", "attestation.verdict", "abc", R"({"verdict":"accepted"})"},
      AuditEvent{0, 103, "", "system", "tenant.create", "acme", ""},
      AuditEvent{0, 104, "acme", "token:t1", "device.claim", "abc", "{}"},
  };
  for (const AuditEvent& event : events) ASSERT_OK(store_->AppendAudit(event));

  auto acme = store_->ListAudit("acme", 10);
  ASSERT_OK(acme);
  ASSERT_EQ(acme->size(), 3u);
  EXPECT_EQ((*acme)[0].action, "device.claim");
  EXPECT_EQ((*acme)[1].action, "attestation.verdict");
  EXPECT_EQ((*acme)[2].action, "product.create");
  EXPECT_GT((*acme)[0].id, (*acme)[1].id);
  EXPECT_GT((*acme)[1].id, (*acme)[2].id);
  EXPECT_EQ((*acme)[1].time, 102);
  EXPECT_EQ((*acme)[1].actor, "device:abc");
  EXPECT_EQ((*acme)[1].target, "abc");
  EXPECT_EQ((*acme)[1].details_json, R"({"verdict":"accepted"})");
  for (const AuditEvent& event : *acme) EXPECT_EQ(event.tenant_id, "acme");

  auto limited = store_->ListAudit("acme", 2);
  ASSERT_OK(limited);
  ASSERT_EQ(limited->size(), 2u);
  EXPECT_EQ((*limited)[0].action, "device.claim");
  EXPECT_EQ((*limited)[1].action, "attestation.verdict");

  auto globex = store_->ListAudit("globex", 10);
  ASSERT_OK(globex);
  ASSERT_EQ(globex->size(), 1u);
  EXPECT_EQ((*globex)[0].target, "p9");

  auto platform = store_->ListAudit("", 10);
  ASSERT_OK(platform);
  ASSERT_EQ(platform->size(), 1u);
  EXPECT_EQ((*platform)[0].action, "tenant.create");
  EXPECT_EQ((*platform)[0].details_json, "{}");

  EXPECT_EQ(CodeOf(store_->ListAudit("acme", 0)), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------- app trust

PublisherKey MakePublisherKey(const std::string& tenant_id, int n, std::int64_t created_at) {
  return PublisherKey{tenant_id,
                      DeviceId(1000 + n),
                      "-----BEGIN PUBLIC KEY-----\nkey" + std::to_string(n) + "\n",
                      "key " + std::to_string(n),
                      created_at,
                      0};
}

TEST_P(StoreSuite, MigrationTwoCreatesTheAppTrustTables) {
  auto version = store_->SchemaVersion();
  ASSERT_OK(version);
  EXPECT_GE(*version, 2);
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  auto keys = store_->ListPublisherKeys("acme", true);
  ASSERT_OK(keys);
  EXPECT_TRUE(keys->empty());
  EXPECT_EQ(CodeOf(store_->GetDevelopmentCapability("acme", DeviceId(1))), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, PublisherKeysAreAddedListedAndRevokedPerTenant) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  ASSERT_OK(store_->AddPublisherKey(MakePublisherKey("acme", 2, 200), 10));
  ASSERT_OK(store_->AddPublisherKey(MakePublisherKey("acme", 1, 100), 10));
  // The same key may serve two tenants; each holds its own record.
  ASSERT_OK(store_->AddPublisherKey(MakePublisherKey("globex", 1, 300), 10));
  EXPECT_EQ(CodeOf(store_->AddPublisherKey(MakePublisherKey("acme", 1, 400), 10)), ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->AddPublisherKey(MakePublisherKey("nobody", 1, 400), 10)), ErrorCode::kNotFound);

  auto keys = store_->ListPublisherKeys("acme", false);
  ASSERT_OK(keys);
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].key_id, DeviceId(1001));  // oldest first
  EXPECT_EQ((*keys)[0].name, "key 1");
  EXPECT_EQ((*keys)[0].public_key_pem, "-----BEGIN PUBLIC KEY-----\nkey1\n");
  EXPECT_EQ((*keys)[0].created_at, 100);
  EXPECT_EQ((*keys)[0].revoked_at, 0);
  EXPECT_EQ((*keys)[1].key_id, DeviceId(1002));

  ASSERT_OK(store_->RevokePublisherKey("acme", DeviceId(1001), 500));
  EXPECT_EQ(CodeOf(store_->RevokePublisherKey("acme", DeviceId(1001), 600)), ErrorCode::kConflict);
  EXPECT_EQ(CodeOf(store_->RevokePublisherKey("acme", DeviceId(1009), 600)), ErrorCode::kNotFound);
  // Another tenant cannot revoke acme's key, even knowing its id.
  EXPECT_EQ(CodeOf(store_->RevokePublisherKey("globex", DeviceId(1002), 600)), ErrorCode::kNotFound);

  auto active = store_->ListPublisherKeys("acme", false);
  ASSERT_OK(active);
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].key_id, DeviceId(1002));
  auto all = store_->ListPublisherKeys("acme", true);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].revoked_at, 500);
  // A revoked key stays on record: it cannot be registered again.
  EXPECT_EQ(CodeOf(store_->AddPublisherKey(MakePublisherKey("acme", 1, 700), 10)), ErrorCode::kAlreadyExists);
  // globex's copy of key 1 is unaffected.
  auto globex = store_->ListPublisherKeys("globex", false);
  ASSERT_OK(globex);
  ASSERT_EQ(globex->size(), 1u);
  EXPECT_EQ((*globex)[0].revoked_at, 0);
}

TEST_P(StoreSuite, ActivePublisherKeysAreBounded) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->AddPublisherKey(MakePublisherKey("acme", 1, 100), 2));
  ASSERT_OK(store_->AddPublisherKey(MakePublisherKey("acme", 2, 100), 2));
  EXPECT_EQ(CodeOf(store_->AddPublisherKey(MakePublisherKey("acme", 3, 100), 2)), ErrorCode::kConflict);
  ASSERT_OK(store_->RevokePublisherKey("acme", DeviceId(1001), 200));
  EXPECT_OK(store_->AddPublisherKey(MakePublisherKey("acme", 3, 300), 2));
}

TEST_P(StoreSuite, OneDevelopmentCapabilityInForcePerClaimedDevice) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  const std::string device = DeviceId(1);
  ASSERT_OK(store_->RecordDeviceSeen(device, "software", 100));
  // Unclaimed: no capability.
  EXPECT_EQ(CodeOf(store_->ReplaceDevelopmentCapability({"cap-0", "acme", device, "{}", 150, 0})),
            ErrorCode::kFailedPrecondition);
  ASSERT_OK(store_->ClaimDevice(device, "acme", "acme-p", "acme-g1", 150));
  // Claimed by another tenant: refused too.
  EXPECT_EQ(CodeOf(store_->ReplaceDevelopmentCapability({"cap-x", "globex", device, "{}", 160, 0})),
            ErrorCode::kFailedPrecondition);

  ASSERT_OK(store_->ReplaceDevelopmentCapability({"cap-1", "acme", device, R"({"n":1})", 200, 0}));
  auto current = store_->GetDevelopmentCapability("acme", device);
  ASSERT_OK(current);
  EXPECT_EQ(current->capability_id, "cap-1");
  EXPECT_EQ(current->document, R"({"n":1})");
  EXPECT_EQ(current->created_at, 200);
  EXPECT_EQ(current->revoked_at, 0);
  EXPECT_EQ(CodeOf(store_->GetDevelopmentCapability("globex", device)), ErrorCode::kNotFound);

  // Issuing again replaces the one in force.
  ASSERT_OK(store_->ReplaceDevelopmentCapability({"cap-2", "acme", device, R"({"n":2})", 300, 0}));
  current = store_->GetDevelopmentCapability("acme", device);
  ASSERT_OK(current);
  EXPECT_EQ(current->capability_id, "cap-2");
  // Capability ids are unique.
  EXPECT_EQ(CodeOf(store_->ReplaceDevelopmentCapability({"cap-2", "acme", device, "{}", 350, 0})),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(store_->GetDevelopmentCapability("acme", device)->capability_id, "cap-2");

  EXPECT_EQ(CodeOf(store_->RevokeDevelopmentCapability("globex", device, 400)), ErrorCode::kNotFound);
  ASSERT_OK(store_->RevokeDevelopmentCapability("acme", device, 400));
  EXPECT_EQ(CodeOf(store_->GetDevelopmentCapability("acme", device)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RevokeDevelopmentCapability("acme", device, 500)), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, ConcurrentCapabilityIssuesLeaveExactlyOneInForce) {
  CreateTenantWithProduct(*store_, "acme");
  const std::string device = DeviceId(1);
  ASSERT_OK(store_->RecordDeviceSeen(device, "software", 100));
  ASSERT_OK(store_->ClaimDevice(device, "acme", "acme-p", "acme-g1", 150));
  std::vector<std::unique_ptr<Store>> replicas;
  for (int i = 0; i < kRacers; ++i) {
    auto replica = backend_->Open();
    ASSERT_OK(replica);
    replicas.push_back(std::move(*replica));
  }
  std::latch start(kRacers);
  std::vector<std::thread> threads;
  threads.reserve(kRacers);
  std::atomic<int> succeeded{0};
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      if (replicas[static_cast<std::size_t>(i)]->ReplaceDevelopmentCapability(
              {"cap-" + std::to_string(i), "acme", device, "{}", 200 + i, 0})) {
        ++succeeded;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_GE(succeeded.load(), 1);
  auto current = store_->GetDevelopmentCapability("acme", device);
  EXPECT_OK(current);
}

// ---------------------------------------------------------------- over-the-air updates (schema v3)

namespace {

// A lower-case hex SHA-256-shaped string, distinct per n.
std::string Sha(int n) { return DeviceId(0x5000 + n); }

Image MakeImage(const std::string& tenant_id, int n, const std::string& component_id, const std::string& version) {
  Image image;
  image.tenant_id = tenant_id;
  image.sha256 = Sha(n);
  image.length = 1000 + n;
  image.kind = component_id == "os" ? ImageKind::kOs : ImageKind::kApp;
  image.component_id = component_id;
  image.version = version;
  image.security_version = n;
  image.target_name = component_id + "/" + version + ".img";
  image.uploaded_at = 100 + n;
  image.uploaded_by = "token:t1";
  return image;
}

RepositoryMetadata MakeMetadata(const std::string& tenant_id, TufRepository repository, const std::string& scope,
                                TufRole role, std::int64_t version) {
  return RepositoryMetadata{tenant_id,
                            repository,
                            scope,
                            role,
                            version,
                            10000 + version,
                            R"({"signed":{"version":)" + std::to_string(version) + "}}",
                            500 + version};
}

Deployment MakeDeployment(const std::string& id, const std::string& tenant_id, const std::string& group_id,
                          const std::string& os_feed, std::int64_t created_at) {
  Deployment deployment;
  deployment.id = id;
  deployment.tenant_id = tenant_id;
  deployment.device_group_id = group_id;
  deployment.os_feed = os_feed;
  deployment.target_names_json = R"(["app/2.0.img"])";
  deployment.percent = 50;
  deployment.created_at = created_at;
  deployment.updated_at = created_at;
  deployment.created_by = "token:t1";
  return deployment;
}

std::vector<std::string> DeploymentIds(const std::vector<Deployment>& deployments) {
  std::vector<std::string> ids;
  ids.reserve(deployments.size());
  for (const Deployment& deployment : deployments) ids.push_back(deployment.id);
  return ids;
}

// Opens kRacers extra stores ("replicas") on the test's database.
std::vector<std::unique_ptr<Store>> OpenReplicas(StoreBackend& backend) {
  std::vector<std::unique_ptr<Store>> replicas;
  for (int i = 0; i < kRacers; ++i) {
    auto replica = backend.Open();
    EXPECT_TRUE(replica.has_value()) << replica.error().message();
    if (!replica) return {};
    replicas.push_back(std::move(*replica));
  }
  return replicas;
}

// Runs attempt(i, replica) on kRacers threads released together; returns
// each attempt's error code, nullopt for success.
template <typename Attempt>
std::vector<std::optional<ErrorCode>> Race(std::vector<std::unique_ptr<Store>>& replicas, Attempt attempt) {
  std::latch start(static_cast<std::ptrdiff_t>(replicas.size()));
  std::vector<std::optional<ErrorCode>> outcomes(replicas.size());
  std::vector<std::thread> threads;
  threads.reserve(replicas.size());
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto result = attempt(static_cast<int>(i), *replicas[i]);
      if (!result) outcomes[i] = result.error().code();
    });
  }
  for (auto& thread : threads) thread.join();
  return outcomes;
}

}  // namespace

TEST_P(StoreMigrationSuite, MigrationThreeKeepsTheRowsOfAVersionTwoDatabase) {
  auto* sql_store = dynamic_cast<SqlStore*>(store_.get());
  ASSERT_NE(sql_store, nullptr);
  EXPECT_EQ(CodeOf(sql_store->MigrateTo(0)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(sql_store->MigrateTo(LatestSchemaVersion() + 1)), ErrorCode::kInvalidArgument);
  ASSERT_OK(sql_store->MigrateTo(2));
  auto version = store_->SchemaVersion();
  ASSERT_OK(version);
  ASSERT_EQ(*version, 2);

  {
    // Rows exactly as the version-2 code wrote them (no v3 columns).
    auto pool = backend_->OpenPool();
    ASSERT_OK(pool);
    auto lease = (*pool)->Acquire();
    ASSERT_OK(lease);
    SqlConnection& connection = **lease;
    // SqlValue holds views: every text it refers to must outlive the loop.
    const std::string device = DeviceId(1);
    const std::string key_id = DeviceId(77);
    for (const auto& [sql, params] : std::vector<std::pair<std::string, std::vector<SqlValue>>>{
             {"INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)", {"acme", "Acme", 1}},
             {"INSERT INTO tenant_cas (tenant_id, root_certificate_pem, issuing_certificate_pem, sealed_root_key, "
              "sealed_issuing_key) VALUES ($1, $2, $3, $4, $5)",
              {"acme", "root", "issuing", "sealed-root", "sealed-issuing"}},
             {"INSERT INTO products (id, tenant_id, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
              {"p1", "acme", "Thermostat", "", 2}},
             {"INSERT INTO device_groups (id, tenant_id, product_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
              {"g1", "acme", "p1", "Development", 3}},
             {"INSERT INTO device_groups (id, tenant_id, product_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
              {"g2", "acme", "p1", "Production", 4}},
             {"INSERT INTO devices (id, rot_backend, first_seen, last_seen) VALUES ($1, $2, $3, $3)",
              {device, "software", 5}},
             {"UPDATE devices SET tenant_id = $2, product_id = $3, device_group_id = $4, claimed_at = $5 WHERE id = $1",
              {device, "acme", "p1", "g2", 6}},
             {"INSERT INTO publisher_keys (tenant_id, key_id, public_key_pem, name, created_at, revoked_at) "
              "VALUES ($1, $2, $3, $4, $5, NULL)",
              {"acme", key_id, "pem", "release", 7}},
         }) {
      auto executed = connection.Execute(sql, std::span<const SqlValue>(params));
      ASSERT_TRUE(executed.has_value()) << sql << ": " << executed.error().message();
    }
  }

  ASSERT_OK(store_->Migrate());
  version = store_->SchemaVersion();
  ASSERT_OK(version);
  EXPECT_EQ(*version, LatestSchemaVersion());
  EXPECT_GE(*version, 3);

  auto tenant = store_->GetTenant("acme");
  ASSERT_OK(tenant);
  EXPECT_EQ(tenant->name, "Acme");
  auto groups = store_->ListDeviceGroups("acme", "p1");
  ASSERT_OK(groups);
  ASSERT_EQ(groups->size(), 2u);
  for (const DeviceGroup& group : *groups) {
    EXPECT_EQ(group.os_feed, "retail") << group.id;
    EXPECT_EQ(group.maintenance_window, "") << group.id;
  }
  EXPECT_EQ((*groups)[1].name, "Production");
  auto device = store_->GetDevice(DeviceId(1));
  ASSERT_OK(device);
  EXPECT_EQ(device->device_group_id, "g2");
  EXPECT_EQ(device->claimed_at, 6);
  EXPECT_FALSE(device->update_now);
  auto keys = store_->ListPublisherKeys("acme", true);
  ASSERT_OK(keys);
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].name, "release");
  auto by_feed = store_->ListDeviceGroupsByOsFeed("acme", "retail");
  ASSERT_OK(by_feed);
  EXPECT_EQ(by_feed->size(), 2u);
  auto count = store_->CountDevices("acme", "g2");
  ASSERT_OK(count);
  EXPECT_EQ(*count, 1);
  // The new tables work on the migrated database.
  ASSERT_OK(store_->AddImage(MakeImage("acme", 1, "thermostat", "2.0")));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d1", "acme", "g2", "", 10), {}));
}

TEST_P(StoreSuite, RepositoryKeysAreOnePerRoleAndPerTenant) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  const RepositoryKey timestamp{
      "acme", TufRepository::kImage, TufRole::kTimestamp, std::string(64, 'a'), R"({"keytype":"ed25519"})", "sealed-a",
      100};
  ASSERT_OK(store_->PutRepositoryKey(timestamp));
  ASSERT_OK(store_->PutRepositoryKey(
      {"acme", TufRepository::kImage, TufRole::kSnapshot, std::string(64, 'b'), "{}", "sealed-b", 101}));
  ASSERT_OK(store_->PutRepositoryKey(
      {"acme", TufRepository::kDirector, TufRole::kTargets, std::string(64, 'c'), "{}", "sealed-c", 102}));
  ASSERT_OK(store_->PutRepositoryKey(
      {"globex", TufRepository::kImage, TufRole::kTimestamp, std::string(64, 'd'), "{}", "sealed-d", 103}));

  EXPECT_EQ(CodeOf(store_->PutRepositoryKey(
                {"acme", TufRepository::kImage, TufRole::kTimestamp, std::string(64, 'e'), "{}", "sealed-e", 104})),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->PutRepositoryKey(
                {"acme", TufRepository::kImage, TufRole::kRoot, std::string(64, 'f'), "{}", "sealed-f", 104})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->PutRepositoryKey(
                {"nobody", TufRepository::kImage, TufRole::kTimestamp, std::string(64, 'f'), "{}", "s", 104})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->PutRepositoryKey({"acme", TufRepository::kDirector, TufRole::kSnapshot, "", "{}", "s", 1})),
            ErrorCode::kInvalidArgument);

  auto key = store_->GetRepositoryKey("acme", TufRepository::kImage, TufRole::kTimestamp);
  ASSERT_OK(key);
  EXPECT_EQ(key->tenant_id, "acme");
  EXPECT_EQ(key->repository, TufRepository::kImage);
  EXPECT_EQ(key->role, TufRole::kTimestamp);
  EXPECT_EQ(key->key_id, timestamp.key_id);
  EXPECT_EQ(key->public_key_json, timestamp.public_key_json);
  EXPECT_EQ(key->sealed_private_key, "sealed-a");  // the first one stays
  EXPECT_EQ(key->created_at, 100);
  EXPECT_EQ(CodeOf(store_->GetRepositoryKey("acme", TufRepository::kDirector, TufRole::kTimestamp)),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetRepositoryKey("globex", TufRepository::kDirector, TufRole::kTargets)),
            ErrorCode::kNotFound);

  auto keys = store_->ListRepositoryKeys("acme");
  ASSERT_OK(keys);
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].repository, TufRepository::kDirector);
  EXPECT_EQ((*keys)[1].role, TufRole::kSnapshot);
  EXPECT_EQ((*keys)[2].role, TufRole::kTimestamp);
  auto globex = store_->ListRepositoryKeys("globex");
  ASSERT_OK(globex);
  ASSERT_EQ(globex->size(), 1u);
  EXPECT_EQ((*globex)[0].sealed_private_key, "sealed-d");
}

TEST_P(StoreSuite, RepositoryMetadataIsAppendOnlyPerSeries) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  for (std::int64_t version = 1; version <= 3; ++version) {
    ASSERT_OK(
        store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, version)));
  }
  ASSERT_OK(store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kDirector, "", TufRole::kRoot, 1)));
  ASSERT_OK(store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kDirector, "g1", TufRole::kTargets, 7)));
  ASSERT_OK(store_->AddRepositoryMetadata(MakeMetadata("globex", TufRepository::kImage, "", TufRole::kTimestamp, 9)));
  // The exact bytes, whitespace and non-ASCII included.
  RepositoryMetadata odd = MakeMetadata("acme", TufRepository::kDirector, "g2", TufRole::kTargets, 1);
  odd.document = "{\"signed\" : {\"name\": \"Kühlschrank ❄\"},\n \"signatures\": []}\n";
  ASSERT_OK(store_->AddRepositoryMetadata(odd));

  auto second = store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 2);
  ASSERT_OK(second);
  const RepositoryMetadata expected = MakeMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 2);
  EXPECT_EQ(second->tenant_id, "acme");
  EXPECT_EQ(second->repository, TufRepository::kImage);
  EXPECT_EQ(second->scope, "");
  EXPECT_EQ(second->role, TufRole::kTimestamp);
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(second->expires_at, expected.expires_at);
  EXPECT_EQ(second->document, expected.document);
  EXPECT_EQ(second->created_at, expected.created_at);

  auto latest = store_->GetLatestRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp);
  ASSERT_OK(latest);
  EXPECT_EQ(latest->version, 3);
  auto group_latest = store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "g1", TufRole::kTargets);
  ASSERT_OK(group_latest);
  EXPECT_EQ(group_latest->version, 7);
  auto odd_read = store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "g2", TufRole::kTargets);
  ASSERT_OK(odd_read);
  EXPECT_EQ(odd_read->document, odd.document);
  auto root = store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "", TufRole::kRoot);
  ASSERT_OK(root);
  EXPECT_EQ(root->version, 1);

  // Series are separate: another scope, role, repository or tenant.
  EXPECT_EQ(CodeOf(store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "g3", TufRole::kTargets)),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetLatestRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot)),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "", TufRole::kTimestamp)),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetRepositoryMetadata("globex", TufRepository::kImage, "", TufRole::kTimestamp, 2)),
            ErrorCode::kNotFound);
  auto globex = store_->GetLatestRepositoryMetadata("globex", TufRepository::kImage, "", TufRole::kTimestamp);
  ASSERT_OK(globex);
  EXPECT_EQ(globex->version, 9);
  EXPECT_EQ(CodeOf(store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 4)),
            ErrorCode::kNotFound);

  // Append-only: a version is never replaced.
  RepositoryMetadata again = MakeMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 2);
  again.document = "{}";
  EXPECT_EQ(CodeOf(store_->AddRepositoryMetadata(again)), ErrorCode::kAlreadyExists);
  EXPECT_EQ(store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 2)->document,
            expected.document);
  EXPECT_EQ(
      CodeOf(store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kImage, "", TufRole::kTimestamp, 0))),
      ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->AddRepositoryMetadata(MakeMetadata("nobody", TufRepository::kImage, "", TufRole::kRoot, 1))),
            ErrorCode::kNotFound);
}

TEST_P(StoreSuite, RacingPublishersOfOneVersionHaveExactlyOneWinner) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(
      store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kDirector, "g1", TufRole::kTimestamp, 1)));
  auto replicas = OpenReplicas(*backend_);
  ASSERT_EQ(replicas.size(), static_cast<std::size_t>(kRacers));
  auto outcomes = Race(replicas, [](int i, Store& replica) {
    RepositoryMetadata metadata = MakeMetadata("acme", TufRepository::kDirector, "g1", TufRole::kTimestamp, 2);
    metadata.document = "replica " + std::to_string(i);
    return replica.AddRepositoryMetadata(metadata);
  });
  int winners = 0;
  std::string winner;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (!outcomes[i].has_value()) {
      ++winners;
      winner = "replica " + std::to_string(i);
    } else {
      EXPECT_EQ(*outcomes[i], ErrorCode::kAlreadyExists) << "replica " << i;
    }
  }
  EXPECT_EQ(winners, 1);
  auto latest = store_->GetLatestRepositoryMetadata("acme", TufRepository::kDirector, "g1", TufRole::kTimestamp);
  ASSERT_OK(latest);
  EXPECT_EQ(latest->version, 2);
  EXPECT_EQ(latest->document, winner);
}

TEST_P(StoreSuite, PruneKeepsTheLatestVersionsAndNeverRoot) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  for (std::int64_t version = 1; version <= 6; ++version) {
    ASSERT_OK(
        store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, version)));
    ASSERT_OK(store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kImage, "", TufRole::kRoot, version)));
  }
  ASSERT_OK(store_->AddRepositoryMetadata(MakeMetadata("acme", TufRepository::kDirector, "g1", TufRole::kSnapshot, 1)));

  // Another tenant's prune touches nothing of acme's.
  auto foreign = store_->PruneRepositoryMetadata("globex", TufRepository::kImage, "", TufRole::kSnapshot, 1);
  ASSERT_OK(foreign);
  EXPECT_EQ(*foreign, 0);

  auto pruned = store_->PruneRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, 2);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 4);
  for (std::int64_t version = 1; version <= 4; ++version) {
    EXPECT_EQ(CodeOf(store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, version)),
              ErrorCode::kNotFound);
  }
  EXPECT_OK(store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, 5));
  EXPECT_EQ(store_->GetLatestRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot)->version, 6);
  auto again = store_->PruneRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, 2);
  ASSERT_OK(again);
  EXPECT_EQ(*again, 0);
  auto generous = store_->PruneRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, 10);
  ASSERT_OK(generous);
  EXPECT_EQ(*generous, 0);
  // Other series are untouched.
  EXPECT_OK(store_->GetRepositoryMetadata("acme", TufRepository::kDirector, "g1", TufRole::kSnapshot, 1));

  EXPECT_EQ(CodeOf(store_->PruneRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kRoot, 1)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->PruneRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kSnapshot, 0)),
            ErrorCode::kInvalidArgument);
  for (std::int64_t version = 1; version <= 6; ++version) {
    EXPECT_OK(store_->GetRepositoryMetadata("acme", TufRepository::kImage, "", TufRole::kRoot, version));
  }
}

TEST_P(StoreSuite, ImagesAreContentAddressedAndNamesAreUnique) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  const Image image = MakeImage("acme", 1, "os", "1.4.0");
  ASSERT_OK(store_->AddImage(image));

  auto read = store_->GetImage("acme", image.sha256);
  ASSERT_OK(read);
  EXPECT_EQ(read->tenant_id, "acme");
  EXPECT_EQ(read->sha256, image.sha256);
  EXPECT_EQ(read->length, image.length);
  EXPECT_EQ(read->kind, ImageKind::kOs);
  EXPECT_EQ(read->component_id, "os");
  EXPECT_EQ(read->version, "1.4.0");
  EXPECT_EQ(read->security_version, 1);
  EXPECT_EQ(read->target_name, "os/1.4.0.img");
  EXPECT_EQ(read->uploaded_at, image.uploaded_at);
  EXPECT_EQ(read->uploaded_by, "token:t1");
  auto by_name = store_->GetImageByTargetName("acme", "os/1.4.0.img");
  ASSERT_OK(by_name);
  EXPECT_EQ(by_name->sha256, image.sha256);

  // Uploading the same bytes again: kAlreadyExists, which callers treat as done.
  EXPECT_EQ(CodeOf(store_->AddImage(image)), ErrorCode::kAlreadyExists);
  Image renamed = image;
  renamed.target_name = "os/other.img";
  EXPECT_EQ(CodeOf(store_->AddImage(renamed)), ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->GetImageByTargetName("acme", "os/other.img")), ErrorCode::kNotFound);
  // Other bytes under a taken name: a conflict, and the name keeps its image.
  Image impostor = MakeImage("acme", 2, "os", "1.4.0");
  EXPECT_EQ(CodeOf(store_->AddImage(impostor)), ErrorCode::kConflict);
  EXPECT_EQ(CodeOf(store_->GetImage("acme", impostor.sha256)), ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetImageByTargetName("acme", "os/1.4.0.img")->sha256, image.sha256);

  // Tenant isolation: globex neither sees acme's image nor is blocked by it.
  EXPECT_EQ(CodeOf(store_->GetImage("globex", image.sha256)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetImageByTargetName("globex", "os/1.4.0.img")), ErrorCode::kNotFound);
  Image theirs = image;
  theirs.tenant_id = "globex";
  ASSERT_OK(store_->AddImage(theirs));

  Image bad = MakeImage("acme", 3, "app", "1.0");
  bad.sha256 = std::string(64, 'A');
  EXPECT_EQ(CodeOf(store_->AddImage(bad)), ErrorCode::kInvalidArgument);
  bad.sha256 = "abc";
  EXPECT_EQ(CodeOf(store_->AddImage(bad)), ErrorCode::kInvalidArgument);
  bad = MakeImage("acme", 3, "app", "1.0");
  bad.target_name = "";
  EXPECT_EQ(CodeOf(store_->AddImage(bad)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->AddImage(MakeImage("nobody", 3, "app", "1.0"))), ErrorCode::kNotFound);
}

TEST_P(StoreSuite, ListImagesFiltersByComponentAndPaginates) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  std::vector<std::string> all, thermostat;
  for (int n = 0; n < 9; ++n) {
    const std::string component = n % 3 == 0 ? "os" : "thermostat";
    Image image = MakeImage("acme", 10 + n, component, "1." + std::to_string(8 - n));
    ASSERT_OK(store_->AddImage(image));
    all.push_back(image.target_name);
    if (component == "thermostat") thermostat.push_back(image.target_name);
  }
  ASSERT_OK(store_->AddImage(MakeImage("globex", 99, "thermostat", "9.9")));
  std::sort(all.begin(), all.end());
  std::sort(thermostat.begin(), thermostat.end());

  auto list_all_pages = [&](ImageFilter filter) {
    std::vector<std::string> names;
    for (int page = 0; page < 100; ++page) {
      auto images = store_->ListImages(filter);
      EXPECT_TRUE(images.has_value()) << images.error().message();
      if (!images || images->empty()) break;
      EXPECT_LE(static_cast<std::int64_t>(images->size()), filter.limit);
      for (const Image& image : *images) {
        EXPECT_EQ(image.tenant_id, "acme");
        names.push_back(image.target_name);
      }
      filter.after_target_name = images->back().target_name;
    }
    return names;
  };
  EXPECT_EQ(list_all_pages(ImageFilter{"acme", "", 4, ""}), all);
  EXPECT_EQ(list_all_pages(ImageFilter{"acme", "thermostat", 2, ""}), thermostat);
  auto none = store_->ListImages(ImageFilter{"acme", "fridge", 10, ""});
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(CodeOf(store_->ListImages(ImageFilter{"", "", 10, ""})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->ListImages(ImageFilter{"acme", "", 0, ""})), ErrorCode::kInvalidArgument);
}

TEST_P(StoreSuite, ImageDeltasAreIdempotentAndNeedBothImages) {
  ASSERT_OK(store_->CreateTenant(MakeTenant("acme"), MakeCa("acme")));
  ASSERT_OK(store_->CreateTenant(MakeTenant("globex"), MakeCa("globex")));
  ASSERT_OK(store_->AddImage(MakeImage("acme", 1, "os", "1.0")));
  ASSERT_OK(store_->AddImage(MakeImage("acme", 2, "os", "2.0")));
  ASSERT_OK(store_->AddImage(MakeImage("globex", 3, "os", "3.0")));

  const ImageDelta delta{"acme", Sha(1), Sha(2), Sha(100), 42, 500};
  auto recorded = store_->AddImageDelta(delta);
  ASSERT_OK(recorded);
  EXPECT_EQ(recorded->delta_sha256, Sha(100));
  // A second, different delta for the same pair: the first one stays.
  auto again = store_->AddImageDelta(ImageDelta{"acme", Sha(1), Sha(2), Sha(101), 43, 600});
  ASSERT_OK(again);
  EXPECT_EQ(again->delta_sha256, Sha(100));
  EXPECT_EQ(again->length, 42);

  auto read = store_->GetImageDelta("acme", Sha(1), Sha(2));
  ASSERT_OK(read);
  EXPECT_EQ(read->tenant_id, "acme");
  EXPECT_EQ(read->from_sha256, Sha(1));
  EXPECT_EQ(read->to_sha256, Sha(2));
  EXPECT_EQ(read->delta_sha256, Sha(100));
  EXPECT_EQ(read->length, 42);
  EXPECT_EQ(read->created_at, 500);
  EXPECT_EQ(CodeOf(store_->GetImageDelta("acme", Sha(2), Sha(1))), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetImageDelta("globex", Sha(1), Sha(2))), ErrorCode::kNotFound);

  // Both ends must be the tenant's images.
  EXPECT_EQ(CodeOf(store_->AddImageDelta(ImageDelta{"acme", Sha(1), Sha(9), Sha(102), 1, 1})), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->AddImageDelta(ImageDelta{"acme", Sha(3), Sha(2), Sha(102), 1, 1})), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->AddImageDelta(ImageDelta{"globex", Sha(1), Sha(3), Sha(102), 1, 1})), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->AddImageDelta(ImageDelta{"acme", Sha(1), Sha(1), Sha(102), 1, 1})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->AddImageDelta(ImageDelta{"acme", Sha(1), Sha(2), "x", 1, 1})), ErrorCode::kInvalidArgument);
}

TEST_P(StoreSuite, DeploymentsAreCreatedReadAndListedNewestFirst) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  Deployment group = MakeDeployment("d1", "acme", "acme-g1", "", 100);
  group.batches_json = R"([{"percent":10,"after_seconds":3600}])";
  ASSERT_OK(store_->CreateDeployment(group, {}));
  Deployment feed = MakeDeployment("d2", "acme", "", "retail-eval", 200);
  feed.batches_json = "";
  feed.state = DeploymentState::kPaused;
  ASSERT_OK(store_->CreateDeployment(feed, {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d3", "acme", "acme-g2", "", 300), {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d4", "acme", "acme-g1", "", 400), {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("g1", "globex", "globex-g1", "", 500), {}));

  auto read = store_->GetDeployment("acme", "d1");
  ASSERT_OK(read);
  EXPECT_EQ(read->id, "d1");
  EXPECT_EQ(read->tenant_id, "acme");
  EXPECT_EQ(read->device_group_id, "acme-g1");
  EXPECT_EQ(read->os_feed, "");
  EXPECT_EQ(read->target_names_json, R"(["app/2.0.img"])");
  EXPECT_EQ(read->percent, 50);
  EXPECT_EQ(read->batches_json, group.batches_json);
  EXPECT_EQ(read->state, DeploymentState::kActive);
  EXPECT_EQ(read->created_at, 100);
  EXPECT_EQ(read->updated_at, 100);
  EXPECT_EQ(read->created_by, "token:t1");
  auto feed_read = store_->GetDeployment("acme", "d2");
  ASSERT_OK(feed_read);
  EXPECT_EQ(feed_read->device_group_id, "");
  EXPECT_EQ(feed_read->os_feed, "retail-eval");
  EXPECT_EQ(feed_read->batches_json, "[]");
  EXPECT_EQ(feed_read->state, DeploymentState::kPaused);

  using Ids = std::vector<std::string>;
  auto list = [&](const DeploymentFilter& filter) {
    auto deployments = store_->ListDeployments(filter);
    EXPECT_TRUE(deployments.has_value()) << deployments.error().message();
    return deployments ? DeploymentIds(*deployments) : Ids{};
  };
  EXPECT_EQ(list({"acme", "", "", {}, 100}), (Ids{"d4", "d3", "d2", "d1"}));
  EXPECT_EQ(list({"acme", "", "", {}, 2}), (Ids{"d4", "d3"}));
  EXPECT_EQ(list({"acme", "acme-g1", "", {}, 100}), (Ids{"d4", "d1"}));
  EXPECT_EQ(list({"acme", "", "retail-eval", {}, 100}), (Ids{"d2"}));
  EXPECT_EQ(list({"acme", "", "", {DeploymentState::kPaused}, 100}), (Ids{"d2"}));
  EXPECT_EQ(list({"acme", "", "", {DeploymentState::kActive, DeploymentState::kPaused, DeploymentState::kActive}, 100}),
            (Ids{"d4", "d3", "d2", "d1"}));
  EXPECT_EQ(list({"acme", "acme-g1", "", {DeploymentState::kRolledBack}, 100}), Ids{});
  EXPECT_EQ(list({"globex", "", "", {}, 100}), (Ids{"g1"}));
  EXPECT_EQ(list({"globex", "acme-g1", "", {}, 100}), Ids{});
  EXPECT_EQ(CodeOf(store_->ListDeployments({"", "", "", {}, 100})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->ListDeployments({"acme", "", "", {}, 0})), ErrorCode::kInvalidArgument);

  // Tenant isolation.
  EXPECT_EQ(CodeOf(store_->GetDeployment("globex", "d1")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("x1", "globex", "acme-g1", "", 600), {})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->GetDeployment("globex", "x1")), ErrorCode::kNotFound);

  // Exactly one of group and feed; percent in range; a new deployment is live.
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("x2", "acme", "acme-g1", "retail", 600), {})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("x3", "acme", "", "", 600), {})),
            ErrorCode::kInvalidArgument);
  Deployment too_much = MakeDeployment("x4", "acme", "acme-g1", "", 600);
  too_much.percent = 101;
  EXPECT_EQ(CodeOf(store_->CreateDeployment(too_much, {})), ErrorCode::kInvalidArgument);
  Deployment dead = MakeDeployment("x5", "acme", "acme-g1", "", 600);
  dead.state = DeploymentState::kSuperseded;
  EXPECT_EQ(CodeOf(store_->CreateDeployment(dead, {})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("d1", "acme", "acme-g2", "", 600), {})),
            ErrorCode::kAlreadyExists);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("x6", "acme", "missing", "", 600), {})),
            ErrorCode::kNotFound);
}

TEST_P(StoreSuite, CreateDeploymentSupersedesAtomically) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d1", "acme", "acme-g1", "", 100), {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d2", "acme", "acme-g1", "", 200), {"d1"}));
  auto d1 = store_->GetDeployment("acme", "d1");
  ASSERT_OK(d1);
  EXPECT_EQ(d1->state, DeploymentState::kSuperseded);
  EXPECT_EQ(d1->updated_at, 200);
  EXPECT_EQ(store_->GetDeployment("acme", "d2")->state, DeploymentState::kActive);

  // d1 was moved already: d3 is not created, d2 stays active.
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("d3", "acme", "acme-g1", "", 300), {"d2", "d1"})),
            ErrorCode::kConflict);
  EXPECT_EQ(CodeOf(store_->GetDeployment("acme", "d3")), ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetDeployment("acme", "d2")->state, DeploymentState::kActive);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("d3", "acme", "acme-g1", "", 300), {"nope"})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("d3", "acme", "acme-g1", "", 300), {"d3"})),
            ErrorCode::kInvalidArgument);
  // Another tenant's deployment cannot be superseded.
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("g1", "globex", "globex-g1", "", 300), {}));
  EXPECT_EQ(CodeOf(store_->CreateDeployment(MakeDeployment("d3", "acme", "acme-g1", "", 300), {"g1"})),
            ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetDeployment("globex", "g1")->state, DeploymentState::kActive);

  // A paused deployment can be superseded too; several at once.
  ASSERT_OK(store_->UpdateDeployment("acme", "d2", DeploymentState::kActive, DeploymentState::kPaused, 50, 350));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d4", "acme", "", "retail", 390), {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d5", "acme", "acme-g1", "", 400), {"d2", "d4"}));
  EXPECT_EQ(store_->GetDeployment("acme", "d2")->state, DeploymentState::kSuperseded);
  EXPECT_EQ(store_->GetDeployment("acme", "d4")->state, DeploymentState::kSuperseded);
}

TEST_P(StoreSuite, DeploymentStateIsCompareAndSet) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d1", "acme", "acme-g1", "", 100), {}));

  ASSERT_OK(store_->UpdateDeployment("acme", "d1", DeploymentState::kActive, DeploymentState::kActive, 100, 150));
  ASSERT_OK(store_->UpdateDeployment("acme", "d1", DeploymentState::kActive, DeploymentState::kPaused, 100, 200));
  auto read = store_->GetDeployment("acme", "d1");
  ASSERT_OK(read);
  EXPECT_EQ(read->state, DeploymentState::kPaused);
  EXPECT_EQ(read->percent, 100);
  EXPECT_EQ(read->updated_at, 200);
  EXPECT_EQ(read->created_at, 100);

  // The state moved: the stale writer learns it and changes nothing.
  EXPECT_EQ(
      CodeOf(store_->UpdateDeployment("acme", "d1", DeploymentState::kActive, DeploymentState::kRolledBack, 0, 300)),
      ErrorCode::kConflict);
  EXPECT_EQ(store_->GetDeployment("acme", "d1")->state, DeploymentState::kPaused);
  EXPECT_EQ(
      CodeOf(store_->UpdateDeployment("globex", "d1", DeploymentState::kPaused, DeploymentState::kActive, 0, 300)),
      ErrorCode::kNotFound);
  EXPECT_EQ(
      CodeOf(store_->UpdateDeployment("acme", "nope", DeploymentState::kPaused, DeploymentState::kActive, 0, 300)),
      ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->UpdateDeployment("acme", "d1", DeploymentState::kPaused, DeploymentState::kActive, -1, 300)),
            ErrorCode::kInvalidArgument);

  // Racing replicas resuming the same paused deployment: exactly one wins.
  auto replicas = OpenReplicas(*backend_);
  ASSERT_EQ(replicas.size(), static_cast<std::size_t>(kRacers));
  auto outcomes = Race(replicas, [](int i, Store& replica) {
    return replica.UpdateDeployment("acme", "d1", DeploymentState::kPaused, DeploymentState::kActive, i, 400 + i);
  });
  int winners = 0;
  std::int64_t winner = -1;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (!outcomes[i].has_value()) {
      ++winners;
      winner = static_cast<std::int64_t>(i);
    } else {
      EXPECT_EQ(*outcomes[i], ErrorCode::kConflict) << "replica " << i;
    }
  }
  EXPECT_EQ(winners, 1);
  read = store_->GetDeployment("acme", "d1");
  ASSERT_OK(read);
  EXPECT_EQ(read->state, DeploymentState::kActive);
  EXPECT_EQ(read->percent, winner);
}

TEST_P(StoreSuite, UpdateReportsKeepTheNewestStateAndCount) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  const std::string device = DeviceId(1);
  const std::string other = DeviceId(2);
  const std::string foreign = DeviceId(3);
  for (const std::string& id : {device, other, foreign}) ASSERT_OK(store_->RecordDeviceSeen(id, "software", 10));
  ASSERT_OK(store_->ClaimDevice(device, "acme", "acme-p", "acme-g1", 20));
  ASSERT_OK(store_->ClaimDevice(other, "acme", "acme-p", "acme-g1", 20));
  ASSERT_OK(store_->ClaimDevice(foreign, "globex", "globex-p", "globex-g1", 20));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("d1", "acme", "acme-g1", "", 30), {}));
  ASSERT_OK(store_->CreateDeployment(MakeDeployment("g1", "globex", "globex-g1", "", 30), {}));

  auto report = [&](const std::string& id, UpdateState state, std::int64_t reported_at, std::string reason = "") {
    return store_->RecordUpdateReport(
        UpdateReport{"acme", id, "d1", "app/2.0.img", state, std::move(reason), reported_at, reported_at + 1});
  };
  auto stored_state = [&]() -> std::optional<UpdateReport> {
    auto reports = store_->ListUpdateReports("acme", device, 10);
    if (!reports || reports->size() != 1) return std::nullopt;
    return reports->front();
  };

  EXPECT_EQ(Value(report(device, UpdateState::kDownloading, 100)), true);
  EXPECT_EQ(Value(report(device, UpdateState::kInstalling, 200)), true);
  // Older: a retry of the first report arriving late changes nothing.
  EXPECT_EQ(Value(report(device, UpdateState::kDownloading, 100)), false);
  EXPECT_EQ(Value(report(device, UpdateState::kDownloading, 150)), false);
  // Same second: the later state in the update's life wins.
  EXPECT_EQ(Value(report(device, UpdateState::kDownloading, 200)), false);
  EXPECT_EQ(Value(report(device, UpdateState::kPendingReboot, 200)), true);
  auto stored = stored_state();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->state, UpdateState::kPendingReboot);
  EXPECT_EQ(stored->reported_at, 200);
  EXPECT_EQ(stored->updated_at, 201);
  // A retry of the stored report itself is harmless.
  EXPECT_OK(report(device, UpdateState::kPendingReboot, 200));
  EXPECT_EQ(Value(report(device, UpdateState::kFailed, 300, "boot-failed: tries exhausted")), true);
  stored = stored_state();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->tenant_id, "acme");
  EXPECT_EQ(stored->device_id, device);
  EXPECT_EQ(stored->deployment_id, "d1");
  EXPECT_EQ(stored->target_name, "app/2.0.img");
  EXPECT_EQ(stored->state, UpdateState::kFailed);
  EXPECT_EQ(stored->reason, "boot-failed: tries exhausted");
  EXPECT_EQ(stored->reported_at, 300);
  EXPECT_EQ(Value(report(device, UpdateState::kPendingReboot, 250)), false);

  ASSERT_OK(report(other, UpdateState::kCommitted, 400));
  ASSERT_OK(store_->RecordUpdateReport(
      UpdateReport{"acme", device, "d1", "os/2.0.img", UpdateState::kDownloading, "", 500, 500}));
  auto counts = store_->CountUpdateReports("acme", "d1");
  ASSERT_OK(counts);
  EXPECT_EQ(*counts, (std::map<UpdateState, std::int64_t>{{UpdateState::kDownloading, 1},
                                                          {UpdateState::kInstalling, 0},
                                                          {UpdateState::kPendingReboot, 0},
                                                          {UpdateState::kCommitted, 1},
                                                          {UpdateState::kFailed, 1}}));
  auto reports = store_->ListUpdateReports("acme", device, 10);
  ASSERT_OK(reports);
  ASSERT_EQ(reports->size(), 2u);
  EXPECT_EQ((*reports)[0].target_name, "os/2.0.img");  // most recent first
  EXPECT_EQ((*reports)[1].target_name, "app/2.0.img");
  auto limited = store_->ListUpdateReports("acme", device, 1);
  ASSERT_OK(limited);
  EXPECT_EQ(limited->size(), 1u);
  EXPECT_EQ(CodeOf(store_->ListUpdateReports("acme", device, 0)), ErrorCode::kInvalidArgument);

  // Tenant isolation: only the tenant's devices and deployments.
  auto cross = store_->ListUpdateReports("globex", device, 10);
  ASSERT_OK(cross);
  EXPECT_TRUE(cross->empty());
  EXPECT_EQ(CodeOf(store_->CountUpdateReports("globex", "d1")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->CountUpdateReports("acme", "nope")), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RecordUpdateReport(
                UpdateReport{"globex", device, "g1", "app/2.0.img", UpdateState::kFailed, "", 900, 900})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RecordUpdateReport(
                UpdateReport{"acme", foreign, "d1", "app/2.0.img", UpdateState::kFailed, "", 900, 900})),
            ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->RecordUpdateReport(
                UpdateReport{"acme", device, "g1", "app/2.0.img", UpdateState::kFailed, "", 900, 900})),
            ErrorCode::kNotFound);
  EXPECT_EQ(
      CodeOf(store_->RecordUpdateReport(UpdateReport{"acme", device, "d1", "", UpdateState::kFailed, "", 900, 900})),
      ErrorCode::kInvalidArgument);
  counts = store_->CountUpdateReports("acme", "d1");
  ASSERT_OK(counts);
  EXPECT_EQ(counts->at(UpdateState::kFailed), 1);
  auto globex_counts = store_->CountUpdateReports("globex", "g1");
  ASSERT_OK(globex_counts);
  for (const auto& [state, count] : *globex_counts) EXPECT_EQ(count, 0) << UpdateStateName(state);
}

TEST_P(StoreSuite, DeviceGroupsCarryTheirUpdateSettings) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  auto group = store_->GetDeviceGroup("acme", "acme-g1");
  ASSERT_OK(group);
  EXPECT_EQ(group->os_feed, "retail");
  EXPECT_EQ(group->maintenance_window, "");

  const std::string window = R"({"start":"02:00","length_minutes":120})";
  ASSERT_OK(store_->SetDeviceGroupUpdateSettings("acme", "acme-g1", "retail-eval", window));
  group = store_->GetDeviceGroup("acme", "acme-g1");
  ASSERT_OK(group);
  EXPECT_EQ(group->os_feed, "retail-eval");
  EXPECT_EQ(group->maintenance_window, window);
  auto listed = store_->ListDeviceGroups("acme", "acme-p");
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].os_feed, "retail-eval");
  EXPECT_EQ((*listed)[1].os_feed, "retail");

  DeviceGroup beta{"acme-g3", "acme", "acme-p", "Beta", 2000};
  beta.os_feed = "retail-eval";
  ASSERT_OK(store_->CreateDeviceGroup(beta));
  auto eval = store_->ListDeviceGroupsByOsFeed("acme", "retail-eval");
  ASSERT_OK(eval);
  ASSERT_EQ(eval->size(), 2u);
  EXPECT_EQ((*eval)[0].id, "acme-g1");
  EXPECT_EQ((*eval)[1].id, "acme-g3");
  EXPECT_EQ((*eval)[0].maintenance_window, window);
  auto retail = store_->ListDeviceGroupsByOsFeed("acme", "retail");
  ASSERT_OK(retail);
  ASSERT_EQ(retail->size(), 1u);
  EXPECT_EQ((*retail)[0].id, "acme-g2");
  auto globex_eval = store_->ListDeviceGroupsByOsFeed("globex", "retail-eval");
  ASSERT_OK(globex_eval);
  EXPECT_TRUE(globex_eval->empty());

  // Back to any time.
  ASSERT_OK(store_->SetDeviceGroupUpdateSettings("acme", "acme-g1", "retail", ""));
  EXPECT_EQ(store_->GetDeviceGroup("acme", "acme-g1")->maintenance_window, "");
  EXPECT_EQ(CodeOf(store_->SetDeviceGroupUpdateSettings("globex", "acme-g1", "retail-eval", "")), ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetDeviceGroup("acme", "acme-g1")->os_feed, "retail");
  EXPECT_EQ(CodeOf(store_->SetDeviceGroupUpdateSettings("acme", "acme-g1", "", "")), ErrorCode::kInvalidArgument);
  DeviceGroup no_feed{"acme-g4", "acme", "acme-p", "No feed", 2000};
  no_feed.os_feed = "";
  EXPECT_EQ(CodeOf(store_->CreateDeviceGroup(no_feed)), ErrorCode::kInvalidArgument);
}

TEST_P(StoreSuite, DevicesAreCountedAndUpdateNowIsTakenOnce) {
  CreateTenantWithProduct(*store_, "acme");
  CreateTenantWithProduct(*store_, "globex");
  for (int n = 0; n < 6; ++n) {
    ASSERT_OK(store_->RecordDeviceSeen(DeviceId(n), "software", 10));
    if (n < 3) ASSERT_OK(store_->ClaimDevice(DeviceId(n), "acme", "acme-p", "acme-g1", 20));
    if (n == 3) ASSERT_OK(store_->ClaimDevice(DeviceId(n), "acme", "acme-p", "acme-g2", 20));
    if (n == 4) ASSERT_OK(store_->ClaimDevice(DeviceId(n), "globex", "globex-p", "globex-g1", 20));
  }
  EXPECT_EQ(Value(store_->CountDevices("acme", "acme-g1")), 3);
  EXPECT_EQ(Value(store_->CountDevices("acme", "acme-g2")), 1);
  EXPECT_EQ(Value(store_->CountDevices("globex", "acme-g1")), 0);
  EXPECT_EQ(Value(store_->CountDevices("acme", "nope")), 0);

  const std::string device = DeviceId(1);
  EXPECT_FALSE(store_->GetDevice(device)->update_now);
  EXPECT_EQ(Value(store_->SetDeviceUpdateNow("acme", device, true)), true);
  EXPECT_EQ(Value(store_->SetDeviceUpdateNow("acme", device, true)), false);
  EXPECT_TRUE(store_->GetDevice(device)->update_now);
  auto listed = store_->ListDevices(DeviceFilter{"acme", "acme-g1", "", 10, ""});
  ASSERT_OK(listed);
  for (const Device& each : *listed) EXPECT_EQ(each.update_now, each.id == device) << each.id;

  EXPECT_EQ(CodeOf(store_->SetDeviceUpdateNow("globex", device, false)), ErrorCode::kNotFound);
  EXPECT_EQ(CodeOf(store_->SetDeviceUpdateNow("acme", DeviceId(5), true)), ErrorCode::kNotFound);  // unclaimed
  EXPECT_EQ(CodeOf(store_->SetDeviceUpdateNow("acme", DeviceId(4), true)), ErrorCode::kNotFound);  // globex's
  EXPECT_TRUE(store_->GetDevice(device)->update_now);

  // Check-ins racing to take the flag: exactly one gets it.
  auto replicas = OpenReplicas(*backend_);
  ASSERT_EQ(replicas.size(), static_cast<std::size_t>(kRacers));
  std::atomic<int> taken{0};
  auto outcomes = Race(replicas, [&](int /*i*/, Store& replica) -> Expected<void> {
    CITADEL_TRY(bool changed, replica.SetDeviceUpdateNow("acme", device, false));
    if (changed) ++taken;
    return kOk;
  });
  for (const auto& outcome : outcomes) EXPECT_FALSE(outcome.has_value());
  EXPECT_EQ(taken.load(), 1);
  EXPECT_FALSE(store_->GetDevice(device)->update_now);
}

}  // namespace citadel::store::test
