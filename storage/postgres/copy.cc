#include "storage/postgres/copy.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

namespace metrix::pg {

void CopyRows::separate() {
  if (row_open_) text_.push_back('\t');
  row_open_ = true;
}

CopyRows& CopyRows::field(std::string_view value) {
  separate();
  for (char c : value) {
    switch (c) {
      case '\\': text_ += "\\\\"; break;
      case '\t': text_ += "\\t"; break;
      case '\n': text_ += "\\n"; break;
      case '\r': text_ += "\\r"; break;
      default: text_.push_back(c);
    }
  }
  return *this;
}

CopyRows& CopyRows::field(const std::optional<std::string>& value) {
  if (value) return field(std::string_view(*value));
  separate();
  text_ += "\\N";
  return *this;
}

CopyRows& CopyRows::field(std::int64_t value) {
  separate();
  text_ += fmt::format("{}", value);
  return *this;
}

void CopyRows::end_row() {
  text_.push_back('\n');
  row_open_ = false;
}

Status copy_in(Connection& db, std::string_view copy_sql, const CopyRows& rows) {
  PGconn* conn = db.handle();
  const std::string sql(copy_sql);
  std::unique_ptr<PGresult, void (*)(PGresult*)> started(PQexec(conn, sql.c_str()), &PQclear);
  if (!started || PQresultStatus(started.get()) != PGRES_COPY_IN) return error_of(conn, started.get(), db.name());
  started.reset();
  // Sent in pieces: PQputCopyData takes an int length.
  const std::string& text = rows.text();
  constexpr std::size_t kPiece = 1 << 20;
  bool sent = true;
  for (std::size_t at = 0; sent && at < text.size(); at += kPiece) {
    const std::size_t n = std::min(kPiece, text.size() - at);
    sent = PQputCopyData(conn, text.data() + at, static_cast<int>(n)) == 1;
  }
  // A failed send means a broken connection; ending the COPY then only collects the error.
  if (PQputCopyEnd(conn, sent ? nullptr : "the import stopped sending") != 1) sent = false;
  Status status;
  // Every result of the COPY is collected (until null), so the connection is ready for the next
  // statement; the first failure is the one reported.
  while (PGresult* r = PQgetResult(conn)) {
    std::unique_ptr<PGresult, void (*)(PGresult*)> result(r, &PQclear);
    const auto code = PQresultStatus(r);
    if (code != PGRES_COMMAND_OK && status) status = error_of(conn, r, db.name());
    if (code == PGRES_COPY_IN || code == PGRES_COPY_BOTH) break;  // cannot happen once the COPY ended
  }
  if (status && !sent) status = error_of(conn, nullptr, db.name());
  return status;
}

}  // namespace metrix::pg
