// PostgreSQL backend: for scale-out, N citadel-server replicas on one
// database.
//
// A small thread-safe pool of libpq connections, opened on demand up to a
// bound. Values travel as parameters, never inside the SQL text: statements
// with parameters are prepared once per connection (PQprepare, then
// PQexecPrepared), the rest are sent with PQexecParams. A connection left
// broken or inside a transaction is closed instead of being reused.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "store/sql_connection.hpp"

namespace citadel::store {

inline constexpr std::size_t kDefaultPostgresPoolSize = 8;

// Connects to the database named by `url` (a libpq URI or key=value string)
// once, to fail early with kUnavailable when it is unreachable. Errors never
// contain the URL or its password.
Expected<std::unique_ptr<SqlConnectionPool>> OpenPostgresPool(const std::string& url,
                                                              std::size_t max_connections = kDefaultPostgresPoolSize);

}  // namespace citadel::store
