// metrix-relay check on a postgresql:// URI, through the built binary, against a throwaway
// server: a healthy outbox, a relay killed with events in flight, a session holding an old
// snapshot, a validation trigger switched off, dead row versions, and no outbox at all.
#include <doctest/doctest.h>
#include <signal.h>

#include <thread>

#include "storage/postgres/connection.h"
#include "tests/operator_fixture.h"
#include "tests/pg_outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// The finding of `check`, as --json reports it.
nlohmann::json finding(const nlohmann::json& report, const std::string& check) {
  for (const auto& f : report["findings"]) {
    if (f["check"] == check) return f;
  }
  FAIL("no finding " << check << " in " << report.dump());
  return {};
}

std::int64_t wait_for_pg(const PgServer& pg, const std::string& sql, std::int64_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t value = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    value = pg_scalar(pg, sql);
    if (value >= n) break;
    std::this_thread::sleep_for(50ms);
  }
  return value;
}

}  // namespace

TEST_CASE("check on a freshly migrated PostgreSQL outbox finds it healthy, with every PostgreSQL finding") {
  PgServer pg;
  make_pg_outbox(pg, 5);
  auto r = relay_cli({"check", "--db", pg.uri()});
  CHECK_MESSAGE(r.exit_code == 0, r.out << r.err);
  for (const char* check : {"schema", "validation", "leases", "heartbeats", "dead tuples", "vacuum horizon"}) {
    CHECK_MESSAGE(r.out.find(std::string("ok       ") + check) != std::string::npos, check << "\n" << r.out);
  }
  CHECK(r.out.find("integrity") == std::string::npos);  // no fake findings for what the server checks itself
  CHECK(r.out.find("wal") == std::string::npos);

  auto json = relay_cli({"check", "--db", pg.uri(), "--json", "--quick"});
  CHECK(json.exit_code == 0);
  auto report = json_of(json);
  for (const char* key : {"healthy", "repaired", "expired_leases", "stale_heartbeats", "released_leases",
                          "removed_heartbeats", "wal_truncated", "wal_bytes", "dead_tuples", "vacuum_horizon_age_ms",
                          "findings"}) {
    CHECK_MESSAGE(report.contains(key), key);
  }
  CHECK(report["healthy"] == true);
  CHECK(report["findings"].size() == 6);
}

TEST_CASE("check on a PostgreSQL database without the outbox says to run migrate") {
  PgServer pg;
  auto r = relay_cli({"check", "--db", pg.uri()});
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.out.find("error    schema") != std::string::npos, r.out);
  CHECK(r.out.find("create one with 'metrix-relay migrate --db " + pg.uri() + "'") != std::string::npos);
  auto repair = relay_cli({"check", "--db", pg.uri(), "--repair", "--json"});
  CHECK(repair.exit_code == 1);
  CHECK(json_of(repair)["repaired"] == false);
}

TEST_CASE("after a relay on PostgreSQL is killed, check reports its expired leases and heartbeat, and --repair mends "
          "them, keeping a live relay's heartbeat") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 20);
  // Requests hang: every row the relay claims is still in 'sending' when it dies.
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "600000"}), fake_env());
  auto relay = Process::start(relay_args(pg.uri(), fake.url()), relay_env());
  REQUIRE_MESSAGE(wait_for_pg(pg, "SELECT count(*) FROM metrix_outbox WHERE status = 'sending'", 20, 30s) == 20,
                  relay.err());
  REQUIRE(wait_for_pg(pg, "SELECT count(*) FROM metrix_relay_heartbeat", 1, 30s) == 1);
  relay.kill(SIGKILL);
  REQUIRE(relay.wait(10s) == -SIGKILL);

  // Ten minutes later, as far as the rows can tell: the leases (90s) and the heartbeat have
  // expired. And a relay elsewhere that beat just now, every minute.
  pg.psql("UPDATE metrix_outbox SET next_attempt_at = next_attempt_at - 600000 WHERE status = 'sending'");
  pg.psql("UPDATE metrix_relay_heartbeat SET beat_at = beat_at - 600000, started_at = started_at - 600000");
  pg.psql("INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms) "
          "VALUES ('elsewhere:7:1', 'elsewhere', 7, metrix_now_ms(), metrix_now_ms(), 60000)");

  auto found = relay_cli({"check", "--db", pg.uri(), "--json"});
  CHECK(found.exit_code == 1);
  auto report = json_of(found);
  CHECK(report["healthy"] == false);
  CHECK(report["expired_leases"] == 20);
  CHECK(report["stale_heartbeats"] == 1);
  CHECK(finding(report, "leases")["level"] == "warning");
  CHECK(finding(report, "leases")["message"].get<std::string>().find("--repair makes them pending now") !=
        std::string::npos);
  const std::string stale = finding(report, "heartbeats")["message"].get<std::string>();
  CHECK_MESSAGE(stale.find(":" + std::to_string(relay.pid()) + ":") != std::string::npos, stale);
  CHECK(stale.find("elsewhere") == std::string::npos);

  auto repaired = relay_cli({"check", "--db", pg.uri(), "--repair"});
  CHECK_MESSAGE(repaired.exit_code == 0, repaired.out << repaired.err);
  CHECK(repaired.out.find("repaired: 20 expired leases released, 1 stale heartbeats removed\n") != std::string::npos);
  CHECK(pg_count_status(pg, "sending") == 0);
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox WHERE status = 'pending' AND lease_expiries = 1 AND "
                      "last_error = 'lease expired: released by a repair (may have reached Metrix)'") == 20);
  CHECK(pg.psql("SELECT relay_id FROM metrix_relay_heartbeat") == "elsewhere:7:1\n");

  auto again = relay_cli({"check", "--db", pg.uri()});
  CHECK_MESSAGE(again.exit_code == 0, again.out);
}

