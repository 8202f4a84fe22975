// status, list, show and report on a PostgreSQL outbox print what they print on SQLite: the
// same rows in both backends (tests/same_rows_fixture.h), each command run by the built
// binary on both, the outputs and exit codes compared. And the relay's admin listener on
// PostgreSQL: the backlog gauges on /metrics, the status JSON on /status.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "storage/time_text.h"
#include "tests/pg_outbox_fixture.h"
#include "tests/same_rows_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

void check_same(const SameRows& rows, const std::vector<std::string>& args, int exit_code = 0) {
  std::string command;
  for (const auto& a : args) command += a + " ";
  INFO(command);
  auto r = rows.run(args);
  CHECK_MESSAGE(r.sqlite.exit_code == exit_code, r.sqlite.err);
  CHECK(r.pg.exit_code == r.sqlite.exit_code);
  CHECK(r.pg.out == r.sqlite.out);
  CHECK(r.pg.err == r.sqlite.err);
}

// The text of `status`, its first line left out: it names the database (a file, a URI) and
// the time of the run (to the second), the only two things that differ between the runs.
std::string status_body(const RunResult& r) { return r.out.substr(r.out.find('\n') + 1); }

}  // namespace

TEST_CASE("status on PostgreSQL prints what it prints on SQLite for the same rows, text, JSON and --check") {
  SameRows rows;
  auto text = rows.run({"status"});
  REQUIRE_MESSAGE(text.sqlite.exit_code == 0, text.sqlite.err);
  CHECK_MESSAGE(text.pg.exit_code == 0, text.pg.err);
  CHECK(text.sqlite.out.starts_with("outbox " + rows.sqlite() + " at "));
  CHECK(text.pg.out.starts_with("outbox " + rows.uri() + " at "));
  CHECK(status_body(text.pg) == status_body(text.sqlite));
  CHECK(text.pg.err == text.sqlite.err);
  // What it says, once: every app in byte order, both relays with host and pid, both pauses.
  const std::string body = status_body(text.pg);
  CHECK(body.find("(default)") < body.find("Zeta"));
  CHECK(body.find("Zeta") < body.find("alpha"));
  CHECK(body.find("host-a") != std::string::npos);
  CHECK(body.find("host-b") != std::string::npos);
  CHECK(body.find(" 202 ") != std::string::npos);
  CHECK(body.find("relay: running") != std::string::npos);
  CHECK(body.find("403 FORBIDDEN: dev key revoked") != std::string::npos);

  // The JSON: "now" is the run's clock, and waiting_ms is computed from it.
  auto strip = [](const RunResult& r) {
    auto j = json_of(r);
    j.erase("now");
    if (j["oldest_due"].is_object()) j["oldest_due"].erase("waiting_ms");
    return j;
  };
  auto json = rows.run({"status", "--json"});
  REQUIRE_MESSAGE(json.sqlite.exit_code == 0, json.sqlite.err);
  REQUIRE_MESSAGE(json.pg.exit_code == 0, json.pg.err);
  auto from_sqlite = strip(json.sqlite);
  CHECK(strip(json.pg) == from_sqlite);
  auto check_json = rows.run({"status", "--check", "--json"});
  CHECK(check_json.sqlite.exit_code == 1);
  CHECK(check_json.pg.exit_code == 1);
  CHECK(strip(check_json.pg) == strip(check_json.sqlite));
  CHECK(from_sqlite["relays"].size() == 2);
  CHECK(from_sqlite["relays"][0]["host"] == "host-a");
  CHECK(from_sqlite["oldest_due"]["id"] == 13);
  CHECK(from_sqlite["due"] == 3);
  CHECK(from_sqlite["in_backoff"] == 1);

  check_same(rows, {"status", "--check"}, 1);  // unhealthy: rows due for days
  check_same(rows, {"status", "--check", "--max-backlog-age", "1000d", "--max-idle", "1000d"}, 0);
}

