// The writes of PgOperatorStore (operator_store.h): requeue, purge and reclaim_space with the
// contract and results of storage/repair.h.
//
// Each chunk is one statement in its own READ COMMITTED transaction (whatever the role's
// default: SKIP LOCKED and the re-check under a row lock need it). Row locks are all these
// statements take on the outbox: a producer's INSERT waits for them only when it brings the
// dedup_key of a row a chunk is deleting (the unique check waits for that chunk's commit), and
// a relay waits only for a row it would claim, which no chunk touches (pending and sending rows
// are never selected, and the status is checked again under the lock).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "storage/postgres/operator_store.h"
#include "storage/postgres/row_filter.h"

namespace metrix::pg {

namespace {

std::string num(std::int64_t v) { return std::to_string(v); }

// One statement as its own READ COMMITTED transaction.
Result<Rows> read_committed(Connection& db, const std::string& sql, const std::vector<Param>& params) {
  auto tx = Transaction::begin(db, "BEGIN ISOLATION LEVEL READ COMMITTED");
  if (!tx) return tx.error();
  auto rows = db.exec(sql, params);
  if (!rows) return rows.error();
  if (auto c = tx->commit(); !c) return c.error();
  return rows;
}

// A chunk of requeue: the next 1,000 matching rows after id $2, updated only if they still match
// once locked (a row that changed meanwhile is re-read and re-checked, under READ COMMITTED).
// Returns the last id looked at (NULL when none was left) and how many rows changed.
constexpr const char* kRequeueChunk = R"SQL(
WITH pick AS (SELECT id AS pick_id FROM metrix_outbox WHERE id > $2::bigint AND {0} ORDER BY id LIMIT 1000),
done AS (UPDATE metrix_outbox SET status = 'pending', next_attempt_at = $1::bigint, lease_expiries = 0
           FROM pick WHERE id = pick_id AND {0} RETURNING id)
SELECT (SELECT max(pick_id) FROM pick), (SELECT count(*) FROM done))SQL";

// A chunk of purge: up to $3 rows of one status older than $1, read off metrix_outbox_status in
// created_at order from $2 on (where the last chunk stopped, so that the purge walks the index
// once rather than over every dead entry of the chunks before; only rows written in the same
// millisecond, as by one import statement, are walked again, their dead entries skipped once a
// scan has marked them), locked, and deleted
// with their attempts. SKIP LOCKED: a row another session holds is left for the next purge,
// never waited for. The status is a literal of storage's own names, so that the planner
// matches the partial index's predicate. For 'sent' rows the age is sent_at's, which no index
// holds: created_at only orders the walk.
constexpr const char* kPurgeChunk = R"SQL(
WITH batch AS (SELECT id, created_at FROM metrix_outbox
                WHERE status = '{0}' AND created_at >= $2::bigint AND {1} < $1::bigint
                ORDER BY created_at LIMIT $3::integer FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM metrix_outbox o USING batch WHERE o.id = batch.id AND o.status = '{0}' RETURNING o.id),
trail AS (DELETE FROM metrix_outbox_attempt WHERE outbox_id = ANY (ARRAY(SELECT id FROM gone)) RETURNING 1)
SELECT (SELECT count(*) FROM batch), (SELECT max(created_at) FROM batch), (SELECT count(*) FROM gone),
       (SELECT count(*) FROM trail))SQL";

}  // namespace

Result<std::int64_t> PgOperatorStore::requeue(const RowFilter& filter, bool include_sent, std::int64_t now) {
  auto f = requeue_filter(filter, include_sent);
  if (!f) return f.error();
  const RowWhere where(*f);
  const std::string sql = fmt::format(kRequeueChunk, where.sql(3));
  std::int64_t changed = 0;
  std::int64_t last = INT64_MIN;
  for (;;) {
    std::vector<Param> params = {num(now), num(last)};
    params.insert(params.end(), where.params().begin(), where.params().end());
    auto r = read_committed(db_, sql, params);
    if (!r) return r.error();
    if (r->null(0, 0)) return changed;
    last = r->int64(0, 0);
    changed += r->int64(0, 1);
  }
}

