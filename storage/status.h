// Status and health: what an operator or a monitoring system asks of the outbox as a whole.
// Counts by status and app, the due rows and the one due longest, paused apps, relays (by
// their heartbeats), the most frequent errors; and the health verdict drawn from them.
//
// Reads only, each in one read transaction (one consistent snapshot); they never take the
// write lock. One call at a time per Database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/relay_store.h"
#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix {

struct AppStatus {
  std::optional<std::string> app_id;  // NULL: the relay's default app
  StatusCounts counts;                // every status of all_statuses(), 0 if none
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
  RowStatus status = RowStatus::pending;
  std::string error;
  std::int64_t count = 0;
};

struct StatusSnapshot {
  std::int64_t now = 0;
  StatusCounts counts;                  // every status of all_statuses(), 0 if none
  std::vector<AppStatus> apps;          // ordered by app_id, NULL first
  std::int64_t due = 0;                 // pending (or sending with an expired lease) and due now
  std::int64_t in_backoff = 0;          // pending and waiting for a retry time still ahead
  std::optional<OldestDue> oldest_due;
  std::optional<std::int64_t> oldest_unfinished_created_at;  // oldest pending/sending row
  std::vector<AppPause> pauses;
  std::vector<Heartbeat> relays;        // every heartbeat row, fresh or stale (relay_alive in heartbeat.h)
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
// pending + sending under pending, in_backoff counts rows not yet due (in flight included),
// apps and errors are left empty. last_sent_at is exact whenever the verdict depends on it.
Result<StatusSnapshot> read_health(Database& db, std::int64_t now, const HealthThresholds& thresholds);

// The verdict. The facts behind it are the snapshot's (oldest_due, due, last_sent_at, ...);
// putting it into words, with the names the caller gives the thresholds, is the caller's.
struct Health {
  enum class Problem {
    none,
    backlog,  // the oldest due row has waited longer than max_backlog_age since it became due
    stalled,  // rows have waited longer than max_idle, and nothing was sent for max_idle
  };
  Problem problem = Problem::none;
  bool ok() const { return problem == Problem::none; }
};

// Pure. "A relay process is up" is not health: a relay that sends nothing (paused app,
// Metrix down, no dev key) is stalled all the same.
Health evaluate_health(const StatusSnapshot& snapshot, const HealthThresholds& thresholds);

}  // namespace metrix
