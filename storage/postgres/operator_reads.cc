// The reads of PgOperatorStore (operator_store.h). Not yet implemented.
#include "storage/postgres/operator_store.h"

namespace metrix::pg {

namespace {
Error not_yet() { return Error{Errc::invalid_argument, "not yet implemented on PostgreSQL"}; }
}  // namespace

Result<StatusSnapshot> PgOperatorStore::read_status(std::int64_t) { return not_yet(); }
Result<StatusSnapshot> PgOperatorStore::read_health(std::int64_t, const HealthThresholds&) { return not_yet(); }
Result<Backlog> PgOperatorStore::read_backlog(std::int64_t) { return not_yet(); }
Result<std::vector<OutboxRow>> PgOperatorStore::list_rows(const RowFilter&, std::int64_t) { return not_yet(); }
Result<std::int64_t> PgOperatorStore::count_rows(const RowFilter&) { return not_yet(); }
Result<RowHistory> PgOperatorStore::row_history(std::int64_t) { return not_yet(); }
Result<std::vector<ReportRow>> PgOperatorStore::sent_report(const ReportOptions&) { return not_yet(); }

}  // namespace metrix::pg
