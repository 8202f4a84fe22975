// COPY ... FROM STDIN on a pg::Connection: rows sent in PostgreSQL's text format, the fastest
// way to hand the server many rows (one message stream, no statement per row, no array to parse).
// Internal to storage/postgres/ (the import's staging table).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "storage/postgres/connection.h"
#include "storage/result.h"

namespace metrix::pg {

// Rows in COPY's text format: fields separated by tabs, a row per line, NULL as \N, and in a
// field every backslash, tab, newline and carriage return escaped, so that any text (a payload
// with a tab between its tokens, a trailing \r) arrives byte for byte.
class CopyRows {
 public:
  CopyRows& field(std::string_view value);
  CopyRows& field(const std::string& value) { return field(std::string_view(value)); }
  CopyRows& field(const std::optional<std::string>& value);
  CopyRows& field(std::int64_t value);
  void end_row();

  const std::string& text() const { return text_; }
  void clear() { text_.clear(); }

 private:
  void separate();
  std::string text_;
  bool row_open_ = false;
};

// Runs `copy_sql` (a "COPY table (columns) FROM STDIN" statement) and sends `rows`. The error is
// the server's (mapped as connection.h says) or the connection's; on any error the open
// transaction, if any, is aborted, as after any failed statement.
Status copy_in(Connection& db, std::string_view copy_sql, const CopyRows& rows);

}  // namespace metrix::pg
