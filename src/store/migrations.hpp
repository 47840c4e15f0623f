// The store's versioned schema: an ordered list of migration scripts. A
// released migration is never edited; a schema change is a new entry with
// the next version. SqlStore::Migrate() applies the pending ones in one
// transaction and records each in schema_migrations.
//
// Scripts use the portable dialect of sql_connection.hpp. The one construct
// the two databases spell differently, an auto-assigned 64-bit primary key,
// is written as the token kAutoIdPrimaryKeyToken and replaced per dialect.
//
// Internal to citadel_store.
#pragma once

#include <span>
#include <string_view>

namespace citadel::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

inline constexpr std::string_view kAutoIdPrimaryKeyToken = "{{AUTO_ID_PRIMARY_KEY}}";

// Ordered by version, starting at 1, without gaps.
std::span<const Migration> Migrations();

// The version Migrate() brings a database to.
int LatestSchemaVersion();

}  // namespace citadel::store
