#include "storage/postgres/check.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

#include "storage/clock.h"
#include "storage/heartbeat.h"
#include "storage/postgres/connection.h"
#include "storage/postgres/migrate.h"
#include "storage/time_text.h"

namespace metrix::pg {

namespace {

using Level = CheckFinding::Level;

// A table of the outbox's, by name, in the current schema (where check_schema found the ledger).
#define METRIX_TABLE(name) "to_regclass(format('%I." name "', current_schema()))"

struct Rule {
  std::string_view trigger;
  std::string_view create;  // how 0002_validation.sql creates it, to put it back
};
constexpr std::array<Rule, 2> kRules{{
    {"metrix_outbox_validate",
     "CREATE TRIGGER metrix_outbox_validate BEFORE INSERT ON metrix_outbox FOR EACH ROW EXECUTE FUNCTION "
     "metrix_outbox_validate()"},
    {"metrix_outbox_payload_immutable",
     "CREATE TRIGGER metrix_outbox_payload_immutable BEFORE UPDATE OF payload, app_id, created_at, event_slug ON "
     "metrix_outbox FOR EACH ROW EXECUTE FUNCTION metrix_outbox_payload_immutable()"},
}};
constexpr std::string_view kStatusCheck = "metrix_outbox_status_check";  // 0001's CHECK, named by PostgreSQL

class Inspection {
 public:
  Inspection(Connection& db, const CheckOptions& options) : db_(db), options_(options) {}

  // Every finding; a schema error ends it early.
  Result<CheckReport> run(std::int64_t now_ms) {
    auto clock = db_.exec("SELECT metrix_now_ms()");
    if (!clock) {
      // Before the schema exists there is no metrix_now_ms(): the schema check says so.
      if (auto s = check_schema(db_); !s) return schema_error(s.error());
      return clock.error();
    }
    at_ = now_ms + (clock->int64(0, 0) - metrix::now_ms());
    if (auto s = check_schema(db_); !s) return schema_error(s.error());
    add(Level::ok, "schema",
        fmt::format("schema version {}, migration checksums match", embedded_pg_migrations().size()));
    for (auto step : {&Inspection::validation, &Inspection::leases, &Inspection::heartbeats,
                      &Inspection::dead_tuples, &Inspection::horizon}) {
      if (auto s = (this->*step)(); !s) return s.error();
    }
    return std::move(report_);
  }

  std::int64_t judged_at() const { return at_; }

 private:
  void add(Level level, std::string check, std::string message, std::string repair = {}) {
    report_.findings.push_back({level, std::move(check), std::move(message), std::move(repair), std::nullopt});
  }

  Result<CheckReport> schema_error(const Error& e) {
    report_.findings.push_back({Level::error, "schema", e.message, {}, e.code});
    return std::move(report_);
  }

  Status validation() {
    auto triggers = db_.exec("SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = " METRIX_TABLE(
        "metrix_outbox") " AND NOT tgisinternal");
    if (!triggers) return triggers.error();
    std::vector<std::string> problems;
    for (const Rule& rule : kRules) {
      std::optional<std::string> enabled;
      for (int r = 0; r < triggers->size(); ++r) {
        if (triggers->text(r, 0) == rule.trigger) enabled = triggers->text(r, 1);
      }
      // 'O' fires in every ordinary session, 'A' in every session; 'R' only where
      // session_replication_role is replica, 'D' never.
      if (!enabled) {
        problems.push_back(fmt::format("trigger {} is missing; put it back with: {}", rule.trigger, rule.create));
      } else if (*enabled == "D" || *enabled == "R") {
        problems.push_back(fmt::format("trigger {} is disabled{}; enable it with: ALTER TABLE metrix_outbox ENABLE "
                                       "TRIGGER {}",
                                       rule.trigger, *enabled == "R" ? " (fires only for replication)" : "",
                                       rule.trigger));
      }
    }
    auto check = db_.exec("SELECT convalidated FROM pg_constraint WHERE conrelid = " METRIX_TABLE(
                              "metrix_outbox") " AND contype = 'c' AND conname = $1",
                          {std::string(kStatusCheck)});
    if (!check) return check.error();
    if (check->size() == 0) {
      problems.push_back(fmt::format("the CHECK on status ({}) is missing; put it back with: ALTER TABLE metrix_outbox "
                                     "ADD CONSTRAINT {} CHECK (status IN ('pending', 'sending', 'sent', 'failed', "
                                     "'dead', 'held'))",
                                     kStatusCheck, kStatusCheck));
    } else if (!check->boolean(0, 0)) {
      problems.push_back(fmt::format("the CHECK on status ({}) is not validated; validate it with: ALTER TABLE "
                                     "metrix_outbox VALIDATE CONSTRAINT {}",
                                     kStatusCheck, kStatusCheck));
    }
    if (problems.empty()) {
      add(Level::ok, "validation", "the validation and immutability triggers are enabled, the CHECK on status holds");
      return {};
    }
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    add(Level::error, "validation",
        message + " (rows written meanwhile were not checked: a relay sends them, Metrix refuses the invalid ones)");
    return {};
  }

