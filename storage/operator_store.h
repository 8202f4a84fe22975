// OperatorStore: the outbox as the operator commands use it (status, list, show, report,
// requeue, purge), whatever database holds it. The commands depend on this header;
// storage/sqlite_operator_store.h implements it on an SQLite file (with the functions of
// storage/status.h, rows.h, report.h and repair.h, whose types it shares). A second backend
// implements the same class; what follows is its contract, beside the one of relay_store.h.
//
// Reads never take a lock that stalls producers or relays; status, list, show and report
// each read one consistent snapshot (purge_preview counts status by status). Writes (requeue, purge) run in short transactions of a bounded number
// of rows, each re-checking a row's status, so that a relay or producer waits milliseconds,
// and a crash in the middle leaves every committed chunk done: running the command again
// finishes the job. They never touch a row that is 'pending' or 'sending' (an event on its
// way), never delete attempts but with their row, and never write a row's payload.
//
// Clock: times are milliseconds since the Unix epoch, UTC; `now` is the caller's reading.
// Rows with a NULL app_id are named kDefaultAppLabel in filters. One call at a time; errors
// are values and nothing throws.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "storage/backlog.h"
#include "storage/repair.h"
#include "storage/report.h"
#include "storage/result.h"
#include "storage/row_filter.h"
#include "storage/rows.h"
#include "storage/status.h"

namespace metrix {

class OperatorStore {
 public:
  virtual ~OperatorStore() = default;

  // Every row counted once, by app and status, with pauses, heartbeats and the most frequent
  // errors (StatusSnapshot). A full read of the table.
  virtual Result<StatusSnapshot> read_status(std::int64_t now) = 0;
  // What evaluate_health() needs, from unfinished rows only: cheap however many delivered
  // rows the outbox keeps (see read_health in status.h for which fields it fills).
  virtual Result<StatusSnapshot> read_health(std::int64_t now, const HealthThresholds& thresholds) = 0;

  // The backlog per app for the relay's metrics (backlog.h): counts by status, the due rows, the
  // oldest due one. Read at most every few seconds, never per row.
  virtual Result<Backlog> read_backlog(std::int64_t now) = 0;

  // Matching rows in id order, at most `limit` (0: all); how many match.
  virtual Result<std::vector<OutboxRow>> list_rows(const RowFilter& filter, std::int64_t limit) = 0;
  virtual Result<std::int64_t> count_rows(const RowFilter& filter) = 0;
  // One row and its attempts, oldest first; Errc::not_found if there is no such id.
  virtual Result<RowHistory> row_history(std::int64_t id) = 0;

  // Sent rows per UTC day, app and slug, ordered so, with revenue summed per currency.
  virtual Result<std::vector<ReportRow>> sent_report(const ReportOptions& options) = 0;

  // requeue() of repair.h: makes the rows of requeue_filter(filter, include_sent) pending and
  // due at `now`, keeping their attempts and history; how many changed.
  virtual Result<std::int64_t> requeue(const RowFilter& filter, bool include_sent, std::int64_t now) = 0;
  // purge_preview() and purge() of repair.h: what would go, and deleting it chunk by chunk.
  virtual Result<PurgeCounts> purge_preview(const PurgeOptions& options) = 0;
  virtual Result<PurgeCounts> purge(const PurgeOptions& options,
                                    const std::function<void(const PurgeCounts&)>& on_chunk) = 0;
  // After a purge: give freed space back to the file system where the database can do so
  // without locking writers out for long.
  virtual Result<SpaceReport> reclaim_space() = 0;
};

}  // namespace metrix
