#include "storage/stores.h"

#include "storage/postgres/connection.h"
#include "storage/postgres/operator_store.h"
#include "storage/postgres/relay_store.h"
#include "storage/sqlite_operator_store.h"
#include "storage/sqlite_relay_store.h"

namespace metrix {

Result<std::unique_ptr<RelayStore>> open_relay_store(const std::string& db, const OpenOptions& options) {
  if (pg::is_uri(db)) {
    auto store = pg::PgRelayStore::open(db);
    if (!store) return store.error();
    return std::unique_ptr<RelayStore>(std::move(*store));
  }
  auto store = SqliteRelayStore::open(db, options);
  if (!store) return store.error();
  return std::unique_ptr<RelayStore>(std::move(*store));
}

Result<std::unique_ptr<OperatorStore>> open_operator_store(const std::string& db, const OpenOptions& options) {
  if (pg::is_uri(db)) {
    auto store = pg::PgOperatorStore::open(db);
    if (!store) return store.error();
    return std::unique_ptr<OperatorStore>(std::move(*store));
  }
  auto store = SqliteOperatorStore::open(db, options);
  if (!store) return store.error();
  return std::unique_ptr<OperatorStore>(std::move(*store));
}

}  // namespace metrix
