// The store suite on PostgreSQL. Needs a server: CITADEL_TEST_POSTGRES_URL
// names a database the tests may create schemas in, e.g.
//
//   url=$(scripts/postgres-test-server start /tmp/citadel-pg 55432)
//   CITADEL_TEST_POSTGRES_URL=$url ctest -L postgres
//   scripts/postgres-test-server stop /tmp/citadel-pg
//
// Each test gets its own schema (via the connection's search_path), dropped
// afterwards. Without the variable every test fails: a skipped database
// suite would look green while testing nothing.
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>

#include "store/postgres/postgres_store.hpp"
#include "store/store.hpp"
#include "store_suite.hpp"

namespace citadel::store::test {
namespace {

constexpr const char* kUrlVariable = "CITADEL_TEST_POSTGRES_URL";

// Runs one administrative statement outside the store; empty on success.
std::string RunAdminSql(const std::string& url, const std::string& sql) {
  PGconn* connection = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(connection) != CONNECTION_OK) {
    error = PQerrorMessage(connection);
  } else {
    PQsetNoticeProcessor(
        connection, [](void*, const char*) {}, nullptr);  // "drop cascades to ..."
    PGresult* result = PQexec(connection, sql.c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK) error = PQresultErrorMessage(result);
    PQclear(result);
  }
  PQfinish(connection);
  return error;
}

class PostgresBackend final : public StoreBackend {
 public:
  void Prepare() override {
    const char* url = std::getenv(kUrlVariable);
    ASSERT_TRUE(url != nullptr && *url != '\0')
        << kUrlVariable << " is not set; start a server with scripts/postgres-test-server start DIR PORT "
        << "and export the URL it prints";
    base_url_ = url;
    static std::atomic<int> counter{0};
    std::random_device random;
    schema_ = "citadel_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
              std::to_string(random() % 1000000);
    const std::string error = RunAdminSql(base_url_, "CREATE SCHEMA " + schema_);
    ASSERT_TRUE(error.empty()) << "creating schema " << schema_ << ": " << error;
    created_ = true;
    store_url_ =
        base_url_ + (base_url_.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema_;
  }

  Expected<std::unique_ptr<Store>> Open() override { return OpenStore(store_url_); }
  Expected<std::unique_ptr<SqlConnectionPool>> OpenPool() override { return OpenPostgresPool(store_url_); }

  void Cleanup() override {
    if (!created_) return;
    const std::string error = RunAdminSql(base_url_, "DROP SCHEMA " + schema_ + " CASCADE");
    EXPECT_TRUE(error.empty()) << "dropping schema " << schema_ << ": " << error;
  }

 private:
  std::string base_url_;
  std::string schema_;
  std::string store_url_;
  bool created_ = false;
};

std::unique_ptr<StoreBackend> MakePostgresBackend() { return std::make_unique<PostgresBackend>(); }

TEST(PostgresStoreTest, OpensThePostgresBackend) {
  const char* url = std::getenv(kUrlVariable);
  ASSERT_TRUE(url != nullptr && *url != '\0') << kUrlVariable << " is not set";
  auto store = OpenStore(url);
  ASSERT_TRUE(store.has_value()) << store.error().message();
  EXPECT_EQ((*store)->Backend(), "postgresql");
}

}  // namespace

INSTANTIATE_STORE_SUITES(Postgres, &MakePostgresBackend);

}  // namespace citadel::store::test
