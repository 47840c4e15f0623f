// The store suite on SQLite (a new database file per test), plus the parts
// of the store that need no database server: roles, OpenStore's backend
// choice and the SQLite driver's details.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"
#include "store_suite.hpp"
#include "support/temp_dir.hpp"

namespace citadel::store::test {
namespace {

using citadel::testing::TempDir;

class SqliteBackend final : public StoreBackend {
 public:
  void Prepare() override { dir_ = std::make_unique<TempDir>(); }
  Expected<std::unique_ptr<Store>> Open() override { return OpenStore(Path()); }
  Expected<std::unique_ptr<SqlConnectionPool>> OpenPool() override { return OpenSqlitePool(Path()); }
  void Cleanup() override { dir_.reset(); }

 private:
  std::string Path() const { return (dir_->path() / "store.db").string(); }

  std::unique_ptr<TempDir> dir_;
};

std::unique_ptr<StoreBackend> MakeSqliteBackend() { return std::make_unique<SqliteBackend>(); }

TEST(RoleTest, NamesRoundTrip) {
  for (Role role : {Role::kOperator, Role::kAdmin, Role::kContributor, Role::kReader}) {
    auto parsed = ParseRole(RoleName(role));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, role);
  }
  EXPECT_EQ(RoleName(Role::kOperator), "operator");
  EXPECT_EQ(RoleName(Role::kAdmin), "admin");
  EXPECT_EQ(RoleName(Role::kContributor), "contributor");
  EXPECT_EQ(RoleName(Role::kReader), "reader");
}

TEST(RoleTest, UnknownNamesAreRejected) {
  for (std::string_view name : {"", "Admin", "root", "reader "}) {
    auto parsed = ParseRole(name);
    ASSERT_FALSE(parsed.has_value()) << name;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(UpdateEnumTest, NamesRoundTripAndUnknownNamesAreRejected) {
  for (TufRepository value : {TufRepository::kImage, TufRepository::kDirector}) {
    EXPECT_EQ(ParseTufRepository(TufRepositoryName(value)).value(), value);
  }
  for (TufRole value : {TufRole::kRoot, TufRole::kTargets, TufRole::kSnapshot, TufRole::kTimestamp}) {
    EXPECT_EQ(ParseTufRole(TufRoleName(value)).value(), value);
  }
  for (ImageKind value : {ImageKind::kApp, ImageKind::kOs})
    EXPECT_EQ(ParseImageKind(ImageKindName(value)).value(), value);
  for (DeploymentState value : {DeploymentState::kActive, DeploymentState::kPaused, DeploymentState::kRolledBack,
                                DeploymentState::kSuperseded}) {
    EXPECT_EQ(ParseDeploymentState(DeploymentStateName(value)).value(), value);
  }
  for (UpdateState value : {UpdateState::kDownloading, UpdateState::kInstalling, UpdateState::kPendingReboot,
                            UpdateState::kCommitted, UpdateState::kFailed}) {
    EXPECT_EQ(ParseUpdateState(UpdateStateName(value)).value(), value);
  }
  // The names the schema's CHECK constraints and the protocol use.
  EXPECT_EQ(TufRepositoryName(TufRepository::kDirector), "director");
  EXPECT_EQ(TufRoleName(TufRole::kTimestamp), "timestamp");
  EXPECT_EQ(ImageKindName(ImageKind::kOs), "os");
  EXPECT_EQ(DeploymentStateName(DeploymentState::kRolledBack), "rolled-back");
  EXPECT_EQ(UpdateStateName(UpdateState::kPendingReboot), "pending-reboot");

  EXPECT_EQ(ParseTufRepository("Image").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseTufRole("").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseImageKind("firmware").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseDeploymentState("rolled_back").error().code(), ErrorCode::kInvalidArgument);
  auto unknown = ParseUpdateState("rebooting");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().message().find("pending-reboot"), std::string::npos) << unknown.error().message();
}

TEST(SqlitePlaceholderTest, DollarNumbersBecomeQuestionNumbers) {
  EXPECT_EQ(TranslatePlaceholders("SELECT a FROM t WHERE b = $1 AND c > $12"),
            "SELECT a FROM t WHERE b = ?1 AND c > ?12");
  EXPECT_EQ(TranslatePlaceholders("SELECT '$1', \"$2\" FROM t WHERE x = $3"),
            "SELECT '$1', \"$2\" FROM t WHERE x = ?3");
  EXPECT_EQ(TranslatePlaceholders("SELECT 'it''s $1' WHERE y = $2"), "SELECT 'it''s $1' WHERE y = ?2");
  EXPECT_EQ(TranslatePlaceholders("SELECT $name"), "SELECT $name");
}

TEST(OpenStoreTest, SqliteCreatesParentDirectoriesAndAPrivateFile) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const auto path = dir.path() / "nested" / "deeper" / "citadel.db";
  auto store = OpenStore(path.string());
  ASSERT_TRUE(store.has_value()) << store.error().message();
  EXPECT_EQ((*store)->Backend(), "sqlite");
  ASSERT_TRUE((*store)->Migrate().has_value());
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  // WAL mode leaves its log beside the database.
  EXPECT_TRUE(std::filesystem::exists(path.string() + "-wal"));
}

TEST(OpenStoreTest, SqliteDataSurvivesReopening) {
  TempDir dir;
  const auto path = (dir.path() / "citadel.db").string();
  {
    auto store = OpenStore(path);
    ASSERT_TRUE(store.has_value()) << store.error().message();
    ASSERT_TRUE((*store)->Migrate().has_value());
    ASSERT_TRUE((*store)->CreateTenant(Tenant{"acme", "Acme", 1}, TenantCa{}).has_value());
  }
  auto store = OpenStore(path);
  ASSERT_TRUE(store.has_value()) << store.error().message();
  ASSERT_TRUE((*store)->Migrate().has_value());
  auto tenant = (*store)->GetTenant("acme");
  ASSERT_TRUE(tenant.has_value()) << tenant.error().message();
  EXPECT_EQ(tenant->name, "Acme");
}

TEST(OpenStoreTest, UnusableSqlitePathIsReported) {
  TempDir dir;
  const auto blocker = dir.path() / "file";
  {
    std::FILE* file = std::fopen(blocker.c_str(), "w");
    ASSERT_NE(file, nullptr);
    (void)std::fclose(file);
  }
  auto store = OpenStore((blocker / "sub" / "citadel.db").string());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(OpenStore("").error().code(), ErrorCode::kInvalidArgument);
}

TEST(OpenStoreTest, PostgresPrefixesSelectPostgresAndErrorsHideThePassword) {
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  for (std::string_view url : {"postgresql://citadel:hunter2-secret@127.0.0.1:1/citadel",
                               "postgres://citadel:hunter2-secret@127.0.0.1:1/citadel"}) {
    auto store = OpenStore(url);
    ASSERT_FALSE(store.has_value()) << url;
    EXPECT_EQ(store.error().code(), ErrorCode::kUnavailable) << store.error().message();
    EXPECT_NE(store.error().message().find("PostgreSQL"), std::string::npos) << store.error().message();
    EXPECT_EQ(store.error().message().find("hunter2-secret"), std::string::npos) << store.error().message();
  }
  auto malformed = OpenStore("postgresql://citadel:hunter2%zz@127.0.0.1:1/citadel");
  ASSERT_FALSE(malformed.has_value());
  EXPECT_EQ(malformed.error().message().find("hunter2"), std::string::npos) << malformed.error().message();
}

}  // namespace

INSTANTIATE_STORE_SUITES(Sqlite, &MakeSqliteBackend);

}  // namespace citadel::store::test
