// Repairs an operator makes on the outbox: requeue (send again what Metrix refused, once the
// cause is fixed), purge (delete finished rows past their retention) and reclaim_space
// (give back what a purge freed).
//
// Every write here is a run of short BEGIN IMMEDIATE transactions of a bounded number of
// rows, so producers and relays writing the same file wait for milliseconds, not for the
// whole operation. A crash in the middle leaves every committed chunk done and every other
// row untouched: running the same repair again finishes the job.
//
// Rows are never touched while 'pending' or 'sending' (an event on its way to Metrix), and
// the attempt history of a row is only ever deleted together with the row, by purge.
// One call at a time per Database.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"
#include "storage/row_filter.h"
#include "storage/row_status.h"

namespace metrix {

// ---- requeue ------------------------------------------------------------------------------

// Whether requeue changes a row in `status`: failed, dead and held rows; sent rows only when
// `include_sent` (a deliberate re-send: Metrix receives the event again); pending and
// sending rows never (they are on their way already).
bool requeue_may_change(RowStatus status, bool include_sent);

// The filter requeue() applies: `filter` with its default statuses filled in (failed, dead,
// held, and sent when include_sent), or Errc::invalid_argument naming a status of
// filter.statuses that requeue_may_change() refuses. Listing these rows shows exactly what
// requeue() would change.
Result<RowFilter> requeue_filter(const RowFilter& filter, bool include_sent);

// Makes the rows of requeue_filter() due again: status 'pending', next_attempt_at = now,
// lease_expiries 0 (a poison row gets as many tries again). The attempts count,
// last_http_status/last_error and the attempt history are kept; the relay numbers the next
// attempt after the last one. 1,000 rows per transaction, each re-checking the status, so a
// row a relay claimed meanwhile is left alone. Returns how many rows changed; on
// Errc::invalid_argument nothing changed.
Result<std::int64_t> requeue(Database& db, const RowFilter& filter, bool include_sent, std::int64_t now);

// ---- purge --------------------------------------------------------------------------------

// Whether purge may delete rows in `status`: every status but pending and sending (an
// undelivered event would be lost without a trace).
bool purge_may_delete(RowStatus status);

struct PurgeOptions {
  std::vector<RowStatus> statuses = {RowStatus::sent};  // purge_may_delete() must allow each
  std::int64_t cutoff = 0;        // rows older than this (ms): sent_at for 'sent', created_at otherwise
  std::int64_t chunk_rows = 5000; // rows per transaction
};

struct PurgeCounts {
  std::map<RowStatus, std::int64_t> rows;  // by status, every status of the options
  std::int64_t attempts = 0;
  std::int64_t total_rows() const;
};

// Errc::invalid_argument if the options name no status, or one purge_may_delete() refuses;
// the check purge_preview() and purge() make, shared with the other backend.
Status check_purge_statuses(const PurgeOptions& options);

// The column a row's age is measured from: sent_at (when it was delivered) for 'sent',
// created_at (when it was written) otherwise.
const char* purge_time_column(RowStatus status);

// What purge() would delete. Errc::invalid_argument if the options name no status, or one
// purge_may_delete() refuses.
Result<PurgeCounts> purge_preview(Database& db, const PurgeOptions& options);

// Deletes matching rows and their attempts, chunk by chunk, each chunk one transaction,
// pausing between chunks so that waiting writers get the lock. `on_chunk` (may be empty)
// sees the running totals after each chunk. Refuses the options purge_preview() refuses,
// deleting nothing.
Result<PurgeCounts> purge(Database& db, const PurgeOptions& options,
                          const std::function<void(const PurgeCounts&)>& on_chunk = {});

// ---- space --------------------------------------------------------------------------------

// What the file looks like after a purge: pages free for reuse inside the file, and what
// was done to give space back.
struct SpaceReport {
  std::int64_t page_size = 0;
  std::int64_t page_count = 0;
  std::int64_t free_pages = 0;
  bool incremental_vacuum = false;  // auto_vacuum=INCREMENTAL: free pages were returned to the OS
  bool wal_truncated = false;       // the WAL was checkpointed and truncated
  // PostgreSQL (pg::PgOperatorStore; the fields above stay 0 and false there, and these on SQLite):
  bool postgresql = false;
  bool vacuumed = false;            // both tables vacuumed: the deleted rows' space is reusable by new rows
  std::int64_t table_bytes = 0;     // metrix_outbox and metrix_outbox_attempt on disk, TOAST included
  std::int64_t index_bytes = 0;     // their indexes on disk
};

// With auto_vacuum=INCREMENTAL, returns free pages to the file system a bounded number per
// transaction; then checkpoints the WAL and truncates it unless a reader still needs it.
// Never a full VACUUM: that would lock every writer out for as long as it runs.
Result<SpaceReport> reclaim_space(Database& db);

}  // namespace metrix
