// metrix-relay status, list, show and report, and the README's audit SQL, checked against
// plain SQL on a real outbox after a real relay run against fake-metrix.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>

#include "tests/operator_fixture.h"
#include "tests/readme_sql.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;
using Rows = std::vector<std::vector<std::string>>;

namespace {

// After this, the outbox holds (ids):
//   1..30  taqsq, user-1..30, default app           sent
//   31..35 purchase (unknown to Metrix), user-1..5  failed 404 EVENT_TYPE_DOES_NOT_EXIST
//   36..39 taqsq revenue: 53700 IRR x2, 1.5 USD x2  sent
//   40..41 taqsq, app2 (the relay has no key)       pending, "not sent: no dev key ..."
void relayed_outbox(const TempDir& dir) {
  make_outbox(dir.db(), 30);
  make_outbox(dir.db(), 5, "purchase");
  for (const char* revenue : {R"("_currency":"IRR"},"customMetrics":{"_revenue":53700})",
                              R"("_currency":"IRR"},"customMetrics":{"_revenue":53700})",
                              R"("_currency":"USD"},"customMetrics":{"_revenue":1.5})",
                              R"("_currency":"USD"},"customMetrics":{"_revenue":1.5})"}) {
    std::string payload = std::string(R"({"metrixUserId":"buyer","eventSlug":"taqsq","oaid":"o","customAttributes":{)") + revenue + "}";
    REQUIRE(relay_cli({"enqueue", "--db", dir.db(), "--json", payload}).exit_code == 0);
  }
  make_outbox(dir.db(), 2, "taqsq", "app2");
  auto fake = FakeMetrix::start(dir, fake_args({"--slug", "taqsq"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle"}), {}, relay_env());
  REQUIRE_MESSAGE(r.exit_code == 1, r.err);  // app2's rows cannot be sent: no dev key
  REQUIRE(count_status(dir.db(), "sent") == 34);
  REQUIRE(count_status(dir.db(), "failed") == 5);
}

std::vector<std::int64_t> ids_of(const nlohmann::json& rows) {
  std::vector<std::int64_t> ids;
  for (const auto& r : rows) ids.push_back(r["id"].get<std::int64_t>());
  return ids;
}

std::vector<std::int64_t> sql_ids(const std::string& db, const std::string& where) {
  std::vector<std::int64_t> ids;
  for (const auto& r : rows(db, "SELECT id FROM metrix_outbox WHERE " + where + " ORDER BY id")) ids.push_back(std::stoll(r[0]));
  return ids;
}

std::vector<std::int64_t> listed(const std::string& db, std::vector<std::string> flags) {
  std::vector<std::string> args = {"list", "--db", db, "--json", "--limit", "0"};
  args.insert(args.end(), flags.begin(), flags.end());
  auto r = relay_cli(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return ids_of(json_of(r));
}

std::string json_cell(const nlohmann::json& v) {
  if (v.is_null()) return "NULL";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

TEST_CASE("status --json agrees with SQL counts, by status and by app, and names the errors") {
  TempDir dir;
  relayed_outbox(dir);
  auto r = relay_cli({"status", "--db", dir.db(), "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto j = json_of(r);
  for (const auto& row : rows(dir.db(), "SELECT s.value, (SELECT count(*) FROM metrix_outbox WHERE status = s.value) "
                                        "FROM json_each('[\"pending\",\"sending\",\"sent\",\"failed\",\"dead\",\"held\"]') s")) {
    CHECK_MESSAGE(j["counts"][row[0]].get<std::int64_t>() == std::stoll(row[1]), row[0]);
  }
  CHECK(j["counts"]["total"] == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox"));
  std::map<std::string, std::int64_t> by_app_sql, by_app_json;
  for (const auto& row : rows(dir.db(), "SELECT coalesce(app_id, '-') || '/' || status, count(*) FROM metrix_outbox "
                                        "GROUP BY app_id, status")) {
    by_app_sql[row[0]] = std::stoll(row[1]);
  }
  for (const auto& app : j["apps"]) {
    for (const auto& [status, n] : app["counts"].items()) {
      if (status != "total" && n.get<std::int64_t>() > 0) {
        by_app_json[(app["app_id"].is_null() ? "-" : app["app_id"].get<std::string>()) + "/" + status] = n;
      }
    }
  }
  CHECK(by_app_json == by_app_sql);
  std::string now = std::to_string(j["now"].get<std::int64_t>());
  CHECK(j["due"] == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status IN ('pending', 'sending') "
                                     "AND next_attempt_at <= " + now));
  CHECK(j["in_backoff"] == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'pending' "
                                            "AND next_attempt_at > " + now));
  CHECK(j["last_sent_at"] == scalar(dir.db(), "SELECT max(sent_at) FROM metrix_outbox"));
  CHECK(j["oldest_due"]["id"] == 40);
  CHECK(j["errors"][0] == nlohmann::json{{"status", "failed"}, {"error", "EVENT_TYPE_DOES_NOT_EXIST"}, {"count", 5}});
  CHECK(j["errors"][1]["status"] == "pending");
  CHECK(j["errors"][1]["count"] == 2);
  CHECK(j["errors"][1]["error"].get<std::string>().find("not sent: no dev key for app app2") == 0);
  CHECK(j["relays"].empty());  // the relay exited cleanly and removed its heartbeat
  CHECK(j["relay_running"] == false);

  auto human = relay_cli({"status", "--db", dir.db()});
  CHECK(human.exit_code == 0);
  CHECK(human.out.find("(default)        0        0    34       5     0     0     39") != std::string::npos);
  CHECK(human.out.find("app2             2        0     0       0     0     0      2") != std::string::npos);
  CHECK(human.out.find("\n     5  failed   EVENT_TYPE_DOES_NOT_EXIST\n") != std::string::npos);
  CHECK(human.out.find("relay: not running (no heartbeat)") != std::string::npos);
}

TEST_CASE("status shows a running relay, the app it paused after a 403, and a relay that was killed") {
  TempDir dir;
  make_outbox(dir.db(), 20);
  auto fake = FakeMetrix::start(dir, fake_args({"--s2s-disabled", "app1"}), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--pause-interval", "10s"}), relay_env());
  REQUIRE(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_app_pause", 1) == 1);
  auto j = json_of(relay_cli({"status", "--db", dir.db(), "--json"}));
  CHECK(j["relay_running"] == true);
  REQUIRE(j["relays"].size() == 1);
  CHECK(j["relays"][0]["pid"] == relay.pid());
  CHECK(j["relays"][0]["alive"] == true);
  REQUIRE(j["paused_apps"].size() == 1);
  CHECK(j["paused_apps"][0]["app_id"] == "app1");
  CHECK(j["paused_apps"][0]["reason"] == "S2S_FEATURE_NOT_AVAILABLE");
  CHECK(j["paused_apps"][0]["since"] == scalar(dir.db(), "SELECT since FROM metrix_app_pause"));
  auto human = relay_cli({"status", "--db", dir.db()});
  CHECK(human.out.find("relay: running") != std::string::npos);
  CHECK(human.out.find("app1  S2S_FEATURE_NOT_AVAILABLE") != std::string::npos);

  relay.kill(SIGKILL);  // no clean exit: the heartbeat stays, and goes stale
  relay.wait(10s);
  std::this_thread::sleep_for(3500ms);  // three progress intervals of 1s
  j = json_of(relay_cli({"status", "--db", dir.db(), "--json"}));
  CHECK(j["relay_running"] == false);
  REQUIRE(j["relays"].size() == 1);
  CHECK(j["relays"][0]["alive"] == false);
  CHECK(relay_cli({"status", "--db", dir.db()}).out.find("relay: not running (heartbeat stale") != std::string::npos);
}

TEST_CASE("status --check exits 1 with a one-line reason when the backlog is old or nothing drains") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto check = [&](std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"status", "--db", dir.db(), "--check"};
    args.insert(args.end(), extra.begin(), extra.end());
    return relay_cli(args);
  };
  auto empty = check();
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "OK: 0 rows due, 0 in backoff\n");

  // A row written an hour ago and due since then: no relay has been sending.
  exec(dir.db(), "INSERT INTO metrix_outbox (payload, created_at, next_attempt_at) VALUES ('" + valid_payload(1) +
                     "', CAST(unixepoch('now') AS INTEGER) * 1000 - 3600000, CAST(unixepoch('now') AS INTEGER) * 1000 - 3600000)");
  auto backlog = check();
  CHECK(backlog.exit_code == 1);
  CHECK(backlog.out.find("UNHEALTHY: backlog: row 1 (app (default)) has been due for 1h00m, longer than "
                         "--max-backlog-age 15m00s; 1 rows are due") == 0);
  CHECK(std::count(backlog.out.begin(), backlog.out.end(), '\n') == 1);
  auto strict = check({"--max-backlog-age", "250ms"});  // before: "--max-backlog-age 0s"
  CHECK(strict.out.find("longer than --max-backlog-age 250ms;") != std::string::npos);
  auto stalled = check({"--max-backlog-age", "2h"});
  CHECK(stalled.exit_code == 1);
  CHECK(stalled.out.find("UNHEALTHY: stalled: nothing ever sent while 1 rows wait") == 0);
  auto tolerant = check({"--max-backlog-age", "2h", "--max-idle", "2h"});
  CHECK(tolerant.exit_code == 0);
  CHECK(tolerant.out.find("OK: 1 rows due") == 0);
  auto as_json = relay_cli({"status", "--db", dir.db(), "--check", "--json"});
  CHECK(as_json.exit_code == 1);
  CHECK(json_of(as_json)["health"]["ok"] == false);

  // Delivered: healthy again.
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  REQUIRE(run(relay_args(dir.db(), fake.url(), {"--until-idle"}), {}, relay_env()).exit_code == 0);
  CHECK(check().exit_code == 0);
  auto bad = check({"--max-idle", "soon"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--max-idle: 'soon' is not a duration") != std::string::npos);
}

TEST_CASE("list --json gives every column of every row exactly as SQL reads it") {
  TempDir dir;
  relayed_outbox(dir);
  auto r = relay_cli({"list", "--db", dir.db(), "--json", "--limit", "0"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  Rows from_json;
  for (const auto& row : json_of(r)) {
    std::vector<std::string> line;
    for (const char* c : {"id", "app_id", "status", "event_slug", "dedup_key", "created_at", "attempts",
                          "next_attempt_at", "event_time", "last_http_status", "last_error", "sent_at"}) {
      line.push_back(json_cell(row[c]));
    }
    line.push_back(row["payload"].dump());
    from_json.push_back(line);
  }
  auto from_sql = rows(dir.db(), "SELECT id, app_id, status, event_slug, dedup_key, created_at, attempts, "
                                 "next_attempt_at, event_time, last_http_status, last_error, sent_at, payload "
                                 "FROM metrix_outbox ORDER BY id");
  for (auto& row : from_sql) row.back() = nlohmann::json::parse(row.back()).dump();  // the same key order as above
  CHECK(from_json == from_sql);
}

TEST_CASE("list filters by status, app, slug, error, creation time and ids, as SQL does") {
  TempDir dir;
  relayed_outbox(dir);
  // Two rows written long ago, for the time filters.
  exec(dir.db(), "INSERT INTO metrix_outbox (payload, created_at) VALUES ('" + valid_payload(100) +
                     "', 1577872800000), ('" + valid_payload(101) + "', 1577959200000)");  // 2020-01-01T10:00Z, 2020-01-02T10:00Z
  CHECK(listed(dir.db(), {"--status", "failed"}) == sql_ids(dir.db(), "status = 'failed'"));
  CHECK(listed(dir.db(), {"--status", "failed,pending"}) == sql_ids(dir.db(), "status IN ('failed', 'pending')"));
  CHECK(listed(dir.db(), {"--error", "EVENT_TYPE_DOES_NOT_EXIST"}) ==
        sql_ids(dir.db(), "last_error = 'EVENT_TYPE_DOES_NOT_EXIST'"));
  CHECK(listed(dir.db(), {"--error", "no dev key"}) == std::vector<std::int64_t>{40, 41});
  CHECK(listed(dir.db(), {"--slug", "purchase"}) == std::vector<std::int64_t>{31, 32, 33, 34, 35});
  CHECK(listed(dir.db(), {"--app-id", "app2"}) == sql_ids(dir.db(), "app_id = 'app2'"));
  CHECK(listed(dir.db(), {"--app-id", "(default)", "--status", "pending"}) == std::vector<std::int64_t>{42, 43});
  CHECK(listed(dir.db(), {"--since", "2020-01-01", "--until", "2020-01-02"}) == std::vector<std::int64_t>{42});
  CHECK(listed(dir.db(), {"--since", "2020-01-02T09:00:00Z", "--until", "2020-01-02T13:31:00+03:30"}) ==
        std::vector<std::int64_t>{43});
  CHECK(listed(dir.db(), {"--since", "24h"}) == sql_ids(dir.db(), "id <= 41"));
  CHECK(listed(dir.db(), {"--id", "3-5,9", "--id", "40"}) == std::vector<std::int64_t>{3, 4, 5, 9, 40});
  CHECK(listed(dir.db(), {"--status", "sent", "--slug", "taqsq", "--id", "30-40"}) ==
        std::vector<std::int64_t>{30, 36, 37, 38, 39});

  auto limited = relay_cli({"list", "--db", dir.db(), "--limit", "3"});
  CHECK(limited.exit_code == 0);
  CHECK(limited.out.find("ID  APP        STATUS  SLUG   USER    ATT  STOPS  CREATED") == 0);
  CHECK(std::count(limited.out.begin(), limited.out.end(), '\n') == 4);
  CHECK(limited.err == "metrix-relay: showing the first 3 of 43 matching rows; use --limit N (0 for all)\n");
  CHECK(relay_cli({"list", "--db", dir.db(), "--status", "lost"}).exit_code == 2);
  CHECK(relay_cli({"list", "--db", dir.db(), "--since", "yesterday"}).exit_code == 2);
  CHECK(relay_cli({"list", "--db", dir.db(), "--id", "9-3"}).exit_code == 2);
  CHECK(relay_cli({"list", "--db", dir.db(), "--json", "--csv"}).exit_code == 2);
}

TEST_CASE("list --csv quotes commas, quotes and newlines so a CSV reader gets the SQL values back") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  REQUIRE(relay_cli({"enqueue", "--db", dir.db(), "--json",
                     R"({"metrixUserId":"u, \"quoted\"","eventSlug":"s","oaid":"o","customAttributes":{"note":"a,b"}})",
                     "--app-id", "app,1"})
              .exit_code == 0);
  exec(dir.db(), "UPDATE metrix_outbox SET status = 'failed', last_error = 'line one, \"two\"' || char(10) || 'line two'");
  auto r = relay_cli({"list", "--db", dir.db(), "--csv"});
  REQUIRE(r.exit_code == 0);
  auto csv = parse_csv(r.out);
  REQUIRE(csv.size() == 2);
  CHECK(csv[0] == std::vector<std::string>{"id", "app_id", "status", "event_slug", "dedup_key", "created_at", "attempts",
                                           "next_attempt_at", "event_time", "last_http_status", "last_error", "sent_at",
                                           "payload"});
  auto expected = rows(dir.db(), "SELECT id, app_id, status, event_slug, coalesce(dedup_key, ''), created_at, attempts, "
                                 "next_attempt_at, coalesce(event_time, ''), coalesce(last_http_status, ''), "
                                 "last_error, coalesce(sent_at, ''), payload FROM metrix_outbox");
  CHECK(csv[1] == expected[0]);
}

TEST_CASE("show prints a row, its payload and its whole attempt history, and --json matches SQL") {
  TempDir dir;
  relayed_outbox(dir);
  auto r = relay_cli({"show", "--db", dir.db(), "31", "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto j = json_of(r);
  CHECK(j["id"] == 31);
  CHECK(j["status"] == "failed");
  CHECK(j["last_http_status"] == 404);
  CHECK(j["last_error"] == "EVENT_TYPE_DOES_NOT_EXIST");
  CHECK(j["payload"] == nlohmann::json::parse(text(dir.db(), "SELECT payload FROM metrix_outbox WHERE id = 31")));
  Rows history;
  for (const auto& a : j["attempt_history"]) {
    history.push_back({json_cell(a["attempt"]), json_cell(a["started_at"]), json_cell(a["finished_at"]),
                       json_cell(a["http_status"]), json_cell(a["error"]), json_cell(a["response"])});
  }
  CHECK(history == rows(dir.db(), "SELECT attempt, started_at, finished_at, http_status, error, response "
                                  "FROM metrix_outbox_attempt WHERE outbox_id = 31 ORDER BY attempt"));
  CHECK(history.size() == 1);

  auto human = relay_cli({"show", "--db", dir.db(), "31"});
  CHECK(human.exit_code == 0);
  CHECK(human.out.find("row 31: failed\n") == 0);
  CHECK(human.out.find("\"eventSlug\": \"purchase\"") != std::string::npos);
  CHECK(human.out.find("attempts:\n  #  STARTED") != std::string::npos);
  CHECK(human.out.find("404  EVENT_TYPE_DOES_NOT_EXIST") != std::string::npos);

  auto missing = relay_cli({"show", "--db", dir.db(), "999"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "metrix-relay: no row 999 in metrix_outbox\n");
}

TEST_CASE("report counts sent events per day, app and slug with revenue per currency, as SQL sums them") {
  TempDir dir;
  relayed_outbox(dir);
  auto r = relay_cli({"report", "--db", dir.db(), "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto j = json_of(r);
  Rows from_json;
  for (const auto& row : j["rows"]) {
    for (const auto& [currency, sum] : row["revenue"].items()) {
      from_json.push_back({row["day"], json_cell(row["app_id"]), row["slug"], currency, sum.dump()});
    }
  }
  CHECK(from_json == rows(dir.db(), "SELECT date(event_time / 1000, 'unixepoch'), coalesce(app_id, 'NULL'), event_slug, "
                                    "json_extract(payload, '$.customAttributes._currency') AS c, "
                                    "sum(json_extract(payload, '$.customMetrics._revenue')) FROM metrix_outbox "
                                    "WHERE status = 'sent' AND c IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"));
  REQUIRE(j["rows"].size() == 1);
  CHECK(j["rows"][0]["events"] == 34);
  CHECK(j["rows"][0]["revenue"] == nlohmann::json{{"IRR", 107400}, {"USD", 3.0}});
  CHECK(j["events"] == count_status(dir.db(), "sent"));

  auto csv = parse_csv(relay_cli({"report", "--db", dir.db(), "--csv", "--by", "sent"}).out);
  REQUIRE(csv.size() == 2);
  CHECK(csv[0] == std::vector<std::string>{"day", "app_id", "slug", "events", "revenue_IRR", "revenue_USD", "revenue_EUR"});
  CHECK(csv[1] == std::vector<std::string>{text(dir.db(), "SELECT date(max(sent_at) / 1000, 'unixepoch') FROM metrix_outbox"),
                                           "", "taqsq", "34", "107400", "3.0", ""});
  auto table = relay_cli({"report", "--db", dir.db()});
  CHECK(table.out.find("REVENUE IRR  REVENUE USD") != std::string::npos);
  // Days are text, left-aligned under their header; only numbers are aligned right.
  CHECK_MESSAGE(table.out.rfind("DAY (UTC) ", 0) == 0, table.out);
  CHECK(table.out.find("total: 34 sent events") != std::string::npos);
  auto future = relay_cli({"report", "--db", dir.db(), "--since", "2100-01-01", "--json"});
  CHECK(json_of(future)["rows"].empty());
  CHECK(relay_cli({"report", "--db", dir.db(), "--by", "created"}).exit_code == 2);
}

TEST_CASE("every query of the README's Audit SQL section runs on a relayed outbox and returns what SQL on the tables does") {
  TempDir dir;
  relayed_outbox(dir);
  // A row waiting for two hours, for "pending for more than an hour".
  exec(dir.db(), "INSERT INTO metrix_outbox (payload, app_id, created_at) VALUES ('" + valid_payload(7) +
                     "', 'app2', CAST(unixepoch('now') AS INTEGER) * 1000 - 7200000)");
  auto queries = readme_audit_queries(/*postgres=*/false);
  auto run_query = [&](const std::string& title) {
    INFO(title);
    REQUIRE(queries.count(title) == 1);
    auto result = rows(dir.db(), queries[title]);
    queries.erase(title);
    return result;
  };

  auto sent_to_user = run_query("-- What was sent for user user-3, and when");
  CHECK(sent_to_user ==
        rows(dir.db(), "SELECT id, coalesce(app_id, '(default)'), event_slug, "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', event_time / 1000.0, 'unixepoch'), "
                       "strftime('%Y-%m-%dT%H:%M:%fZ', sent_at / 1000.0, 'unixepoch'), NULL, NULL FROM metrix_outbox "
                       "WHERE json_extract(payload, '$.metrixUserId') = 'user-3' AND status = 'sent' ORDER BY sent_at"));
  REQUIRE(sent_to_user.size() == 1);
  CHECK(sent_to_user[0][0] == "3");

  // "Yesterday" is relative to now: this run's failures happened today, so ask as of tomorrow.
  std::string failed_title = "-- Everything that failed yesterday (UTC), and why";
  REQUIRE(queries.count(failed_title) == 1);
  std::string failed_sql = queries[failed_title];
  for (size_t p = 0; (p = failed_sql.find("'now'", p)) != std::string::npos; p += 15) failed_sql.replace(p, 5, "'now', '+1 day'");
  queries[failed_title] = failed_sql;
  auto failed = run_query(failed_title);
  std::vector<std::string> failed_ids;
  for (const auto& row : failed) failed_ids.push_back(row[0]);
  CHECK(failed_ids == std::vector<std::string>{"31", "32", "33", "34", "35"});
  CHECK(failed[0][5] == "EVENT_TYPE_DOES_NOT_EXIST");

  auto waiting = run_query("-- Rows pending for more than an hour");
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0][0] == std::to_string(scalar(dir.db(), "SELECT max(id) FROM metrix_outbox")));

  auto history = run_query("-- The attempt history of row 17");
  CHECK(history.size() == static_cast<size_t>(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id = 17")));
  REQUIRE(history.size() == 1);
  CHECK(history[0][0] == "1");
  CHECK(history[0][3] == "200");

  auto revenue = run_query("-- Revenue Metrix acknowledged, per day and currency");
  REQUIRE(revenue.size() == 2);
  CHECK(revenue[0][1] == "IRR");
  CHECK(revenue[0][2] == "2");
  CHECK(revenue[0][3] == "107400");
  CHECK(revenue[1][1] == "USD");

  CHECK_MESSAGE(queries.empty(), "a README query no test checks: " << (queries.empty() ? "" : queries.begin()->first));
}

TEST_CASE("a count or an id that is not a whole number in range is refused, naming the flag and the rule") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  for (const auto& c : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"import", "--db", dir.db(), "--chunk", "0"}, "--chunk: '0' is not a whole number of at least 1"},
           {{"import", "--db", dir.db(), "--chunk", "abc"}, "--chunk: 'abc' is not a whole number of at least 1"},
           {{"list", "--db", dir.db(), "--limit", "-1"}, "--limit: '-1' is not a whole number of at least 0"},
           {{"show", "--db", dir.db(), "1x"}, "id: '1x' is not a whole number of at least 0"}}) {
    const auto& args = c.first;  // (not a structured binding: doctest's macros capture it)
    const auto& says = c.second;
    CAPTURE(args[0]);
    auto r = relay_cli(args);
    CHECK(r.exit_code == 2);
    CHECK_MESSAGE(r.err.find(says) != std::string::npos, r.err);
    CHECK(r.err.size() < 200);  // before: the range up to 1.8e308, written out in full
  }
}

TEST_CASE("an unknown status or a --since after --until is refused, saying what would be valid") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  const std::string statuses = "--status bogus: not a status; the statuses are pending, sending, sent, failed, dead, held";
  for (const auto& c : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"list", "--db", dir.db(), "--status", "bogus"}, statuses},
           {{"requeue", "--db", dir.db(), "--status", "bogus"}, statuses},
           {{"purge", "--db", dir.db(), "--older-than", "1d", "--status", "bogus"}, statuses},  // before: no list
           {{"list", "--db", dir.db(), "--since", "2h", "--until", "3h"},
            "--since 2h is not before --until 3h: no row can match"}}) {  // before: "no rows match"
    const auto& args = c.first;  // (not a structured binding: doctest's macros capture it)
    const auto& says = c.second;
    CAPTURE(args[0]);
    auto r = relay_cli(args);
    CHECK(r.exit_code == 2);
    CHECK_MESSAGE(r.err.find(says) != std::string::npos, r.err);
  }
}
