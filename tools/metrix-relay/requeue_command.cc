#include <fmt/format.h>

#include "storage/repair.h"
#include "storage/rows.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/operator_args.h"
#include "tools/metrix-relay/output.h"

namespace metrix::cli {

void add_requeue(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("requeue", "Send failed, dead or held rows again, once the cause is fixed");
  cmd->footer(
      "Matching rows become 'pending' and due now; a running relay picks them up at once (or start one).\n"
      "Only failed, dead and held rows are requeued (--status narrows that); sent rows only with\n"
      "--include-sent, a deliberate re-send that Metrix counts again; pending and sending rows never.\n"
      "The attempts count, last_error and the whole attempt history are kept: the next attempt is\n"
      "numbered after the last one. A row that had used up --max-attempts gets one more attempt; a\n"
      "row dead as 'stale' (older than the relay's --max-age) is dead again at once unless the relay\n"
      "runs with a larger --max-age.\n"
      "Rows are selected by ids and/or the filters (all must match); at least one is required.\n"
      "Work is done 1,000 rows per transaction, so producers are never blocked for long.\n"
      "Prints how many rows changed. --dry-run changes nothing and lists what would change.\n"
      "Exit codes: 0 ok (also when nothing matched: a note on stderr says why), 1 the database failed,\n"
      "2 bad options.\n\n"
      "Examples:\n"
      "  # the slug was missing in the Metrix panel; it is defined now:\n"
      "  metrix-relay requeue --db app.db --error EVENT_TYPE_DOES_NOT_EXIST --slug purchase --dry-run\n"
      "  metrix-relay requeue --db app.db --error EVENT_TYPE_DOES_NOT_EXIST --slug purchase\n"
      "  metrix-relay requeue --db app.db --status held --since 2026-11-25\n"
      "  metrix-relay requeue --db app.db 17 18 40-45\n"
      "  metrix-relay requeue --db app.db --include-sent 1234    # send a delivered event again");
  struct Args {
    std::string db;
    FilterFlags filter;
    std::vector<std::string> ids;
    bool include_sent = false, dry_run = false, json = false;
    std::int64_t limit = 100;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  cmd->add_option("ids", a->ids, "row ids or ranges: 42, 10-20, 5,7,10-20");
  add_filter_flags(*cmd, a->filter);
  cmd->add_flag("--include-sent", a->include_sent, "also requeue sent rows (a deliberate re-send)");
  cmd->add_flag("--dry-run", a->dry_run, "change nothing; print how many rows and which ones would be requeued");
  cmd->add_option("--limit", a->limit, "--dry-run lists at most this many rows (default 100; 0 for all)")
      ->check(whole_number(0));
  add_format_flags(*cmd, a->json, nullptr);
  cmd->callback([a, &exit_code] {
    std::int64_t now = now_ms();
    FilterFlags flags = a->filter;
    flags.ids.insert(flags.ids.end(), a->ids.begin(), a->ids.end());
    if (!narrows(flags)) {
      return void(exit_code = fail(Error{Errc::invalid_argument,
                                         "say which rows: ids, --id, --status, --error, --slug, --app-id, --since or "
                                         "--until (e.g. --status failed,dead,held for all of them)"}));
    }
    auto filter = to_filter(flags, now);
    if (!filter) return void(exit_code = fail(filter.error()));
    // The rule is storage's (requeue_may_change); these words name the flags.
    for (RowStatus s : filter->statuses) {
      if (requeue_may_change(s, a->include_sent)) continue;
      return void(exit_code = fail(Error{
                      Errc::invalid_argument,
                      s == RowStatus::sent
                          ? "--status sent: sent rows are requeued only with --include-sent (a deliberate re-send: "
                            "Metrix receives the event again)"
                          : fmt::format("--status {}: requeue never touches pending or sending rows (they are on their "
                                        "way already); it requeues failed, dead, held (and sent with --include-sent)",
                                        row_status_name(s))}));
    }
    auto effective = requeue_filter(*filter, a->include_sent);
    if (!effective) return void(exit_code = fail(effective.error()));
    auto store = open_store(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    // When nothing is (or would be) requeued, say why on stderr: no such rows, or rows in a
    // status requeue leaves alone.
    auto explain_nothing = [&]() -> Status {
      auto selected = (*store)->count_rows(*filter);
      if (!selected) return selected.error();
      if (*selected == 0) {
        fmt::print(stderr, "metrix-relay: no row matches the selection\n");
      } else {
        fmt::print(stderr, "metrix-relay: none of the {} matching rows is failed, dead{} or held ({})\n", *selected,
                   a->include_sent ? ", sent" : "",
                   a->include_sent ? "pending and sending rows are never requeued"
                                   : "sent rows only with --include-sent; pending and sending rows never");
      }
      return {};
    };
    if (a->dry_run) {
      auto total = (*store)->count_rows(*effective);
      if (!total) return void(exit_code = fail(total.error()));
      auto rows = (*store)->list_rows(*effective, a->limit);
      if (!rows) return void(exit_code = fail(rows.error()));
      if (*total == 0) {
        if (auto s = explain_nothing(); !s) return void(exit_code = fail(s.error()));
      }
      if (a->json) {
        nlohmann::ordered_json out;
        out["dry_run"] = true;
        out["would_requeue"] = *total;
        out["rows"] = nlohmann::ordered_json::array();
        for (const auto& r : *rows) out["rows"].push_back(row_json(r));
        print_json(out);
      } else {
        fmt::print("dry run: would requeue {} rows{}\n", *total, *total ? ":" : "");
        if (!rows->empty()) rows_table(*rows).print(stdout);
        if (static_cast<std::int64_t>(rows->size()) < *total) {
          fmt::print("... and {} more (--limit 0 lists all)\n", *total - static_cast<std::int64_t>(rows->size()));
        }
      }
      return void(exit_code = kOk);
    }
    auto changed = (*store)->requeue(*filter, a->include_sent, now);
    if (!changed) return void(exit_code = fail(changed.error()));
    if (a->json) print_json({{"requeued", *changed}});
    else fmt::print("requeued {} rows\n", *changed);
    if (*changed == 0) {
      if (auto s = explain_nothing(); !s) return void(exit_code = fail(s.error()));
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
