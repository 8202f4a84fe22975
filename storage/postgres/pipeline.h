// Several statements in one round trip and one transaction, through libpq's pipeline mode: the
// statements up to a sync point share an implicit transaction, committed at the sync, or rolled
// back as a whole when one fails. The relay's write rounds use it (storage/postgres/relay_store.h).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "storage/postgres/connection.h"
#include "storage/result.h"

namespace metrix::pg {

struct PreparedSql {
  std::string name;  // of the prepared statement, made on the connection's first use of it
  std::string text;  // $1, $2, ... numbered parameters
  std::vector<Param> params;
};

// Runs `statements` in order and returns each one's rows, or the first error (then nothing was
// committed). Each is prepared on first use: `prepared` lists the names made on this connection
// (clear it when the connection is new). `broken` is set when the connection is left in a
// state that only a reconnection mends (it was lost, or the pipeline could not be closed).
// Sending never blocks on a server busy writing answers: the connection is non-blocking while
// the pipeline goes out, and answers are read meanwhile.
Result<std::vector<Rows>> run_pipeline(Connection& db, const std::vector<PreparedSql>& statements,
                                       std::set<std::string>& prepared, bool& broken);

}  // namespace metrix::pg