TEST_CASE("list on PostgreSQL prints the rows SQLite prints for every filter, as a table, JSON and CSV") {
  SameRows rows;
  const std::string since = metrix::utc_time(rows.ago(250)), until = metrix::utc_time(rows.ago(98));
  const std::vector<std::vector<std::string>> filters = {
      {},
      {"--status", "failed,dead"},
      {"--status", "pending", "--status", "sending"},
      {"--app-id", "(default)"},
      {"--app-id", "alpha"},
      {"--app-id", "Zeta", "--status", "sent"},
      {"--slug", "purchase"},
      {"--error", "503"},
      {"--error", "http 503", "--app-id", "alpha"},
      {"--since", since},
      {"--until", until},
      {"--since", since, "--until", until},
      {"--id", "3-8"},
      {"--id", "1,5,16-19"},
      {"--id", "17"},
      {"--limit", "4"},
      {"--limit", "0"},
      {"--status", "sent", "--limit", "2"},
      {"--app-id", "nobody"},
  };
  // Every filter as JSON (every column, the payload too); the table and CSV, which print the
  // same rows, for a few: each comparison is two runs of the binary.
  for (const auto& filter : filters) {
    std::vector<std::string> args = {"list"};
    args.insert(args.end(), filter.begin(), filter.end());
    args.push_back("--json");
    check_same(rows, args);
  }
  for (const std::vector<std::string>& filter : {filters[0], filters[1], filters[15], filters[18]}) {
    for (std::vector<std::string> format : {std::vector<std::string>{}, {"--csv"}}) {
      std::vector<std::string> args = {"list"};
      args.insert(args.end(), filter.begin(), filter.end());
      args.insert(args.end(), format.begin(), format.end());
      check_same(rows, args);
    }
  }
  // One of them read back: the byte order of app names, the filter on NULL apps, the gap.
  auto r = rows.run({"list", "--app-id", "(default)", "--json"});
  std::vector<std::int64_t> ids;
  for (const auto& row : json_of(r.pg)) ids.push_back(row["id"].get<std::int64_t>());
  CHECK(ids == std::vector<std::int64_t>{1, 2, 3, 4, 12, 13, 16, 19});
  auto limited = rows.run({"list", "--limit", "4"});
  CHECK(limited.pg.err.find("showing the first 4 of 19 matching rows") != std::string::npos);
  check_same(rows, {"list", "--status", "nonsense"}, 2);
}

TEST_CASE("show on PostgreSQL prints a row and its attempts as on SQLite, and the same error for no such row") {
  SameRows rows;
  for (const std::string id : {"1", "11", "12", "14", "16", "18", "19"}) {
    check_same(rows, {"show", id});
    check_same(rows, {"show", id, "--json"});
  }
  auto r = rows.run({"show", "17"});
  CHECK(r.pg.exit_code == 1);
  CHECK(r.pg.err == "metrix-relay: no row 17 in metrix_outbox\n");
  CHECK(r.pg.err == r.sqlite.err);
}

TEST_CASE("report on PostgreSQL sums revenue exactly as SQLite prints it, by event or sent time, in every format") {
  SameRows rows;
  const std::string since = metrix::utc_time(rows.ago(297)), until = metrix::utc_time(rows.ago(200));
  for (const std::vector<std::string>& range :
       {std::vector<std::string>{}, {"--since", since}, {"--until", until}, {"--since", since, "--until", until},
        {"--by", "sent"}, {"--by", "sent", "--since", since}, {"--since", "2000-01-01", "--until", "2000-01-02"}}) {
    for (std::vector<std::string> format : {std::vector<std::string>{}, {"--json"}, {"--csv"}}) {
      std::vector<std::string> args = {"report"};
      args.insert(args.end(), range.begin(), range.end());
      args.insert(args.end(), format.begin(), format.end());
      check_same(rows, args);
    }
  }
  // SQLite's sums, as SQLite prints them: integers stay integers, a real sum keeps its ".0",
  // 0.1 + 0.2 is 0.3 and 1.10 + 2.2 is 3.3.
  auto r = rows.run({"report", "--csv"});
  CHECK(r.pg.out.find(",purchase,4,350,3.3,") != std::string::npos);  // IRR 100 + 250, USD 1.10 + 2.2
  CHECK(r.pg.out.find(",alpha,purchase,3,,,100.3") != std::string::npos);  // EUR 1e2 + 0.1 + 0.2
  auto first_day = rows.run({"report", "--json", "--until", metrix::utc_time(rows.ago(299))});
  CHECK(json_of(first_day.pg)["rows"][1]["revenue"]["EUR"] == 100.3);
  CHECK(first_day.pg.out.find("\"EUR\": 100.3") != std::string::npos);
}

TEST_CASE("a relay's admin listener on PostgreSQL serves the backlog gauges and the status JSON") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 20);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto relay = Process::start(relay_args(pg.uri(), fake.url(), {"--admin-listen", "127.0.0.1:0"}), relay_env());
  const std::string url = admin_url(relay);
  REQUIRE(fake.wait_for_accepted(20, 30s));
  HttpClient http;
  auto ready = http.get(url + "/readyz");
  CHECK_MESSAGE(ready.status == 200, ready.body);
  auto metrics = http.get(url + "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("metrix_relay_write_rounds_total") != std::string::npos);
  CHECK(metrics.body.find("metrix_relay_outbox_rows{") != std::string::npos);
  CHECK(metrics.body.find("metrix_relay_outbox_rows_due{") != std::string::npos);
  CHECK(metrics.body.find("metrix_relay_outbox_read_failures_total 0") != std::string::npos);
  CHECK(metrics.body.find("metrix_relay_database_wal_bytes") == std::string::npos);  // the server's WAL is not ours
  auto status = http.get(url + "/status");
  REQUIRE_MESSAGE(status.status == 200, status.body);
  auto served = nlohmann::json::parse(status.body, nullptr, false);
  REQUIRE(!served.is_discarded());
  CHECK(served["counts"]["total"] == 20);
  CHECK(served["relay_running"] == true);
  CHECK(served["relays"].size() == 1);
  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
}
