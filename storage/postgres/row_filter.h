// RowWhere: a RowFilter (storage/row_filter.h) as a PostgreSQL WHERE clause, the counterpart
// of SqlWhere for statements sent with Connection::exec. Values are parameters ($n), never
// spliced into the SQL text. It selects the same rows as SqlWhere does on SQLite:
//   app_id = kDefaultAppLabel   app_id IS NULL (no parameter)
//   error                       strpos(last_error, $n) > 0: case-sensitive, as SQLite's instr
// Plain values; no state, thread-safe.
#pragma once

#include <string>
#include <vector>

#include "storage/postgres/connection.h"
#include "storage/row_filter.h"

namespace metrix::pg {

class RowWhere {
 public:
  explicit RowWhere(const RowFilter& filter);

  // "true" when nothing filters, else the terms joined by AND, their parameters numbered
  // $first_param, $first_param + 1, ... in the order of params().
  std::string sql(int first_param = 1) const;
  // The values of those parameters, to append to the statement's own from index
  // first_param - 1 on. The next free parameter is first_param + params().size().
  const std::vector<Param>& params() const { return params_; }

 private:
  std::vector<std::string> terms_;  // '?' marks a parameter, numbered by sql()
  std::vector<Param> params_;
};

}  // namespace metrix::pg
