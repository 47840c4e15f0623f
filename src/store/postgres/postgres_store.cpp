#include "store/postgres/postgres_store.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/log.hpp"

namespace citadel::store {
namespace {

constexpr auto kAcquireTimeout = std::chrono::seconds(30);
constexpr const char* kConnectTimeoutSeconds = "10";

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// libpq messages may span lines ("...failed\n\tIs the server running...");
// keep the first, trimmed, and blank out the password should it appear.
std::string CleanMessage(const char* raw, const std::string& password) {
  std::string message = raw != nullptr ? raw : "";
  if (auto newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
  while (!message.empty() && (message.back() == ' ' || message.back() == '\r')) message.pop_back();
  if (!password.empty()) {
    for (auto at = message.find(password); at != std::string::npos; at = message.find(password, at)) {
      message.replace(at, password.size(), "***");
    }
  }
  return message.empty() ? "unknown error" : message;
}

Error ResultError(PGconn* connection, const PGresult* result, const std::string& password) {
  if (result == nullptr || PQstatus(connection) != CONNECTION_OK) {
    return Error(ErrorCode::kUnavailable, "postgresql: " + CleanMessage(PQerrorMessage(connection), password));
  }
  const char* state_field = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const std::string state = state_field != nullptr ? state_field : "";
  ErrorCode code = ErrorCode::kInternal;
  if (state == "23505") {
    code = ErrorCode::kAlreadyExists;
  } else if (state == "23503") {
    code = ErrorCode::kNotFound;
  } else if (state.starts_with("08") || state.starts_with("57P") || state == "53300" || state.starts_with("40")) {
    // Connection trouble, server shutting down, too many connections,
    // serialization failure or deadlock: all worth retrying later.
    code = ErrorCode::kUnavailable;
  }
  // Only the primary message: DETAIL repeats key values (a token hash on a
  // unique violation). Data exceptions (class 22) quote the offending value
  // even in the primary message, so for them only the code is kept.
  std::string message;
  if (state.starts_with("22")) {
    message = "data exception";
  } else {
    message = CleanMessage(PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY), password);
  }
  return Error(code, "postgresql: " + message + " (SQLSTATE " + (state.empty() ? "?" : state) + ")");
}

void IgnoreNotice(void* /*arg*/, const char* message) {
  // NOTICEs such as "relation already exists, skipping" are expected; libpq
  // would otherwise print them on stderr.
  log::Debug("postgresql notice", {{"message", message != nullptr ? message : ""}});
}

class PostgresConnection final : public SqlConnection {
 public:
  PostgresConnection(PGconn* connection, std::string password)
      : connection_(connection), password_(std::move(password)) {}
  ~PostgresConnection() override { PQfinish(connection_); }
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  using SqlConnection::Execute;
  SqlDialect Dialect() const override { return SqlDialect::kPostgres; }

