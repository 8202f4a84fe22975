// The README's audit SQL on a PostgreSQL outbox: every query of its "Audit SQL" section (the
// PostgreSQL form where it has one) runs in psql on an outbox a real relay has worked through,
// and returns what SQL on the tables does. tests/cli_audit_test.cc runs the same section on
// SQLite.
#include <doctest/doctest.h>

#include <sstream>

#include "tests/operator_fixture.h"
#include "tests/pg_outbox_fixture.h"
#include "tests/readme_sql.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// psql's unaligned output, one vector per row.
std::vector<std::vector<std::string>> table(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> cells;
    std::istringstream fields(line);
    for (std::string cell; std::getline(fields, cell, '|');) cells.push_back(cell);
    if (!line.empty() && line.back() == '|') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

void enqueue(const PgServer& pg, const std::string& payload, const std::vector<std::string>& flags = {}) {
  std::vector<std::string> args = {"enqueue", "--db", pg.uri(), "--json", payload};
  args.insert(args.end(), flags.begin(), flags.end());
  auto r = relay_cli(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
}

}  // namespace

TEST_CASE("every query of the README's Audit SQL section runs in psql on a relayed PostgreSQL outbox") {
  TempDir dir;
  PgServer pg;
  // As cli_audit_test's outbox (ids): 1..30 taqsq sent; 31..35 purchase, refused by Metrix;
  // 36..39 revenue events, sent; 40..41 app2, which the relay has no key for.
  make_pg_outbox(pg, 30);
  pg.psql("INSERT INTO metrix_outbox (payload) SELECT replace(payload, 'taqsq', 'purchase') FROM metrix_outbox "
          "WHERE id <= 5 ORDER BY id");
  for (const char* revenue : {R"("_currency":"IRR"},"customMetrics":{"_revenue":53700})",
                              R"("_currency":"IRR"},"customMetrics":{"_revenue":53700})",
                              R"("_currency":"USD"},"customMetrics":{"_revenue":1.5})",
                              R"("_currency":"USD"},"customMetrics":{"_revenue":1.5})"}) {
    enqueue(pg, std::string(R"({"metrixUserId":"buyer","eventSlug":"taqsq","oaid":"o","customAttributes":{)") + revenue + "}");
  }
  enqueue(pg, valid_payload(1), {"--app-id", "app2"});
  enqueue(pg, valid_payload(2), {"--app-id", "app2"});
  auto fake = FakeMetrix::start(dir, fake_args({"--slug", "taqsq"}), fake_env());
  auto relayed = run(relay_args(pg.uri(), fake.url(), {"--until-idle"}), {}, relay_env(), 60s);
  REQUIRE_MESSAGE(relayed.exit_code == 1, relayed.err);  // app2's rows cannot be sent: no dev key
  REQUIRE(pg_count_status(pg, "sent") == 34);
  REQUIRE(pg_count_status(pg, "failed") == 5);
  // A row waiting for two hours, for "pending for more than an hour".
  pg.psql("INSERT INTO metrix_outbox (payload, app_id, created_at) VALUES ('" + valid_payload(7) +
          "', 'app2', metrix_now_ms() - 7200000)");

  auto queries = readme_audit_queries(/*postgres=*/true);
  auto run_query = [&](const std::string& title) {
    INFO(title);
    REQUIRE(queries.count(title) == 1);
    auto result = table(pg.psql(queries[title]));
    queries.erase(title);
    return result;
  };

  auto sent_to_user = run_query("-- What was sent for user user-3, and when");
  CHECK(sent_to_user == table(pg.psql("SELECT id, '(default)', event_slug, metrix_utc(event_time), metrix_utc(sent_at), "
                                      "'', '' FROM metrix_outbox WHERE payload::json ->> 'metrixUserId' = 'user-3' "
                                      "AND status = 'sent' ORDER BY sent_at")));
  REQUIRE(sent_to_user.size() == 1);
  CHECK(sent_to_user[0][0] == "3");

  // "Yesterday" is relative to now: this run's failures happened today, so ask as of tomorrow.
  const std::string failed_title = "-- Everything that failed yesterday (UTC), and why";
  REQUIRE(queries.count(failed_title) == 1);
  std::string& failed_sql = queries[failed_title];
  for (size_t p = 0; (p = failed_sql.find("now()", p)) != std::string::npos; p += 30) {
    failed_sql.replace(p, 5, "(now() + interval '1 day')");
  }
  auto failed = run_query(failed_title);
  std::vector<std::string> failed_ids;
  for (const auto& row : failed) failed_ids.push_back(row[0]);
  CHECK(failed_ids == std::vector<std::string>{"31", "32", "33", "34", "35"});
  REQUIRE(!failed.empty());
  CHECK(failed[0][5] == "EVENT_TYPE_DOES_NOT_EXIST");

  auto waiting = run_query("-- Rows pending for more than an hour");
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0][0] == std::to_string(pg_scalar(pg, "SELECT max(id) FROM metrix_outbox")));

  auto history = run_query("-- The attempt history of row 17");
  REQUIRE(history.size() == 1);
  CHECK(history[0][0] == "1");
  CHECK(history[0][3] == "200");

  auto revenue = run_query("-- Revenue Metrix acknowledged, per day and currency");
  REQUIRE(revenue.size() == 2);
  CHECK(revenue[0][1] == "IRR");
  CHECK(revenue[0][2] == "2");
  CHECK(revenue[0][3] == "107400");
  CHECK(revenue[1][1] == "USD");
  CHECK(revenue[1][3] == "3.0");

  CHECK_MESSAGE(queries.empty(), "a README query no test checks: " << (queries.empty() ? "" : queries.begin()->first));
}

TEST_CASE("the audit views have the same columns on PostgreSQL as on SQLite, revenue a number on both") {
  TempDir dir;
  PgServer pg;
  make_pg_outbox(pg, 0);
  make_outbox(dir.db(), 0);
  for (const char* view : {"metrix_outbox_audit", "metrix_outbox_attempt_audit"}) {
    INFO(view);
    std::string sqlite_columns;
    for (const auto& r : rows(dir.db(), std::string("SELECT name FROM pragma_table_info('") + view + "')")) {
      sqlite_columns += r[0] + "\n";
    }
    CHECK(pg.psql(std::string("SELECT attname FROM pg_attribute WHERE attrelid = '") + view +
                  "'::regclass AND attnum > 0 ORDER BY attnum") == sqlite_columns);
  }
  CHECK(pg.psql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'metrix_outbox_audit'::regclass AND attname = 'revenue'") == "numeric\n");
}
