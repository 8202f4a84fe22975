#include "storage/sqlite_operator_store.h"

#include "storage/migrate.h"

namespace metrix {

Result<std::unique_ptr<SqliteOperatorStore>> SqliteOperatorStore::open(const std::string& path,
                                                                       const OpenOptions& options) {
  auto db = Database::open(path, options);
  if (!db) return db.error();
  if (auto s = check_schema(*db); !s) return s.error();
  return std::unique_ptr<SqliteOperatorStore>(new SqliteOperatorStore(std::move(*db), path));
}

}  // namespace metrix
