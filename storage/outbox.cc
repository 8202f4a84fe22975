#include "storage/outbox.h"

#include <fmt/format.h>

namespace metrix {

namespace {

// Prepares `stmt` on first use and keeps it.
Status prepare_once(Database& db, Statement& stmt, std::string_view sql) {
  if (stmt.handle()) return {};
  auto prepared = db.prepare(sql);
  if (!prepared) return prepared.error();
  stmt = std::move(*prepared);
  return {};
}

// How many due suspects a claim that may not take them reads past, at most, to find the rows
// it may take. After a crash its relay's rows are due together; a claim that stopped at them
// would starve the rows behind them.
constexpr int kSuspectsSkipped = 4096;

}  // namespace

Result<std::vector<std::optional<std::string>>> Outbox::active_apps() {
  std::vector<std::optional<std::string>> apps;
  // Each query is one seek into metrix_outbox_due (its partial-index condition repeated so
  // the index applies; INDEXED BY because without statistics the planner prefers the status
  // index and a sort of every pending row): the NULL app first, then each next app_id.
  auto null_app = db_.prepare(
      "SELECT 1 FROM metrix_outbox INDEXED BY metrix_outbox_due "
      "WHERE app_id IS NULL AND status IN ('pending', 'sending') LIMIT 1");
  if (!null_app) return null_app.error();
  auto has_null = null_app->step();
  if (!has_null) return has_null.error();
  if (*has_null) apps.push_back(std::nullopt);

  auto next_app = db_.prepare(
      "SELECT app_id FROM metrix_outbox INDEXED BY metrix_outbox_due "
      "WHERE app_id > ?1 AND status IN ('pending', 'sending') ORDER BY app_id LIMIT 1");
  if (!next_app) return next_app.error();
  std::string after;  // '' sorts before every valid (non-empty) app_id
  for (;;) {
    next_app->bind(1, std::string_view(after));
    auto row = next_app->step();
    if (!row) return row.error();
    if (!*row) break;
    after = next_app->text(0);
    apps.push_back(after);
    next_app->reset();
  }
  return apps;
}

Result<std::vector<Claim>> Outbox::claim(const std::optional<std::string>& app_id, std::int64_t now,
                                         std::int64_t lease_ms, int limit, std::optional<int> max_suspects,
                                         int* skipped) {
  // Read the due rows, then lease them all with one UPDATE. No RETURNING: SQLite builds an
  // ephemeral table for it on every statement, which made claiming several times slower.
  if (auto s = prepare_once(db_, due_,
                            "SELECT id, status = 'sending', app_id, payload, created_at, "
                            " coalesce(event_time, json_extract(payload, '$.eventTime'), created_at), "
                            " json_type(payload, '$.eventTime') IS NOT NULL, attempts, lease_token, lease_expiries "
                            "FROM metrix_outbox INDEXED BY metrix_outbox_due "
                            "WHERE app_id IS ?1 AND status IN ('pending', 'sending') AND next_attempt_at <= ?2 "
                            "ORDER BY next_attempt_at, id LIMIT ?3");
      !s) {
    return s.error();
  }
  if (auto s = prepare_once(db_, claim_,
                            "UPDATE metrix_outbox SET status = 'sending', lease_token = lease_token + 1, "
                            " next_attempt_at = ?2, lease_expiries = lease_expiries + (status = 'sending'), "
                            " event_time = coalesce(event_time, json_extract(payload, '$.eventTime'), created_at) "
                            "WHERE id IN (SELECT value FROM json_each(?1))");
      !s) {
    return s.error();
  }
  auto tx = Transaction::begin(db_.handle());
  if (!tx) return tx.error();
  due_.bind(1, app_id).bind(2, now).bind(3, std::int64_t{limit} + (max_suspects ? kSuspectsSkipped : 0));
  int suspects = 0;
  if (skipped) *skipped = 0;
  std::vector<Claim> claims;
  std::string ids = "[";
  while (static_cast<int>(claims.size()) < limit) {
    auto row = due_.step();
    if (!row) return row.error();
    if (!*row) break;
    if (max_suspects && (due_.int64(1) != 0 || due_.int64(9) > 0) && suspects++ >= *max_suspects) {
      if (skipped) ++*skipped;  // a suspect more than it may take: left due, untouched
      continue;
    }
    Claim c;
    c.id = due_.int64(0);
    c.lease_expired = due_.int64(1) != 0;
    c.app_id = due_.optional_text(2);
    c.payload = due_.text(3);
    c.created_at = due_.int64(4);
    c.event_time = due_.int64(5);
    c.payload_has_event_time = due_.int64(6) != 0;
    c.attempts = due_.int64(7);
    c.lease_token = due_.int64(8) + 1;  // what the UPDATE below writes, inside this transaction
    c.lease_expiries = due_.int64(9) + (c.lease_expired ? 1 : 0);  // likewise
    if (ids.size() > 1) ids.push_back(',');
    ids += std::to_string(c.id);
    claims.push_back(std::move(c));
  }
  due_.reset();
  ids.push_back(']');
  if (!claims.empty()) {
    claim_.bind(1, std::string_view(ids)).bind(2, now + lease_ms);
    if (auto s = claim_.run(); !s) return s.error();
    if (sqlite3_changes(db_.handle()) != static_cast<int>(claims.size())) {
      return Error{Errc::io, "claim: rows changed inside the transaction"};
    }
  }
  if (auto s = tx->commit(); !s) return s.error();
  return claims;
}

Result<RecordReport> Outbox::record(const std::vector<Outcome>& outcomes) {
  if (auto s = prepare_once(db_, update_,
                            "UPDATE metrix_outbox SET status = ?3, attempts = attempts + ?4, next_attempt_at = ?5, "
                            // a row handed back without an attempt keeps its last answer
                            " last_http_status = CASE WHEN ?4 THEN ?6 ELSE last_http_status END, "
                            " last_error = CASE WHEN ?4 OR ?7 IS NOT NULL THEN ?7 ELSE last_error END, sent_at = ?8, "
                            // an answer ends a run of lease expiries (poison rows)
                            " lease_expiries = CASE WHEN ?4 THEN 0 ELSE lease_expiries END "
                            "WHERE id = ?1 AND lease_token = ?2 AND status = 'sending'");
      !s) {
    return s.error();
  }
  if (auto s = prepare_once(db_, attempt_,
                            "INSERT INTO metrix_outbox_attempt "
                            "(outbox_id, attempt, started_at, finished_at, http_status, error, response) "
                            "VALUES (?1, (SELECT coalesce(max(attempt), 0) + 1 FROM metrix_outbox_attempt "
                            " WHERE outbox_id = ?1), ?3, ?4, ?5, ?6, ?7)");
      !s) {
    return s.error();
  }
  RecordReport report;
  auto tx = Transaction::begin(db_.handle());
  if (!tx) return tx.error();
  for (const Outcome& o : outcomes) {
    if (o.status == RowStatus::sending) {  // a claim's status, not an outcome: nothing is written
      return Error{Errc::invalid_argument, fmt::format("row {}: an outcome cannot leave a row sending", o.id)};
    }
    update_.bind(1, o.id).bind(2, o.lease_token).bind(3, std::string_view(row_status_name(o.status)));
    update_.bind(4, std::int64_t{o.attempted ? 1 : 0}).bind(5, o.next_attempt_at).bind(6, o.http_status);
    update_.bind(7, o.error.empty() ? std::optional<std::string>() : std::optional<std::string>(o.error));
    update_.bind(8, o.status == RowStatus::sent ? std::optional<std::int64_t>(o.finished_at) : std::nullopt);
    if (auto s = update_.run(); !s) return s.error();
    if (sqlite3_changes(db_.handle()) == 0) {  // another relay claimed it since: its outcome wins
      ++report.fenced;
      report.fenced_ids.push_back(o.id);
      continue;
    }
    report.count(o);
    if (!o.attempted) continue;
    // Numbered after the row's last attempt, not from `attempts`, which an operator may reset.
    attempt_.bind(1, o.id).bind(3, o.started_at).bind(4, o.finished_at).bind(5, o.http_status);
    attempt_.bind(6, o.error.empty() ? std::optional<std::string>() : std::optional<std::string>(o.error));
    attempt_.bind(7, o.response.empty() ? std::optional<std::string>() : std::optional<std::string>(o.response));
    if (auto s = attempt_.run(); !s) return s.error();
  }
  if (auto s = tx->commit(); !s) return s.error();
  return report;
}

Status Outbox::note_unroutable(const std::optional<std::string>& app_id, const std::string& reason) {
  auto stmt = db_.prepare(
      "UPDATE metrix_outbox SET last_error = ?2 "
      "WHERE app_id IS ?1 AND status IN ('pending', 'sending') AND last_error IS NOT ?2");
  if (!stmt) return stmt.error();
  stmt->bind(1, app_id).bind(2, std::string_view(reason));
  return stmt->run();
}

Result<std::optional<std::int64_t>> Outbox::next_due_at(const std::optional<std::string>& app_id) {
  Statement& next_due = next_due_;
  if (auto s = prepare_once(db_, next_due,
                            "SELECT next_attempt_at FROM metrix_outbox INDEXED BY metrix_outbox_due "
                            "WHERE app_id IS ?1 AND status IN ('pending', 'sending') ORDER BY next_attempt_at LIMIT 1");
      !s) {
    return s.error();
  }
  next_due.bind(1, app_id);
  auto row = next_due.step();
  if (!row) return row.error();
  std::optional<std::int64_t> at;
  if (*row) at = next_due.int64(0);
  next_due.reset();
  return at;
}

Result<std::int64_t> Outbox::unfinished_count() {
  auto stmt = db_.prepare("SELECT count(*) FROM metrix_outbox WHERE status IN ('pending', 'sending')");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return stmt->int64(0);
}

Status Outbox::beat(const Heartbeat& h) {
  auto stmt = db_.prepare(
      "INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, "
      "windows) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (relay_id) DO UPDATE SET "
      "beat_at = excluded.beat_at, interval_ms = excluded.interval_ms, sent = excluded.sent, "
      "last_sent_at = excluded.last_sent_at, windows = excluded.windows");
  if (!stmt) return stmt.error();
  stmt->bind(1, std::string_view(h.relay_id)).bind(2, std::string_view(h.host)).bind(3, h.pid);
  stmt->bind(4, h.started_at).bind(5, h.beat_at).bind(6, h.interval_ms).bind(7, h.sent).bind(8, h.last_sent_at);
  stmt->bind(9, std::string_view(h.windows));
  return stmt->run();
}

Status Outbox::remove_heartbeat(const std::string& relay_id) {
  auto stmt = db_.prepare("DELETE FROM metrix_relay_heartbeat WHERE relay_id = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, std::string_view(relay_id));
  return stmt->run();
}

Result<std::vector<AppPause>> Outbox::pauses() {
  auto stmt = db_.prepare(
      "SELECT app_id, reason, since, next_probe_at, interval_ms FROM metrix_app_pause ORDER BY since, app_id");
  if (!stmt) return stmt.error();
  std::vector<AppPause> pauses;
  for (;;) {
    auto row = stmt->step();
    if (!row) return row.error();
    if (!*row) break;
    pauses.push_back({stmt->text(0), stmt->text(1), stmt->int64(2), stmt->int64(3), stmt->int64(4)});
  }
  return pauses;
}

Status Outbox::save_pause(const AppPause& pause) {
  auto stmt = db_.prepare(
      "INSERT INTO metrix_app_pause (app_id, reason, since, next_probe_at, interval_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
      "ON CONFLICT (app_id) DO UPDATE SET reason = excluded.reason, next_probe_at = excluded.next_probe_at, "
      " interval_ms = excluded.interval_ms");
  if (!stmt) return stmt.error();
  stmt->bind(1, std::string_view(pause.app_id)).bind(2, std::string_view(pause.reason)).bind(3, pause.since);
  stmt->bind(4, pause.next_probe_at).bind(5, pause.interval_ms);
  return stmt->run();
}

Status Outbox::clear_pause(const std::string& app_id) {
  auto stmt = db_.prepare("DELETE FROM metrix_app_pause WHERE app_id = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, std::string_view(app_id));
  return stmt->run();
}

}  // namespace metrix
