// The relay on a PostgreSQL outbox: the real metrix-relay and fake-metrix against a throwaway
// server, and storage/postgres/relay_store.h driven directly where a test needs to hold a
// claim in its hand (fencing, suspects).
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "storage/clock.h"
#include "storage/postgres/relay_store.h"
#include "tests/pg_outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using metrix::Claim;
using metrix::Outcome;
using metrix::RowStatus;
using metrix::WriteJob;
using metrix::pg::PgRelayStore;
using namespace std::chrono_literals;

namespace {

RunResult run_until_idle(const PgServer& pg, const FakeMetrix& fake, const std::vector<std::string>& extra = {}) {
  auto args = relay_args(pg.uri(), fake.url(), extra);
  args.push_back("--until-idle");
  return run(args, {}, relay_env(), 60s);
}

std::unique_ptr<PgRelayStore> open_store(const PgServer& pg) {
  auto store = PgRelayStore::open(pg.uri());
  REQUIRE_MESSAGE(store, store.error().message);
  return std::move(*store);
}

// A round that only claims: up to `n` rows of the NULL app, leased for `lease_ms`.
WriteJob claim_job(int n, std::int64_t lease_ms, bool suspect) {
  WriteJob job;
  job.now = metrix::now_ms();
  job.lease_ms = lease_ms;
  job.claim_limit = n;
  job.gates = {{std::nullopt, n}};
  job.claim_suspect = suspect;
  return job;
}

Outcome sent(const Claim& c) {
  Outcome o;
  o.id = c.id;
  o.lease_token = c.lease_token;
  o.status = RowStatus::sent;
  o.http_status = 200;
  o.started_at = o.finished_at = metrix::now_ms();
  return o;
}

// Waits past a lease of a few milliseconds on the database's clock.
void let_leases_expire() { std::this_thread::sleep_for(50ms); }

}  // namespace

TEST_CASE("a relay on PostgreSQL delivers every committed event once, byte for byte, with eventTime from created_at") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 300);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_until_idle(pg, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(pg_count_status(pg, "sent") == 300);
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox WHERE event_time = created_at AND sent_at >= created_at "
                      "AND last_http_status = 200 AND attempts = 1 AND lease_token = 1") == 300);
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox_attempt a JOIN metrix_outbox o ON o.id = a.outbox_id "
                      "WHERE a.attempt = 1 AND a.http_status = 200 AND a.finished_at = o.sent_at") == 300);
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_relay_heartbeat") == 0);  // removed at its clean exit

  std::multiset<std::string> bodies;
  for (const auto& rec : fake.records()) bodies.insert(rec["body"].get<std::string>());
  CHECK(bodies.size() == 300);
  std::istringstream rows(pg.psql("SELECT payload || '|' || created_at FROM metrix_outbox"));
  int matched = 0;
  for (std::string line; std::getline(rows, line);) {
    const auto bar = line.rfind('|');
    const std::string expected = "{\"eventTime\":" + line.substr(bar + 1) + "," + line.substr(1, bar - 1);
    matched += bodies.count(expected) == 1;
  }
  CHECK(matched == 300);
  CHECK(r.err.find("finished: sent 300") != std::string::npos);
}

TEST_CASE("a relay on PostgreSQL reads its tables by index only, however they grew since it planned its statements") {
  // The statements are prepared once and planned from the statistics of that moment, when
  // metrix_outbox_attempt was empty: the attempt numbering then scanned the whole table for
  // every outcome, and recording slowed as it grew.
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 2000);
  pg.psql("SELECT pg_stat_reset()");
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_until_idle(pg, fake, {"--concurrency", "8"});  // small batches: many rounds
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  // The relay's backends have ended, and with them flushed their counts.
  CHECK(pg.psql("SELECT relname || ' ' || seq_scan FROM pg_stat_user_tables WHERE relname IN "
                "('metrix_outbox', 'metrix_outbox_attempt') ORDER BY relname") ==
        "metrix_outbox 0\nmetrix_outbox_attempt 0\n");
  CHECK(pg_count_status(pg, "sent") == 2000);
}

TEST_CASE("a relay on PostgreSQL retries 5xx answers with the same bytes and records every attempt") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 1);
  auto fake = FakeMetrix::start(dir, fake_args({"--script", "503,503,drop,200"}), fake_env());
  auto r = run_until_idle(pg, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  auto records = fake.records();  // the accepted requests: the dropped one and the last
  REQUIRE(records.size() == 2);
  CHECK(records[0]["body"] == records[1]["body"]);
  CHECK(pg.psql("SELECT status, attempts, last_http_status FROM metrix_outbox") == "sent|4|200\n");
  CHECK(pg.psql("SELECT string_agg(attempt || ':' || coalesce(http_status::text, 'none'), ',' ORDER BY attempt) "
                "FROM metrix_outbox_attempt") == "1:503,2:503,3:none,4:200\n");
}

