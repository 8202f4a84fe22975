#include "storage/postgres/relay_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "storage/clock.h"
#include "storage/postgres/migrate.h"
#include "storage/postgres/text.h"
#include "storage/postgres/pipeline.h"

namespace metrix::pg {

namespace {

std::int64_t steady_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}


Param opt_text(const std::string& s) { return s.empty() ? Param() : Param(as_text(s)); }
Param opt_int(std::optional<std::int64_t> v) { return v ? Param(std::to_string(*v)) : Param(); }
std::string num(std::int64_t v) { return std::to_string(v); }

// The skew between the database's clock (its transaction's start) and the relay's time $1:
// what the relay's times gain when written, and lose when read back.
constexpr std::string_view kSkew = "(floor(extract(epoch FROM now()) * 1000)::bigint - $1::bigint)";

// Outcomes, fenced by id + lease_token + status, and their attempt rows, in one statement;
// returns the ids it recorded. Attempts are numbered after the row's last one (the row is
// locked by the UPDATE, so no other relay numbers beside it).
constexpr std::string_view kRecord = R"SQL(
WITH skew AS (SELECT )SQL" "(floor(extract(epoch FROM now()) * 1000)::bigint - $1::bigint)" R"SQL( AS ms),
o AS MATERIALIZED (
  SELECT *, 'sending'::text AS expect FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::boolean[], $6::bigint[], $7::integer[],
                       $8::text[], $9::text[], $10::bigint[], $11::bigint[])
    AS u(id, token, status, attempted, next_at, http_status, error, response, started, finished)),
updated AS (
  UPDATE metrix_outbox m SET status = o.status, attempts = m.attempts + o.attempted::int,
    next_attempt_at = o.next_at + skew.ms,
    last_http_status = CASE WHEN o.attempted THEN o.http_status ELSE m.last_http_status END,
    last_error = CASE WHEN o.attempted OR o.error IS NOT NULL THEN o.error ELSE m.last_error END,
    sent_at = CASE WHEN o.status = 'sent' THEN o.finished + skew.ms END,
    lease_expiries = CASE WHEN o.attempted THEN 0 ELSE m.lease_expiries END
  -- The rows by primary key, then the fence as a join condition: as a constant test on status, it
  -- made the planner think few rows match and scan the whole due index, or loop over o per row.
  FROM o, skew WHERE m.id = ANY ($2::bigint[]) AND m.id = o.id AND m.lease_token = o.token AND m.status = o.expect
  RETURNING m.id),
attempt AS (
  INSERT INTO metrix_outbox_attempt (outbox_id, attempt, started_at, finished_at, http_status, error, response)
  SELECT o.id, coalesce((SELECT max(a.attempt) FROM metrix_outbox_attempt a WHERE a.outbox_id = o.id), 0) + 1,
         o.started + skew.ms, o.finished + skew.ms, o.http_status, o.error, o.response
    FROM o JOIN updated USING (id), skew WHERE o.attempted)
SELECT id FROM updated)SQL";

constexpr std::string_view kBeat = R"SQL(
INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, windows)
SELECT $2, $3, $4::bigint, $5::bigint + s, $6::bigint + s, $7::bigint, $8::bigint, $9::bigint + s, $10
  FROM (SELECT )SQL" "(floor(extract(epoch FROM now()) * 1000)::bigint - $1::bigint)" R"SQL( AS s) skew
ON CONFLICT (relay_id) DO UPDATE SET beat_at = excluded.beat_at, interval_ms = excluded.interval_ms,
  sent = excluded.sent, last_sent_at = excluded.last_sent_at, windows = excluded.windows)SQL";

constexpr std::string_view kSavePause = R"SQL(
INSERT INTO metrix_app_pause (app_id, reason, since, next_probe_at, interval_ms)
SELECT $2, $3, $4::bigint + s, $5::bigint + s, $6::bigint
  FROM (SELECT )SQL" "(floor(extract(epoch FROM now()) * 1000)::bigint - $1::bigint)" R"SQL( AS s) skew
ON CONFLICT (app_id) DO UPDATE SET reason = excluded.reason, next_probe_at = excluded.next_probe_at,
  interval_ms = excluded.interval_ms)SQL";

