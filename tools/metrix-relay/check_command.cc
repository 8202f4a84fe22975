#include <fmt/format.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "relay/config.h"
#include "relay/remedy.h"
#include "storage/check.h"
#include "storage/postgres/check.h"
#include "tools/metrix-relay/cli.h"

namespace metrix::cli {

void add_check(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("check", "Check the outbox database (fsck): integrity, schema, stuck rows, WAL");
  cmd->footer(
      "Read-only unless --repair is given. Checks PRAGMA integrity_check (--quick: quick_check), the\n"
      "schema version and migration checksums, rows stuck in 'sending' whose lease expired, relays\n"
      "that stopped without a clean exit (a heartbeat older than status allows a running relay:\n"
      "three of its intervals, at least 3s), and the WAL size.\n"
      "--repair, only on a database whose integrity and schema are fine: expired leases go back to\n"
      "'pending', stale heartbeats are removed, the WAL is checkpointed and truncated.\n\n"
      "On PostgreSQL (--db postgresql://...) there is no integrity_check and no WAL of the outbox's\n"
      "own: the server checks its pages (data checksums, amcheck) and --quick changes nothing. It\n"
      "checks the schema, the validation triggers and the CHECK on status (disabled: an error),\n"
      "expired leases, stale heartbeats, dead row versions of the outbox tables (more dead than live,\n"
      "past 10,000, or autovacuum off), and the vacuum horizon: sessions and prepared transactions\n"
      "open longer than --max-xact-age, and unused replication slots, that keep vacuum from removing\n"
      "dead rows. Other roles' sessions need pg_read_all_stats to be seen. --repair releases leases\n"
      "and removes stale heartbeats as on SQLite, in one transaction.\n"
      "Exit codes: 0 healthy, 1 findings (or the database cannot be read), 2 usage error.\n\n"
      "Examples:\n  metrix-relay check --db app.db\n  metrix-relay check --db app.db --repair --json\n"
      "  metrix-relay check --db postgresql://relay@db1/app --max-xact-age 30m");
  struct Args {
    std::string db;
    bool quick = false, repair = false, json = false;
    std::string max_xact_age = "5m";
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "outbox database")->required();
  cmd->add_flag("--quick", args->quick, "PRAGMA quick_check instead of the full integrity_check (SQLite only)");
  cmd->add_flag("--repair", args->repair, "repair what can be repaired safely (see above)");
  cmd->add_flag("--json", args->json, "machine-readable output");
  cmd->add_option("--max-xact-age", args->max_xact_age,
                  "PostgreSQL only: a transaction open longer holds back vacuum (default 5m; raise it where "
                  "long reports or backups are expected)");
  cmd->callback([args, &exit_code] {
    const bool postgres = pg::is_uri(args->db);
    pg::CheckOptions options;
    auto max_age = parse_duration_ms(args->max_xact_age);
    if (!max_age) {
      exit_code = fail(Error{Errc::invalid_argument, "--max-xact-age: " + max_age.error().message});
      return;
    }
    options.max_xact_age_ms = *max_age;
    auto report = postgres      ? (args->repair ? pg::repair_outbox(args->db, now_ms(), options)
                                                : pg::check_outbox(args->db, now_ms(), options))
                  : args->repair ? repair_outbox(args->db, now_ms())
                                 : check_outbox(args->db, args->quick, now_ms());
    const std::string db_name = postgres ? pg::redact(args->db) : args->db;
    if (!report) {
      exit_code = fail(with_remedy(report.error(), db_name));
      return;
    }
    auto level_name = [](CheckFinding::Level l) {
      return l == CheckFinding::Level::ok ? "ok" : l == CheckFinding::Level::warning ? "warning" : "error";
    };
    // Storage says what a repair would do, or which error it found; the command names the flag
    // or the command that mends it.
    auto says = [&](const CheckFinding& f) {
      if (f.error) return with_remedy(Error{*f.error, f.message}, db_name).message;
      return f.repair.empty() ? f.message : f.message + "; --repair " + f.repair;
    };
    if (args->json) {
      nlohmann::json out = {{"healthy", report->healthy()},        {"repaired", report->repaired},
                            {"expired_leases", report->expired_leases}, {"stale_heartbeats", report->stale_heartbeats},
                            {"released_leases", report->released_leases},
                            {"removed_heartbeats", report->removed_heartbeats},
                            {"wal_truncated", report->wal_truncated},
                            {"wal_bytes", report->wal_bytes},
                            {"dead_tuples", report->dead_tuples},
                            {"vacuum_horizon_age_ms", report->vacuum_horizon_age_ms},
                            {"findings", nlohmann::json::array()}};
      for (const auto& f : report->findings) {
        out["findings"].push_back({{"level", level_name(f.level)}, {"check", f.check}, {"message", says(f)}});
      }
      fmt::print("{}\n", out.dump(2));
    } else {
      // One column for the check's name, as wide as the longest ("vacuum horizon" on PostgreSQL).
      std::size_t width = 11;
      for (const auto& f : report->findings) width = std::max(width, f.check.size());
      for (const auto& f : report->findings) {
        fmt::print("{:<8} {:<{}} {}\n", level_name(f.level), f.check, width, says(f));
      }
      if (report->repaired && postgres) {
        fmt::print("repaired: {} expired leases released, {} stale heartbeats removed\n", report->released_leases,
                   report->removed_heartbeats);
      } else if (report->repaired) {
        fmt::print("repaired: {} expired leases released, {} stale heartbeats removed, {}\n", report->released_leases,
                   report->removed_heartbeats,
                   report->wal_truncated ? "WAL checkpointed and truncated"
                                         : "WAL not truncated: another connection is still reading it");
      }
    }
    // After a repair, what was found is fixed unless it was an error or nothing a repair mends
    // (on PostgreSQL: dead tuples, the vacuum horizon).
    bool healthy = report->healthy();
    if (report->repaired) {
      healthy = true;
      for (const auto& f : report->findings) {
        healthy &= f.level == CheckFinding::Level::ok || (f.level == CheckFinding::Level::warning && !f.repair.empty());
      }
    }
    exit_code = healthy ? kOk : kRuntimeFailure;
  });
}

}  // namespace metrix::cli
