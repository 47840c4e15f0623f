#include "store/store.hpp"

#include <string>

#include "store/postgres/postgres_store.hpp"
#include "store/sql_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace citadel::store {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
    case Role::kContributor:
      return "contributor";
    case Role::kReader:
      return "reader";
  }
  return "reader";
}

Expected<Role> ParseRole(std::string_view name) {
  for (Role role : {Role::kOperator, Role::kAdmin, Role::kContributor, Role::kReader}) {
    if (name == RoleName(role)) return role;
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown role \"" + std::string(name.substr(0, 32)) +
                                                    "\"; expected operator, admin, contributor or reader");
}

// The one place a backend is chosen.
Expected<std::unique_ptr<Store>> OpenStore(std::string_view location) {
  const std::string target(location);
  const bool postgres = location.starts_with("postgresql://") || location.starts_with("postgres://");
  if (!postgres && target.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the store location is empty; give a SQLite path or a postgresql:// URL");
  }
  auto pool = postgres ? OpenPostgresPool(target) : OpenSqlitePool(target);
  if (!pool) return WrapError(pool.error(), "opening the store");
  return std::unique_ptr<Store>(std::make_unique<SqlStore>(std::move(*pool)));
}

}  // namespace citadel::store
