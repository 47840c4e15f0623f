// The tiny database-driver interface that SqlStore is written against. Each
// backend (sqlite/, postgres/) implements SqlConnection and
// SqlConnectionPool; every SQL statement and all store logic live once in
// sql_store.cpp.
//
// SQL is written in one portable dialect: positional placeholders $1..$N
// (the SQLite driver rewrites them to ?1..?N), TEXT ids, BIGINT times,
// INTEGER 0/1 booleans, INSERT ... ON CONFLICT. Values are always bound as
// parameters, never spliced into the SQL text.
//
// Errors a driver returns: kUnavailable when the database cannot be reached
// or is busy past its timeout, kAlreadyExists for a unique/primary-key
// violation, kNotFound for a foreign-key violation (a referenced row is
// missing), kInternal otherwise. Messages carry the database's primary error
// text only (never bound values, never the connection string), so they hold
// no secrets.
//
// Internal to citadel_store: not part of the store contract.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace citadel::store {

// One bound parameter: NULL, text or a 64-bit integer. Holds a view, so the
// referenced text must outlive the Execute() call it is passed to.
class SqlValue {
 public:
  enum class Kind { kNull, kText, kInteger };

  SqlValue(std::nullptr_t) {}                                                   // NOLINT(google-explicit-constructor)
  SqlValue(std::string_view text) : kind_(Kind::kText), text_(text) {}          // NOLINT
  SqlValue(const std::string& text) : kind_(Kind::kText), text_(text) {}        // NOLINT
  SqlValue(const char* text) : kind_(Kind::kText), text_(text) {}               // NOLINT
  SqlValue(std::int64_t integer) : kind_(Kind::kInteger), integer_(integer) {}  // NOLINT
  SqlValue(int integer) : kind_(Kind::kInteger), integer_(integer) {}           // NOLINT
  SqlValue(bool flag) : kind_(Kind::kInteger), integer_(flag ? 1 : 0) {}        // NOLINT

  // NULL when text is empty: optional references (e.g. an unclaimed device's
  // tenant) are NULL in the database and "" in the store structs.
  static SqlValue TextOrNull(std::string_view text) { return text.empty() ? SqlValue(nullptr) : SqlValue(text); }

  Kind kind() const { return kind_; }
  std::string_view text() const { return text_; }
  std::int64_t integer() const { return integer_; }

 private:
  Kind kind_ = Kind::kNull;
  std::string_view text_;
  std::int64_t integer_ = 0;
};

// One result row; every column is fetched as text (NULL as nullopt), which
// both drivers produce natively and which keeps the interface tiny.
class SqlRow {
 public:
  explicit SqlRow(std::vector<std::optional<std::string>> columns) : columns_(std::move(columns)) {}

  std::size_t size() const { return columns_.size(); }
  bool IsNull(std::size_t i) const { return i >= columns_.size() || !columns_[i].has_value(); }
  // "" for NULL.
  std::string Text(std::size_t i) const { return IsNull(i) ? std::string() : *columns_[i]; }
  // 0 for NULL; integer columns are only ever written by the store as
  // integers, so a parse failure cannot happen short of corruption.
  std::int64_t Int(std::size_t i) const {
    if (IsNull(i)) return 0;
    const std::string& text = *columns_[i];
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
  }
  bool Bool(std::size_t i) const { return Int(i) != 0; }

 private:
  std::vector<std::optional<std::string>> columns_;
};

struct SqlResult {
  std::vector<SqlRow> rows;
  std::int64_t rows_affected = 0;  // INSERT/UPDATE/DELETE; 0 for queries
};

enum class SqlDialect { kSqlite, kPostgres };

// One database connection. Not thread-safe: a connection is used by one
// thread at a time, between SqlConnectionPool::Acquire() and the lease's end.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;

  virtual SqlDialect Dialect() const = 0;
  // Runs one statement with $1..$N bound to params[0..N-1].
  virtual Expected<SqlResult> Execute(std::string_view sql, std::span<const SqlValue> params) = 0;
  Expected<SqlResult> Execute(std::string_view sql, std::initializer_list<SqlValue> params = {}) {
    return Execute(sql, std::span<const SqlValue>(params.begin(), params.size()));
  }
  // Runs a script of several parameterless statements (schema migrations).
  virtual Expected<void> ExecuteScript(std::string_view sql) = 0;
  // Begin takes the write lock up front on SQLite (BEGIN IMMEDIATE) so two
  // writers never deadlock upgrading a read lock.
  virtual Expected<void> Begin() = 0;
  virtual Expected<void> Commit() = 0;
  virtual Expected<void> Rollback() = 0;
  // Whether a table is visible to this connection (search_path on PostgreSQL).
  virtual Expected<bool> TableExists(std::string_view table) = 0;
};

class SqlConnectionPool;

// Exclusive use of one pooled connection; returns it to the pool when
// destroyed. Move-only.
class SqlConnectionLease {
 public:
  SqlConnectionLease(SqlConnectionPool* pool, SqlConnection* connection)
      : pool_(pool), connection_(connection), acquired_(std::chrono::steady_clock::now()) {}
  SqlConnectionLease(SqlConnectionLease&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)),
        connection_(std::exchange(other.connection_, nullptr)),
        acquired_(other.acquired_) {}
  SqlConnectionLease& operator=(SqlConnectionLease&&) = delete;
  SqlConnectionLease(const SqlConnectionLease&) = delete;
  SqlConnectionLease& operator=(const SqlConnectionLease&) = delete;
  ~SqlConnectionLease();

  SqlConnection& operator*() const { return *connection_; }
  SqlConnection* operator->() const { return connection_; }

 private:
  SqlConnectionPool* pool_;
  SqlConnection* connection_;
  std::chrono::steady_clock::time_point acquired_;
};

// The source of connections for one database. Thread-safe.
class SqlConnectionPool {
 public:
  virtual ~SqlConnectionPool() = default;

  virtual std::string_view Backend() const = 0;  // "sqlite" | "postgresql"
  // Blocks until a connection is free (bounded; kUnavailable on timeout or
  // when a new connection cannot be opened).
  virtual Expected<SqlConnectionLease> Acquire() = 0;

  // Told how long each lease held its connection, i.e. each store call
  // (metrics). Set before the pool is shared between threads.
  void SetCallObserver(std::function<void(double seconds)> observer) { observer_ = std::move(observer); }

 protected:
  friend class SqlConnectionLease;
  std::function<void(double seconds)> observer_;
  // Takes back a connection handed out by Acquire(). The pool discards
  // connections left broken or inside a transaction.
  virtual void Release(SqlConnection* connection) = 0;
};

inline SqlConnectionLease::~SqlConnectionLease() {
  if (pool_ == nullptr || connection_ == nullptr) return;
  pool_->Release(connection_);
  if (pool_->observer_) {
    pool_->observer_(std::chrono::duration<double>(std::chrono::steady_clock::now() - acquired_).count());
  }
}

}  // namespace citadel::store
