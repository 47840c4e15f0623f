// Behaviour every Store backend must have. Each test runs on a fresh
// database from the backend's StoreBackend.
#include "store_suite.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/migrations.hpp"

namespace citadel::store::test {
namespace {

#define ASSERT_OK(expression)                                                          \
  do {                                                                                 \
    auto&& assert_ok_result_ = (expression);                                           \
    ASSERT_TRUE(assert_ok_result_.has_value()) << assert_ok_result_.error().message(); \
  } while (false)

#define EXPECT_OK(expression)                                                          \
  do {                                                                                 \
    auto&& expect_ok_result_ = (expression);                                           \
    EXPECT_TRUE(expect_ok_result_.has_value()) << expect_ok_result_.error().message(); \
  } while (false)

// The error code of a failed result; fails the test if it succeeded.
template <typename T>
ErrorCode CodeOf(const Expected<T>& result) {
  EXPECT_FALSE(result.has_value()) << "expected an error";
  return result.has_value() ? ErrorCode::kInternal : result.error().code();
}

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
  std::snprintf(buffer, sizeof buffer, "%064x", n);
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

}  // namespace citadel::store::test
