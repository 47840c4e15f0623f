// The one store test suite every backend passes (store_suite.cpp). A backend
// test binary supplies a StoreBackend and instantiates the suites with it:
//
//   INSTANTIATE_STORE_SUITES(Sqlite, &MakeSqliteBackend);
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "store/sql_connection.hpp"
#include "store/store.hpp"

namespace citadel::store::test {

// Assertions on Expected results, for every suite.
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

// The value of a successful result; fails the test (and gives T{}) otherwise.
template <typename T>
T Value(const Expected<T>& result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return result.has_value() ? *result : T{};
}

// A database for one test.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  // Creates a fresh, empty database; reports a fatal test failure if it cannot.
  virtual void Prepare() = 0;
  // Opens a store on that database; each call is a new "replica".
  virtual Expected<std::unique_ptr<Store>> Open() = 0;
  // Opens a raw connection pool on that database, to build states the Store
  // interface cannot (e.g. rows as an older schema's code wrote them).
  virtual Expected<std::unique_ptr<SqlConnectionPool>> OpenPool() = 0;
  // Removes the database; stores opened on it are already closed.
  virtual void Cleanup() = 0;
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<StoreBackend>()> make;
};

inline void PrintTo(const BackendParam& param, std::ostream* out) { *out << param.name; }

// A fresh database that nothing has migrated yet.
class StoreMigrationSuite : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::unique_ptr<StoreBackend> backend_;
  std::unique_ptr<Store> store_;
};

// A fresh, migrated database.
class StoreSuite : public StoreMigrationSuite {
 protected:
  void SetUp() override;
};

}  // namespace citadel::store::test

#define INSTANTIATE_STORE_SUITES(prefix, factory)                                                     \
  INSTANTIATE_TEST_SUITE_P(prefix, StoreMigrationSuite,                                               \
                           ::testing::Values(::citadel::store::test::BackendParam{#prefix, factory}), \
                           [](const auto& param_info) { return param_info.param.name; });             \
  INSTANTIATE_TEST_SUITE_P(prefix, StoreSuite,                                                        \
                           ::testing::Values(::citadel::store::test::BackendParam{#prefix, factory}), \
                           [](const auto& param_info) { return param_info.param.name; })
