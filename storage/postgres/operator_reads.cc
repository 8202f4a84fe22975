// The reads of PgOperatorStore (operator_store.h): the SQLite reads of storage/status.cc,
// backlog.cc, rows.cc and report.cc, field for field, on PostgreSQL. Where SQLite's order is
// the binary order of text, these sort with COLLATE "C" (the database's own collation may
// sort 'B' after 'a'), and NULL first, as SQLite does.
//
// Plans: the outbox here has no index on created_at or event_slug (0001_outbox.sql). The
// counts read the table once; the unfinished rows come from metrix_outbox_due, the sent
// ones from metrix_outbox_status, both partial indexes whose predicate the statements imply.
#include <fmt/format.h>

#include <map>

#include "storage/database.h"
#include "storage/postgres/operator_store.h"
#include "storage/postgres/row_filter.h"

namespace metrix::pg {

namespace {

// A REPEATABLE READ, READ ONLY transaction: every statement until it ends sees one snapshot,
// and takes no lock a producer or relay could wait for. Nothing is committed: it is rolled back.
Result<Transaction> snapshot(Connection& db) {
  // The admin listener keeps its store for the relay's lifetime: a server restart in between
  // costs one reconnect here, not a relay restart.
  if (!db.alive()) {
    if (auto s = db.reconnect(); !s) return s.error();
  }
  return Transaction::begin(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

std::string number(std::int64_t n) { return std::to_string(n); }

StatusCounts zero_counts() {
  StatusCounts counts;
  for (RowStatus s : all_statuses()) counts[s] = 0;
  return counts;
}

constexpr const char* kRowColumns =
    "id, app_id, payload, dedup_key, created_at, status, attempts, next_attempt_at, event_time, "
    "last_http_status, last_error, sent_at, event_slug, lease_expiries";

Result<OutboxRow> read_row(const Rows& rows, int i) {
  auto status = parse_row_status(rows.text(i, 5));
  if (!status) return status.error();
  OutboxRow r;
  r.id = rows.int64(i, 0);
  r.app_id = rows.optional_text(i, 1);
  r.payload = rows.text(i, 2);
  r.dedup_key = rows.optional_text(i, 3);
  r.created_at = rows.int64(i, 4);
  r.status = *status;
  r.attempts = rows.int64(i, 6);
  r.next_attempt_at = rows.int64(i, 7);
  r.event_time = rows.optional_int64(i, 8);
  r.last_http_status = rows.optional_int64(i, 9);
  r.last_error = rows.optional_text(i, 10);
  r.sent_at = rows.optional_int64(i, 11);
  r.event_slug = rows.optional_text(i, 12);
  r.lease_expiries = rows.int64(i, 13);
  return r;
}

// The pauses in the order they began, and every heartbeat, the newest beat first: ties by
// app and relay id in binary order, as the SQLite reads order them.
Status read_pauses_and_relays(Connection& db, StatusSnapshot& snap) {
  auto pauses = db.exec(
      "SELECT app_id, reason, since, next_probe_at, interval_ms FROM metrix_app_pause "
      "ORDER BY since, app_id COLLATE \"C\"");
  if (!pauses) return pauses.error();
  for (int i = 0; i < pauses->size(); ++i) {
    snap.pauses.push_back({pauses->text(i, 0), pauses->text(i, 1), pauses->int64(i, 2), pauses->int64(i, 3),
                           pauses->int64(i, 4)});
  }
  auto beats = db.exec(
      "SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, coalesce(windows, '') "
      "FROM metrix_relay_heartbeat ORDER BY beat_at DESC, relay_id COLLATE \"C\"");
  if (!beats) return beats.error();
  for (int i = 0; i < beats->size(); ++i) {
    snap.relays.push_back(Heartbeat{beats->text(i, 0), beats->text(i, 1), beats->int64(i, 2), beats->int64(i, 3),
                                    beats->int64(i, 4), beats->int64(i, 5), beats->int64(i, 6),
                                    beats->optional_int64(i, 7), beats->text(i, 8)});
  }
  return {};
}

// The due row that has waited longest. Ties go as SQLite's scan of metrix_outbox_due (app_id,
// next_attempt_at, id) meets them: the lowest app (NULL first), then the lowest id.
Result<std::optional<OldestDue>> oldest_due(Connection& db, std::int64_t now) {
  auto r = db.exec(
      "SELECT id, app_id, created_at, next_attempt_at FROM metrix_outbox "
      "WHERE status IN ('pending', 'sending') AND next_attempt_at <= $1 "
      "ORDER BY next_attempt_at, coalesce(app_id, '') COLLATE \"C\", id LIMIT 1",
      {number(now)});
  if (!r) return r.error();
  if (r->size() == 0) return std::optional<OldestDue>();
  return std::optional<OldestDue>(OldestDue{r->int64(0, 0), r->optional_text(0, 1), r->int64(0, 2), r->int64(0, 3)});
}

}  // namespace

Result<StatusSnapshot> PgOperatorStore::read_status(std::int64_t now) {
  StatusSnapshot snap;
  snap.now = now;
  snap.counts = zero_counts();
  auto tx = snapshot(db_);
  if (!tx) return tx.error();

  auto counts = db_.exec(
      "SELECT app_id, status, count(*), "
      " count(*) FILTER (WHERE status IN ('pending', 'sending') AND next_attempt_at <= $1), "
      " count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > $1), "
      " max(sent_at), "
      " min(created_at) FILTER (WHERE status IN ('pending', 'sending')) "
      "FROM metrix_outbox GROUP BY app_id, status ORDER BY app_id COLLATE \"C\" NULLS FIRST, status",
      {number(now)});
  if (!counts) return counts.error();
  for (int i = 0; i < counts->size(); ++i) {
    auto status = parse_row_status(counts->text(i, 1));
    if (!status) return status.error();
    std::optional<std::string> app = counts->optional_text(i, 0);
    if (snap.apps.empty() || snap.apps.back().app_id != app) snap.apps.push_back(AppStatus{app, zero_counts()});
    snap.apps.back().counts[*status] += counts->int64(i, 2);
    snap.counts[*status] += counts->int64(i, 2);
    snap.due += counts->int64(i, 3);
    snap.in_backoff += counts->int64(i, 4);
    if (auto sent = counts->optional_int64(i, 5); sent && (!snap.last_sent_at || *sent > *snap.last_sent_at)) {
      snap.last_sent_at = sent;
    }
    if (auto c = counts->optional_int64(i, 6); c && (!snap.oldest_unfinished_created_at || *c < *snap.oldest_unfinished_created_at)) {
      snap.oldest_unfinished_created_at = c;
    }
  }

  if (snap.due > 0) {
    auto oldest = oldest_due(db_, now);
    if (!oldest) return oldest.error();
    snap.oldest_due = *oldest;
  }

  auto errors = db_.exec(
      "SELECT status, last_error, count(*) FROM metrix_outbox "
      "WHERE status IN ('pending', 'sending', 'failed', 'dead', 'held') AND last_error IS NOT NULL "
      "GROUP BY status, last_error ORDER BY count(*) DESC, status, last_error COLLATE \"C\" LIMIT 10");
  if (!errors) return errors.error();
  for (int i = 0; i < errors->size(); ++i) {
    auto status = parse_row_status(errors->text(i, 0));
    if (!status) return status.error();
    snap.errors.push_back({*status, errors->text(i, 1), errors->int64(i, 2)});
  }

  if (auto s = read_pauses_and_relays(db_, snap); !s) return s.error();
  return snap;
}

Result<StatusSnapshot> PgOperatorStore::read_health(std::int64_t now, const HealthThresholds& thresholds) {
  StatusSnapshot snap;
  snap.now = now;
  snap.counts = zero_counts();
  auto tx = snapshot(db_);
  if (!tx) return tx.error();
  // Unfinished rows only: the statements imply metrix_outbox_due's predicate.
  auto unfinished = db_.exec(
      "SELECT count(*), count(*) FILTER (WHERE next_attempt_at <= $1), min(id) FROM metrix_outbox "
      "WHERE status IN ('pending', 'sending')",
      {number(now)});
  if (!unfinished) return unfinished.error();
  const std::int64_t total = unfinished->int64(0, 0);
  snap.counts[RowStatus::pending] = total;
  snap.due = unfinished->int64(0, 1);
  snap.in_backoff = total - snap.due;
  // Ids grow with insertion, so the lowest unfinished id is (up to rows written with an
  // explicit created_at) the oldest unfinished row, as on SQLite.
  if (auto oldest_id = unfinished->optional_int64(0, 2)) {
    auto c = db_.exec("SELECT created_at FROM metrix_outbox WHERE id = $1", {number(*oldest_id)});
    if (!c) return c.error();
    if (c->size() == 0) return Error{Errc::not_found, fmt::format("row {} vanished", *oldest_id)};
    snap.oldest_unfinished_created_at = c->int64(0, 0);
  }
  if (snap.due > 0) {
    auto oldest = oldest_due(db_, now);
    if (!oldest) return oldest.error();
    snap.oldest_due = *oldest;
  }

  if (auto s = read_pauses_and_relays(db_, snap); !s) return s.error();
  for (const Heartbeat& h : snap.relays) {
    if (h.last_sent_at && (!snap.last_sent_at || *h.last_sent_at > *snap.last_sent_at)) snap.last_sent_at = h.last_sent_at;
  }
  // The newest deliveries are almost always among the newest rows (metrix_outbox_status read
  // backwards); only when that says "nothing lately" and the verdict hangs on it is every
  // sent row read.
  auto recent = db_.exec(
      "SELECT max(sent_at) FROM (SELECT sent_at FROM metrix_outbox WHERE status = 'sent' "
      "ORDER BY created_at DESC LIMIT 1000) newest");
  if (!recent) return recent.error();
  if (auto v = recent->optional_int64(0, 0); v && (!snap.last_sent_at || *v > *snap.last_sent_at)) snap.last_sent_at = v;
  const bool stall_possible = total > 0 && snap.oldest_unfinished_created_at &&
                              now - *snap.oldest_unfinished_created_at > thresholds.max_idle_ms;
  if (stall_possible && (!snap.last_sent_at || now - *snap.last_sent_at > thresholds.max_idle_ms)) {
    auto all = db_.exec("SELECT max(sent_at) FROM metrix_outbox WHERE status = 'sent'");
    if (!all) return all.error();
    if (auto v = all->optional_int64(0, 0); v && (!snap.last_sent_at || *v > *snap.last_sent_at)) snap.last_sent_at = v;
  }
  return snap;
}

Result<Backlog> PgOperatorStore::read_backlog(std::int64_t now) {
  auto tx = snapshot(db_);
  if (!tx) return tx.error();
  std::map<std::optional<std::string>, AppBacklog> apps;
  auto app_entry = [&](const std::optional<std::string>& app) -> AppBacklog& {
    auto [it, added] = apps.try_emplace(app);
    if (added) {
      it->second.app_id = app;
      it->second.rows = zero_counts();
    }
    return it->second;
  };
  auto counts = db_.exec("SELECT app_id, status, count(*) FROM metrix_outbox GROUP BY app_id, status");
  if (!counts) return counts.error();
  for (int i = 0; i < counts->size(); ++i) {
    auto status = parse_row_status(counts->text(i, 1));
    if (!status) return status.error();
    app_entry(counts->optional_text(i, 0)).rows[*status] = counts->int64(i, 2);
  }
  auto due = db_.exec(
      "SELECT app_id, count(*) FILTER (WHERE next_attempt_at <= $1), min(next_attempt_at) FROM metrix_outbox "
      "WHERE status IN ('pending', 'sending') GROUP BY app_id",
      {number(now)});
  if (!due) return due.error();
  for (int i = 0; i < due->size(); ++i) {
    AppBacklog& a = app_entry(due->optional_text(i, 0));
    a.due = due->int64(i, 1);
    if (due->int64(i, 2) <= now) a.oldest_due_since = due->int64(i, 2);
  }
  Backlog backlog;  // wal_bytes stays 0: the server's WAL is no file of this outbox's
  for (auto& [app, a] : apps) backlog.apps.push_back(std::move(a));
  return backlog;
}

Result<std::vector<OutboxRow>> PgOperatorStore::list_rows(const RowFilter& filter, std::int64_t limit) {
  RowWhere w(filter);
  std::vector<Param> params = w.params();
  const int limit_param = static_cast<int>(params.size()) + 1;
  // LIMIT NULL is no limit.
  params.push_back(limit > 0 ? Param(number(limit)) : std::nullopt);
  auto r = db_.exec(fmt::format("SELECT {} FROM metrix_outbox WHERE {} ORDER BY id LIMIT ${}::bigint", kRowColumns,
                                w.sql(1), limit_param),
                    params);
  if (!r) return r.error();
  std::vector<OutboxRow> rows;
  rows.reserve(static_cast<std::size_t>(r->size()));
  for (int i = 0; i < r->size(); ++i) {
    auto row = read_row(*r, i);
    if (!row) return row.error();
    rows.push_back(std::move(*row));
  }
  return rows;
}

Result<std::int64_t> PgOperatorStore::count_rows(const RowFilter& filter) {
  RowWhere w(filter);
  auto r = db_.exec("SELECT count(*) FROM metrix_outbox WHERE " + w.sql(1), w.params());
  if (!r) return r.error();
  return r->int64(0, 0);
}

Result<RowHistory> PgOperatorStore::row_history(std::int64_t id) {
  auto tx = snapshot(db_);
  if (!tx) return tx.error();
  auto r = db_.exec(fmt::format("SELECT {} FROM metrix_outbox WHERE id = $1", kRowColumns), {number(id)});
  if (!r) return r.error();
  if (r->size() == 0) return Error{Errc::not_found, fmt::format("no row {} in metrix_outbox", id)};
  auto row = read_row(*r, 0);
  if (!row) return row.error();
  RowHistory h;
  h.row = std::move(*row);
  auto a = db_.exec(
      "SELECT attempt, started_at, finished_at, http_status, error, response FROM metrix_outbox_attempt "
      "WHERE outbox_id = $1 ORDER BY attempt",
      {number(id)});
  if (!a) return a.error();
  for (int i = 0; i < a->size(); ++i) {
    h.attempts.push_back(AttemptRow{a->int64(i, 0), a->int64(i, 1), a->int64(i, 2), a->optional_int64(i, 3),
                                    a->optional_text(i, 4), a->optional_text(i, 5)});
  }
  return h;
}

Result<std::vector<ReportRow>> PgOperatorStore::sent_report(const ReportOptions& options) {
  const char* time = options.time == ReportTime::event_time ? "event_time" : "sent_at";
  // Each group's revenues as a JSON array of the numbers as the producers wrote them (json,
  // not jsonb, keeps a number's text): SQLite itself sums them below. Its sum() is an exact
  // integer sum while every value is an integer, else a compensated double sum printed
  // "%!.15g" ("3.0", "1.0e+20"), rules that differ from version to version: what the report
  // prints is then SQLite's own answer for the same numbers, not an imitation of it.
  const std::string sql = fmt::format(
      "SELECT to_char(to_timestamp(t / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, app_id, event_slug, "
      " currency, count(*), '[' || string_agg(revenue, ',' ORDER BY created_at, id) || ']' "
      "FROM (SELECT {0} AS t, app_id, event_slug, created_at, id, "
      "       p -> 'customAttributes' ->> '_currency' AS currency, (p -> 'customMetrics' -> '_revenue')::text AS revenue "
      "      FROM metrix_outbox CROSS JOIN LATERAL (SELECT payload::json AS p) parsed "
      "      WHERE status = 'sent' AND {0} >= $1 AND {0} < $2) sent "
      "GROUP BY day, app_id, event_slug, currency "
      "ORDER BY day, app_id COLLATE \"C\" NULLS FIRST, event_slug COLLATE \"C\", currency COLLATE \"C\" NULLS FIRST",
      time);
  auto tx = snapshot(db_);
  if (!tx) return tx.error();
  auto r = db_.exec(sql, {number(options.since.value_or(INT64_MIN)), number(options.until.value_or(INT64_MAX))});
  if (!r) return r.error();
  std::optional<Database> sums;
  std::optional<Statement> sum;
  std::vector<ReportRow> rows;
  for (int i = 0; i < r->size(); ++i) {
    std::string day = r->text(i, 0);
    std::optional<std::string> app = r->optional_text(i, 1);
    std::string slug = r->text(i, 2);
    if (rows.empty() || rows.back().day != day || rows.back().app_id != app || rows.back().slug != slug) {
      rows.push_back(ReportRow{day, app, slug, 0, {}});
    }
    rows.back().events += r->int64(i, 4);
    auto currency = r->optional_text(i, 3);
    auto revenues = r->optional_text(i, 5);
    if (!currency || !revenues) continue;
    if (!sums) {
      auto db = Database::open_memory();
      if (!db) return db.error();
      sums = std::move(*db);
      auto s = sums->prepare("SELECT CAST(sum(value) AS TEXT) FROM json_each(?1)");
      if (!s) return s.error();
      sum = std::move(*s);
    }
    sum->bind(1, std::string_view(*revenues));
    auto row = sum->step();
    if (!row) return Error{row.error().code, fmt::format("{}: revenue of {} {}: {}", db_.name(), day, slug, row.error().message)};
    rows.back().revenue[*currency] = sum->text(0);
    sum->reset();
  }
  return rows;
}

}  // namespace metrix::pg