// One index seek per app (a loose scan of metrix_outbox_due), NULL first, then app_id in
// byte order as on SQLite, whatever the database's collation.
constexpr std::string_view kActiveApps = R"SQL(
WITH RECURSIVE app(key) AS (
  (SELECT coalesce(app_id, '') FROM metrix_outbox WHERE status IN ('pending', 'sending')
    ORDER BY coalesce(app_id, '') LIMIT 1)
  UNION ALL
  SELECT (SELECT coalesce(m.app_id, '') FROM metrix_outbox m WHERE m.status IN ('pending', 'sending')
            AND coalesce(m.app_id, '') > app.key ORDER BY coalesce(m.app_id, '') LIMIT 1)
    FROM app WHERE app.key IS NOT NULL)
SELECT nullif(key, '') FROM app WHERE key IS NOT NULL ORDER BY key COLLATE "C")SQL";

// A payload has an eventTime key only if its text holds "eventTime" (the rules refuse escaped
// keys): the claim parses the payload only then, not for every row.
// The claim. $4/$5: the gated apps ('' for NULL) in app_id order and their gates. Fresh rows
// (never leased without an answer) are read off the due index, locked rows skipped; a
// suspect is taken only when $6, one in all, the first app's first. The apps' rows are then
// cut to the gates and to $3 in app order, and leased by one UPDATE. The last column is the
// round's next_due_at (on the relay's clock), repeated on every row; with no claim, one row
// of NULLs carries it.
constexpr std::string_view kClaim = R"SQL(
WITH skew AS (SELECT )SQL" "(floor(extract(epoch FROM now()) * 1000)::bigint - $1::bigint)" R"SQL( AS ms),
t AS (SELECT $1::bigint + ms AS now_db, $1::bigint + ms + $2::bigint AS lease_end FROM skew),
app AS (SELECT * FROM unnest($4::text[], $5::integer[]) WITH ORDINALITY AS a(key, gate, ord)),
fresh AS (
  SELECT app.ord, r.* FROM app CROSS JOIN LATERAL (
    SELECT m.id, m.next_attempt_at AS due, m.status = 'sending' AS expired FROM metrix_outbox m
     WHERE coalesce(m.app_id, '') = app.key AND m.status IN ('pending', 'sending')
       AND m.next_attempt_at <= (SELECT now_db FROM t) AND m.status = 'pending' AND m.lease_expiries = 0
     ORDER BY m.next_attempt_at, m.id LIMIT least(app.gate, $3::integer) FOR UPDATE SKIP LOCKED) r),
suspect AS (  -- the oldest due suspect, off metrix_outbox_suspect
  SELECT w.ord, m.id, m.next_attempt_at AS due, m.status = 'sending' AS expired
    FROM (SELECT app.ord, r.id FROM app CROSS JOIN LATERAL (
            SELECT s.id FROM metrix_outbox s
             WHERE coalesce(s.app_id, '') = app.key AND (s.status = 'sending' OR (s.status = 'pending' AND s.lease_expiries > 0))
               AND s.next_attempt_at <= (SELECT now_db FROM t)
             ORDER BY s.next_attempt_at, s.id LIMIT CASE WHEN $6::boolean THEN 1 ELSE 0 END) r
           ORDER BY app.ord LIMIT 1) w
    JOIN metrix_outbox m ON m.id = w.id
   WHERE m.next_attempt_at <= (SELECT now_db FROM t)
     AND (m.status = 'sending' OR (m.status = 'pending' AND m.lease_expiries > 0))
     FOR UPDATE OF m SKIP LOCKED),
ranked AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.ord ORDER BY c.due, c.id) AS in_app
    FROM (SELECT * FROM fresh UNION ALL SELECT * FROM suspect) c),
chosen AS (
  SELECT r.* FROM ranked r JOIN app USING (ord) WHERE r.in_app <= app.gate
   ORDER BY r.ord, r.due, r.id LIMIT $3::integer),
