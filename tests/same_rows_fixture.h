// The same outbox in both backends: an SQLite file and a PostgreSQL database (a throwaway
// PgServer), each migrated by the built binary, then given the same rows by the same SQL.
// For tests that run an operator command on both (run()) and compare what it prints.
//
// Unless a test brings its own statements, the rows are these: ids, apps, payloads, times,
// statuses, errors, attempts, lease expiries, pauses and relay heartbeats.
//
// Rows are inserted as a producer inserts them (both schemas refuse an id, a status or the
// relay's columns in an INSERT), one at a time in id order, so both databases number them
// 1, 2, ...; an UPDATE then gives each row its state, as a relay or operator would. Row 17 is
// deleted again, leaving a gap in the ids, as a purge does.
//
// Times are whole hours before `now` and half an hour more (ago(hours)), and at least a day
// old; the revenue rows (1 to 7) share one time, and so one day in the report: the "3d04h ago" texts the commands print read the same for half an hour after the
// fixture was made, so two runs a few seconds apart print the same text.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "storage/clock.h"
#include "tests/operator_fixture.h"
#include "tests/support/pg_server.h"

namespace metrix::test {

class SameRows {
 public:
  static constexpr std::int64_t kHour = 3'600'000;
  static constexpr std::int64_t kFuture = 10 * 24 * kHour;  // a retry or lease still ahead

  // The statements that give both outboxes their rows, written at `now` (ms since the epoch).
  using Statements = std::function<std::vector<std::string>(std::int64_t now)>;

  explicit SameRows(const Statements& fill = {})
      : sqlite_(dir_.file("outbox.db").string()), now_(metrix::now_ms()) {
    for (const std::string& db : {sqlite_, pg_.uri()}) {
      auto r = relay_cli({"migrate", "--db", db});
      REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    }
    for (const std::string& sql : fill ? fill(now_) : statements()) exec_both(sql);
  }

  const std::string& sqlite() const { return sqlite_; }
  std::string uri() const { return pg_.uri(); }
  const PgServer& pg() const { return pg_; }
  std::int64_t now() const { return now_; }
  std::int64_t ago(int hours) const { return now_ - hours * kHour - kHour / 2; }

  // Runs `sql` (statements both databases read alike) on both.
  void exec_both(const std::string& sql) const {
    exec(sqlite_, sql);
    pg_.psql(sql);
  }

  struct Both {
    RunResult sqlite, pg;
  };
  // The command `args`, with --db <each outbox> after the command's name, on both.
  Both run(std::vector<std::string> args) const {
    auto with_db = [&](const std::string& db) {
      auto a = args;
      a.insert(a.begin() + 1, {"--db", db});
      return relay_cli(a);
    };
    return {with_db(sqlite_), with_db(pg_.uri())};
  }

 private:
  // One row: the producer's part, then its state.
  struct Row {
    const char* app;  // nullptr: NULL
    const char* slug;
    const char* revenue;  // customMetrics._revenue as written, or nullptr
    const char* currency;
    int created;          // hours ago
    const char* status;
    std::int64_t next_attempt_at;
    int attempts;
    const char* error;  // last_error, or nullptr
    int http;           // last_http_status, 0: NULL
    int lease_expiries;
    const char* dedup_key;
  };

  static std::string literal(const char* text) { return text ? fmt::format("'{}'", text) : "NULL"; }

