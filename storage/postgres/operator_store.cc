#include "storage/postgres/operator_store.h"

#include "storage/postgres/migrate.h"

namespace metrix::pg {

Result<std::unique_ptr<PgOperatorStore>> PgOperatorStore::open(const std::string& uri) {
  auto db = Connection::open(uri);
  if (!db) return db.error();
  if (auto s = check_schema(*db); !s) return s.error();
  return std::unique_ptr<PgOperatorStore>(new PgOperatorStore(std::move(*db)));
}

}  // namespace metrix::pg
