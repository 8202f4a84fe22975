// Import on PostgreSQL: NDJSON lines into a PostgreSQL outbox, with the contract of
// storage/import.h (read it): the same lines (bare payload or wrapper), the same checks and
// messages, the same idempotence by dedup_key, all or nothing or a transaction per chunk,
// the same report and progress.
//
// How it differs from the SQLite import, and why:
// - Every line is judged by this build's trigger on the checking threads (storage/
//   import_checkers.h), including lines whose key is already present: the threads have no
//   snapshot of a PostgreSQL outbox to look keys up in. A re-run costs a check per line.
// - Only lines the checks accepted are sent, so no statement fails for a bad line (which
//   would abort the transaction): the rows of a batch go in ONE statement (arrays and
//   unnest) with ON CONFLICT (dedup_key) DO NOTHING, and a key already present is a row not
//   inserted and counted as skipped. A bad line with a dedup_key is looked up (one query) to
//   tell "already there, skipped" from "bad".
// - The server's own rules cannot be switched off (that needs the table's owner and a lock),
//   so they judge every row again, on the server. If they refuse a row this build accepted
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