  Expected<SqlResult> Execute(std::string_view sql, std::span<const SqlValue> params) override {
    const std::string query(sql);
    // Text-format parameters must be NUL-terminated strings; PostgreSQL
    // infers each parameter's type from where it is used.
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (std::size_t i = 0; i < params.size(); ++i) {
      switch (params[i].kind()) {
        case SqlValue::Kind::kNull:
          break;
        case SqlValue::Kind::kText:
          storage[i] = std::string(params[i].text());
          values[i] = storage[i].c_str();
          break;
        case SqlValue::Kind::kInteger:
          storage[i] = std::to_string(params[i].integer());
          values[i] = storage[i].c_str();
          break;
      }
    }
    CITADEL_TRY(const char* statement, Prepared(query, static_cast<int>(params.size())));
    ResultPtr result(statement != nullptr ? PQexecPrepared(connection_, statement, static_cast<int>(params.size()),
                                                           values.data(), nullptr, nullptr, 0)
                                          : PQexecParams(connection_, query.c_str(), static_cast<int>(params.size()),
                                                         nullptr, values.data(), nullptr, nullptr, 0));
    const ExecStatusType status = result != nullptr ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    SqlResult out;
    if (status == PGRES_TUPLES_OK) {
      const int rows = PQntuples(result.get());
      const int columns = PQnfields(result.get());
      out.rows.reserve(static_cast<std::size_t>(rows));
      for (int r = 0; r < rows; ++r) {
        std::vector<std::optional<std::string>> row;
        row.reserve(static_cast<std::size_t>(columns));
        for (int c = 0; c < columns; ++c) {
          if (PQgetisnull(result.get(), r, c) != 0) {
            row.emplace_back(std::nullopt);
          } else {
            row.emplace_back(
                std::string(PQgetvalue(result.get(), r, c), static_cast<std::size_t>(PQgetlength(result.get(), r, c))));
          }
        }
        out.rows.emplace_back(std::move(row));
      }
      return out;
    }
    if (status == PGRES_COMMAND_OK) {
      const std::string_view affected = PQcmdTuples(result.get());
      std::from_chars(affected.data(), affected.data() + affected.size(), out.rows_affected);
      return out;
    }
    return std::unexpected(ResultError(connection_, result.get(), password_));
  }

  Expected<void> ExecuteScript(std::string_view sql) override {
    const std::string script(sql);
    ResultPtr result(PQexec(connection_, script.c_str()));
    const ExecStatusType status = result != nullptr ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return kOk;
    return std::unexpected(ResultError(connection_, result.get(), password_));
  }

  Expected<void> Begin() override { return Run("BEGIN"); }
  Expected<void> Commit() override {
    // COMMIT of an aborted transaction "succeeds" by rolling back; refuse
    // to report that as a commit.
    if (PQtransactionStatus(connection_) == PQTRANS_INERROR) {
      return MakeError(ErrorCode::kInternal, "postgresql: transaction aborted; not committed");
    }
    return Run("COMMIT");
  }
  Expected<void> Rollback() override { return Run("ROLLBACK"); }

  Expected<bool> TableExists(std::string_view table) override {
    CITADEL_TRY(SqlResult result, Execute("SELECT 1 FROM information_schema.tables "
                                          "WHERE table_schema = current_schema() AND table_name = $1",
                                          {table}));
    return !result.rows.empty();
  }

  // Whether the connection can serve the next caller: connected and outside
  // any transaction (an open one is rolled back first).
  bool ReadyForReuse() {
    if (PQstatus(connection_) != CONNECTION_OK) return false;
    const PGTransactionStatusType state = PQtransactionStatus(connection_);
    if (state == PQTRANS_INTRANS || state == PQTRANS_INERROR) {
      if (!Rollback()) return false;
    }
    return PQstatus(connection_) == CONNECTION_OK && PQtransactionStatus(connection_) == PQTRANS_IDLE;
  }

 private:
  // Statements with parameters are prepared once per connection (parsed
  // and planned by the server once, not on every call): the name of the
  // prepared statement, or null for statements sent as they are (those
  // without parameters, such as BEGIN and COMMIT, and any beyond
  // kMaxPrepared). Prepared statements outlive a rolled-back transaction.
  static constexpr std::size_t kMaxPrepared = 512;
  Expected<const char*> Prepared(const std::string& query, int parameters) {
    if (parameters == 0) return nullptr;
    if (auto it = prepared_.find(query); it != prepared_.end()) return it->second.c_str();
    if (prepared_.size() >= kMaxPrepared) return nullptr;
    std::string name = "citadel_" + std::to_string(prepared_.size());
    ResultPtr result(PQprepare(connection_, name.c_str(), query.c_str(), parameters, nullptr));
    if (result == nullptr || PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
      return std::unexpected(ResultError(connection_, result.get(), password_));
    }
    return prepared_.emplace(query, std::move(name)).first->second.c_str();
  }

  Expected<void> Run(std::string_view sql) {
    CITADEL_TRY_VOID(Execute(sql, std::span<const SqlValue>()));
    return kOk;
  }

