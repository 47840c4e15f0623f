#include "store/sqlite/sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::store {
namespace {

// Enough for every distinct statement the store issues (ListDevices builds a
// handful of variants); the cache is cleared if something unexpected grows it.
constexpr std::size_t kMaxCachedStatements = 128;

Error SqliteError(int code, std::string_view message) {
  ErrorCode category = ErrorCode::kInternal;
  switch (code) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      category = ErrorCode::kAlreadyExists;
      break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      category = ErrorCode::kNotFound;
      break;
    default:
      switch (code & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_READONLY:
        case SQLITE_PROTOCOL:
          category = ErrorCode::kUnavailable;
          break;
        default:
          break;
      }
  }
  // SQLite's messages name tables and columns, never bound values.
  return Error(category, "sqlite: " + std::string(message));
}

class SqliteConnection final : public SqlConnection {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() override {
    ClearStatements();
    sqlite3_close_v2(db_);
  }
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  using SqlConnection::Execute;
  SqlDialect Dialect() const override { return SqlDialect::kSqlite; }

  Expected<SqlResult> Execute(std::string_view sql, std::span<const SqlValue> params) override {
    CITADEL_TRY(sqlite3_stmt * statement, Prepare(sql));
    // Leave the cached statement reusable whatever happens below.
    struct ResetOnExit {
      sqlite3_stmt* statement;
      ~ResetOnExit() {
        sqlite3_reset(statement);
        sqlite3_clear_bindings(statement);
      }
    } reset{statement};

    const int expected = sqlite3_bind_parameter_count(statement);
    if (expected < 0 || static_cast<std::size_t>(expected) != params.size()) {
      return MakeError(ErrorCode::kInternal, "sqlite: statement takes " + std::to_string(expected) + " parameters, " +
                                                 std::to_string(params.size()) + " given");
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const SqlValue& param = params[i];
      int rc = SQLITE_OK;
      switch (param.kind()) {
        case SqlValue::Kind::kNull:
          rc = sqlite3_bind_null(statement, index);
          break;
        case SqlValue::Kind::kText: {
          // A null pointer would bind NULL; an empty text is not NULL.
          const char* data = param.text().data() != nullptr ? param.text().data() : "";
          rc = sqlite3_bind_text64(statement, index, data, param.text().size(), SQLITE_STATIC, SQLITE_UTF8);
          break;
        }
        case SqlValue::Kind::kInteger:
          rc = sqlite3_bind_int64(statement, index, param.integer());
          break;
      }
      if (rc != SQLITE_OK) return std::unexpected(SqliteError(rc, sqlite3_errmsg(db_)));
    }

    SqlResult result;
    for (;;) {
      const int rc = sqlite3_step(statement);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return std::unexpected(SqliteError(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_)));
      const int columns = sqlite3_column_count(statement);
      std::vector<std::optional<std::string>> row;
      row.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (sqlite3_column_type(statement, c) == SQLITE_NULL) {
          row.emplace_back(std::nullopt);
          continue;
        }
        const auto* text = sqlite3_column_text(statement, c);
        const int bytes = sqlite3_column_bytes(statement, c);
        row.emplace_back(std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes)));
      }
      result.rows.emplace_back(std::move(row));
    }
    // sqlite3_changes64 reports the last data change, so ask only after one.
    result.rows_affected = sqlite3_stmt_readonly(statement) != 0 ? 0 : sqlite3_changes64(db_);
    return result;
  }

  Expected<void> ExecuteScript(std::string_view sql) override {
    const std::string script(sql);
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, script.c_str(), nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return kOk;
    Error error = SqliteError(sqlite3_extended_errcode(db_), message != nullptr ? message : sqlite3_errstr(rc));
    sqlite3_free(message);
    return std::unexpected(std::move(error));
  }

  // IMMEDIATE: take the write lock now, so two writers never deadlock
  // upgrading read locks; another process's lock is waited for up to the
  // busy timeout.
  Expected<void> Begin() override { return Run("BEGIN IMMEDIATE"); }
  Expected<void> Commit() override { return Run("COMMIT"); }
  Expected<void> Rollback() override {
    if (sqlite3_get_autocommit(db_) != 0) return kOk;  // SQLite already rolled back
    return Run("ROLLBACK");
  }

  Expected<bool> TableExists(std::string_view table) override {
    CITADEL_TRY(SqlResult result, Execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1", {table}));
    return !result.rows.empty();
  }

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  Expected<void> Run(std::string_view sql) {
    CITADEL_TRY_VOID(Execute(sql, std::span<const SqlValue>()));
    return kOk;
  }

  Expected<sqlite3_stmt*> Prepare(std::string_view sql) {
    std::string key(sql);
    if (auto found = statements_.find(key); found != statements_.end()) return found->second;
    if (statements_.size() >= kMaxCachedStatements) ClearStatements();
    const std::string translated = TranslatePlaceholders(sql);
    sqlite3_stmt* statement = nullptr;
    const int rc = sqlite3_prepare_v3(db_, translated.c_str(), static_cast<int>(translated.size() + 1),
                                      SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(statement);
      return std::unexpected(SqliteError(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_)));
    }
    statements_.emplace(std::move(key), statement);
    return statement;
  }

  void ClearStatements() {
    for (auto& [sql, statement] : statements_) sqlite3_finalize(statement);
    statements_.clear();
  }

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

