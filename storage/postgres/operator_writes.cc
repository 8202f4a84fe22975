// The writes of PgOperatorStore (operator_store.h). Not yet implemented.
#include "storage/postgres/operator_store.h"

namespace metrix::pg {

namespace {
Error not_yet() { return Error{Errc::invalid_argument, "not yet implemented on PostgreSQL"}; }
}  // namespace

Result<std::int64_t> PgOperatorStore::requeue(const RowFilter&, bool, std::int64_t) { return not_yet(); }
Result<PurgeCounts> PgOperatorStore::purge_preview(const PurgeOptions&) { return not_yet(); }
Result<PurgeCounts> PgOperatorStore::purge(const PurgeOptions&, const std::function<void(const PurgeCounts&)>&) {
  return not_yet();
}
Result<SpaceReport> PgOperatorStore::reclaim_space() { return not_yet(); }

}  // namespace metrix::pg
