// Import: a batch of events from NDJSON into the outbox, checked line by line against the
// same rules as every other way in (the validation trigger of migrations/0003_validation_trigger.sql).
//
// A line is either a bare S2S payload (a JSON object) or a wrapper
//   {"payload": {...}, "dedup_key": "order-1234", "app_id": "my-app"}
// (dedup_key and app_id optional; see storage/import_lines.h). Blank lines are skipped.
//
// Idempotence comes from dedup keys: a line whose dedup_key is already in the outbox (from
// an earlier run, or earlier in the same file) is skipped and counted -- and not checked
// against the rules, since it will not be written -- so running the same import again after
// a crash or by mistake adds nothing twice, and costs a lookup per line. A line without a
// dedup key is inserted every time it is imported.
//
// Atomicity:
// - all or nothing (chunk_lines == 0): one transaction. If any line is bad, nothing is
//   written and every bad line is reported. A crash mid-way writes nothing. The write lock
//   is held for the whole import: producers writing the same file meanwhile wait (up to
//   their busy timeout), so a very large import into a live database wants chunks.
// - chunked (chunk_lines == N): a transaction per N lines. The first chunk with a bad line is
//   not written (each of its bad lines is reported) and the import stops there; the chunks
//   before it stay. A crash keeps the chunks committed so far. Either way, re-running the
//   whole file finishes the job (dedup keys).
//
// Speed: lines are checked in parallel by the trigger itself, one thread per core, each on a
// private in-memory outbox (storage/import_checkers.h); the writer then inserts the checked
// rows in input order. When the target's triggers on metrix_outbox are exactly this build's
// (same names, same SQL text), they are switched off for the writer's connection only, so no
// line is validated twice; otherwise (someone added or changed a trigger) the writer lets
// every trigger run as usual, and is slower.
// Call sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) before SQLite's first use in the process:
// with it on, the checking threads serialize on SQLite's allocation-statistics mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/import_lines.h"
#include "storage/result.h"

namespace metrix {

struct ImportOptions {
  std::int64_t chunk_lines = 0;  // 0: all or nothing; N: commit every N lines
  int validators = 0;            // threads checking lines; 0: one per core
  std::int64_t batch_lines = 1000;
};

// A bad line: its 1-based number and "field: rule".
struct LineProblem {
  std::int64_t line = 0;
  std::string message;
};

struct ImportProgress {
  std::int64_t lines = 0;            // lines read and handled so far
  std::int64_t inserted = 0;         // rows written (committed or in the open transaction)
  std::int64_t skipped = 0;          // dedup_key already present
  std::int64_t problems = 0;
  std::int64_t committed_lines = 0;  // lines 1..committed_lines are durable
};

struct ImportReport {
  std::int64_t lines = 0;            // lines read, blank ones included
  std::int64_t blank = 0;
  std::int64_t inserted = 0;         // rows committed
  std::int64_t skipped = 0;          // lines skipped because their dedup_key was present (committed part)
  std::int64_t committed_lines = 0;  // lines 1..committed_lines are in the database
  std::vector<LineProblem> problems; // in line order; empty: the whole input was imported
  bool triggers_bypassed = false;    // the writer relied on the parallel checks (see above)
};

// Reads the next line (without its newline) into `line`; false at the end of the input.
using LineReader = std::function<Result<bool>(std::string& line)>;

// Imports every line `next_line` gives. Bad lines are not errors of this function: they
// are in the report (and nothing of their transaction is written). The error value is for
// a failure of the input (the reader's error, as it gave it) or of the database (Errc::io,
// busy, schema, or the code SQLite's failure maps to; never invalid_event: SQLite failing is
// never taken for a bad line): nothing of the open transaction is written; earlier chunks stay. `progress` (may be empty) is
// called from this thread after every batch.
//
// `db` is left as it was found: its page cache size (raised for the import) and its
// triggers (switched off for it) are put back on every path, error or not.
Result<ImportReport> import_ndjson(Database& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress = {});

}  // namespace metrix