TEST_CASE("an outcome of a relay whose lease expired is fenced off and the new claim's is recorded") {
  PgServer pg;
  make_pg_outbox(pg, 1);
  auto stalled = open_store(pg);
  auto other = open_store(pg);

  auto first = stalled->write_round(claim_job(10, 1, true));
  REQUIRE(first);
  REQUIRE(first->claims.size() == 1);
  CHECK(first->claims[0].lease_token == 1);
  CHECK(!first->claims[0].lease_expired);
  CHECK(first->active_apps == std::vector<std::optional<std::string>>{std::nullopt});
  let_leases_expire();
  auto second = other->write_round(claim_job(10, 60'000, true));
  REQUIRE(second);
  REQUIRE(second->claims.size() == 1);
  CHECK(second->claims[0].lease_token == 2);
  CHECK(second->claims[0].lease_expired);
  CHECK(second->claims[0].lease_expiries == 1);
  CHECK(second->claims[0].event_time == first->claims[0].event_time);  // fixed at the first claim

  WriteJob stale;
  stale.now = metrix::now_ms();
  stale.outcomes.push_back(sent(first->claims[0]));
  auto fenced = stalled->write_round(stale);
  REQUIRE(fenced);
  CHECK(fenced->recorded.recorded == 0);
  CHECK(fenced->recorded.fenced == 1);
  CHECK(fenced->recorded.fenced_ids == std::vector<std::int64_t>{first->claims[0].id});
  CHECK(pg.psql("SELECT status, attempts FROM metrix_outbox") == "sending|0\n");

  WriteJob current;
  current.now = metrix::now_ms();
  current.outcomes.push_back(sent(second->claims[0]));
  auto recorded = other->write_round(current);
  REQUIRE(recorded);
  CHECK(recorded->recorded.recorded == 1);
  CHECK(recorded->recorded.sent == 1);
  CHECK(recorded->recorded.fenced == 0);
  CHECK(recorded->active_apps.empty());
  CHECK(pg.psql("SELECT status, attempts, lease_expiries FROM metrix_outbox") == "sent|1|0\n");
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox_attempt") == 1);
}

TEST_CASE("a round claims one suspect at most, only when allowed, and leaves the others due and untouched") {
  PgServer pg;
  make_pg_outbox(pg, 3);
  auto dead_relay = open_store(pg);
  auto store = open_store(pg);
  REQUIRE(dead_relay->write_round(claim_job(10, 1, true))->claims.size() == 3);
  let_leases_expire();
  add_pg_events(pg, 4, 5);  // two fresh rows behind the three suspects

  auto no_suspect = store->write_round(claim_job(10, 60'000, false));
  REQUIRE(no_suspect);
  REQUIRE(no_suspect->claims.size() == 2);
  CHECK(no_suspect->claims[0].id == 4);
  CHECK(no_suspect->claims[1].id == 5);
  CHECK(!no_suspect->next_due_at);  // suspects left aside: a sooner claim would find them again

  auto one = store->write_round(claim_job(10, 60'000, true));
  REQUIRE(one);
  REQUIRE(one->claims.size() == 1);
  CHECK(one->claims[0].id == 1);
  CHECK(one->claims[0].lease_expired);
  CHECK(one->claims[0].lease_expiries == 1);
  CHECK(pg.psql("SELECT string_agg(id || ':' || lease_token || ':' || lease_expiries, ',' ORDER BY id) "
                "FROM metrix_outbox") == "1:2:1,2:1:0,3:1:0,4:1:0,5:1:0\n");
}

TEST_CASE("claims take apps in app_id order, each up to its gate, and say when the next row is due") {
  PgServer pg;
  make_pg_outbox(pg, 2);  // the NULL app
  pg.psql("INSERT INTO metrix_outbox (app_id, payload, next_attempt_at) SELECT app, payload, metrix_now_ms() + 3600000 "
          "FROM (SELECT payload FROM metrix_outbox LIMIT 1) p, (VALUES ('b'), ('a')) v(app)");
  pg.psql("INSERT INTO metrix_outbox (app_id, payload) SELECT app, payload "
          "FROM (SELECT payload FROM metrix_outbox LIMIT 1) p, (VALUES ('b'), ('b'), ('a')) v(app)");
  auto store = open_store(pg);
  WriteJob job = claim_job(3, 7'200'000, true);  // leases end after the row due in an hour
  job.gates = {{std::nullopt, 1}, {"a", 5}, {"b", 5}};
  auto round = store->write_round(job);
  REQUIRE(round);
  CHECK(round->active_apps == std::vector<std::optional<std::string>>{std::nullopt, "a", "b"});
  REQUIRE(round->claims.size() == 3);  // 1 of NULL's (its gate), a's one due row, then the limit: 1 of b's
  CHECK(!round->claims[0].app_id);
  CHECK(round->claims[1].app_id == "a");
  CHECK(round->claims[2].app_id == "b");
  // Only 'a' got fewer than it asked for: its next row is due in an hour (on this host's clock).
  REQUIRE(round->next_due_at);
  CHECK(*round->next_due_at > job.now + 3'500'000);
  CHECK(*round->next_due_at < job.now + 3'700'000);
}

TEST_CASE("two relays on one PostgreSQL outbox share the work and never send one row twice") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 2000);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "5"}), fake_env());
  auto args = relay_args(pg.uri(), fake.url(), {"--until-idle", "--concurrency", "16"});
  auto a = Process::start(args, relay_env());
  auto b = Process::start(args, relay_env());
  CHECK_MESSAGE(a.wait(90s) == 0, a.err());
  CHECK_MESSAGE(b.wait(90s) == 0, b.err());
  CHECK(pg_count_status(pg, "sent") == 2000);
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox WHERE attempts = 1 AND lease_token = 1") == 2000);
  std::map<std::string, int> copies;
  for (const auto& rec : fake.records()) copies[rec["body"].get<std::string>()]++;
  CHECK(copies.size() == 2000);
  int twice = 0;
  for (const auto& copy : copies) twice += copy.second > 1;
  CHECK(twice == 0);
}

TEST_CASE("a relay adopts the 403 pauses and resumptions other relays store in metrix_app_pause") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 5);
  auto fake = FakeMetrix::start(dir, fake_args({"--s2s-disabled", "app1"}), fake_env());
  // Left to itself, this relay would not probe the app again for an hour.
  auto relay = Process::start(relay_args(pg.uri(), fake.url(), {"--pause-interval", "1h", "--pause-max", "1h",
                                                                "--progress-interval", "1s"}),
                              relay_env());
  REQUIRE(relay.wait_for_err("app app1 paused: Metrix answered 403", 30s));
  for (int i = 0; i < 600 && pg_scalar(pg, "SELECT count(*) FROM metrix_app_pause") == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE(pg_scalar(pg, "SELECT count(*) FROM metrix_app_pause") == 1);  // its own pause is stored
  // Another relay's probe was accepted, and it cleared the pause.
  pg.psql("DELETE FROM metrix_app_pause");
  CHECK(relay.wait_for_err("app app1 resumed: another relay on this outbox had an event accepted", 20s));
  // Another relay was refused, and stored its pause.
  pg.psql("INSERT INTO metrix_app_pause VALUES ('app1', 'S2S_FEATURE_NOT_AVAILABLE', metrix_now_ms(), "
          "metrix_now_ms() + 3600000, 3600000)");
  CHECK(relay.wait_for_err("app app1 paused by another relay on this outbox (Metrix answered 403 S2S_FEATURE_NOT_AVAILABLE)",
                           20s));
  relay.kill(SIGTERM);
  CHECK(relay.wait(20s) == 0);
}

