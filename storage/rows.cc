#include "storage/rows.h"

#include <fmt/format.h>

#include "storage/query.h"

namespace metrix {

namespace {

constexpr const char* kRowColumns =
    "id, app_id, payload, dedup_key, created_at, status, attempts, next_attempt_at, event_time, "
    "last_http_status, last_error, sent_at, event_slug, lease_expiries";

Result<OutboxRow> read_row(const Statement& s) {
  auto status = status_column(s, 5);
  if (!status) return status.error();
  OutboxRow r;
  r.id = s.int64(0);
  r.app_id = s.optional_text(1);
  r.payload = s.text(2);
  r.dedup_key = s.optional_text(3);
  r.created_at = s.int64(4);
  r.status = *status;
  r.attempts = s.int64(6);
  r.next_attempt_at = s.int64(7);
  r.event_time = s.optional_int64(8);
  r.last_http_status = s.optional_int64(9);
  r.last_error = s.optional_text(10);
  r.sent_at = s.optional_int64(11);
  r.event_slug = s.optional_text(12);
  r.lease_expiries = s.int64(13);
  return r;
}

}  // namespace

Result<std::vector<OutboxRow>> list_rows(Database& db, const RowFilter& filter, std::int64_t limit) {
  SqlWhere w(filter);
  auto s = db.prepare(fmt::format("SELECT {} FROM metrix_outbox WHERE {} ORDER BY id LIMIT ?", kRowColumns, w.sql()));
  if (!s) return s.error();
  int next = w.bind(*s);
  s->bind(next, limit > 0 ? limit : std::int64_t{-1});
  std::vector<OutboxRow> rows;
  auto st = for_each_row(*s, [&](const Statement& r) -> Status {
    auto row = read_row(r);
    if (!row) return row.error();
    rows.push_back(std::move(*row));
    return {};
  });
  if (!st) return st.error();
  return rows;
}

Result<std::int64_t> count_rows(Database& db, const RowFilter& filter) {
  SqlWhere w(filter);
  auto s = db.prepare("SELECT count(*) FROM metrix_outbox WHERE " + w.sql());
  if (!s) return s.error();
  w.bind(*s);
  auto row = s->step();
  if (!row) return row.error();
  return s->int64(0);
}

Result<RowHistory> row_history(Database& db, std::int64_t id) {
  // One read transaction, so the row and its attempts are the same moment's.
  auto snapshot = Transaction::begin_read(db.handle());
  if (!snapshot) return snapshot.error();
  auto s = db.prepare(fmt::format("SELECT {} FROM metrix_outbox WHERE id = ?1", kRowColumns));
  if (!s) return s.error();
  s->bind(1, id);
  auto found = s->step();
  if (!found) return found.error();
  if (!*found) return Error{Errc::not_found, fmt::format("no row {} in metrix_outbox", id)};
  auto row = read_row(*s);
  if (!row) return row.error();
  RowHistory h;
  h.row = std::move(*row);
  auto a = db.prepare(
      "SELECT attempt, started_at, finished_at, http_status, error, response FROM metrix_outbox_attempt "
      "WHERE outbox_id = ?1 ORDER BY attempt");
  if (!a) return a.error();
  a->bind(1, id);
  auto st = for_each_row(*a, [&](const Statement& r) {
    h.attempts.push_back(AttemptRow{r.int64(0), r.int64(1), r.int64(2), r.optional_int64(3), r.optional_text(4),
                                    r.optional_text(5)});
  });
  if (!st) return st.error();
  return h;
}

}  // namespace metrix
