#include "storage/postgres/migrate.h"

#include <fmt/format.h>

namespace metrix::pg {

namespace {

// pg_advisory_xact_lock's key: any constant the relay's own code uses for nothing else.
constexpr std::string_view kMigrateLock = "SELECT pg_advisory_xact_lock(7346148220713829)";

constexpr std::string_view kCreateLedger =
    "CREATE TABLE IF NOT EXISTS metrix_schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at bigint NOT NULL)";

// The ledger in the current schema, if there is one: the version applied so far, or why this
// binary must not touch the schema.
Result<int> verify_applied(Connection& db) {
  // In the current schema only: an outbox in a later schema of the search_path is another one.
  auto exists = db.exec("SELECT to_regclass(format('%I.metrix_schema_migrations', current_schema())) IS NOT NULL");
  if (!exists) return exists.error();
  if (!exists->boolean(0, 0)) return 0;
  auto rows = db.exec("SELECT version, name, checksum FROM metrix_schema_migrations ORDER BY version");
  if (!rows) return rows.error();
  const auto& known = embedded_pg_migrations();
  int current = 0;
  for (int r = 0; r < rows->size(); ++r) {
    const int version = static_cast<int>(rows->int64(r, 0));
    if (auto s = check_applied(db.name(), known, version, rows->text(r, 1), rows->text(r, 2)); !s) return s.error();
    current = version;
  }
  return current;
}

}  // namespace

Result<MigrateReport> migrate(Connection& db) {
  // Any return before the commit rolls the whole run back.
  auto tx = Transaction::begin(db);
  if (!tx) return tx.error();
  if (auto s = db.exec(kMigrateLock); !s) return s.error();
  auto from = verify_applied(db);
  if (!from) return from.error();
  MigrateReport report{*from, *from};
  const auto& known = embedded_pg_migrations();
  if (*from < static_cast<int>(known.size())) {
    if (auto s = db.exec(kCreateLedger); !s) return s.error();
  }
  for (auto v = static_cast<std::size_t>(*from); v < known.size(); ++v) {
    const Migration& m = known[v];
    if (auto s = db.exec_script(m.sql); !s) {
      return Error{s.error().code, fmt::format("migration {} ({}): {}", m.version, m.name, s.error().message)};
    }
    auto s = db.exec(
        "INSERT INTO metrix_schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, metrix_now_ms())",
        {std::to_string(m.version), std::string(m.name), std::string(m.checksum)});
    if (!s) return s.error();
    report.to_version = m.version;
  }
  if (auto s = tx->commit(); !s) return s.error();
  return report;
}

Status check_schema(Connection& db) {
  auto applied = verify_applied(db);
  if (!applied) return applied.error();
  const int latest = static_cast<int>(embedded_pg_migrations().size());
  if (*applied == 0) {
    return Error{Errc::no_outbox, fmt::format("{}: no outbox schema here (looked for metrix_schema_migrations in the "
                                              "current search_path)", db.name())};
  }
  if (*applied < latest) {
    return Error{Errc::old_schema, fmt::format("{}: the outbox schema is version {}, this metrix-relay needs {}",
                                               db.name(), *applied, latest)};
  }
  return {};
}

}  // namespace metrix::pg
