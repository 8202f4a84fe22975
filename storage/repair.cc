#include "storage/repair.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "storage/query.h"

namespace metrix {

// ---- requeue ------------------------------------------------------------------------------

bool requeue_may_change(RowStatus status, bool include_sent) {
  switch (status) {
    case RowStatus::failed:
    case RowStatus::dead:
    case RowStatus::held: return true;
    case RowStatus::sent: return include_sent;
    case RowStatus::pending:
    case RowStatus::sending: return false;
  }
  return false;
}

Result<RowFilter> requeue_filter(const RowFilter& filter, bool include_sent) {
  RowFilter f = filter;
  if (f.statuses.empty()) {
    for (RowStatus s : all_statuses()) {
      if (requeue_may_change(s, include_sent)) f.statuses.push_back(s);
    }
  }
  for (RowStatus s : f.statuses) {
    if (requeue_may_change(s, include_sent)) continue;
    if (s == RowStatus::sent) {
      return Error{Errc::invalid_argument,
                   "status sent: sent rows are requeued only when include_sent is set (a deliberate re-send: Metrix "
                   "receives the event again)"};
    }
    return Error{Errc::invalid_argument,
                 fmt::format("status {}: requeue never touches pending or sending rows (they are on their way "
                             "already); it requeues failed, dead and held rows, and sent ones when include_sent is set",
                             row_status_name(s))};
  }
  return f;
}

Result<std::int64_t> requeue(Database& db, const RowFilter& filter, bool include_sent, std::int64_t now) {
  auto f = requeue_filter(filter, include_sent);
  if (!f) return f.error();
  SqlWhere w(*f);
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

// ---- purge --------------------------------------------------------------------------------

bool purge_may_delete(RowStatus status) { return status != RowStatus::pending && status != RowStatus::sending; }

std::int64_t PurgeCounts::total_rows() const {
  std::int64_t total = 0;
  for (const auto& [status, n] : rows) total += n;
  return total;
}

Status check_purge_statuses(const PurgeOptions& options) {
  if (options.statuses.empty()) return Error{Errc::invalid_argument, "statuses: none to purge"};
  for (RowStatus s : options.statuses) {
    if (purge_may_delete(s)) continue;
    return Error{Errc::invalid_argument,
                 fmt::format("status {}: purge never deletes an undelivered event on its way to Metrix (pending or "
                             "sending): it would be lost without a trace",
                             row_status_name(s))};
  }
  return {};
}

const char* purge_time_column(RowStatus status) { return status == RowStatus::sent ? "sent_at" : "created_at"; }

Result<PurgeCounts> purge_preview(Database& db, const PurgeOptions& options) {
  if (auto st = check_purge_statuses(options); !st) return st.error();
  PurgeCounts counts;
  for (RowStatus status : options.statuses) {
    auto s = db.prepare(fmt::format(
        "SELECT count(*), coalesce(sum((SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id = o.id)), 0) "
        "FROM metrix_outbox AS o WHERE status = ?1 AND {} < ?2",
        purge_time_column(status)));
    if (!s) return s.error();
    s->bind(1, std::string_view(row_status_name(status))).bind(2, options.cutoff);
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
  for (RowStatus status : options.statuses) {
    const std::string_view name = row_status_name(status);
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
      select->bind(1, last).bind(2, name).bind(3, options.cutoff).bind(4, options.chunk_rows);
      auto st = for_each_row(*select, [&](const Statement& r) { ids.push_back(r.int64(0)); });
      select->reset();
      if (!st) return st.error();
      if (ids.empty()) break;
      std::int64_t rows = 0, attempts = 0;
      for (std::int64_t id : ids) {
        del_row->bind(1, id).bind(2, name).bind(3, options.cutoff);
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

// ---- space --------------------------------------------------------------------------------

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
