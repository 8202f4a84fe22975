// Import on PostgreSQL: NDJSON lines into a PostgreSQL outbox, with the contract of
// storage/import.h (read it): the same lines (bare payload or wrapper), the same checks and
// messages, the same idempotence by dedup_key, all or nothing or a transaction per chunk,
// the same report and progress.
//
// How it differs from the SQLite import, and why:
// - Lines are judged by this build's trigger on the checking threads (storage/
//   import_checkers.h), as on SQLite. Each thread first looks its batch's dedup keys up in the
//   outbox (one query a batch, on a connection of its own made with `db`'s settings: an import
//   holds 1 + ImportOptions::validators connections, at most 1 + 4: more checking threads gain
//   nothing against the server's one backend that judges every new row again) and leaves the
//   lines whose key is present unjudged. The writer looks those keys up again (one query a
//   batch) and skips the lines still present; a line whose key went away meanwhile (purged) is
//   judged there and is new again.
//   (A key purged between that second look and the insert leaves its line skipped: the event
//   with that key was in the outbox when the line was read, as on a run a moment earlier.)
// - Only lines the checks accepted are sent, so no statement fails for a bad line (which would
//   abort the transaction): a batch's rows go by COPY into a temporary staging table
//   (pg_temp.metrix_import_staging: the role needs TEMPORARY on the database; dropped when the
//   import ends), then into the outbox in ONE INSERT ... SELECT in input order with ON CONFLICT
//   (dedup_key) DO NOTHING. A line whose key was seen present is never sent, so the server's
//   BEFORE trigger, which runs even for a row ON CONFLICT then skips, judges only rows meant to
//   be written. A key that arrives meanwhile (a producer's commit) or came earlier in the input
//   is a row not inserted and counted as skipped. A bad line with a dedup_key is looked up
//   (one query) to tell "already there, skipped" from "bad".
// - The server's own rules cannot be switched off (that needs the table's owner and a lock),
//   so they judge every row written again, on the server: that is most of the time of an import
//   of new lines (the server's one backend does it). If they refuse a row this build accepted
//   (the server's rules are newer), the import fails with Errc::io and nothing of the open
//   transaction is written; ImportReport::triggers_bypassed is true (the checks ran in
//   parallel here) and never means the server's rules were off.
// - A chunk's transaction is READ COMMITTED, as the connection's default: producers keep
//   writing meanwhile (no table lock); a producer's row with a key the import is inserting
//   waits for the import's chunk to end, then finds the key taken.
#pragma once

#include <functional>

#include "storage/import.h"
#include "storage/postgres/connection.h"
#include "storage/result.h"

namespace metrix::pg {

// As metrix::import_ndjson (storage/import.h), on a migrated PostgreSQL outbox. `db` is left
// outside any transaction on every path (an open chunk is rolled back on error).
Result<ImportReport> import_ndjson(Connection& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress = {});

}  // namespace metrix::pg
