#include "storage/status.h"

#include <fmt/format.h>

#include "storage/heartbeat.h"
#include "storage/outbox.h"
#include "storage/query.h"

namespace metrix {

namespace {

StatusCounts zero_counts() {
  StatusCounts counts;
  for (RowStatus s : all_statuses()) counts[s] = 0;
  return counts;
}

Status read_pauses_and_relays(Database& db, StatusSnapshot& snap) {
  Outbox outbox(db);
  auto pauses = outbox.pauses();
  if (!pauses) return pauses.error();
  snap.pauses = std::move(*pauses);
  auto relays = read_heartbeats(db);
  if (!relays) return relays.error();
  snap.relays = std::move(*relays);
  return {};
}

}  // namespace

Result<StatusSnapshot> read_status(Database& db, std::int64_t now) {
  StatusSnapshot snap;
  snap.now = now;
  snap.counts = zero_counts();
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
  auto st = for_each_row(*counts, [&](const Statement& r) -> Status {
    auto status = status_column(r, 1);
    if (!status) return status.error();
    std::optional<std::string> app = r.optional_text(0);
    if (snap.apps.empty() || snap.apps.back().app_id != app) snap.apps.push_back(AppStatus{app, zero_counts()});
    snap.apps.back().counts[*status] += r.int64(2);
    snap.counts[*status] += r.int64(2);
    snap.due += r.int64(3);
    snap.in_backoff += r.int64(4);
    if (auto sent = r.optional_int64(5); sent && (!snap.last_sent_at || *sent > *snap.last_sent_at)) snap.last_sent_at = sent;
    if (auto c = r.optional_int64(6); c && (!snap.oldest_unfinished_created_at || *c < *snap.oldest_unfinished_created_at)) {
      snap.oldest_unfinished_created_at = c;
    }
    return {};
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
  st = for_each_row(*errors, [&](const Statement& r) -> Status {
    auto status = status_column(r, 0);
    if (!status) return status.error();
    snap.errors.push_back({*status, r.text(1), r.int64(2)});
    return {};
  });
  if (!st) return st.error();

  if (auto s = read_pauses_and_relays(db, snap); !s) return s.error();
  return snap;
}

Result<StatusSnapshot> read_health(Database& db, std::int64_t now, const HealthThresholds& thresholds) {
  StatusSnapshot snap;
  snap.now = now;
  snap.counts = zero_counts();
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
  snap.counts[RowStatus::pending] = total;
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

  if (auto s = read_pauses_and_relays(db, snap); !s) return s.error();
  for (const Heartbeat& h : snap.relays) {
    if (h.last_sent_at && (!snap.last_sent_at || *h.last_sent_at > *snap.last_sent_at)) snap.last_sent_at = h.last_sent_at;
  }
  // The newest deliveries are almost always among the newest rows; only when that says
  // "nothing lately" and the verdict hangs on it is every sent row read. SQLite uses
  // metrix_outbox_status, a partial index of finished rows, for status = 'sent': the term
  // implies one branch of the index's OR condition.
  auto recent = db.prepare(
      "SELECT max(sent_at) FROM (SELECT sent_at FROM metrix_outbox WHERE status = 'sent' "
      "ORDER BY created_at DESC LIMIT 1000)");
  if (!recent) return recent.error();
  row = recent->step();
  if (!row) return row.error();
  if (auto v = recent->optional_int64(0); v && (!snap.last_sent_at || *v > *snap.last_sent_at)) snap.last_sent_at = v;
  recent->reset();
  bool stall_possible = total > 0 && snap.oldest_unfinished_created_at &&
                        now - *snap.oldest_unfinished_created_at > thresholds.max_idle_ms;
  if (stall_possible && (!snap.last_sent_at || now - *snap.last_sent_at > thresholds.max_idle_ms)) {
    auto all = single_int(db, "SELECT coalesce(max(sent_at), -1) FROM metrix_outbox WHERE status = 'sent'");
    if (!all) return all.error();
    if (*all >= 0 && (!snap.last_sent_at || *all > *snap.last_sent_at)) snap.last_sent_at = *all;
  }
  return snap;
}

Health evaluate_health(const StatusSnapshot& snap, const HealthThresholds& t) {
  if (snap.oldest_due && snap.now - snap.oldest_due->due_since > t.max_backlog_age_ms) {
    return Health{Health::Problem::backlog};
  }
  // Rows have waited at least max_idle, and nothing was delivered in that time: a relay that
  // is down, or up and getting nowhere (Metrix refusing, every request failing).
  std::int64_t unfinished = snap.counts.at(RowStatus::pending) + snap.counts.at(RowStatus::sending);
  if (unfinished > 0 && snap.oldest_unfinished_created_at &&
      snap.now - *snap.oldest_unfinished_created_at > t.max_idle_ms &&
      (!snap.last_sent_at || snap.now - *snap.last_sent_at > t.max_idle_ms)) {
    return Health{Health::Problem::stalled};
  }
  return Health{};
}

}  // namespace metrix
