#include <fmt/format.h>

#include <set>

#include "storage/report.h"
#include "storage/row_filter.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/operator_args.h"
#include "tools/metrix-relay/output.h"

namespace metrix::cli {

namespace {

// A sum as SQLite printed it, as a JSON number: integers stay exact.
nlohmann::ordered_json number(const std::string& text) {
  auto j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_number()) return text;
  return j;
}

}  // namespace

void add_report(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("report", "Sent events per day, app and slug, with revenue per currency");
  cmd->footer(
      "Counts only 'sent' rows: what Metrix acknowledged with a 2xx. Days are UTC and, by default, the\n"
      "day of the event_time sent to Metrix (the time the Metrix dashboard files an event under);\n"
      "--by sent uses the time the relay recorded the delivery. --since is inclusive, --until\n"
      "exclusive, on that same time. Revenue is the sum of customMetrics._revenue per\n"
      "customAttributes._currency. Compare with the dashboard for the same days and apps.\n"
      "Exit codes: 0 ok, 1 the database failed, 2 bad options.\n\n"
      "Examples:\n"
      "  metrix-relay report --db app.db --since 2026-11-01 --until 2026-12-01\n"
      "  metrix-relay report --db app.db --since 7d --csv > last-week.csv\n"
      "  metrix-relay report --db app.db --json | jq '.rows[] | select(.slug == \"purchase\")'");
  struct Args {
    std::string db, since, until, by = "event";
    bool json = false, csv = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  cmd->add_option("--since", a->since, "from this time on (2026-11-25, 2026-11-25T10:00:00Z, 7d = 7 days ago)");
  cmd->add_option("--until", a->until, "before this time (same forms)");
  cmd->add_option("--by", a->by, "which time decides the day: event (event_time, default) or sent (sent_at)")
      ->check(CLI::IsMember({"event", "sent"}));
  add_format_flags(*cmd, a->json, &a->csv);
  cmd->callback([a, &exit_code] {
    std::int64_t now = now_ms();
    ReportOptions options;
    options.time = a->by == "sent" ? ReportTime::sent_at : ReportTime::event_time;
    if (!a->since.empty()) {
      auto t = parse_time(a->since, now);
      if (!t) return void(exit_code = fail(Error{Errc::invalid_argument, "--since: " + t.error().message}));
      options.since = *t;
    }
    if (!a->until.empty()) {
      auto t = parse_time(a->until, now);
      if (!t) return void(exit_code = fail(Error{Errc::invalid_argument, "--until: " + t.error().message}));
      options.until = *t;
    }
    auto store = open_store_to_read(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    auto rows = (*store)->sent_report(options);
    if (!rows) return void(exit_code = fail(rows.error()));
    std::set<std::string> currencies;
    std::int64_t events = 0;
    for (const auto& r : *rows) {
      events += r.events;
      for (const auto& [currency, sum] : r.revenue) currencies.insert(currency);
    }
    if (a->json) {
      nlohmann::ordered_json out;
      out["time"] = a->by == "sent" ? "sent_at" : "event_time";
      out["since"] = options.since ? nlohmann::ordered_json(*options.since) : nullptr;
      out["until"] = options.until ? nlohmann::ordered_json(*options.until) : nullptr;
      out["events"] = events;
      out["rows"] = nlohmann::ordered_json::array();
      for (const auto& r : *rows) {
        nlohmann::ordered_json x;
        x["day"] = r.day;
        x["app_id"] = r.app_id ? nlohmann::ordered_json(*r.app_id) : nullptr;
        x["slug"] = r.slug;
        x["events"] = r.events;
        x["revenue"] = nlohmann::ordered_json::object();
        for (const auto& [currency, sum] : r.revenue) x["revenue"][currency] = number(sum);
        out["rows"].push_back(std::move(x));
      }
      print_json(out);
    } else if (a->csv) {
      // One revenue column per currency of the ISO list Metrix accepts, so every file has the same shape.
      print_csv_row(stdout, {"day", "app_id", "slug", "events", "revenue_IRR", "revenue_USD", "revenue_EUR"});
      for (const auto& r : *rows) {
        auto sum = [&](const char* c) { return r.revenue.count(c) ? r.revenue.at(c) : std::string(); };
        print_csv_row(stdout, {r.day, r.app_id.value_or(""), r.slug, std::to_string(r.events), sum("IRR"), sum("USD"),
                               sum("EUR")});
      }
    } else if (rows->empty()) {
      fmt::print("no sent events in this range\n");
    } else {
      std::vector<std::string> header = {"DAY (UTC)", "APP", "SLUG", "EVENTS"};
      for (const auto& c : currencies) header.push_back("REVENUE " + c);
      Table t(header);
      for (const auto& r : *rows) {
        std::vector<std::string> line = {r.day, cell(r.app_id.value_or(kDefaultAppLabel), 32), cell(r.slug, 40),
                                         std::to_string(r.events)};
        for (const auto& c : currencies) line.push_back(r.revenue.count(c) ? r.revenue.at(c) : "-");
        t.add(std::move(line));
      }
      t.print(stdout);
      fmt::print("total: {} sent events\n", events);
    }
    exit_code = kOk;
  });
}

}  // namespace metrix::cli