  Status leases() {
    auto expired = db_.exec(
        "SELECT count(*) FROM metrix_outbox WHERE status = 'sending' AND next_attempt_at < $1::bigint",
        {std::to_string(at_)});
    if (!expired) return expired.error();
    report_.expired_leases = expired->int64(0, 0);
    if (report_.expired_leases == 0) {
      add(Level::ok, "leases", "no row is stuck in 'sending'");
    } else {
      add(Level::warning, "leases",
          fmt::format("{} rows in 'sending' with an expired lease: a relay stopped before recording their answer; "
                      "a running relay claims them again (they may have reached Metrix)",
                      report_.expired_leases),
          "makes them pending now");
    }
    return {};
  }

  Status heartbeats() {
    auto beats = read_heartbeats(db_, false);
    if (!beats) return beats.error();
    std::string names;
    for (const Heartbeat& h : *beats) {
      if (relay_alive(h, at_)) continue;
      if (++report_.stale_heartbeats <= 5) {
        names += fmt::format("{}{} (last beat {} ago)", names.empty() ? "" : ", ", h.relay_id,
                             describe_duration(at_ - h.beat_at));
      }
    }
    if (report_.stale_heartbeats) {
      add(Level::warning, "heartbeats",
          fmt::format("{} relays stopped without a clean exit (crash or kill): {}{}", report_.stale_heartbeats, names,
                      report_.stale_heartbeats > 5 ? ", ..." : ""),
          "removes their heartbeats");
    } else {
      add(Level::ok, "heartbeats", "no stale relay heartbeat");
    }
    return {};
  }

 public:
  // Every heartbeat row; `lock`: FOR UPDATE, which keeps each row's beat from landing until
  // the transaction ends.
  static Result<std::vector<Heartbeat>> read_heartbeats(Connection& db, bool lock) {
    auto rows = db.exec(std::string("SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, "
                                    "coalesce(windows, '') FROM metrix_relay_heartbeat ORDER BY beat_at DESC") +
                        (lock ? " FOR UPDATE" : ""));
    if (!rows) return rows.error();
    std::vector<Heartbeat> beats;
    for (int r = 0; r < rows->size(); ++r) {
      beats.push_back(Heartbeat{rows->text(r, 0), rows->text(r, 1), rows->int64(r, 2), rows->int64(r, 3),
                                rows->int64(r, 4), rows->int64(r, 5), rows->int64(r, 6), rows->optional_int64(r, 7),
                                rows->text(r, 8)});
    }
    return beats;
  }

