// Audit: the operator's queries on the outbox. Status counts and health, listing and
// showing rows with their attempt history, the sent-events report, and the two repairs an
// operator makes: requeue (send again what Metrix refused once the cause is fixed) and
// purge (delete delivered rows past their retention).
//
// Reads never take the write lock. Every write here is a run of short BEGIN IMMEDIATE
// transactions of a bounded number of rows, so producers and relays writing the same file
// wait for milliseconds, not for the whole operation. A crash in the middle of a requeue or
// a purge leaves every committed chunk done and every other row untouched: running the
// same command again finishes the job.
//
// Rows are never touched while 'pending' or 'sending' (an event on its way to Metrix), and
// the attempt history of a row is only ever deleted together with the row, by purge.
// One call at a time per Database.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/outbox.h"
#include "storage/result.h"

namespace metrix {

// The name rows with a NULL app_id go by in filters and output (as in metrix_outbox_audit).
inline constexpr const char* kDefaultAppLabel = "(default)";

// Every status, in the order the outbox moves through them.
const std::vector<std::string>& all_statuses();
// "--status S: not a status; the statuses are pending, sending, ..." when S is not one.
Status check_status(const std::string& s);

struct IdRange {
  std::int64_t first = 0;
  std::int64_t last = 0;  // inclusive
};

// Which rows. Empty members do not filter; the members that are set must all match.
struct RowFilter {
  std::vector<std::string> statuses;                // any of these
  std::optional<std::string> app_id;                // kDefaultAppLabel matches NULL
  std::optional<std::string> slug;                  // event_slug, exactly
  std::optional<std::string> error;                 // last_error contains this text
  std::optional<std::int64_t> created_since;        // created_at >= (ms)
  std::optional<std::int64_t> created_until;        // created_at <  (ms)
  std::vector<IdRange> ids;                         // id in any of these ranges
};

// One metrix_outbox row, as stored.
struct OutboxRow {
  std::int64_t id = 0;
  std::optional<std::string> app_id;
  std::string payload;
  std::optional<std::string> dedup_key;
  std::int64_t created_at = 0;
  std::string status;
  std::int64_t attempts = 0;
  std::int64_t next_attempt_at = 0;
  std::optional<std::int64_t> event_time;
  std::optional<std::int64_t> last_http_status;
  std::optional<std::string> last_error;
  std::optional<std::int64_t> sent_at;
  std::optional<std::string> event_slug;
  std::int64_t lease_expiries = 0;  // claims in a row whose relay stopped before an answer
};

// One metrix_outbox_attempt row.
struct AttemptRow {
  std::int64_t attempt = 0;
  std::int64_t started_at = 0;
  std::int64_t finished_at = 0;
  std::optional<std::int64_t> http_status;
  std::optional<std::string> error;
  std::optional<std::string> response;
};

// Matching rows in id order, at most `limit` of them (0: all).
Result<std::vector<OutboxRow>> list_rows(Database& db, const RowFilter& filter, std::int64_t limit);
Result<std::int64_t> count_rows(Database& db, const RowFilter& filter);

// One row and its whole attempt history, oldest attempt first. Errc::not_found if no such id.
struct RowHistory {
  OutboxRow row;
  std::vector<AttemptRow> attempts;
};
Result<RowHistory> row_history(Database& db, std::int64_t id);

// ---- status and health ----------------------------------------------------------------

using StatusCounts = std::map<std::string, std::int64_t>;  // every status of all_statuses(), 0 if none

struct AppStatus {
  std::optional<std::string> app_id;  // NULL: the relay's default app
  StatusCounts counts;
};

// The due row that has waited longest since it became due.
struct OldestDue {
  std::int64_t id = 0;
  std::optional<std::string> app_id;
  std::int64_t created_at = 0;
  std::int64_t due_since = 0;  // next_attempt_at: enqueued, retry time reached, requeued, or lease expired
};

// A frequent reason rows are not delivered: the last_error of rows in one status.
struct ErrorCount {
  std::string status;
  std::string error;
  std::int64_t count = 0;
};

struct StatusSnapshot {
  std::int64_t now = 0;
  StatusCounts counts;
  std::vector<AppStatus> apps;          // ordered by app_id, NULL first
  std::int64_t due = 0;                 // pending (or sending with an expired lease) and due now
  std::int64_t in_backoff = 0;          // pending and waiting for a retry time still ahead
  std::optional<OldestDue> oldest_due;
  std::optional<std::int64_t> oldest_unfinished_created_at;  // oldest pending/sending row
  std::vector<AppPause> pauses;
  std::vector<Heartbeat> relays;        // every heartbeat row, fresh or stale
  std::optional<std::int64_t> last_sent_at;  // the newest sent_at of any row
  std::vector<ErrorCount> errors;       // most frequent first, at most 10
};

// Counts every row, once: a full read of the outbox table (~0.1 s per million rows), no lock.
Result<StatusSnapshot> read_status(Database& db, std::int64_t now);

struct HealthThresholds {
  std::int64_t max_backlog_age_ms = 15 * 60'000;  // a due row may wait this long
  std::int64_t max_idle_ms = 10 * 60'000;         // with rows waiting, something must be sent this often
};

// What evaluate_health needs, read through the indexes of unfinished rows only, so a
// monitoring check stays cheap however many delivered rows the outbox keeps: counts holds
// pending + sending under "pending", in_backoff counts rows not yet due (in flight included),
// apps and errors are left empty. last_sent_at is exact whenever the verdict depends on it.
Result<StatusSnapshot> read_health(Database& db, std::int64_t now, const HealthThresholds& thresholds);

// A relay is taken for running while its heartbeat is younger than three of its intervals
// (it refreshes the row every interval, and deletes it when it exits cleanly).
bool relay_alive(const Heartbeat& heartbeat, std::int64_t now);
// An age or a duration for people: "250ms", "42s", "3m12s", "2h05m", "1d04h".
std::string describe_age(std::int64_t ms);


struct Health {
  bool ok = true;
  std::string reason;  // one line, for a monitoring system
};

// Pure. Unhealthy when the oldest due row has waited longer than max_backlog_age, or when
// rows have waited longer than max_idle and nothing was sent for max_idle. "A relay process
// is up" is not health: a relay that sends nothing (paused app, Metrix down, no dev key) fails.
Health evaluate_health(const StatusSnapshot& snapshot, const HealthThresholds& thresholds);

// ---- report -----------------------------------------------------------------------------

enum class ReportTime { event_time, sent_at };

struct ReportOptions {
  ReportTime time = ReportTime::event_time;  // which time decides the day (and the range)
  std::optional<std::int64_t> since;         // >= (ms)
  std::optional<std::int64_t> until;         // <  (ms)
};

// Sent events of one UTC day, app and slug.
struct ReportRow {
  std::string day;                       // YYYY-MM-DD, UTC
  std::optional<std::string> app_id;
  std::string slug;
  std::int64_t events = 0;
  std::map<std::string, std::string> revenue;  // currency -> sum of _revenue, as SQLite prints it
};

// Only 'sent' rows count: what Metrix acknowledged. Ordered by day, app, slug.
Result<std::vector<ReportRow>> sent_report(Database& db, const ReportOptions& options);

// ---- repairs ----------------------------------------------------------------------------

// Makes matching rows due again: status 'pending', next_attempt_at = now, lease_expiries 0
// (a poison row gets N more tries). The attempts
// count, last_http_status/last_error and the attempt history are kept; the relay numbers
// the next attempt after the last one. Only 'failed', 'dead' and 'held' rows are touched
// (and 'sent' ones when include_sent: a deliberate re-send); never 'pending' or 'sending'.
// `filter.statuses` empty means failed, dead and held. Returns how many rows changed.
// Errc::invalid_argument (nothing changed) if the filter names a status it may not touch.
Result<std::int64_t> requeue(Database& db, const RowFilter& filter, bool include_sent, std::int64_t now);

// The filter requeue() applies: `filter` with its default statuses filled in, or the reason
// it is refused. A --dry-run lists exactly these rows.
Result<RowFilter> requeue_filter(const RowFilter& filter, bool include_sent);

struct PurgeOptions {
  std::vector<std::string> statuses = {"sent"};  // 'pending' and 'sending' are refused
  std::int64_t cutoff = 0;        // rows older than this (ms): sent_at for 'sent', created_at otherwise
  std::int64_t chunk_rows = 5000; // rows per transaction
};

struct PurgeCounts {
  std::map<std::string, std::int64_t> rows;  // by status
  std::int64_t attempts = 0;
  std::int64_t total_rows() const;
};

// What purge() would delete.
Result<PurgeCounts> purge_preview(Database& db, const PurgeOptions& options);

// Deletes matching rows and their attempts, chunk by chunk, each chunk one transaction,
// pausing between chunks so that waiting writers get the lock. `on_chunk` (may be empty)
// sees the running totals after each chunk.
Result<PurgeCounts> purge(Database& db, const PurgeOptions& options,
                          const std::function<void(const PurgeCounts&)>& on_chunk = {});

// What the file looks like after a purge: pages free for reuse inside the file, and what
// was done to give space back (see purge_command.cc).
struct SpaceReport {
  std::int64_t page_size = 0;
  std::int64_t page_count = 0;
  std::int64_t free_pages = 0;
  bool incremental_vacuum = false;  // auto_vacuum=INCREMENTAL: free pages were returned to the OS
  bool wal_truncated = false;       // the WAL was checkpointed and truncated
};
Result<SpaceReport> reclaim_space(Database& db);

}  // namespace metrix
