#include "storage/audit.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <variant>

#include <fmt/format.h>

namespace metrix {

const std::vector<std::string>& all_statuses() {
  static const std::vector<std::string> statuses = {"pending", "sending", "sent", "failed", "dead", "held"};
  return statuses;
}

std::int64_t PurgeCounts::total_rows() const {
  std::int64_t total = 0;
  for (const auto& [status, n] : rows) total += n;
  return total;
}

// Sent rows. SQLite uses metrix_outbox_status, a partial index of finished rows, for this
// term: status = 'sent' implies one branch of the index's OR condition.
#define SENT_ROWS "status = 'sent'"

namespace {

constexpr const char* kRowColumns =
    "id, app_id, payload, dedup_key, created_at, status, attempts, next_attempt_at, event_time, "
    "last_http_status, last_error, sent_at, event_slug, lease_expiries";

OutboxRow read_row(const Statement& s) {
  OutboxRow r;
  r.id = s.int64(0);
  r.app_id = s.optional_text(1);
  r.payload = s.text(2);
  r.dedup_key = s.optional_text(3);
  r.created_at = s.int64(4);
  r.status = s.text(5);
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

// A WHERE clause with positional parameters, built from a RowFilter. Values are always
// bound, never spliced into the text.
struct Where {
  using Value = std::variant<std::nullptr_t, std::int64_t, std::string>;
  std::vector<std::string> terms;
  std::vector<Value> values;

  std::string placeholders(size_t n) {
    std::string text;
    for (size_t i = 0; i < n; ++i) text += i ? ", ?" : "?";
    return text;
  }

  std::string sql() const {
    if (terms.empty()) return "1";
    std::string text;
    for (const auto& t : terms) text += (text.empty() ? "(" : " AND (") + t + ")";
    return text;
  }

  // Binds the values from parameter `first` on; returns the next free index.
  int bind(Statement& s, int first = 1) const {
    int i = first;
    for (const auto& v : values) {
      if (std::holds_alternative<std::nullptr_t>(v)) s.bind_null(i);
      else if (const auto* n = std::get_if<std::int64_t>(&v)) s.bind(i, *n);
      else s.bind(i, std::string_view(std::get<std::string>(v)));
      ++i;
    }
    return i;
  }
};

Where where_for(const RowFilter& f) {
  Where w;
  if (!f.statuses.empty()) {
    w.terms.push_back("status IN (" + w.placeholders(f.statuses.size()) + ")");
    for (const auto& s : f.statuses) w.values.emplace_back(s);
  }
  if (f.app_id) {
    w.terms.push_back("app_id IS ?");
    if (*f.app_id == kDefaultAppLabel) w.values.emplace_back(nullptr);
    else w.values.emplace_back(*f.app_id);
  }
  if (f.slug) {
    w.terms.push_back("event_slug = ?");
    w.values.emplace_back(*f.slug);
  }
  if (f.error) {
    w.terms.push_back("instr(last_error, ?) > 0");
    w.values.emplace_back(*f.error);
  }
  if (f.created_since) {
    w.terms.push_back("created_at >= ?");
    w.values.emplace_back(*f.created_since);
  }
  if (f.created_until) {
    w.terms.push_back("created_at < ?");
    w.values.emplace_back(*f.created_until);
  }
  if (!f.ids.empty()) {
    std::string any;
    for (const auto& r : f.ids) {
      any += any.empty() ? "id BETWEEN ? AND ?" : " OR id BETWEEN ? AND ?";
      w.values.emplace_back(r.first);
      w.values.emplace_back(r.last);
    }
    w.terms.push_back(any);
  }
  return w;
}

// Steps `s` to the end, calling `each` for every row.
template <class F>
Status for_each_row(Statement& s, F&& each) {
  for (;;) {
    auto row = s.step();
    if (!row) return row.error();
    if (!*row) return {};
    each(s);
  }
}

Result<std::int64_t> single_int(Database& db, const std::string& sql) {
  auto s = db.prepare(sql);
  if (!s) return s.error();
  auto row = s->step();
  if (!row) return row.error();
  if (!*row) return Error{Errc::io, fmt::format("'{}' returned no row", sql)};
  return s->int64(0);
}

}  // namespace

Status check_status(const std::string& s) {
  const auto& all = all_statuses();
  if (std::find(all.begin(), all.end(), s) != all.end()) return {};
  std::string names;
  for (const auto& name : all) names += (names.empty() ? "" : ", ") + name;
  return Error{Errc::invalid_argument, fmt::format("--status {}: not a status; the statuses are {}", s, names)};
}

Result<std::vector<OutboxRow>> list_rows(Database& db, const RowFilter& filter, std::int64_t limit) {
  Where w = where_for(filter);
  auto s = db.prepare(fmt::format("SELECT {} FROM metrix_outbox WHERE {} ORDER BY id LIMIT ?", kRowColumns, w.sql()));
  if (!s) return s.error();
  int next = w.bind(*s);
  s->bind(next, limit > 0 ? limit : std::int64_t{-1});
  std::vector<OutboxRow> rows;
  if (auto st = for_each_row(*s, [&](const Statement& r) { rows.push_back(read_row(r)); }); !st) return st.error();
  return rows;
}

Result<std::int64_t> count_rows(Database& db, const RowFilter& filter) {
  Where w = where_for(filter);
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
  auto row = s->step();
  if (!row) return row.error();
  if (!*row) return Error{Errc::not_found, fmt::format("no row {} in metrix_outbox", id)};
  RowHistory h;
  h.row = read_row(*s);
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

// ---- status and health ----------------------------------------------------------------

Result<StatusSnapshot> read_status(Database& db, std::int64_t now) {
  StatusSnapshot snap;
  snap.now = now;
  for (const auto& s : all_statuses()) snap.counts[s] = 0;
  // One snapshot for every number below.
  auto snapshot = Transaction::begin_read(db.handle());
  if (!snapshot) return snapshot.error();

  // One pass over the table gives the counts, due and backoff rows, and the newest delivery.
  auto counts = db.prepare(
      "SELECT app_id, status, count(*), "
      " sum(status IN ('pending', 'sending') AND next_attempt_at <= ?1), "
      " sum(status = 'pending' AND next_attempt_at > ?1), "
      " max(sent_at), "
      " min(CASE WHEN status IN ('pending', 'sending') THEN created_at END) "
      "FROM metrix_outbox GROUP BY app_id, status ORDER BY app_id, status");
  if (!counts) return counts.error();
  counts->bind(1, now);
  auto st = for_each_row(*counts, [&](const Statement& r) {
    std::optional<std::string> app = r.optional_text(0);
    std::string status = r.text(1);
    if (snap.apps.empty() || snap.apps.back().app_id != app) {
      AppStatus a;
      a.app_id = app;
      for (const auto& s : all_statuses()) a.counts[s] = 0;
      snap.apps.push_back(std::move(a));
    }
    snap.apps.back().counts[status] += r.int64(2);
    snap.counts[status] += r.int64(2);
    snap.due += r.int64(3);
    snap.in_backoff += r.int64(4);
    if (auto sent = r.optional_int64(5); sent && (!snap.last_sent_at || *sent > *snap.last_sent_at)) snap.last_sent_at = sent;
    if (auto c = r.optional_int64(6); c && (!snap.oldest_unfinished_created_at || *c < *snap.oldest_unfinished_created_at)) {
      snap.oldest_unfinished_created_at = c;
    }
  });
  if (!st) return st.error();

  if (snap.due > 0) {
    // Bare columns of a min() aggregate come from the row holding the minimum.
    auto oldest = db.prepare(
        "SELECT id, app_id, created_at, min(next_attempt_at) FROM metrix_outbox "
        "WHERE status IN ('pending', 'sending') AND next_attempt_at <= ?1");
    if (!oldest) return oldest.error();
    oldest->bind(1, now);
    auto row = oldest->step();
    if (!row) return row.error();
    if (*row && !oldest->is_null(3)) {
      snap.oldest_due = OldestDue{oldest->int64(0), oldest->optional_text(1), oldest->int64(2), oldest->int64(3)};
    }
  }

  auto errors = db.prepare(
      "SELECT status, last_error, count(*) FROM metrix_outbox "
      "WHERE status IN ('pending', 'sending', 'failed', 'dead', 'held') AND last_error IS NOT NULL "
      "GROUP BY status, last_error ORDER BY count(*) DESC, status, last_error LIMIT 10");
  if (!errors) return errors.error();
  st = for_each_row(*errors, [&](const Statement& r) { snap.errors.push_back({r.text(0), r.text(1), r.int64(2)}); });
  if (!st) return st.error();

  Outbox outbox(db);
  auto pauses = outbox.pauses();
  if (!pauses) return pauses.error();
  snap.pauses = std::move(*pauses);

  auto beats = db.prepare(
      "SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, coalesce(windows, '') "
      "FROM metrix_relay_heartbeat "
      "ORDER BY beat_at DESC");
  if (!beats) return beats.error();
  st = for_each_row(*beats, [&](const Statement& r) {
    snap.relays.push_back(Heartbeat{r.text(0), r.text(1), r.int64(2), r.int64(3), r.int64(4), r.int64(5), r.int64(6),
                                    r.optional_int64(7), r.text(8)});
  });
  if (!st) return st.error();
  return snap;
}

Result<StatusSnapshot> read_health(Database& db, std::int64_t now, const HealthThresholds& thresholds) {
  StatusSnapshot snap;
  snap.now = now;
  for (const auto& s : all_statuses()) snap.counts[s] = 0;
  auto snapshot = Transaction::begin_read(db.handle());
  if (!snapshot) return snapshot.error();
  // Unfinished rows live in metrix_outbox_due (app_id, next_attempt_at, id): these read it alone.
  auto unfinished = db.prepare(
      "SELECT count(*), coalesce(sum(next_attempt_at <= ?1), 0), min(id) FROM metrix_outbox INDEXED BY metrix_outbox_due "
      "WHERE status IN ('pending', 'sending')");
  if (!unfinished) return unfinished.error();
  unfinished->bind(1, now);
  auto row = unfinished->step();
  if (!row) return row.error();
  std::int64_t total = unfinished->int64(0);
  snap.counts["pending"] = total;
  snap.due = unfinished->int64(1);
  snap.in_backoff = total - snap.due;
  std::optional<std::int64_t> oldest_id = unfinished->optional_int64(2);
  unfinished->reset();

  auto created_of = db.prepare("SELECT created_at FROM metrix_outbox WHERE id = ?1");
  if (!created_of) return created_of.error();
  auto created = [&](std::int64_t id) -> Result<std::int64_t> {
    created_of->bind(1, id);
    auto r = created_of->step();
    if (!r) return r.error();
    std::optional<std::int64_t> value;
    if (*r) value = created_of->int64(0);
    created_of->reset();
    if (!value) return Error{Errc::not_found, fmt::format("row {} vanished", id)};
    return *value;
  };
  // Ids grow with insertion, so the lowest unfinished id is (up to rows written with an
  // explicit created_at) the oldest unfinished row.
  if (oldest_id) {
    auto c = created(*oldest_id);
    if (!c) return c.error();
    snap.oldest_unfinished_created_at = *c;
  }
  if (snap.due > 0) {
    auto oldest = db.prepare(
        "SELECT id, app_id, min(next_attempt_at) FROM metrix_outbox INDEXED BY metrix_outbox_due "
        "WHERE status IN ('pending', 'sending') AND next_attempt_at <= ?1");
    if (!oldest) return oldest.error();
    oldest->bind(1, now);
    auto r = oldest->step();
    if (!r) return r.error();
    if (*r && !oldest->is_null(2)) {
      OldestDue o{oldest->int64(0), oldest->optional_text(1), 0, oldest->int64(2)};
      oldest->reset();
      auto c = created(o.id);
      if (!c) return c.error();
      o.created_at = *c;
      snap.oldest_due = o;
    }
  }

  Outbox outbox(db);
  auto pauses = outbox.pauses();
  if (!pauses) return pauses.error();
  snap.pauses = std::move(*pauses);
  auto beats = db.prepare(
      "SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, coalesce(windows, '') "
      "FROM metrix_relay_heartbeat "
      "ORDER BY beat_at DESC");
  if (!beats) return beats.error();
  auto st = for_each_row(*beats, [&](const Statement& r) {
    snap.relays.push_back(Heartbeat{r.text(0), r.text(1), r.int64(2), r.int64(3), r.int64(4), r.int64(5), r.int64(6),
                                    r.optional_int64(7), r.text(8)});
    if (auto sent = r.optional_int64(7); sent && (!snap.last_sent_at || *sent > *snap.last_sent_at)) snap.last_sent_at = sent;
  });
  if (!st) return st.error();
  // The newest deliveries are almost always among the newest rows; only when that says
  // "nothing lately" and the verdict hangs on it is every sent row read.
  auto recent = db.prepare(
      "SELECT max(sent_at) FROM (SELECT sent_at FROM metrix_outbox WHERE " SENT_ROWS " "
      "ORDER BY created_at DESC LIMIT 1000)");
  if (!recent) return recent.error();
  row = recent->step();
  if (!row) return row.error();
  if (auto v = recent->optional_int64(0); v && (!snap.last_sent_at || *v > *snap.last_sent_at)) snap.last_sent_at = v;
  recent->reset();
  bool stall_possible = total > 0 && snap.oldest_unfinished_created_at &&
                        now - *snap.oldest_unfinished_created_at > thresholds.max_idle_ms;
  if (stall_possible && (!snap.last_sent_at || now - *snap.last_sent_at > thresholds.max_idle_ms)) {
    auto all = single_int(db, "SELECT coalesce(max(sent_at), -1) FROM metrix_outbox WHERE " SENT_ROWS);
    if (!all) return all.error();
    if (*all >= 0 && (!snap.last_sent_at || *all > *snap.last_sent_at)) snap.last_sent_at = *all;
  }
  return snap;
}

bool relay_alive(const Heartbeat& h, std::int64_t now) {
  return now - h.beat_at <= 3 * std::max<std::int64_t>(h.interval_ms, 1000);
}

std::string describe_age(std::int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return fmt::format("{}ms", ms);  // not "0s": a threshold of 250ms is not zero
  std::int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

Health evaluate_health(const StatusSnapshot& snap, const HealthThresholds& t) {
  std::int64_t unfinished = snap.counts.at("pending") + snap.counts.at("sending");
  std::string paused;
  for (const auto& p : snap.pauses) paused += fmt::format("; app {} is paused ({})", p.app_id, p.reason);
  if (snap.oldest_due && snap.now - snap.oldest_due->due_since > t.max_backlog_age_ms) {
    const auto& o = *snap.oldest_due;
    return Health{false, fmt::format("backlog: row {} (app {}) has been due for {}, longer than --max-backlog-age {}; "
                                     "{} rows are due{}",
                                     o.id, o.app_id.value_or(kDefaultAppLabel), describe_age(snap.now - o.due_since),
                                     describe_age(t.max_backlog_age_ms), snap.due, paused)};
  }
  // Rows have waited at least max_idle, and nothing was delivered in that time: a relay that
  // is down, or up and getting nowhere (Metrix refusing, every request failing).
  if (unfinished > 0 && snap.oldest_unfinished_created_at &&
      snap.now - *snap.oldest_unfinished_created_at > t.max_idle_ms &&
      (!snap.last_sent_at || snap.now - *snap.last_sent_at > t.max_idle_ms)) {
    std::string idle = snap.last_sent_at ? fmt::format("nothing sent for {}", describe_age(snap.now - *snap.last_sent_at))
                                         : std::string("nothing ever sent");
    return Health{false, fmt::format("stalled: {} while {} rows wait (pending or sending; the oldest for {}), "
                                     "longer than --max-idle {}{}",
                                     idle, unfinished, describe_age(snap.now - *snap.oldest_unfinished_created_at),
                                     describe_age(t.max_idle_ms), paused)};
  }
  std::string due = snap.oldest_due ? fmt::format(", oldest due for {}", describe_age(snap.now - snap.oldest_due->due_since))
                                    : std::string();
  return Health{true, fmt::format("{} rows due, {} in backoff{}{}", snap.due, snap.in_backoff, due, paused)};
}

// ---- report -----------------------------------------------------------------------------

Result<std::vector<ReportRow>> sent_report(Database& db, const ReportOptions& options) {
  const char* time = options.time == ReportTime::event_time ? "event_time" : "sent_at";
  std::string sql = fmt::format(
      "SELECT strftime('%Y-%m-%d', {0} / 1000, 'unixepoch') AS day, app_id, event_slug, "
      " json_extract(payload, '$.customAttributes._currency') AS currency, count(*), "
      " CAST(sum(json_extract(payload, '$.customMetrics._revenue')) AS TEXT) "
      "FROM metrix_outbox WHERE " SENT_ROWS " AND {0} >= ?1 AND {0} < ?2 "
      "GROUP BY day, app_id, event_slug, currency "
      "ORDER BY day, app_id IS NOT NULL, app_id, event_slug, currency",
      time);
  auto s = db.prepare(sql);
  if (!s) return s.error();
  s->bind(1, options.since.value_or(INT64_MIN)).bind(2, options.until.value_or(INT64_MAX));
  std::vector<ReportRow> rows;
  auto st = for_each_row(*s, [&](const Statement& r) {
    std::string day = r.text(0);
    std::optional<std::string> app = r.optional_text(1);
    std::string slug = r.text(2);
    if (rows.empty() || rows.back().day != day || rows.back().app_id != app || rows.back().slug != slug) {
      rows.push_back(ReportRow{day, app, slug, 0, {}});
    }
    rows.back().events += r.int64(4);
    if (auto currency = r.optional_text(3)) rows.back().revenue[*currency] = r.text(5);
  });
  if (!st) return st.error();
  return rows;
}

// ---- repairs ----------------------------------------------------------------------------

Result<RowFilter> requeue_filter(const RowFilter& filter, bool include_sent) {
  RowFilter f = filter;
  if (f.statuses.empty()) {
    f.statuses = {"failed", "dead", "held"};
    if (include_sent) f.statuses.push_back("sent");
  }
  for (const auto& s : f.statuses) {
    if (s == "pending" || s == "sending") {
      return Error{Errc::invalid_argument,
                   fmt::format("--status {}: requeue never touches pending or sending rows (they are on their way "
                               "already); it requeues failed, dead, held (and sent with --include-sent)",
                               s)};
    }
    if (s == "sent" && !include_sent) {
      return Error{Errc::invalid_argument,
                   "--status sent: sent rows are requeued only with --include-sent (a deliberate re-send: Metrix "
                   "receives the event again)"};
    }
    if (auto known = check_status(s); !known) return known.error();
  }
  return f;
}

Result<std::int64_t> requeue(Database& db, const RowFilter& filter, bool include_sent, std::int64_t now) {
  auto f = requeue_filter(filter, include_sent);
  if (!f) return f.error();
  Where w = where_for(*f);
  // A chunk of rows per transaction, in id order: the write lock is held for a few
  // milliseconds at a time. The status condition is re-checked inside each transaction, so
  // a row the relay is sending is never touched, and rows already requeued no longer match.
  auto s = db.prepare(fmt::format(
      "UPDATE metrix_outbox SET status = 'pending', next_attempt_at = ?1, lease_expiries = 0 "
      "WHERE id IN (SELECT id FROM metrix_outbox WHERE id > ?2 AND {} ORDER BY id LIMIT 1000) RETURNING id",
      w.sql()));
  if (!s) return s.error();
  std::int64_t changed = 0;
  std::int64_t last = INT64_MIN;
  for (;;) {
    auto tx = Transaction::begin(db.handle());
    if (!tx) return tx.error();
    s->bind(1, now).bind(2, last);
    w.bind(*s, 3);
    std::int64_t in_chunk = 0;
    auto st = for_each_row(*s, [&](const Statement& r) {
      ++in_chunk;
      last = std::max(last, r.int64(0));
    });
    s->reset();
    if (!st) return st.error();
    if (auto c = tx->commit(); !c) return c.error();
    changed += in_chunk;
    if (in_chunk == 0) return changed;
  }
}

namespace {

Status check_purge_statuses(const PurgeOptions& options) {
  if (options.statuses.empty()) return Error{Errc::invalid_argument, "purge: no status to purge"};
  for (const auto& s : options.statuses) {
    if (s == "pending" || s == "sending") {
      return Error{Errc::invalid_argument,
                   fmt::format("--status {}: purge never deletes an undelivered event on its way to Metrix (pending or "
                               "sending); requeue or let the relay finish it",
                               s)};
    }
    if (auto known = check_status(s); !known) return known.error();
  }
  return {};
}

// The time a row's age is measured from: when it was delivered, else when it was written.
const char* purge_time_column(const std::string& status) { return status == "sent" ? "sent_at" : "created_at"; }

}  // namespace

Result<PurgeCounts> purge_preview(Database& db, const PurgeOptions& options) {
  if (auto st = check_purge_statuses(options); !st) return st.error();
  PurgeCounts counts;
  for (const auto& status : options.statuses) {
    auto s = db.prepare(fmt::format(
        "SELECT count(*), coalesce(sum((SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id = o.id)), 0) "
        "FROM metrix_outbox AS o WHERE status = ?1 AND {} < ?2",
        purge_time_column(status)));
    if (!s) return s.error();
    s->bind(1, std::string_view(status)).bind(2, options.cutoff);
    auto row = s->step();
    if (!row) return row.error();
    counts.rows[status] = s->int64(0);
    counts.attempts += s->int64(1);
  }
  return counts;
}

Result<PurgeCounts> purge(Database& db, const PurgeOptions& options,
                          const std::function<void(const PurgeCounts&)>& on_chunk) {
  if (auto st = check_purge_statuses(options); !st) return st.error();
  PurgeCounts counts;
  auto del_attempts = db.prepare("DELETE FROM metrix_outbox_attempt WHERE outbox_id = ?1");
  if (!del_attempts) return del_attempts.error();
  for (const auto& status : options.statuses) {
    counts.rows[status] = 0;
    // `+status` keeps the planner on the primary key: each chunk continues the id walk where
    // the last one stopped, so the whole purge reads the table once.
    auto select = db.prepare(fmt::format(
        "SELECT id FROM metrix_outbox WHERE id > ?1 AND +status = ?2 AND {} < ?3 ORDER BY id LIMIT ?4",
        purge_time_column(status)));
    if (!select) return select.error();
    // The status is checked again by the DELETE itself: a row that changed since it was
    // selected (requeued by an operator) is kept.
    auto del_row = db.prepare(fmt::format("DELETE FROM metrix_outbox WHERE id = ?1 AND status = ?2 AND {} < ?3",
                                          purge_time_column(status)));
    if (!del_row) return del_row.error();
    std::int64_t last = INT64_MIN;
    for (;;) {
      auto started = std::chrono::steady_clock::now();
      auto tx = Transaction::begin(db.handle());
      if (!tx) return tx.error();
      std::vector<std::int64_t> ids;
      select->bind(1, last).bind(2, std::string_view(status)).bind(3, options.cutoff).bind(4, options.chunk_rows);
      auto st = for_each_row(*select, [&](const Statement& r) { ids.push_back(r.int64(0)); });
      select->reset();
      if (!st) return st.error();
      if (ids.empty()) break;
      std::int64_t rows = 0, attempts = 0;
      for (std::int64_t id : ids) {
        del_row->bind(1, id).bind(2, std::string_view(status)).bind(3, options.cutoff);
        if (auto d = del_row->run(); !d) return d.error();
        if (sqlite3_changes(db.handle()) == 0) continue;
        ++rows;
        del_attempts->bind(1, id);
        if (auto d = del_attempts->run(); !d) return d.error();
        attempts += sqlite3_changes(db.handle());
      }
      if (auto c = tx->commit(); !c) return c.error();
      counts.rows[status] += rows;
      counts.attempts += attempts;
      last = ids.back();
      if (on_chunk) on_chunk(counts);
      // SQLite's lock is not fair: a writer waiting in its busy handler sleeps between
      // tries and would keep missing a lock that is taken again at once. Idling as long as
      // the chunk took gives producers and the relay at least half of the time.
      auto took = std::chrono::steady_clock::now() - started;
      std::this_thread::sleep_for(std::clamp<std::chrono::steady_clock::duration>(
          took, std::chrono::milliseconds(2), std::chrono::milliseconds(100)));
    }
  }
  return counts;
}

Result<SpaceReport> reclaim_space(Database& db) {
  SpaceReport r;
  auto mode = single_int(db, "PRAGMA auto_vacuum");
  if (!mode) return mode.error();
  if (*mode == 2) {
    // INCREMENTAL: give free pages back to the file system, a bounded number per
    // transaction so that writers are never held off for long.
    r.incremental_vacuum = true;
    for (;;) {
      auto before = single_int(db, "PRAGMA freelist_count");
      if (!before) return before.error();
      if (*before == 0) break;
      if (auto st = db.exec("PRAGMA incremental_vacuum(2000)"); !st) return st.error();
      auto after = single_int(db, "PRAGMA freelist_count");
      if (!after) return after.error();
      if (*after >= *before) break;
    }
  }
  // PASSIVE copies the WAL into the database without blocking anyone; the TRUNCATE that
  // follows then has little left to copy, so it holds writers off only briefly, and it
  // shrinks the -wal file back to zero bytes (unless a reader still needs it).
  if (auto st = db.exec("PRAGMA wal_checkpoint(PASSIVE)"); !st) return st.error();
  auto cp = db.prepare("PRAGMA wal_checkpoint(TRUNCATE)");
  if (!cp) return cp.error();
  auto row = cp->step();
  if (!row) {
    if (row.error().code != Errc::busy) return row.error();
  } else if (*row) {
    r.wal_truncated = cp->int64(0) == 0;
  }
  cp->reset();
  for (auto [sql, out] : {std::pair{"PRAGMA page_size", &r.page_size}, std::pair{"PRAGMA page_count", &r.page_count},
                          std::pair{"PRAGMA freelist_count", &r.free_pages}}) {
    auto v = single_int(db, sql);
    if (!v) return v.error();
    *out = *v;
  }
  return r;
}

}  // namespace metrix