 private:
  // Dead row versions: a row of the outbox leaves two behind (its claim and its outcome), and
  // every heartbeat one. Warned about past 10,000 dead and more dead than live versions: by
  // default autovacuum cleans a table once a fifth of it is dead (autovacuum_vacuum_scale_factor
  // 0.2), so a table that is mostly dead is one autovacuum does not keep up with, or cannot
  // clean (see the vacuum horizon); the floor keeps a small queue table, churned between two of
  // autovacuum's rounds a minute apart, from raising it. Autovacuum switched off for an outbox
  // table is warned about as such.
  Status dead_tuples() {
    auto rows = db_.exec(
        "SELECT c.relname, coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0), "
        "  (extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum)) * 1000)::bigint, "
        "  current_setting('autovacuum')::boolean AND coalesce((SELECT option_value::boolean FROM "
        "    pg_options_to_table(c.reloptions) WHERE option_name = 'autovacuum_enabled'), true) "
        "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE c.oid IN (" METRIX_TABLE("metrix_outbox") ", " METRIX_TABLE("metrix_outbox_attempt") ", " METRIX_TABLE(
            "metrix_relay_heartbeat") ", " METRIX_TABLE("metrix_app_pause") ") ORDER BY c.relname");
    if (!rows) return rows.error();
    constexpr std::int64_t kDeadFloor = 10000;
    std::vector<std::string> problems;
    std::string summary;
    for (int r = 0; r < rows->size(); ++r) {
      const std::string table = rows->text(r, 0);
      const std::int64_t live = rows->int64(r, 1), dead = rows->int64(r, 2);
      const auto vacuumed = rows->optional_int64(r, 3);
      report_.dead_tuples += dead;
      const std::string last = vacuumed ? "last vacuumed " + describe_duration(*vacuumed) + " ago" : "never vacuumed";
      if (!rows->boolean(r, 4)) {
        problems.push_back(fmt::format("autovacuum is off for {} ({} dead, {} live row versions); switch it on: ALTER "
                                       "TABLE {} RESET (autovacuum_enabled), and autovacuum = on in postgresql.conf",
                                       table, dead, live, table));
      } else if (dead > kDeadFloor && dead > live) {
        problems.push_back(fmt::format("{} has {} dead and {} live row versions, {}", table, dead, live, last));
      }
      if (table == "metrix_outbox") summary = fmt::format("metrix_outbox: {} dead, {} live, {}", dead, live, last);
    }
    if (problems.empty()) {
      add(Level::ok, "dead tuples", summary);
      return {};
    }
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    add(Level::warning, "dead tuples",
        message + "; scans step over dead versions and the table grows. Run VACUUM (VERBOSE) on it; if this keeps "
                  "coming back, give the outbox tables the autovacuum settings in README.md (\"On PostgreSQL\"), "
                  "and mend any vacuum horizon finding first: vacuum cannot remove what an old snapshot may see");
    return {};
  }

  // The oldest transactions that keep vacuum from removing dead versions of this database's
  // rows: open sessions with a snapshot or a transaction id, prepared transactions, and
  // replication slots (whose xmin a standby's feedback or a consumer that went away holds).
  Status horizon() {
    const std::string max_age = std::to_string(options_.max_xact_age_ms);
    auto sessions = db_.exec(
        "SELECT pid, coalesce(nullif(application_name, ''), backend_type), coalesce(usename, ''), coalesce(state, ''), "
        "  (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint "
        "FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datid IS NULL "
        "  OR datid = 0) AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND xact_start IS NOT NULL "
        "ORDER BY xact_start");
    if (!sessions) return sessions.error();
    // Sessions of other roles whose columns this role may not read. Autovacuum workers are hidden
    // as well but have no role (usesysid is NULL): passing maintenance, which no one is to end.
    auto hidden = db_.exec(
        "SELECT count(*), current_user, quote_ident(current_user) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND datname = current_database() AND usesysid IS NOT NULL "
        "AND query = '<insufficient privilege>'");
    if (!hidden) return hidden.error();
    auto prepared = db_.exec(
        "SELECT gid, owner, (extract(epoch FROM clock_timestamp() - prepared) * 1000)::bigint FROM pg_prepared_xacts "
        "WHERE database = current_database() ORDER BY prepared");
    if (!prepared) return prepared.error();
    auto slots = db_.exec(
        "SELECT slot_name, active, age(xmin), age(catalog_xmin) FROM pg_replication_slots "
        "WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL ORDER BY slot_name");
    if (!slots) return slots.error();

    std::vector<std::string> problems;
    auto oldest = [&](std::int64_t age) { report_.vacuum_horizon_age_ms = std::max(report_.vacuum_horizon_age_ms, age); };
    for (int r = 0; r < sessions->size(); ++r) {
      const std::int64_t age = sessions->int64(r, 4);
      oldest(age);
      if (age <= options_.max_xact_age_ms) continue;
      const std::string pid = sessions->text(r, 0);
      problems.push_back(fmt::format(
          "session pid {} (application {}, user {}, {}) has had a transaction open for {}; end it there (COMMIT or "
          "ROLLBACK), or SELECT pg_terminate_backend({})",
          pid, sessions->text(r, 1), sessions->text(r, 2), sessions->text(r, 3), describe_duration(age), pid));
    }
    for (int r = 0; r < prepared->size(); ++r) {
      const std::int64_t age = prepared->int64(r, 2);
      oldest(age);
      if (age <= options_.max_xact_age_ms) continue;
      const std::string gid = prepared->text(r, 0);
      problems.push_back(fmt::format("prepared transaction '{}' (owner {}) has waited {}; finish it: COMMIT PREPARED "
                                     "'{}' or ROLLBACK PREPARED '{}', as its coordinator decides",
                                     gid, prepared->text(r, 1), describe_duration(age), gid, gid));
    }
    std::vector<std::string> notes;
    for (int r = 0; r < slots->size(); ++r) {
      const std::string slot = slots->text(r, 0);
      const std::string holds =
          slots->null(r, 2) ? fmt::format("catalog_xmin {} transactions old (the catalogs' vacuum, and WAL)",
                                          slots->int64(r, 3))
                            : fmt::format("xmin {} transactions old", slots->int64(r, 2));
      if (slots->boolean(r, 1)) {
        // An active slot's xmin is its standby's oldest query (hot_standby_feedback): no age in time here.
        notes.push_back(fmt::format("active replication slot {} holds {}", slot, holds));
      } else {
        problems.push_back(fmt::format("replication slot {} is not in use and holds {}; if its consumer is gone, "
                                       "SELECT pg_drop_replication_slot('{}')",
                                       slot, holds, slot));
      }
    }
    const std::int64_t invisible = hidden->int64(0, 0);
    if (invisible > 0) {
      problems.push_back(fmt::format("role {} cannot see {} {} of other roles, so cannot tell whether {} back "
                                     "vacuum; GRANT pg_read_all_stats TO {} (or check as a superuser)",
                                     hidden->text(0, 1), invisible, invisible == 1 ? "session" : "sessions",
                                     invisible == 1 ? "it holds" : "they hold", hidden->text(0, 2)));
    }
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    for (const auto& n : notes) message += (message.empty() ? "" : "; ") + n;
    if (problems.empty()) {
      add(Level::ok, "vacuum horizon",
          fmt::format("no transaction has held back vacuum for more than {}{}{}",
                      describe_duration(options_.max_xact_age_ms), message.empty() ? "" : "; ", message));
    } else {
      add(Level::warning, "vacuum horizon",
          message + " (vacuum keeps every row version dead since the oldest of these began, and the outbox "
                    "tables grow; raise --max-xact-age if such transactions are expected)");
    }
    return {};
  }

