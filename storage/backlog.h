// Backlog: what the outbox holds, per app, for the relay's metrics (GET /metrics). Read by
// the admin listener on a schedule of its own (at most every few seconds), never per row.
//
// Cost: the counts by status read every row once (the table, ~0.1 s per million rows, no
// lock); the due rows and the oldest due row come from the index of unfinished rows only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix {

struct AppBacklog {
  std::optional<std::string> app_id;         // NULL: the relay's default app
  StatusCounts rows;                         // every status of all_statuses(), 0 if none
  std::int64_t due = 0;                      // pending or sending with an expired lease, due now
  std::optional<std::int64_t> oldest_due_since;  // next_attempt_at of the row due longest
};

struct Backlog {
  std::vector<AppBacklog> apps;  // ordered by app_id, NULL first
  std::int64_t wal_bytes = 0;    // the size of the file's write-ahead log (0: none)
};

// One read transaction. `path` is the database file (its -wal file is measured).
Result<Backlog> read_backlog(Database& db, const std::string& path, std::int64_t now);

}  // namespace metrix
