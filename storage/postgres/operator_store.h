// PgOperatorStore: storage/operator_store.h on a PostgreSQL outbox (storage/postgres/migrations/),
// one connection of its own. The contract is operator_store.h's, with the same results for the
// same rows as the SQLite store: the commands print them the same way on both backends.
//
// Reads (operator_reads.cc) each run in one REPEATABLE READ, READ ONLY transaction: one
// snapshot, no lock a producer or relay waits for. Writes (operator_writes.cc) run in short
// READ COMMITTED transactions of a bounded number of rows, each re-checking a row's status under
// its row lock.
#pragma once

#include <memory>
#include <string>

#include "storage/operator_store.h"
#include "storage/postgres/connection.h"

namespace metrix::pg {

class PgOperatorStore final : public OperatorStore {
 public:
  // Connects to `uri` and checks that it holds this build's schema (check_schema).
  static Result<std::unique_ptr<PgOperatorStore>> open(const std::string& uri);

  // operator_reads.cc
  Result<StatusSnapshot> read_status(std::int64_t now) override;
  Result<StatusSnapshot> read_health(std::int64_t now, const HealthThresholds& thresholds) override;
  Result<Backlog> read_backlog(std::int64_t now) override;
  Result<std::vector<OutboxRow>> list_rows(const RowFilter& filter, std::int64_t limit) override;
  Result<std::int64_t> count_rows(const RowFilter& filter) override;
  Result<RowHistory> row_history(std::int64_t id) override;
  Result<std::vector<ReportRow>> sent_report(const ReportOptions& options) override;

  // operator_writes.cc
  Result<std::int64_t> requeue(const RowFilter& filter, bool include_sent, std::int64_t now) override;
  Result<PurgeCounts> purge_preview(const PurgeOptions& options) override;
  Result<PurgeCounts> purge(const PurgeOptions& options,
                            const std::function<void(const PurgeCounts&)>& on_chunk) override;
  Result<SpaceReport> reclaim_space() override;

 private:
  explicit PgOperatorStore(Connection db) : db_(std::move(db)) {}
  Connection db_;
};

}  // namespace metrix::pg
