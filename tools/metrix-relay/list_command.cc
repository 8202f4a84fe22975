#include <fmt/format.h>

#include "storage/rows.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/operator_args.h"
#include "tools/metrix-relay/output.h"

namespace metrix::cli {

void add_list(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("list", "List outbox rows by status, app, slug, error, creation time or id");
  cmd->footer(
      "Rows are listed in id order (oldest first), at most --limit of them; a note on stderr says when\n"
      "more rows match. Filters combine: a row is listed when it matches all of them. Times are UTC.\n"
      "--json and --csv print the contract's columns (times in ms since the epoch) and the payload.\n"
      "Exit codes: 0 ok (also when nothing matches), 1 the database failed, 2 bad options.\n\n"
      "Examples:\n"
      "  metrix-relay list --db app.db --status failed,dead\n"
      "  metrix-relay list --db app.db --error EVENT_TYPE_DOES_NOT_EXIST --since 24h\n"
      "  metrix-relay list --db app.db --app-id my-app --since 2026-11-25 --until 2026-11-26 --csv > day.csv\n"
      "  metrix-relay list --db app.db --id 100-200 --json | jq '.[].last_error'");
  struct Args {
    std::string db;
    FilterFlags filter;
    std::int64_t limit = 100;
    bool json = false, csv = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  add_filter_flags(*cmd, a->filter);
  cmd->add_option("--limit", a->limit, "at most this many rows; 0 for all (default 100)")->check(whole_number(0));
  add_format_flags(*cmd, a->json, &a->csv);
  cmd->callback([a, &exit_code] {
    std::int64_t now = now_ms();
    auto filter = to_filter(a->filter, now);
    if (!filter) return void(exit_code = fail(filter.error()));
    auto store = open_store_to_read(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    // One more than the limit tells whether rows were left out.
    auto rows = (*store)->list_rows(*filter, a->limit > 0 ? a->limit + 1 : 0);
    if (!rows) return void(exit_code = fail(rows.error()));
    bool more = a->limit > 0 && static_cast<std::int64_t>(rows->size()) > a->limit;
    if (more) rows->pop_back();
    if (a->json) {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const auto& r : *rows) out.push_back(row_json(r));
      print_json(out);
    } else if (a->csv) {
      print_csv_row(stdout, row_csv_header());
      for (const auto& r : *rows) print_csv_row(stdout, row_csv(r));
    } else if (rows->empty()) {
      fmt::print("no rows match\n");
    } else {
      rows_table(*rows).print(stdout);
    }
    if (more) {
      auto total = (*store)->count_rows(*filter);
      fmt::print(stderr, "metrix-relay: showing the first {} of {} matching rows; use --limit N (0 for all)\n", a->limit,
                 total ? std::to_string(*total) : "more");
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