  std::vector<std::string> statements() const {
    const std::int64_t due_long_ago = ago(100), due_later = ago(90), expired_lease = ago(80);
    const std::int64_t ahead = now_ + kFuture;
    // App names and slugs whose byte order differs from a dictionary's ("Zeta" < "alpha").
    const std::vector<Row> rows = {
        {nullptr, "purchase", "1.10", "USD", 300, "sent", 0, 1, nullptr, 200, 0, "order-1"},
        {nullptr, "purchase", "2.2", "USD", 300, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {nullptr, "purchase", "100", "IRR", 300, "sent", 0, 2, nullptr, 200, 0, nullptr},
        {nullptr, "purchase", "250", "IRR", 300, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {"alpha", "purchase", "1e2", "EUR", 300, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {"alpha", "purchase", "0.1", "EUR", 300, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {"alpha", "purchase", "0.2", "EUR", 300, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {"Zeta", "Signup", nullptr, nullptr, 293, "sent", 0, 1, nullptr, 200, 0, nullptr},
        {"Zeta", "taqsq", nullptr, nullptr, 200, "sent", 0, 3, nullptr, 200, 1, "order-9"},
        {"alpha", "taqsq", nullptr, nullptr, 190, "failed", 0, 1, "EVENT_TYPE_DOES_NOT_EXIST", 400, 0, nullptr},
        {"Zeta", "taqsq", nullptr, nullptr, 180, "dead", 0, 8, "retries exhausted: http 503", 503, 0, nullptr},
        {nullptr, "taqsq", nullptr, nullptr, 170, "held", 0, 2, "held: poison row", 0, 3, nullptr},
        {nullptr, "taqsq", nullptr, nullptr, 120, "pending", due_long_ago, 0, nullptr, 0, 0, "order-13"},
        {"alpha", "taqsq", nullptr, nullptr, 110, "pending", due_later, 2, "http 503", 503, 0, nullptr},
        {"Zeta", "taqsq", nullptr, nullptr, 105, "pending", ahead, 3, "http 503", 503, 0, nullptr},
        {nullptr, "Signup", nullptr, nullptr, 100, "sending", expired_lease, 1, nullptr, 0, 1, nullptr},
        {"alpha", "purchase", nullptr, nullptr, 99, "pending", 0, 0, nullptr, 0, 0, nullptr},  // deleted
        {"alpha", "purchase", "5", "USD", 98, "sending", ahead, 1, nullptr, 0, 0, nullptr},
        {nullptr, "taqsq", nullptr, nullptr, 97, "failed", 0, 1, "INVALID_EVENT: http 503 body", 400, 0, "order-19"},
        {"alpha", "taqsq", nullptr, nullptr, 96, "dead", 0, 8, "retries exhausted: http 503", 503, 0, nullptr},
    };
    std::vector<std::string> sql;
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      const auto id = static_cast<std::int64_t>(i + 1);
      const std::int64_t created = ago(r.created);
      std::string payload = fmt::format(R"({{"metrixUserId":"user-{}","eventSlug":"{}","oaid":"oaid-{}")", id, r.slug, id);
      if (r.revenue) {
        payload += fmt::format(R"(,"customAttributes":{{"_currency":"{}"}},"customMetrics":{{"_revenue":{}}})",
                               r.currency, r.revenue);
      }
      payload += "}";
      sql.push_back(fmt::format(
          "INSERT INTO metrix_outbox (app_id, payload, dedup_key, created_at, next_attempt_at) "
          "VALUES ({}, '{}', {}, {}, {})",
          literal(r.app), payload, literal(r.dedup_key), created, created));
      const bool sent = std::string(r.status) == "sent";
      const bool tried = r.attempts > 0;
      sql.push_back(fmt::format(
          "UPDATE metrix_outbox SET status = '{}', attempts = {}, next_attempt_at = {}, event_time = {}, "
          "last_http_status = {}, last_error = {}, sent_at = {}, lease_expiries = {}, lease_token = {} WHERE id = {}",
          r.status, r.attempts, r.next_attempt_at ? r.next_attempt_at : created, tried ? std::to_string(created + 1000) : "NULL",
          r.http ? std::to_string(r.http) : "NULL", literal(r.error),
          sent ? std::to_string(created + 60'000 + 1000 * r.attempts) : "NULL", r.lease_expiries, r.attempts, id));
      for (int a = 1; a <= r.attempts; ++a) {
        const std::int64_t started = created + 1000 + 10'000 * (a - 1);
        const bool last = a == r.attempts;
        const int http = last ? r.http : 503;
        sql.push_back(fmt::format(
            "INSERT INTO metrix_outbox_attempt (outbox_id, attempt, started_at, finished_at, http_status, error, response) "
            "VALUES ({}, {}, {}, {}, {}, {}, {})",
            id, a, started, started + 40 + a, http ? std::to_string(http) : "NULL",
            last ? literal(r.error) : literal("http 503"),
            http == 200 ? literal(R"({"status":"ok"})") : http ? literal("Service Unavailable, try again") : "NULL"));
      }
    }
    sql.push_back("DELETE FROM metrix_outbox_attempt WHERE outbox_id = 17");
    sql.push_back("DELETE FROM metrix_outbox WHERE id = 17");
    // Pauses in the order they began; heartbeats of a live relay and of one killed long ago.
    sql.push_back(fmt::format(
        "INSERT INTO metrix_app_pause (app_id, reason, since, next_probe_at, interval_ms) VALUES "
        "('Zeta', '403 APP_NOT_FOUND', {}, {}, 60000)",
        ago(60), ago(59)));
    sql.push_back(fmt::format(
        "INSERT INTO metrix_app_pause (app_id, reason, since, next_probe_at, interval_ms) VALUES "
        "('alpha', '403 FORBIDDEN: dev key revoked', {}, {}, 60000)",
        ago(50), ago(49)));
    sql.push_back(fmt::format(
        "INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, windows) "
        "VALUES ('host-a:101:{0}', 'host-a', 101, {0}, {1}, {2}, 9, {3}, 'alpha 64/64, Zeta 8/64')",
        ago(72), ago(30), 2 * 24 * kHour, ago(40)));
    sql.push_back(fmt::format(
        "INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, windows) "
        "VALUES ('host-b:202:{0}', 'host-b', 202, {0}, {1}, 1000, 0, NULL, NULL)",
        ago(80), ago(75)));
    return sql;
  }

  TempDir dir_;
  PgServer pg_;
  std::string sqlite_;
  std::int64_t now_;
};

}  // namespace metrix::test
