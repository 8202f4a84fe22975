#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "storage/check.h"
#include "tools/metrix-relay/cli.h"
#include "relay/remedy.h"

namespace metrix::cli {

void add_check(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("check", "Check the outbox database (fsck): integrity, schema, stuck rows, WAL");
  cmd->footer(
      "Read-only unless --repair is given. Checks PRAGMA integrity_check (--quick: quick_check), the\n"
      "schema version and migration checksums, rows stuck in 'sending' whose lease expired, relays\n"
      "that stopped without a clean exit (a heartbeat older than status allows a running relay:\n"
      "three of its intervals, at least 3s), and the WAL size.\n"
      "--repair, only on a database whose integrity and schema are fine: expired leases go back to\n"
      "'pending', stale heartbeats are removed, the WAL is checkpointed and truncated.\n"
      "Exit codes: 0 healthy, 1 findings (or the database cannot be read), 2 usage error.\n\n"
      "Examples:\n  metrix-relay check --db app.db\n  metrix-relay check --db app.db --repair --json");
  struct Args {
    std::string db;
    bool quick = false, repair = false, json = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "outbox database")->required();
  cmd->add_flag("--quick", args->quick, "PRAGMA quick_check instead of the full integrity_check");
  cmd->add_flag("--repair", args->repair, "repair what can be repaired safely (see above)");
  cmd->add_flag("--json", args->json, "machine-readable output");
  cmd->callback([args, &exit_code] {
    if (pg::is_uri(args->db)) {
      exit_code = fail(not_on_postgresql(args->db));
      return;
    }
    auto report = args->repair ? repair_outbox(args->db, now_ms()) : check_outbox(args->db, args->quick, now_ms());
    if (!report) {
      exit_code = fail(with_remedy(report.error(), args->db));
      return;
    }
    auto level_name = [](CheckFinding::Level l) {
      return l == CheckFinding::Level::ok ? "ok" : l == CheckFinding::Level::warning ? "warning" : "error";
    };
    // Storage says what a repair would do, or which error it found; the command names the flag
    // or the command that mends it.
    auto says = [&](const CheckFinding& f) {
      if (f.error) return with_remedy(Error{*f.error, f.message}, args->db).message;
      return f.repair.empty() ? f.message : f.message + "; --repair " + f.repair;
    };
    if (args->json) {
      nlohmann::json out = {{"healthy", report->healthy()},        {"repaired", report->repaired},
                            {"expired_leases", report->expired_leases}, {"stale_heartbeats", report->stale_heartbeats},
                            {"released_leases", report->released_leases},
                            {"removed_heartbeats", report->removed_heartbeats},
                            {"wal_truncated", report->wal_truncated},
                            {"wal_bytes", report->wal_bytes},      {"findings", nlohmann::json::array()}};
      for (const auto& f : report->findings) {
        out["findings"].push_back({{"level", level_name(f.level)}, {"check", f.check}, {"message", says(f)}});
      }
      fmt::print("{}\n", out.dump(2));
    } else {
      for (const auto& f : report->findings) fmt::print("{:<8} {:<11} {}\n", level_name(f.level), f.check, says(f));
      if (report->repaired) {
        fmt::print("repaired: {} expired leases released, {} stale heartbeats removed, {}\n", report->released_leases,
                   report->removed_heartbeats,
                   report->wal_truncated ? "WAL checkpointed and truncated"
                                         : "WAL not truncated: another connection is still reading it");
      }
    }
    // After a repair, what was found is fixed unless it was an error.
    bool healthy = report->healthy();
    if (report->repaired) {
      healthy = true;
      for (const auto& f : report->findings) healthy &= f.level != CheckFinding::Level::error;
    }
    exit_code = healthy ? kOk : kRuntimeFailure;
  });
}

}  // namespace metrix::cli