claimed AS (
  UPDATE metrix_outbox m SET status = 'sending', next_attempt_at = t.lease_end, lease_token = m.lease_token + 1,
    lease_expiries = m.lease_expiries + chosen.expired::int,
    event_time = coalesce(m.event_time, CASE WHEN strpos(m.payload, '"eventTime"') > 0
                                              THEN (m.payload::json ->> 'eventTime')::bigint END, m.created_at)
    FROM chosen, t WHERE m.id = chosen.id
  RETURNING m.id, chosen.ord, chosen.due, chosen.expired, m.app_id, m.payload, m.created_at, m.event_time,
    strpos(m.payload, '"eventTime"') > 0 AND (m.payload::json -> 'eventTime') IS NOT NULL AS has_event_time, m.attempts, m.lease_token, m.lease_expiries),
visit AS (  -- each app as the claim loop visits it: what it could ask for, what it got
  SELECT app.*, least(app.gate, $3::integer - coalesce(sum(n.got) OVER (ORDER BY app.ord
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS asked, n.got
    FROM app CROSS JOIN LATERAL (SELECT count(*) AS got FROM claimed WHERE claimed.ord = app.ord) n),
soon AS (
  SELECT least(CASE WHEN v.got > 0 THEN (SELECT lease_end FROM t) END,
    (SELECT m.next_attempt_at FROM metrix_outbox m
      WHERE coalesce(m.app_id, '') = v.key AND m.status IN ('pending', 'sending')
        AND m.id NOT IN (SELECT id FROM claimed) ORDER BY m.next_attempt_at LIMIT 1)) AS at
    FROM visit v
   WHERE v.asked > 0 AND v.got < v.asked AND NOT EXISTS (  -- suspects left aside: no sooner claim finds more
     SELECT 1 FROM metrix_outbox m WHERE coalesce(m.app_id, '') = v.key
        AND (m.status = 'sending' OR (m.status = 'pending' AND m.lease_expiries > 0))
        AND m.next_attempt_at <= (SELECT now_db FROM t) AND m.id NOT IN (SELECT id FROM claimed))),
next_due AS (SELECT min(at) - (SELECT ms FROM skew) AS at FROM soon)
SELECT c.id, c.expired, c.app_id, c.payload, c.created_at, c.event_time, c.has_event_time, c.attempts, c.lease_token,
       c.lease_expiries, next_due.at
  FROM next_due LEFT JOIN claimed c ON true ORDER BY c.ord, c.due, c.id)SQL";

// Every statement of the relay reads by index. Its statements are prepared once per session and
// planned generically, from the statistics of the moment: prepared while metrix_outbox_attempt
// was nearly empty, the attempt numbering scanned the whole table for every outcome, and the
// recording of a batch slowed as the table grew (86 ms for 113 outcomes at 40,000 attempts).
// Statistics always lag an outbox's churn; without sequential scans the plans stay index reads.
// No JIT: a plan with a disabled scan costs more than jit_above_cost, and compiling it took
// milliseconds per execution of statements that run in microseconds.
// Read committed, whatever the database's or the role's default: SKIP LOCKED and the fenced
// UPDATE rely on it; under repeatable read they fail with serialization errors instead.
constexpr std::string_view kSessionSettings =
    "SET enable_seqscan = off; SET jit = off; SET default_transaction_isolation = 'read committed'";

}  // namespace

Result<std::unique_ptr<PgRelayStore>> PgRelayStore::open(const std::string& uri) {
  auto db = Connection::open(uri);
  if (!db) return db.error();
  if (auto s = check_schema(*db); !s) return s.error();
  if (auto s = db->exec_script(kSessionSettings); !s) return s.error();
  return std::unique_ptr<PgRelayStore>(new PgRelayStore(std::move(*db)));
}

Status PgRelayStore::ready() {
  if (!lost_ && db_.alive()) return {};
  if (steady_us() < retry_at_us_) {
    return Error{Errc::busy, fmt::format("{}: the connection is lost; trying again in {} ms", db_.name(),
                                         (retry_at_us_ - steady_us() + 999) / 1000)};
  }
  if (auto s = db_.reconnect(); !s) {
    backoff_ms_ = std::clamp<std::int64_t>(backoff_ms_ * 2, 100, 5000);
    retry_at_us_ = steady_us() + backoff_ms_ * 1000;
    return Error{Errc::busy, s.error().message};
  }
  prepared_.clear();  // a new session has none
  // Still lost until the session has its settings: a failure here tries again, not on without.
  if (auto s = db_.exec_script(kSessionSettings); !s) return failed(s.error());
  lost_ = false;
  backoff_ms_ = 0;
  return {};
}

Error PgRelayStore::failed(Error error) {
  if (!db_.alive()) lost_ = true;
  if (lost_ && retry_at_us_ < steady_us()) {
    backoff_ms_ = std::max<std::int64_t>(backoff_ms_, 100);
    retry_at_us_ = steady_us() + backoff_ms_ * 1000;
  }
  return error;
}

Result<RoundResult> PgRelayStore::write_round(const WriteJob& job) {
  if (auto s = ready(); !s) return s.error();
  const std::string now = num(job.now);
  std::vector<PreparedSql> round;
  std::vector<const Outcome*> recorded_order;
  if (!job.outcomes.empty()) {
    std::vector<Param> id, token, status, attempted, next_at, http, error, response, started, finished;
    for (const Outcome& o : job.outcomes) {
      if (o.status == RowStatus::sending) {  // a claim's status, not an outcome: nothing is written
        return Error{Errc::invalid_argument, fmt::format("row {}: an outcome cannot leave a row sending", o.id)};
      }
      id.push_back(num(o.id));
      token.push_back(num(o.lease_token));
      status.push_back(std::string(row_status_name(o.status)));
      attempted.push_back(o.attempted ? "t" : "f");
      next_at.push_back(num(o.next_attempt_at));
      http.push_back(opt_int(o.http_status));
      error.push_back(opt_text(o.error));
      response.push_back(opt_text(o.response));
      started.push_back(num(o.started_at));
      finished.push_back(num(o.finished_at));
    }
    round.push_back({"metrix_record", std::string(kRecord),
                     {now, array_literal(id), array_literal(token), array_literal(status), array_literal(attempted),
                      array_literal(next_at), array_literal(http), array_literal(error), array_literal(response),
                      array_literal(started), array_literal(finished)}});
  }
  if (const auto& h = job.heartbeat) {
    round.push_back({"metrix_beat", std::string(kBeat),
                     {now, as_text(h->relay_id), as_text(h->host), num(h->pid), num(h->started_at), num(h->beat_at),
                      num(h->interval_ms), num(h->sent), opt_int(h->last_sent_at), as_text(h->windows)}});
  }
  for (const auto& [app, pause] : job.pauses) {
    if (pause) {
      round.push_back({"metrix_save_pause", std::string(kSavePause),
                       {now, pause->app_id, as_text(pause->reason), num(pause->since), num(pause->next_probe_at),
                        num(pause->interval_ms)}});
    } else {
      round.push_back({"metrix_clear_pause", "DELETE FROM metrix_app_pause WHERE app_id = $1", {app}});
    }
  }
  for (const auto& [app, reason] : job.notes) {
    round.push_back({"metrix_note", "UPDATE metrix_outbox SET last_error = $2 WHERE coalesce(app_id, '') = $1 "
                     "AND status IN ('pending', 'sending') AND last_error IS DISTINCT FROM $2",
                     {app.value_or(""), as_text(reason)}});
  }
  // The id sequence moves only when a producer inserts (or tries to): relays never do.
  const std::size_t last_id_at = round.size();
  round.push_back({"metrix_last_id", "SELECT coalesce(pg_sequence_last_value('metrix_outbox_id_seq'), 0)", {}});
  const std::size_t active_at = round.size();
  round.push_back({"metrix_active_apps", std::string(kActiveApps), {}});
  std::vector<Param> keys, gates;
  for (const auto& [app, gate] : job.gates) {  // a std::map: NULL first, then byte order
    if (gate <= 0) continue;
    keys.push_back(app.value_or(""));
    gates.push_back(num(gate));
  }
  const bool claiming = job.claim_limit > 0 && !keys.empty();
  if (claiming) {
    round.push_back({"metrix_claim", std::string(kClaim),
                     {now, num(job.lease_ms), num(job.claim_limit), array_literal(keys), array_literal(gates),
                      job.claim_suspect ? "t" : "f"}});
  }

  const std::int64_t started_us = steady_us();
  bool broken = false;
  auto results = run_pipeline(db_, round, prepared_, broken);
  if (broken) lost_ = true;
  if (!results) return failed(results.error());
  RoundResult done;
  done.lock_us = steady_us() - started_us;
  if (!job.outcomes.empty()) {
    const Rows& ids = (*results)[0];
    std::vector<std::int64_t> recorded;
    for (int r = 0; r < ids.size(); ++r) recorded.push_back(ids.int64(r, 0));
    std::sort(recorded.begin(), recorded.end());
    RecordReport& report = done.recorded;
    for (const Outcome& o : job.outcomes) {
      if (!std::binary_search(recorded.begin(), recorded.end(), o.id)) {  // claimed again since: its outcome wins
        ++report.fenced;
        report.fenced_ids.push_back(o.id);
        continue;
      }
      report.count(o);
    }
  }
  const std::int64_t last_id = (*results)[last_id_at].int64(0, 0);
  done.others_wrote = last_id_ && *last_id_ != last_id;
  last_id_ = last_id;
  const Rows& active = (*results)[active_at];
  for (int r = 0; r < active.size(); ++r) done.active_apps.push_back(active.optional_text(r, 0));
  if (claiming) {
    const Rows& rows = (*results)[active_at + 1];
    for (int r = 0; r < rows.size(); ++r) {
      if (r == 0) done.next_due_at = rows.optional_int64(r, 10);
      if (rows.null(r, 0)) continue;  // no claim: the row of next_due_at alone
      Claim c;
      c.id = rows.int64(r, 0);
      c.lease_expired = rows.boolean(r, 1);
      c.app_id = rows.optional_text(r, 2);
      c.payload = rows.text(r, 3);
      c.created_at = rows.int64(r, 4);
      c.event_time = rows.int64(r, 5);
      c.payload_has_event_time = rows.boolean(r, 6);
      c.attempts = rows.int64(r, 7);
      c.lease_token = rows.int64(r, 8);
      c.lease_expiries = rows.int64(r, 9);
      done.claims.push_back(std::move(c));
    }
  }
  return done;
}

Result<std::vector<AppPause>> PgRelayStore::pauses() {
  if (auto s = ready(); !s) return s.error();
  auto rows = db_.exec("SELECT app_id, reason, since - s, next_probe_at - s, interval_ms FROM metrix_app_pause, "
                       "(SELECT " + std::string(kSkew) + " AS s) skew",
                       {num(now_ms())});
  if (!rows) return failed(rows.error());
  std::vector<AppPause> out;
  for (int r = 0; r < rows->size(); ++r) {
    out.push_back({rows->text(r, 0), rows->text(r, 1), rows->int64(r, 2), rows->int64(r, 3), rows->int64(r, 4)});
  }
  return out;
}

Status PgRelayStore::beat(const Heartbeat& h) {
  if (auto s = ready(); !s) return s.error();
  auto rows = db_.exec(kBeat, {num(h.beat_at), h.relay_id, h.host, num(h.pid), num(h.started_at), num(h.beat_at),
                               num(h.interval_ms), num(h.sent), opt_int(h.last_sent_at), h.windows});
  if (!rows) return failed(rows.error());
  return {};
}

Status PgRelayStore::remove_heartbeat(const std::string& relay_id) {
  if (auto s = ready(); !s) return s.error();
  auto rows = db_.exec("DELETE FROM metrix_relay_heartbeat WHERE relay_id = $1", {relay_id});
  if (!rows) return failed(rows.error());
  return {};
}

Result<std::vector<std::optional<std::string>>> PgRelayStore::active_apps() {
  if (auto s = ready(); !s) return s.error();
  auto rows = db_.exec(kActiveApps);
  if (!rows) return failed(rows.error());
  std::vector<std::optional<std::string>> apps;
  for (int r = 0; r < rows->size(); ++r) apps.push_back(rows->optional_text(r, 0));
  return apps;
}

Result<std::int64_t> PgRelayStore::unfinished_count() {
  if (auto s = ready(); !s) return s.error();
  auto rows = db_.exec("SELECT count(*) FROM metrix_outbox WHERE status IN ('pending', 'sending')");
  if (!rows) return failed(rows.error());
  return rows->int64(0, 0);
}

}  // namespace metrix::pg