  Connection& db_;
  const CheckOptions& options_;
  CheckReport report_;
  std::int64_t at_ = 0;
};

}  // namespace

Result<CheckReport> check_outbox(const std::string& uri, std::int64_t now_ms, const CheckOptions& options) {
  auto db = Connection::open(uri);
  if (!db) return db.error();
  return Inspection(*db, options).run(now_ms);
}

Result<CheckReport> repair_outbox(const std::string& uri, std::int64_t now_ms, const CheckOptions& options) {
  auto db = Connection::open(uri);
  if (!db) return db.error();
  Inspection inspection(*db, options);
  auto report = inspection.run(now_ms);
  if (!report) return report.error();
  for (const auto& f : report->findings) {
    if (f.level == Level::error) return report;  // the schema or its rules are not as made: touch nothing
  }
  const std::string at = std::to_string(inspection.judged_at());
  auto tx = Transaction::begin(*db);
  if (!tx) return tx.error();
  // A lease that expired with no answer, like one a relay finds when it claims the row: it
  // counts towards the row's poison limit.
  auto released = db->exec(
      "UPDATE metrix_outbox SET status = 'pending', next_attempt_at = $1::bigint, lease_expiries = lease_expiries + 1, "
      " last_error = $2 WHERE status = 'sending' AND next_attempt_at < $1::bigint",
      {at, std::string(kLeaseReleasedByRepair)});
  if (!released) return released.error();
  report->released_leases = released->affected();
  auto beats = Inspection::read_heartbeats(*db, true);
  if (!beats) return beats.error();
  for (const Heartbeat& h : *beats) {
    if (relay_alive(h, inspection.judged_at())) continue;
    auto removed = db->exec("DELETE FROM metrix_relay_heartbeat WHERE relay_id = $1 AND beat_at = $2::bigint",
                            {h.relay_id, std::to_string(h.beat_at)});
    if (!removed) return removed.error();
    report->removed_heartbeats += removed->affected();
  }
  if (auto s = tx->commit(); !s) return s.error();
  report->repaired = true;
  return report;
}

}  // namespace metrix::pg
