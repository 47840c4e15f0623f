// SQLite backend: the embedded default, one database file under --data.
//
// One connection guarded by a mutex: SQLite serialises writers anyway, and a
// single connection keeps every call's view consistent. The connection runs
// in WAL mode (readers in other processes do not block the writer), with
// foreign keys on and a busy timeout so another process holding the write
// lock briefly (a second replica or the CLI on the same file) is waited for
// rather than reported as an error.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "store/sql_connection.hpp"

namespace citadel::store {

inline constexpr int kSqliteBusyTimeoutMs = 5000;

// Opens (creating if missing, with mode 0600 and parent directories 0700)
// the SQLite database at `path`. ":memory:" opens a private in-memory
// database.
Expected<std::unique_ptr<SqlConnectionPool>> OpenSqlitePool(const std::string& path);

// Rewrites $1..$N placeholders to SQLite's ?1..?N, leaving quoted text and
// identifiers untouched. Exposed for tests.
std::string TranslatePlaceholders(std::string_view sql);

}  // namespace citadel::store