// One connection, handed to one caller at a time: the mutex is locked in
// Acquire() and unlocked when the lease ends.
class SqlitePool final : public SqlConnectionPool {
 public:
  explicit SqlitePool(std::unique_ptr<SqliteConnection> connection) : connection_(std::move(connection)) {}

  std::string_view Backend() const override { return "sqlite"; }

  Expected<SqlConnectionLease> Acquire() override {
    mutex_.lock();
    return SqlConnectionLease(this, connection_.get());
  }

 protected:
  void Release(SqlConnection* /*connection*/) override {
    // A caller must never leave a transaction open for the next one.
    if (connection_->InTransaction()) (void)connection_->Rollback();
    mutex_.unlock();
  }

 private:
  std::mutex mutex_;
  std::unique_ptr<SqliteConnection> connection_;
};

Expected<std::string> PragmaValue(SqliteConnection& connection, std::string_view pragma) {
  CITADEL_TRY(SqlResult result, connection.Execute(pragma, std::span<const SqlValue>()));
  return result.rows.empty() ? std::string() : result.rows.front().Text(0);
}

}  // namespace

std::string TranslatePlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;  // a doubled quote re-enters on the next char
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '$' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1])) != 0) {
      out += '?';
      continue;
    }
    out += c;
  }
  return out;
}

Expected<std::unique_ptr<SqlConnectionPool>> OpenSqlitePool(const std::string& path) {
  const bool in_memory = path == ":memory:";
  if (!in_memory) {
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) {
      auto created = EnsureDirectory(parent, 0700);
      if (!created) return WrapError(created.error(), "creating the store directory");
    }
    // SQLite would create the file 0644; it holds sealed CA keys and token
    // hashes, so create it 0600 first (SQLite gives its -wal/-shm the same mode).
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return MakeError(ErrorCode::kUnavailable, "cannot open SQLite database " + path + ": " + std::strerror(errno));
    }
    ::close(fd);
  }

  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return MakeError(ErrorCode::kUnavailable, "cannot open SQLite database " + path + ": " + message);
  }
  auto connection = std::make_unique<SqliteConnection>(db);
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kSqliteBusyTimeoutMs);

  auto setup = [&]() -> Expected<void> {
    // Foreign keys are per connection and off by default; the schema's
    // integrity (a device only in its own tenant's groups) relies on them.
    CITADEL_TRY_VOID(PragmaValue(*connection, "PRAGMA foreign_keys = ON"));
    CITADEL_TRY(std::string foreign_keys, PragmaValue(*connection, "PRAGMA foreign_keys"));
    if (foreign_keys != "1") return MakeError(ErrorCode::kInternal, "sqlite: foreign keys cannot be enabled");
    if (!in_memory) {
      CITADEL_TRY(std::string mode, PragmaValue(*connection, "PRAGMA journal_mode = WAL"));
      if (mode != "wal") {
        log::Warn("SQLite WAL mode unavailable; readers will block writers", {{"journal_mode", mode}});
      }
    }
    // FULL: a committed nonce consumption or claim survives power loss.
    CITADEL_TRY_VOID(PragmaValue(*connection, "PRAGMA synchronous = FULL"));
    return kOk;
  };
  if (auto ready = setup(); !ready) return WrapError(ready.error(), "configuring SQLite database " + path);
  return std::unique_ptr<SqlConnectionPool>(std::make_unique<SqlitePool>(std::move(connection)));
}

}  // namespace citadel::store