  PGconn* connection_;
  std::string password_;                                   // only to scrub it from error messages
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
};

// The parsed connection options; parsing first means a malformed URL is
// reported without libpq echoing (possibly secret) fragments of it.
Expected<std::string> PasswordOf(const std::string& url) {
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    PQfreemem(parse_error);
    return MakeError(ErrorCode::kInvalidArgument, "the PostgreSQL connection URL is malformed");
  }
  std::string password;
  for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) == "password" && option->val != nullptr) password = option->val;
  }
  PQconninfoFree(options);
  return password;
}

Expected<std::unique_ptr<PostgresConnection>> Connect(const std::string& url, const std::string& password) {
  // Later entries override earlier ones, so the URL's own settings win over
  // these defaults.
  const char* const keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* const values[] = {kConnectTimeoutSeconds, "citadel", url.c_str(), nullptr};
  PGconn* connection = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (connection == nullptr) return MakeError(ErrorCode::kUnavailable, "postgresql: out of memory");
  if (PQstatus(connection) != CONNECTION_OK) {
    std::string message = CleanMessage(PQerrorMessage(connection), password);
    PQfinish(connection);
    return MakeError(ErrorCode::kUnavailable, "cannot connect to PostgreSQL: " + message);
  }
  PQsetNoticeProcessor(connection, IgnoreNotice, nullptr);
  return std::make_unique<PostgresConnection>(connection, password);
}

class PostgresPool final : public SqlConnectionPool {
 public:
  PostgresPool(std::string url, std::string password, std::size_t max_connections,
               std::unique_ptr<PostgresConnection> first)
      : url_(std::move(url)), password_(std::move(password)), max_connections_(max_connections), open_(1) {
    idle_.push_back(std::move(first));
  }

  std::string_view Backend() const override { return "postgresql"; }

  Expected<SqlConnectionLease> Acquire() override {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, kAcquireTimeout, [&] { return !idle_.empty() || open_ < max_connections_; })) {
      return MakeError(ErrorCode::kUnavailable,
                       "all " + std::to_string(max_connections_) + " PostgreSQL connections stayed busy; try again");
    }
    if (!idle_.empty()) {
      PostgresConnection* connection = idle_.back().release();
      idle_.pop_back();
      return SqlConnectionLease(this, connection);
    }
    ++open_;  // reserve the slot, then connect without holding the lock
    lock.unlock();
    auto connection = Connect(url_, password_);
    if (!connection) {
      lock.lock();
      --open_;
      available_.notify_one();
      return std::unexpected(std::move(connection).error());
    }
    return SqlConnectionLease(this, connection->release());
  }

 protected:
  void Release(SqlConnection* connection) override {
    std::unique_ptr<PostgresConnection> owned(static_cast<PostgresConnection*>(connection));
    const bool reusable = owned->ReadyForReuse();
    std::unique_lock lock(mutex_);
    if (reusable) {
      idle_.push_back(std::move(owned));
    } else {
      --open_;
    }
    available_.notify_one();
    lock.unlock();
    owned.reset();  // closes a broken connection outside the lock
  }

 private:
  const std::string url_;
  const std::string password_;
  const std::size_t max_connections_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<PostgresConnection>> idle_;
  std::size_t open_;  // idle plus leased
};

}  // namespace

Expected<std::unique_ptr<SqlConnectionPool>> OpenPostgresPool(const std::string& url, std::size_t max_connections) {
  if (max_connections == 0) return MakeError(ErrorCode::kInvalidArgument, "the connection pool needs a connection");
  CITADEL_TRY(std::string password, PasswordOf(url));
  CITADEL_TRY(auto first, Connect(url, password));
  return std::unique_ptr<SqlConnectionPool>(
      std::make_unique<PostgresPool>(url, std::move(password), max_connections, std::move(first)));
}

}  // namespace citadel::store