TEST_CASE("check on PostgreSQL names a session whose old snapshot holds back vacuum") {
  PgServer pg;
  make_pg_outbox(pg, 3);
  auto session = metrix::pg::Connection::open(pg.uri() + "?application_name=report-job");
  REQUIRE(session);
  REQUIRE(session->exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ"));
  REQUIRE(session->exec("SELECT count(*) FROM metrix_outbox"));
  const std::string pid = std::to_string(PQbackendPID(session->handle()));

  // Under the default threshold (5m), a snapshot taken a moment ago is no finding.
  CHECK(relay_cli({"check", "--db", pg.uri()}).exit_code == 0);

  auto r = relay_cli({"check", "--db", pg.uri(), "--max-xact-age", "0ms", "--json"});
  CHECK(r.exit_code == 1);
  auto report = json_of(r);
  auto horizon = finding(report, "vacuum horizon");
  CHECK(horizon["level"] == "warning");
  const std::string message = horizon["message"].get<std::string>();
  CHECK_MESSAGE(message.find("session pid " + pid + " (application report-job, user metrix, idle in transaction)") !=
                    std::string::npos,
                message);
  CHECK(message.find("SELECT pg_terminate_backend(" + pid + ")") != std::string::npos);
  CHECK(report["vacuum_horizon_age_ms"].get<std::int64_t>() > 0);
  // A repair cannot end another session: the finding stays, and so does the exit code.
  auto repair = relay_cli({"check", "--db", pg.uri(), "--max-xact-age", "0ms", "--repair"});
  CHECK(repair.exit_code == 1);
  CHECK(repair.out.find("warning  vacuum horizon session pid " + pid) != std::string::npos);

  REQUIRE(session->exec_script("COMMIT"));
  CHECK(relay_cli({"check", "--db", pg.uri(), "--max-xact-age", "0ms"}).exit_code == 0);
  CHECK(relay_cli({"check", "--db", pg.uri(), "--max-xact-age", "soon"}).exit_code == 2);
}

TEST_CASE("check on PostgreSQL calls a disabled validation trigger an error that --repair does not paper over") {
  PgServer pg;
  make_pg_outbox(pg, 1);
  pg.psql("ALTER TABLE metrix_outbox DISABLE TRIGGER metrix_outbox_validate");
  auto r = relay_cli({"check", "--db", pg.uri(), "--json"});
  CHECK(r.exit_code == 1);
  auto report = json_of(r);
  auto validation = finding(report, "validation");
  CHECK(validation["level"] == "error");
  CHECK(validation["message"].get<std::string>().find(
            "trigger metrix_outbox_validate is disabled; enable it with: ALTER TABLE metrix_outbox ENABLE TRIGGER "
            "metrix_outbox_validate") != std::string::npos);
  auto repair = relay_cli({"check", "--db", pg.uri(), "--repair", "--json"});
  CHECK(repair.exit_code == 1);
  CHECK(json_of(repair)["repaired"] == false);

  pg.psql("ALTER TABLE metrix_outbox ENABLE TRIGGER metrix_outbox_validate");
  pg.psql("ALTER TABLE metrix_outbox DROP CONSTRAINT metrix_outbox_status_check");
  auto dropped = relay_cli({"check", "--db", pg.uri()});
  CHECK(dropped.exit_code == 1);
  CHECK(dropped.out.find("error    validation     the CHECK on status (metrix_outbox_status_check) is missing") !=
        std::string::npos);
}

TEST_CASE("check on PostgreSQL warns about dead row versions that autovacuum leaves behind") {
  PgServer pg({"autovacuum=off"});
  make_pg_outbox(pg, 12000);
  pg.psql("DELETE FROM metrix_outbox");
  auto r = relay_cli({"check", "--db", pg.uri(), "--json"});
  CHECK(r.exit_code == 1);
  auto report = json_of(r);
  CHECK(report["dead_tuples"].get<std::int64_t>() >= 12000);
  const std::string message = finding(report, "dead tuples")["message"].get<std::string>();
  CHECK_MESSAGE(message.find("autovacuum is off for metrix_outbox (12000 dead, 0 live row versions)") !=
                    std::string::npos,
                message);
  CHECK(message.find("VACUUM (VERBOSE)") != std::string::npos);
}

TEST_CASE("check on a PostgreSQL URI never prints its password") {
  PgServer pg;
  make_pg_outbox(pg, 1);
  const std::string uri = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  auto healthy = relay_cli({"check", "--db", uri, "--json"});
  CHECK(healthy.exit_code == 0);
  PgServer empty;
  auto missing = relay_cli(
      {"check", "--db", "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(empty.port()) + "/postgres"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("metrix:***@") != std::string::npos);
  for (const auto& r : {healthy, missing}) {
    CHECK(r.out.find("hunter2") == std::string::npos);
    CHECK(r.err.find("hunter2") == std::string::npos);
  }
}

namespace {

// metrix_relay_database_up as the relay's /metrics says it, or -1 before it can say.
int database_up(HttpClient& http, const std::string& url) {
  auto metrics = http.get(url + "/metrics");
  const std::string needle = "\nmetrix_relay_database_up ";
  const auto at = metrics.body.find(needle);
  return metrics.status != 200 || at == std::string::npos ? -1 : metrics.body[at + needle.size()] - '0';
}

// Scrapes until the gauge reads `value` (true) or the timeout passes (false).
bool wait_for_database_up(HttpClient& http, const std::string& url, int value, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (database_up(http, url) == value) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

}  // namespace

TEST_CASE("a relay on PostgreSQL reports its database down while the server is stopped, and up once it is back") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 5);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto relay = Process::start(relay_args(pg.uri(), fake.url(), {"--admin-listen", "127.0.0.1:0"}), relay_env());
  const std::string url = admin_url(relay);
  HttpClient http;
  CHECK(wait_for_database_up(http, url, 1, 30s));
  pg.stop();
  CHECK_MESSAGE(wait_for_database_up(http, url, 0, 30s), relay.err());
  pg.start();
  CHECK_MESSAGE(wait_for_database_up(http, url, 1, 30s), relay.err());
  CHECK(fake.wait_for_accepted(5, 30s));
  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
}

TEST_CASE("check on PostgreSQL by a role that cannot see other roles' sessions says so rather than calling the "
          "horizon clear") {
  PgServer pg;
  make_pg_outbox(pg, 1);
  // A name that must be quoted in the GRANT the finding suggests.
  pg.psql("CREATE ROLE \"Night-Watch\" LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"Night-Watch\"");
  auto session = metrix::pg::Connection::open(pg.uri());
  REQUIRE(session);
  REQUIRE(session->exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ"));
  REQUIRE(session->exec("SELECT count(*) FROM metrix_outbox"));
  const std::string as_watcher = "postgresql://Night-Watch@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  auto r = relay_cli({"check", "--db", as_watcher});
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.out.find("warning  vacuum horizon role Night-Watch cannot see 1 session of other roles, so cannot "
                           "tell whether it holds back vacuum") != std::string::npos,
                r.out);
  CHECK(r.out.find("GRANT pg_read_all_stats TO \"Night-Watch\"") != std::string::npos);
  pg.psql("GRANT pg_read_all_stats TO \"Night-Watch\"");
  CHECK(relay_cli({"check", "--db", as_watcher}).exit_code == 0);
}

TEST_CASE("check on PostgreSQL by a role that cannot see other roles' sessions does not count an autovacuum worker "
          "as one") {
  // An autovacuum worker slowed to a crawl, so it is still at work while check runs.
  PgServer pg({"autovacuum_naptime=1", "autovacuum_vacuum_cost_delay=100", "autovacuum_vacuum_cost_limit=1"});
  make_pg_outbox(pg, 1);
  pg.psql("CREATE ROLE watcher LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO watcher");
  pg.psql("CREATE TABLE ballast AS SELECT g FROM generate_series(1, 200000) g; DELETE FROM ballast");
  const std::string workers =
      "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%ballast%'";
  REQUIRE_MESSAGE(wait_for_pg(pg, workers, 1, 60s) == 1, "autovacuum never started on the ballast table");
  const std::string as_watcher = "postgresql://watcher@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  auto r = relay_cli({"check", "--db", as_watcher});
  CHECK_MESSAGE(r.out.find("ok       vacuum horizon") != std::string::npos, r.out);
  CHECK(r.exit_code == 0);
  CHECK_MESSAGE(pg_scalar(pg, workers) == 1, "the autovacuum worker finished before check ran: slow it further");
}