Result<PurgeCounts> PgOperatorStore::purge_preview(const PurgeOptions& options) {
  if (auto st = check_purge_statuses(options); !st) return st.error();
  PurgeCounts counts;
  for (RowStatus status : options.statuses) {
    auto r = db_.exec(fmt::format("SELECT count(*), coalesce(sum((SELECT count(*) FROM metrix_outbox_attempt a "
                                  "WHERE a.outbox_id = o.id)), 0) FROM metrix_outbox o "
                                  "WHERE status = $1 AND {} < $2::bigint",
                                  purge_time_column(status)),
                      {std::string(row_status_name(status)), num(options.cutoff)});
    if (!r) return r.error();
    counts.rows[status] = r->int64(0, 0);
    counts.attempts += r->int64(0, 1);
  }
  return counts;
}

Result<PurgeCounts> PgOperatorStore::purge(const PurgeOptions& options,
                                           const std::function<void(const PurgeCounts&)>& on_chunk) {
  if (auto st = check_purge_statuses(options); !st) return st.error();
  PurgeCounts counts;
  for (RowStatus status : options.statuses) {
    counts.rows[status] = 0;
    const std::string sql = fmt::format(kPurgeChunk, row_status_name(status), purge_time_column(status));
    std::int64_t from = INT64_MIN;
    for (;;) {
      auto started = std::chrono::steady_clock::now();
      auto r = read_committed(db_, sql, {num(options.cutoff), num(from), num(options.chunk_rows)});
      if (!r) return r.error();
      const std::int64_t picked = r->int64(0, 0);
      if (picked == 0) break;
      from = r->int64(0, 1);
      counts.rows[status] += r->int64(0, 2);
      counts.attempts += r->int64(0, 3);
      if (on_chunk) on_chunk(counts);
      // A short chunk walked to the end: every row left is too young, or held by another
      // session (left for the next purge). Walking again would read every kept row once more.
      if (picked < options.chunk_rows) break;
      // Nothing here locks a producer out, but each chunk's WAL and its flush share the disk
      // with every producer's commit: idling as long as the chunk took leaves them at least
      // half of it (tools/bench/bench_retention.py measures a producer's p99 beside a purge).
      auto took = std::chrono::steady_clock::now() - started;
      std::this_thread::sleep_for(std::clamp<std::chrono::steady_clock::duration>(
          took, std::chrono::milliseconds(2), std::chrono::milliseconds(200)));
    }
  }
  return counts;
}

Result<SpaceReport> PgOperatorStore::reclaim_space() {
  SpaceReport report;
  report.postgresql = true;
  // Only an owner (of the tables or the database, or a superuser) may VACUUM; anyone else's
  // VACUUM is a warning and does nothing, so ask first and say so rather than claim it ran.
  auto may = db_.exec(
      "SELECT bool_and(pg_has_role(c.relowner, 'USAGE')) OR pg_has_role((SELECT datdba FROM pg_database "
      "WHERE datname = current_database()), 'USAGE') FROM pg_class c "
      "WHERE c.oid IN ('metrix_outbox'::regclass, 'metrix_outbox_attempt'::regclass)");
  if (!may) return may.error();
  if (may->boolean(0, 0)) {
    // A plain VACUUM: it takes no lock a producer or a relay waits for (VACUUM FULL would lock
    // them out for as long as it rewrites the table). It marks the deleted rows' space
    // reusable and ANALYZE re-counts the table the planner reads. TRUNCATE false: giving back
    // the empty pages at the table's end takes an ACCESS EXCLUSIVE lock that stalls every
    // INSERT while it lasts (and cancels queries on a standby), for little: the end of an
    // outbox holds its newest rows. Paced like autovacuum, so that its reads and writes leave
    // the disk to producers' commits.
    if (auto s = db_.exec("SET vacuum_cost_delay = '2ms'"); !s) return s.error();
    Status vacuumed;
    for (const char* sql : {"VACUUM (ANALYZE, TRUNCATE false) metrix_outbox",
                            "VACUUM (ANALYZE, TRUNCATE false) metrix_outbox_attempt"}) {
      if (!vacuumed) break;
      if (auto v = db_.exec(sql); !v) vacuumed = v.error();
    }
    if (auto s = db_.exec("RESET vacuum_cost_delay"); !s) return s.error();
    if (!vacuumed) return vacuumed.error();
    report.vacuumed = true;
  }
  auto size = db_.exec(
      "SELECT pg_table_size('metrix_outbox') + pg_table_size('metrix_outbox_attempt'), "
      "pg_indexes_size('metrix_outbox') + pg_indexes_size('metrix_outbox_attempt')");
  if (!size) return size.error();
  report.table_bytes = size->int64(0, 0);
  report.index_bytes = size->int64(0, 1);
  return report;
}

}  // namespace metrix::pg
