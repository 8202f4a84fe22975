// Running a prepared statement to its end, for the audit queries (status, rows, report,
// repair, heartbeats): every row through a callback, or the one integer a query returns;
// and reading a status column. Errors are SQLite's, as Statement::step() reports them.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "storage/database.h"
#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix {

// Steps `s` to the end, calling `each(s)` for every row. An `each` that returns a Status
// stops the walk with its first error.
template <class F>
Status for_each_row(Statement& s, F&& each) {
  for (;;) {
    auto row = s.step();
    if (!row) return row.error();
    if (!*row) return {};
    if constexpr (std::is_void_v<std::invoke_result_t<F&, Statement&>>) {
      each(s);
    } else if (Status st = each(s); !st) {
      return st;
    }
  }
}

// Column `column` of the current row, a metrix_outbox.status. The schema's CHECK admits the
// six statuses only; any other text means an altered table (Errc::schema).
inline Result<RowStatus> status_column(const Statement& s, int column) {
  std::string text = s.text(column);
  auto status = parse_row_status(text);
  if (!status) {
    return Error{Errc::schema,
                 fmt::format("metrix_outbox holds a row with status '{}', not one of the outbox's six", text)};
  }
  return *status;
}

// The first column of the first row of `sql` (a count, a pragma); Errc::io if no row.
inline Result<std::int64_t> single_int(Database& db, const std::string& sql) {
  auto s = db.prepare(sql);
  if (!s) return s.error();
  auto row = s->step();
  if (!row) return row.error();
  if (!*row) return Error{Errc::io, fmt::format("'{}' returned no row", sql)};
  return s->int64(0);
}

}  // namespace metrix