TEST_CASE("a relay and a producer work with only the grants the README lists") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 20);
  pg.psql("CREATE ROLE relay LOGIN; CREATE ROLE producer LOGIN; "
          "GRANT SELECT, UPDATE ON metrix_outbox TO relay; GRANT SELECT, INSERT ON metrix_outbox_attempt TO relay; "
          "GRANT SELECT, INSERT, UPDATE, DELETE ON metrix_app_pause, metrix_relay_heartbeat TO relay; "
          "GRANT SELECT ON metrix_schema_migrations TO relay; GRANT SELECT ON SEQUENCE metrix_outbox_id_seq TO relay; "
          "GRANT SELECT, INSERT ON metrix_outbox TO producer");
  auto as = [&](const std::string& role) { return "postgresql://" + role + "@127.0.0.1:" + std::to_string(pg.port()) + "/postgres"; };
  auto produced = run({"/usr/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", as("producer"), "-c",
                       "INSERT INTO metrix_outbox (payload) VALUES "
                       "('{\"metrixUserId\":\"u\",\"eventSlug\":\"s\",\"oaid\":\"o\"}') RETURNING id"});
  CHECK_MESSAGE(produced.exit_code == 0, produced.err);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run(relay_args(as("relay"), fake.url(), {"--until-idle"}), {}, relay_env(), 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(pg_count_status(pg, "sent") == 21);
}

TEST_CASE("an answer that is not UTF-8 text is recorded with its bad bytes replaced, not refused") {
  PgServer pg;
  make_pg_outbox(pg, 1);
  auto store = open_store(pg);
  auto round = store->write_round(claim_job(1, 60'000, true));
  REQUIRE(round);
  REQUIRE(round->claims.size() == 1);
  WriteJob job;
  job.now = metrix::now_ms();
  Outcome o = sent(round->claims[0]);
  o.response = std::string("ok\xff\x00\xc3\xa9", 6);
  job.outcomes.push_back(o);
  auto recorded = store->write_round(job);
  REQUIRE_MESSAGE(recorded, recorded.error().message);
  CHECK(recorded->recorded.sent == 1);
  CHECK(pg.psql("SELECT response FROM metrix_outbox_attempt") == "ok\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9\n");
}

TEST_CASE("a relay on PostgreSQL never prints the URI's password") {
  PgServer pg;
  TempDir dir;
  make_pg_outbox(pg, 1);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  const std::string uri = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  auto args = relay_args(uri, fake.url(), {"--until-idle"});
  auto r = run(args, {}, relay_env(), 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("metrix:***@") != std::string::npos);
  CHECK(r.err.find("hunter2") == std::string::npos);
  CHECK(r.out.find("hunter2") == std::string::npos);
}
