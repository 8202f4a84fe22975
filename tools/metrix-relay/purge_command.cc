#include <fmt/format.h>
#include <unistd.h>

#include <map>

#include "relay/config.h"
#include "storage/repair.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/output.h"
#include "tools/metrix-relay/status_flag.h"

namespace metrix::cli {

namespace {

// Rows by status name, in the order of the names (as printed and in --json).
std::map<std::string, std::int64_t> by_name(const PurgeCounts& c) {
  std::map<std::string, std::int64_t> rows;
  for (const auto& [status, n] : c.rows) rows[row_status_name(status)] = n;
  return rows;
}

std::string describe_counts(const PurgeCounts& c) {
  std::string by_status;
  for (const auto& [status, n] : by_name(c)) {
    by_status += fmt::format("{}{} {}", by_status.empty() ? "" : ", ", status, n);
  }
  return fmt::format("{} rows ({}) and {} attempts", c.total_rows(), by_status, c.attempts);
}

std::string megabytes(std::int64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

// A PostgreSQL outbox has no pages of its own to report: what VACUUM did, and what the tables
// take on disk (PostgreSQL keeps its files at their size and reuses the space inside them).
void print_postgresql(const PurgeCounts& done, const SpaceReport& space, const std::string& older_than,
                      std::int64_t cutoff, bool json) {
  if (json) {
    print_json({{"cutoff", cutoff},
                {"rows", by_name(done)},
                {"attempts", done.attempts},
                {"vacuumed", space.vacuumed},
                {"table_bytes", space.table_bytes},
                {"index_bytes", space.index_bytes}});
    return;
  }
  fmt::print("deleted {} older than {} ({})\n", describe_counts(done), older_than, short_time(cutoff));
  const std::string sizes = fmt::format("the tables take {} and their indexes {}", megabytes(space.table_bytes),
                                        megabytes(space.index_bytes));
  if (space.vacuumed) {
    fmt::print("space: vacuumed: the deleted rows' space is reused by new rows; {} (VACUUM FULL shrinks the "
               "files, but locks producers and relays out while it runs)\n",
               sizes);
  } else {
    fmt::print("space: not vacuumed (only the tables' owner may VACUUM them): autovacuum makes the deleted rows' "
               "space reusable; {}\n",
               sizes);
  }
}

}  // namespace

void add_purge(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("purge", "Delete delivered rows (and their attempts) older than a retention period");
  cmd->footer(
      "By default only 'sent' rows whose sent_at is older than --older-than are deleted, with their\n"
      "metrix_outbox_attempt rows. failed, dead and held rows are deleted only when named with --status\n"
      "(their age is counted from created_at). pending and sending rows are never deleted: they are\n"
      "events not yet delivered, and deleting one would lose it silently; requeue, or let the relay\n"
      "finish them. Row ids are never reused after a purge.\n\n"
      "Rows go 5,000 per transaction with a pause between transactions, so producers and the relay\n"
      "keep writing while a large purge runs. Space: deleted pages are reused by new rows inside the\n"
      "file. Afterwards the WAL is checkpointed and truncated; if the database was created with\n"
      "PRAGMA auto_vacuum=INCREMENTAL, free pages are also returned to the file system. To shrink any\n"
      "other file, run 'VACUUM' with sqlite3 in a quiet moment: it locks the database while it runs.\n"
      "On PostgreSQL (--db postgresql://...), the tables are then vacuumed (VACUUM (ANALYZE), which\n"
      "blocks no writer) if this role owns them: the space is reused by new rows, the files keep their size.\n"
      "Exit codes: 0 ok, 1 the database failed (the chunks deleted so far stay deleted; run it again),\n"
      "2 bad options.\n\n"
      "Examples:\n"
      "  metrix-relay purge --db app.db --older-than 90d --dry-run\n"
      "  metrix-relay purge --db app.db --older-than 90d\n"
      "  metrix-relay purge --db app.db --older-than 30d --status sent,failed,dead");
  struct Args {
    std::string db, older_than;
    std::vector<std::string> statuses;
    bool dry_run = false, json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  cmd->add_option("--older-than", a->older_than, "retention: rows older than this go, e.g. 90d, 720h")->required();
  cmd->add_option("--status", a->statuses, "statuses to purge (default sent): sent, failed, dead, held")->delimiter(',');
  cmd->add_flag("--dry-run", a->dry_run, "delete nothing; print what would be deleted");
  add_format_flags(*cmd, a->json, nullptr);
  cmd->callback([a, &exit_code] {
    auto age = parse_duration_ms(a->older_than);
    if (!age) return void(exit_code = fail(Error{Errc::invalid_argument, "--older-than: " + age.error().message}));
    PurgeOptions options;
    if (!a->statuses.empty()) {
      auto statuses = parse_status_flag(a->statuses);
      if (!statuses) return void(exit_code = fail(statuses.error()));
      options.statuses = std::move(*statuses);
    }
    // The rule is storage's (purge_may_delete); these words name the way out.
    for (RowStatus s : options.statuses) {
      if (purge_may_delete(s)) continue;
      return void(exit_code = fail(Error{
                      Errc::invalid_argument,
                      fmt::format("--status {}: purge never deletes an undelivered event on its way to Metrix (pending "
                                  "or sending); requeue or let the relay finish it",
                                  row_status_name(s))}));
    }
    options.cutoff = now_ms() - *age;
    auto store = open_store(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    if (a->dry_run) {
      auto preview = (*store)->purge_preview(options);
      if (!preview) return void(exit_code = fail(preview.error()));
      if (a->json) {
        print_json({{"dry_run", true}, {"cutoff", options.cutoff}, {"rows", by_name(*preview)},
                    {"attempts", preview->attempts}});
      } else {
        fmt::print("dry run: would delete {} older than {} ({})\n", describe_counts(*preview), a->older_than,
                   short_time(options.cutoff));
      }
      return void(exit_code = kOk);
    }
    bool tty = isatty(STDERR_FILENO) && !a->json;
    auto done = (*store)->purge(options, [&](const PurgeCounts& so_far) {
      if (tty) fmt::print(stderr, "\rpurging: {} rows deleted", so_far.total_rows());
    });
    if (tty) fmt::print(stderr, "\n");
    if (!done) return void(exit_code = fail(done.error()));
    auto space = (*store)->reclaim_space();
    if (!space) return void(exit_code = fail(space.error()));
    if (space->postgresql) {
      print_postgresql(*done, *space, a->older_than, options.cutoff, a->json);
      return void(exit_code = kOk);
    }
    if (a->json) {
      print_json({{"cutoff", options.cutoff},
                  {"rows", by_name(*done)},
                  {"attempts", done->attempts},
                  {"free_pages", space->free_pages},
                  {"page_size", space->page_size},
                  {"file_pages", space->page_count},
                  {"incremental_vacuum", space->incremental_vacuum},
                  {"wal_truncated", space->wal_truncated}});
    } else {
      fmt::print("deleted {} older than {} ({})\n", describe_counts(*done), a->older_than, short_time(options.cutoff));
      if (space->incremental_vacuum) {
        fmt::print("space: free pages returned to the file system; the file is {}\n",
                   megabytes(space->page_count * space->page_size));
      } else {
        fmt::print("space: {} free inside the {} file, reused by new rows (VACUUM shrinks the file)\n",
                   megabytes(space->free_pages * space->page_size), megabytes(space->page_count * space->page_size));
      }
      if (!space->wal_truncated) fmt::print("the WAL could not be truncated now (a reader holds it); it will be reused\n");
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
