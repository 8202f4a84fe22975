#include <fmt/format.h>

#include "storage/migrate.h"
#include "tools/metrix-relay/cli.h"

namespace metrix::cli {

void add_migrate(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("migrate", "Create the outbox in a database, or upgrade it to this version's schema");
  cmd->footer(
      "The database may be a new file (created readable by its owner only) or the producer's own\n"
      "database: the outbox tables sit beside the application's tables. Running it again is a no-op.\n"
      "A database whose schema is newer than this binary, or was altered, is refused.\n\n"
      "Example:\n  metrix-relay migrate --db /var/lib/app/app.db");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--db", *path, "SQLite database file (created if missing)")->required();
  cmd->callback([path, &exit_code] {
    OpenOptions options;
    options.create = true;
    auto db = Database::open(*path, options);
    if (!db) {
      exit_code = fail(db.error());
      return;
    }
    auto report = migrate(*db);
    if (!report) {
      exit_code = fail(report.error());
      return;
    }
    if (report->from_version == report->to_version) {
      fmt::print("{}: schema is up to date (version {})\n", *path, report->to_version);
    } else {
      fmt::print("{}: migrated schema from version {} to {}\n", *path, report->from_version, report->to_version);
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
