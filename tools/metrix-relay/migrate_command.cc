#include <fmt/format.h>

#include "storage/migrate.h"
#include "storage/postgres/migrate.h"
#include "tools/metrix-relay/cli.h"

namespace metrix::cli {

void add_migrate(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("migrate", "Create the outbox in a database, or upgrade it to this version's schema");
  cmd->footer(
      "The database may be a new file (created readable by its owner only) or the producer's own\n"
      "database: the outbox tables sit beside the application's tables. Running it again is a no-op.\n"
      "A database whose schema is newer than this binary, or was altered, is refused.\n\n"
      "On PostgreSQL (--db postgresql://...) the tables are created in the connection's current\n"
      "schema; runs from several hosts at once are safe (an advisory lock).\n\n"
      "Examples:\n  metrix-relay migrate --db /var/lib/app/app.db\n"
      "  PGPASSWORD=... metrix-relay migrate --db postgresql://app@db.internal/bank");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--db", *path, "SQLite database file (created if missing), or a postgresql:// URI")->required();
  cmd->callback([path, &exit_code] {
    Result<MigrateReport> report = Error{Errc::io, {}};
    if (pg::is_uri(*path)) {
      auto db = pg::Connection::open(*path);
      if (!db) {
        exit_code = fail(db.error());
        return;
      }
      report = pg::migrate(*db);
    } else {
      OpenOptions options;
      options.create = true;
      auto db = Database::open(*path, options);
      if (!db) {
        exit_code = fail(db.error());
        return;
      }
      report = migrate(*db);
    }
    if (!report) {
      exit_code = fail(report.error());
      return;
    }
    if (report->from_version == report->to_version) {
      fmt::print("{}: schema is up to date (version {})\n", pg::redact(*path), report->to_version);
    } else {
      fmt::print("{}: migrated schema from version {} to {}\n", pg::redact(*path), report->from_version,
                 report->to_version);
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
