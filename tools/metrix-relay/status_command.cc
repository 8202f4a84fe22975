#include <fmt/format.h>

#include "relay/config.h"
#include "relay/health_reason.h"
#include "relay/status_json.h"
#include "storage/heartbeat.h"
#include "storage/postgres/connection.h"
#include "storage/row_filter.h"
#include "storage/status.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/output.h"
#include "storage/time_text.h"

namespace metrix::cli {

namespace {

// Exit code of `status --check` when the outbox is not healthy. The same as a runtime
// failure: a monitoring system treats both as "look at this".
constexpr int kUnhealthy = 1;

std::string app_name(const std::optional<std::string>& app) { return app.value_or(kDefaultAppLabel); }

void print_snapshot(const std::string& path, const StatusSnapshot& s, const std::string& health) {
  fmt::print("outbox {} at {}\n\n", path, short_time(s.now));
  std::vector<std::string> header = {"APP"};
  for (RowStatus st : all_statuses()) header.push_back(row_status_name(st));
  header.push_back("total");
  Table counts(header);
  auto add = [&](const std::string& name, const StatusCounts& c) {
    std::vector<std::string> row = {name};
    std::int64_t total = 0;
    for (RowStatus st : all_statuses()) {
      row.push_back(std::to_string(c.at(st)));
      total += c.at(st);
    }
    row.push_back(std::to_string(total));
    counts.add(std::move(row));
  };
  for (const auto& a : s.apps) add(cell(app_name(a.app_id), 32), a.counts);
  if (s.apps.size() != 1) add("all apps", s.counts);
  counts.print(stdout);

  fmt::print("\ndue now {}, in backoff {}", s.due, s.in_backoff);
  if (s.oldest_due) {
    fmt::print("; oldest due: row {} (app {}), due for {}, created {} ago", s.oldest_due->id,
               app_name(s.oldest_due->app_id), describe_duration(s.now - s.oldest_due->due_since),
               describe_duration(s.now - s.oldest_due->created_at));
  }
  fmt::print("\n");
  fmt::print("last sent: {}\n", s.last_sent_at ? fmt::format("{} ({} ago)", short_time(*s.last_sent_at),
                                                             describe_duration(s.now - *s.last_sent_at))
                                               : "never");

  if (s.pauses.empty()) {
    fmt::print("paused apps: none\n");
  } else {
    fmt::print("paused apps (Metrix answered 403; one probe row per interval):\n");
    Table t({"APP", "REASON", "SINCE", "NEXT PROBE"});
    for (const auto& p : s.pauses) {
      t.add({p.app_id, cell(p.reason), fmt::format("{} ({} ago)", short_time(p.since), describe_duration(s.now - p.since)),
             p.next_probe_at > s.now ? "in " + describe_duration(p.next_probe_at - s.now) : "now"});
    }
    t.print(stdout, "  ");
  }

  bool running = false;
  for (const auto& r : s.relays) running = running || relay_alive(r, s.now);
  if (s.relays.empty()) {
    fmt::print("relay: not running (no heartbeat)\n");
  } else {
    fmt::print("relay: {}\n", running ? "running" : "not running (heartbeat stale: killed, hung, or stopped uncleanly)");
    Table t({"RELAY", "HOST", "PID", "STARTED", "LAST BEAT", "SENT", "LAST SENT", "STATE", "WINDOW"});
    for (const auto& r : s.relays) {
      t.add({r.relay_id, cell(r.host, 32), std::to_string(r.pid), short_time(r.started_at), describe_duration(s.now - r.beat_at) + " ago", std::to_string(r.sent),
             r.last_sent_at ? describe_duration(s.now - *r.last_sent_at) + " ago" : "-",
             relay_alive(r, s.now) ? "alive" : "stale", r.windows.empty() ? "-" : r.windows});
    }
    t.print(stdout, "  ");
  }

  if (s.errors.empty()) {
    fmt::print("errors of undelivered rows: none\n");
  } else {
    fmt::print("errors of undelivered rows (most frequent first):\n");
    Table t({"ROWS", "STATUS", "LAST ERROR"});
    for (const auto& e : s.errors) t.add({std::to_string(e.count), row_status_name(e.status), cell(e.error, 100)});
    t.print(stdout, "  ");
  }
  fmt::print("\nhealth: {}\n", health);
}

}  // namespace

void add_status(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("status", "Counts by status and app, the backlog, paused apps, errors, the relay, health");
  cmd->footer(
      "The relay writes a heartbeat row (metrix_relay_heartbeat) when it starts and every\n"
      "--progress-interval, and deletes it when it exits cleanly: a relay counts as running while its\n"
      "heartbeat is younger than three of its intervals, or 3s if that is longer (check judges the\n"
      "same way). Every relay with a heartbeat is listed with its host and pid: on PostgreSQL, relays\n"
      "on several hosts may share one outbox. WINDOW is each app's window of requests in flight as of\n"
      "that heartbeat (now / --concurrency; it shrinks when Metrix pushes back), or 'circuit open'\n"
      "while Metrix fails every request and the relay only probes.\n\n"
      "Health (--check, for monitoring; also in --json as \"health\"):\n"
      "  UNHEALTHY when the oldest due row has waited longer than --max-backlog-age since it became due\n"
      "  (enqueued, its retry time reached, requeued, or its lease expired), or when rows have waited\n"
      "  longer than --max-idle and nothing was sent for --max-idle (a relay that is down, or up and\n"
      "  getting nowhere: app paused by a 403, Metrix failing, no dev key). A process being up is not\n"
      "  health. Right after old rows are requeued, the stall check can fire until the relay sends one.\n"
      "  --check prints one line, \"OK: ...\" or \"UNHEALTHY: <reason>\", and exits 0 or 1.\n"
      "Exit codes: 0 ok (healthy with --check), 1 unhealthy (--check) or the database failed, 2 bad options.\n\n"
      "Examples:\n"
      "  metrix-relay status --db app.db\n"
      "  metrix-relay status --db app.db --json | jq .counts\n"
      "  metrix-relay status --db app.db --check --max-backlog-age 5m --max-idle 10m   # from cron/Nagios\n"
      "  metrix-relay status --db postgresql://relay@db.internal/app   # the same on PostgreSQL");
  struct Args {
    std::string db;
    bool json = false, check = false;
    std::string max_backlog_age = "15m", max_idle = "10m";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  add_format_flags(*cmd, a->json, nullptr);
  cmd->add_flag("--check", a->check, "health check: print one line and exit 1 when unhealthy");
  cmd->add_option("--max-backlog-age", a->max_backlog_age, "how long a due row may wait (default 15m)");
  cmd->add_option("--max-idle", a->max_idle, "how long rows may wait with nothing sent (default 10m)");
  cmd->callback([a, &exit_code] {
    HealthThresholds t;
    auto backlog = parse_duration_ms(a->max_backlog_age);
    if (!backlog) return void(exit_code = fail(Error{Errc::invalid_argument, "--max-backlog-age: " + backlog.error().message}));
    auto idle = parse_duration_ms(a->max_idle);
    if (!idle) return void(exit_code = fail(Error{Errc::invalid_argument, "--max-idle: " + idle.error().message}));
    t.max_backlog_age_ms = *backlog;
    t.max_idle_ms = *idle;
    auto store = open_store_to_read(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    // The health check alone reads only what its verdict needs (cheap at any size).
    auto snapshot = a->check ? (*store)->read_health(now_ms(), t) : (*store)->read_status(now_ms());
    if (!snapshot) return void(exit_code = fail(snapshot.error()));
    Health health = evaluate_health(*snapshot, t);
    const std::string verdict =
        fmt::format("{}: {}", health.ok() ? "OK" : "UNHEALTHY", health_reason(*snapshot, t, health));
    if (a->json) print_json(status_json(*snapshot, health, t));
    else if (a->check) fmt::print("{}\n", verdict);
    else print_snapshot(pg::redact(a->db), *snapshot, verdict);
    exit_code = a->check && !health.ok() ? kUnhealthy : kOk;
  });
}

}  // namespace metrix::cli
