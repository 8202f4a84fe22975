#include "storage/check.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include "storage/heartbeat.h"
#include "storage/migrate.h"

namespace metrix {

bool CheckReport::healthy() const {
  for (const auto& f : findings) {
    if (f.level != CheckFinding::Level::ok) return false;
  }
  return true;
}

namespace {

using Level = CheckFinding::Level;

Result<std::int64_t> count(Database& db, std::string_view sql, std::int64_t now) {
  auto stmt = db.prepare(sql);
  if (!stmt) return stmt.error();
  if (sql.find("?1") != std::string_view::npos) stmt->bind(1, now);
  auto row = stmt->step();
  if (!row) return row.error();
  return *row ? stmt->int64(0) : 0;
}

// The checks proper, on an open connection.
Result<CheckReport> inspect(Database& db, const std::string& path, bool quick, std::int64_t now) {
  CheckReport report;
  auto add = [&](Level level, std::string check, std::string message, std::string repair = {},
                 std::optional<Errc> error = std::nullopt) {
    report.findings.push_back({level, std::move(check), std::move(message), std::move(repair), error});
  };

  auto integrity = db.prepare(quick ? "PRAGMA quick_check" : "PRAGMA integrity_check");
  if (!integrity) return integrity.error();
  std::string problems;
  int lines = 0;
  for (;;) {
    auto row = integrity->step();
    if (!row) {
      add(Level::error, "integrity", row.error().message);
      return report;
    }
    if (!*row) break;
    std::string line = integrity->text(0);
    if (line == "ok") continue;
    if (++lines <= 5) problems += (problems.empty() ? "" : "; ") + line;
  }
  if (lines == 0) {
    add(Level::ok, "integrity", quick ? "quick_check: ok" : "integrity_check: ok");
  } else {
    add(Level::error, "integrity",
        // Not .recover: SQLite 3.40's fails on a table with a generated column (event_slug).
        // umask: the copy holds the same events, readable by its owner only, as migrate makes it.
        fmt::format("{} problems ({}{}); restore from a backup, or copy what is readable into a new file "
                    "with '(umask 077; sqlite3 {} .dump | sqlite3 {}.recovered)', check that, and put it "
                    "in place while no relay or producer has the database open",
                    lines, problems, lines > 5 ? "; ..." : "", path, path));
    return report;  // nothing else can be trusted
  }

  if (auto s = check_schema(db); !s) {
    add(Level::error, "schema", s.error().message, {}, s.error().code);
    return report;
  }
  add(Level::ok, "schema", fmt::format("schema version {}, migration checksums match, every table, index, trigger "
                                      "and view present as created", latest_schema_version()));

  auto expired = count(db, "SELECT count(*) FROM metrix_outbox WHERE status = 'sending' AND next_attempt_at < ?1", now);
  if (!expired) return expired.error();
  report.expired_leases = *expired;
  if (*expired == 0) {
    add(Level::ok, "leases", "no row is stuck in 'sending'");
  } else {
    add(Level::warning, "leases",
        fmt::format("{} rows in 'sending' with an expired lease: a relay stopped before recording their answer; "
                    "a running relay claims them again (they may have reached Metrix)",
                    *expired),
        "makes them pending now");
  }

  auto heartbeats = read_heartbeats(db);
  if (!heartbeats) return heartbeats.error();
  for (const Heartbeat& h : *heartbeats) report.stale_heartbeats += relay_alive(h, now) ? 0 : 1;
  if (report.stale_heartbeats) {
    add(Level::warning, "heartbeats",
        fmt::format("{} relays stopped without a clean exit (crash or kill)", report.stale_heartbeats),
        "removes their heartbeats");
  } else {
    add(Level::ok, "heartbeats", "no stale relay heartbeat");
  }

  struct stat st {};
  report.wal_bytes = stat((path + "-wal").c_str(), &st) == 0 ? st.st_size : 0;
  constexpr std::int64_t kLargeWal = 64LL * 1024 * 1024;
  if (report.wal_bytes > kLargeWal) {
    add(Level::warning, "wal",
        fmt::format("the WAL is {} MiB: a long-running reader keeps it from being checkpointed",
                    report.wal_bytes / (1024 * 1024)),
        "checkpoints and truncates it");
  } else {
    add(Level::ok, "wal", fmt::format("WAL size {} KiB", report.wal_bytes / 1024));
  }
  return report;
}

}  // namespace

Result<CheckReport> check_outbox(const std::string& path, bool quick, std::int64_t now) {
  OpenOptions options;
  options.read_only = true;
  auto db = Database::open(path, options);
  if (!db) return db.error();
  return inspect(*db, path, quick, now);
}

Result<CheckReport> repair_outbox(const std::string& path, std::int64_t now) {
  auto db = Database::open(path);
  if (!db) return db.error();
  auto report = inspect(*db, path, false, now);
  if (!report) return report.error();
  for (const auto& f : report->findings) {
    if (f.level == Level::error) return report;  // damaged: repair nothing
  }
  {
    auto tx = Transaction::begin(db->handle());
    if (!tx) return tx.error();
    auto release = db->prepare(
        // A lease that expired with no answer, like one a relay finds when it claims the row:
        // it counts towards the row's poison limit.
        "UPDATE metrix_outbox SET status = 'pending', next_attempt_at = ?1, lease_expiries = lease_expiries + 1, "
        " last_error = ?2 WHERE status = 'sending' AND next_attempt_at < ?1");
    if (!release) return release.error();
    release->bind(1, now);
    release->bind(2, std::string_view(kLeaseReleasedByRepair));
    if (auto s = release->run(); !s) return s.error();
    report->released_leases = sqlite3_changes(db->handle());
    auto removed = remove_stale_heartbeats(*db, now);
    if (!removed) return removed.error();
    report->removed_heartbeats = *removed;
    if (auto s = tx->commit(); !s) return s.error();
  }
  // Its first column is 1 when a reader kept the checkpoint from finishing.
  auto checkpoint = db->prepare("PRAGMA wal_checkpoint(TRUNCATE)");
  if (!checkpoint) return checkpoint.error();
  auto row = checkpoint->step();
  if (!row) return row.error();
  report->wal_truncated = *row && checkpoint->int64(0) == 0;
  report->repaired = true;
  return report;
}

}  // namespace metrix
