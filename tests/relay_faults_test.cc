// The relay under faults: a flaky server, a 403 pause, TLS, shutdown, producers committing
// beside it, two relays on one database, and the dev key never printed.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <cstdio>
#include <thread>

#include "storage/producer.h"
#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// Waits until `sql` (a count) reaches `n` or the timeout passes; returns the last value.
std::int64_t wait_for_count(const std::string& db, const std::string& sql, std::int64_t n,
                            std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t value = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    value = scalar(db, sql);
    if (value >= n) break;
    std::this_thread::sleep_for(20ms);
  }
  return value;
}

std::map<std::string, int> copies_by_body(const FakeMetrix& fake) {
  std::map<std::string, int> copies;
  for (const auto& rec : fake.records()) copies[rec["body"].get<std::string>()]++;
  return copies;
}

// N from the final line "finished: sent N, ..." of a relay's output; -1 if there is none.
std::int64_t finished_sent(const std::string& err) {
  const std::string mark = "finished: sent ";
  auto at = err.rfind(mark);
  return at == std::string::npos ? -1 : std::stoll(err.substr(at + mark.size()));
}

// Deliveries beyond the first of each event.
int duplicates(const std::map<std::string, int>& copies) {
  int extra = 0;
  for (const auto& [body, n] : copies) extra += n - 1;
  return extra;
}

}  // namespace

TEST_CASE("every event is delivered under 30% server errors, lost answers and 429s") {
  TempDir dir;
  make_outbox(dir.db(), 1000);
  auto fake = FakeMetrix::start(
      dir, fake_args({"--error-rate", "0.3", "--drop-rate", "0.1", "--rate-429", "0.1", "--retry-after", "0", "--seed", "7"}),
      fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--max-attempts", "100", "--concurrency", "32"}), {},
               relay_env(), 120s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 1000);
  auto copies = copies_by_body(fake);
  CHECK(copies.size() == 1000);  // every event arrived; a lost answer means it arrived more than once
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt") > 1300);
  CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
}

TEST_CASE("a 403 pauses the app without burning rows, is visible in the database, and resumes on the first 2xx") {
  TempDir dir;
  make_outbox(dir.db(), 50);
  auto fake = FakeMetrix::start(dir, fake_args({"--s2s-disabled", "app1"}), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--pause-interval", "200ms", "--pause-max", "400ms"}),
                              relay_env());
  CHECK(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_app_pause WHERE reason = 'S2S_FEATURE_NOT_AVAILABLE'", 1) == 1);
  std::this_thread::sleep_for(1500ms);  // several probe intervals
  auto attempts_while_paused = scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt");
  // One statement, one snapshot: a probe row moves sending -> pending while the relay runs, so
  // two separate counts can miss it (seen in CI under TSan: 49).
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status IN ('pending', 'sending')") == 50);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status IN ('failed', 'dead')") == 0);
  // The first burst may be in flight before the first 403 arrives; after that, one probe per
  // interval (200ms, 400ms, 400ms, ...): far fewer attempts than rows.
  CHECK(attempts_while_paused <= 64 + 8);

  fake.control("s2s-disabled=");  // the operator fixed the plan
  CHECK(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", 50) == 50);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_app_pause") == 0);
  relay.kill(SIGTERM);
  CHECK(relay.wait(10s) == 0);
  CHECK(relay.err().find("app app1 paused: Metrix answered 403 S2S_FEATURE_NOT_AVAILABLE") != std::string::npos);
  CHECK(relay.err().find("app app1 resumed") != std::string::npos);
}

TEST_CASE("--until-idle exits non-zero and says why when only a paused app's rows remain") {
  TempDir dir;
  make_outbox(dir.db(), 3);
  auto fake = FakeMetrix::start(dir, fake_args({"--s2s-disabled", "app1"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--pause-interval", "10s"}), {}, relay_env());
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("cannot finish: 3 rows wait: app app1 is paused") != std::string::npos);
  // Since when, as a UTC time like the log's own (before: milliseconds since 1970).
  const std::string since = text(dir.db(), "SELECT strftime('%Y-%m-%dT%H:%M:%S', since / 1000, 'unixepoch') || "
                                           "printf('.%03dZ', since % 1000) FROM metrix_app_pause");
  CHECK_MESSAGE(r.err.find("app app1 is paused since " + since + " (Metrix answered 403") != std::string::npos, r.err);
  CHECK(count_status(dir.db(), "pending") == 3);
}

TEST_CASE("https to fake-metrix works with a test CA given by --cacert, and fails safely without it") {
  TempDir dir;
  auto ca_key = dir.file("ca.key").string(), ca = dir.file("ca.pem").string();
  auto key = dir.file("server.key").string(), csr = dir.file("server.csr").string(), cert = dir.file("server.pem").string();
  auto ext = dir.file("ext.cnf").string();
  std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  REQUIRE(run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
               "-days", "2", "-subj", "/CN=metrix-relay test CA"}).exit_code == 0);
  REQUIRE(run({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
               "/CN=127.0.0.1"}).exit_code == 0);
  REQUIRE(run({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
               cert, "-days", "2", "-extfile", ext}).exit_code == 0);
  make_outbox(dir.db(), 20);
  auto fake = FakeMetrix::start(dir, fake_args({"--tls-cert", cert, "--tls-key", key}), fake_env());
  REQUIRE(fake.url().rfind("https://", 0) == 0);

  auto untrusted = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--max-attempts", "1"}), {}, relay_env());
  CHECK(untrusted.exit_code == 0);
  CHECK(count_status(dir.db(), "dead") == 20);
  const std::string tls_error = text(dir.db(), "SELECT last_error FROM metrix_outbox LIMIT 1");
  CHECK_MESSAGE(tls_error.find("tls:") == 0, tls_error);
  CHECK(fake.records().empty());

  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("UPDATE metrix_outbox SET status = 'pending', next_attempt_at = 0"));
  }
  auto connections_before = fake.stats()["connections"].get<int>();
  auto trusted = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--cacert", ca, "--concurrency", "4"}), {},
                     relay_env());
  CHECK_MESSAGE(trusted.exit_code == 0, trusted.err);
  CHECK(count_status(dir.db(), "sent") == 20);
  CHECK(fake.records().size() == 20);
  // Kept alive: at most one connection (one TLS handshake) per request in flight, not per event;
  // the server counts one more, the test's own /__stats request.
  // The final line ends "..., N requests over M connections, ...".
  int requests = 0, connections = 0;
  auto at = trusted.err.rfind(" requests over ");
  REQUIRE(at != std::string::npos);
  at = trusted.err.find_last_not_of("0123456789", at - 1) + 1;
  REQUIRE(std::sscanf(trusted.err.c_str() + at, "%d requests over %d connections", &requests, &connections) == 2);
  CHECK(requests == 20);
  CHECK(connections >= 1);
  CHECK(connections <= 4);
  CHECK(fake.stats()["connections"].get<int>() - connections_before <= 4 + 1);
}

TEST_CASE("SIGTERM stops claiming, lets requests in flight finish, records them and exits 0; the heartbeat shows the run") {
  TempDir dir;
  make_outbox(dir.db(), 500);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "300"}), fake_env());
  // A shutdown deadline no build reaches: every request in flight is answered before the exit.
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--concurrency", "16", "--shutdown-timeout", "30s"}),
                              relay_env());
  REQUIRE(fake.wait_for_accepted(20, 20s));
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_relay_heartbeat WHERE pid = " + std::to_string(relay.pid())) == 1);
  relay.kill(SIGTERM);
  auto code = relay.wait(60s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(count_status(dir.db(), "sending") == 0);
  auto sent = count_status(dir.db(), "sent");
  CHECK(sent < 500);
  CHECK(sent + count_status(dir.db(), "pending") == 500);
  // Every request that reached the server was answered and recorded before the exit.
  CHECK(static_cast<std::int64_t>(fake.records().size()) == sent);
  CHECK(relay.err().find("stopping: no new claims") != std::string::npos);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_relay_heartbeat") == 0);  // a clean exit says goodbye
}

TEST_CASE("a producer committing in a loop beside a draining relay never sees SQLITE_BUSY") {
  TempDir dir;
  make_outbox(dir.db(), 5000);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--poll-interval", "10ms"}), relay_env());

  std::atomic<int> busy{0}, committed{0}, other_errors{0};
  std::int64_t worst_commit_us = 0;
  {
    sqlite3* app = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &app) == SQLITE_OK);
    sqlite3_busy_timeout(app, 2000);  // a typical producer setting
    {
      metrix::Producer producer(app);
      for (int i = 0; i < 1000; ++i) {
        auto start = std::chrono::steady_clock::now();
        int rc = sqlite3_exec(app, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        if (rc == SQLITE_BUSY) { ++busy; continue; }
        auto id = producer.enqueue(valid_payload(100000 + i));
        if (!id) { id.error().code == metrix::Errc::busy ? ++busy : ++other_errors; }
        rc = sqlite3_exec(app, "COMMIT", nullptr, nullptr, nullptr);
        if (rc == SQLITE_BUSY) ++busy;
        else if (rc == SQLITE_OK) ++committed;
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
        worst_commit_us = std::max<std::int64_t>(worst_commit_us, us);
        std::this_thread::sleep_for(1ms);
      }
    }
    sqlite3_close(app);
  }
  CHECK(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", 6000, 60s) == 6000);
  relay.kill(SIGTERM);
  auto code = relay.wait(20s);
  REQUIRE(code.has_value());
  CHECK_MESSAGE(*code == 0, relay.err());
  CHECK(busy == 0);
  CHECK(other_errors == 0);
  CHECK(committed == 1000);
  CHECK(count_status(dir.db(), "sent") == 6000);
  MESSAGE("slowest producer transaction beside the relay: " << worst_commit_us << " us");
}

TEST_CASE("beside a producer the relay keeps the pause between its write rounds even when it has sent every row it claimed") {
  // With --commit-interval 500ms, rounds start at least 500 ms apart, so a 3 s progress window
  // holds at most 7 of them. fake-metrix answers at once: the relay sends the rows of a round
  // (about 2,000) well before the pause ends, and must wait all the same. Alone it need not.
  TempDir dir;
  make_outbox(dir.db(), 30000);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto relay = Process::start(
      relay_args(dir.db(), fake.url(), {"--commit-interval", "500ms", "--progress-interval", "3s"}), relay_env());
  REQUIRE(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", 1, 20s) >= 1);
  {
    sqlite3* app = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &app) == SQLITE_OK);
    sqlite3_busy_timeout(app, 5000);
    {
      metrix::Producer producer(app);  // its statements are finalized before the close
      const auto end = std::chrono::steady_clock::now() + 10s;
      for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
        REQUIRE(sqlite3_exec(app, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
        REQUIRE(producer.enqueue(valid_payload(100000 + i)));
        REQUIRE(sqlite3_exec(app, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
        std::this_thread::sleep_for(5ms);
      }
    }
    REQUIRE(sqlite3_close(app) == SQLITE_OK);
  }
  relay.kill(SIGTERM);
  REQUIRE(relay.wait(30s) == 0);
  // The rounds of each progress line while the producer committed ("N writes holding the
  // lock"), but the first line's: the relay had not seen the producer yet.
  std::vector<int> rounds;
  const std::string err = relay.err();
  for (size_t at = err.find("progress: "); at != std::string::npos; at = err.find("progress: ", at + 1)) {
    auto end = err.find(" writes holding the lock", at);
    REQUIRE(end != std::string::npos);
    rounds.push_back(std::stoi(err.substr(err.rfind(' ', end - 1) + 1)));
  }
  REQUIRE_MESSAGE(rounds.size() >= 3, err);
  for (size_t i = 1; i < rounds.size(); ++i) CHECK_MESSAGE(rounds[i] <= 7, err);
  CHECK(count_status(dir.db(), "sent") > 0);
}

TEST_CASE("two relays on one database never send the same row, and deliver everything") {
  TempDir dir;
  make_outbox(dir.db(), 3000);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "2"}), fake_env());
  auto a = Process::start(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "16"}), relay_env());
  auto b = Process::start(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "16"}), relay_env());
  CHECK(a.wait(60s) == 0);
  CHECK(b.wait(60s) == 0);
  CHECK(count_status(dir.db(), "sent") == 3000);
  auto copies = copies_by_body(fake);
  CHECK(copies.size() == 3000);
  CHECK(duplicates(copies) == 0);  // no lease expired, so no row was ever sent twice
  CHECK(a.err().find("finished: sent") != std::string::npos);
  CHECK(b.err().find("finished: sent") != std::string::npos);
}

TEST_CASE("outcomes fenced off by a newer claim are not counted, so two relays' counts add up to the rows") {
  // Relay A sends every row, but cannot record the answers: the test holds the write lock, then
  // A is stopped (SIGSTOP) until its lease has ended and relay B has claimed, sent and recorded
  // the rows again. When A resumes, its outcomes are fenced off, and A must not count them.
  TempDir dir;
  make_outbox(dir.db(), 40);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "300"}), fake_env());
  std::vector<std::string> extra = {"--until-idle", "--concurrency", "40", "--timeout", "1s", "--lease", "3s",
                                    "--shutdown-timeout", "1s"};
  auto a = Process::start(relay_args(dir.db(), fake.url(), extra), relay_env());
  REQUIRE_MESSAGE(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'sending'", 40, 20s) == 40, a.err());
  const auto claimed = std::chrono::steady_clock::now();
  sqlite3* lock = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &lock) == SQLITE_OK);
  sqlite3_busy_timeout(lock, 5000);
  REQUIRE(sqlite3_exec(lock, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(fake.wait_for_accepted(40, 10s));
  std::this_thread::sleep_for(300ms);  // the answers reach A, which waits for the lock
  a.kill(SIGSTOP);
  std::this_thread::sleep_until(claimed + 3500ms);  // A's lease has ended
  CHECK(sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(lock);

  auto b = Process::start(relay_args(dir.db(), fake.url(), extra), relay_env());
  CHECK_MESSAGE(b.wait(30s) == 0, b.err());
  a.kill(SIGCONT);
  CHECK_MESSAGE(a.wait(30s) == 0, a.err());
  CHECK(count_status(dir.db(), "sent") == 40);
  CHECK(a.err().find("outcomes not recorded: their rows were claimed again") != std::string::npos);
  CHECK_MESSAGE(finished_sent(a.err()) == 0, a.err());
  CHECK_MESSAGE(finished_sent(b.err()) == 40, b.err());
  // The audit trail holds B's attempts only: A's were fenced off with its outcomes.
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status = 200") == 40);
}

TEST_CASE("the dev key never appears in any output of a verbose run with failures") {
  TempDir dir;
  make_outbox(dir.db(), 30);
  make_outbox(dir.db(), 2, "unknown-slug");
  auto fake = FakeMetrix::start(dir, fake_args({"--slug", "taqsq", "--error-rate", "0.3", "--verbose"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--verbose", "--max-attempts", "50"}), {}, relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("row ") != std::string::npos);  // verbose really logged details
  CHECK(r.out.find(kDevKey) == std::string::npos);
  CHECK(r.err.find(kDevKey) == std::string::npos);
  fake.process().kill(SIGTERM);
  fake.process().wait(5s);
  CHECK(fake.process().out().find(kDevKey) == std::string::npos);
  CHECK(fake.process().err().find(kDevKey) == std::string::npos);
  auto db = metrix::Database::open(dir.db());
  REQUIRE(db);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE instr(coalesce(response, '') || "
                         "coalesce(error, ''), '" + kDevKey + "') > 0") == 0);
}

TEST_CASE("a paused app's probe handed back before its lease could end is probed again, and the app resumes") {
  // One request slot, 300 ms an answer, a 2 s lease: a row may wait 0.5 s for the slot, then
  // it is handed back. zapp sorts after the default app, so its probe is claimed behind 12
  // rows and handed back. Before the fix zapp stayed "probe in flight" and was never probed
  // again: --until-idle ended with exit 1, its rows pending, although Metrix accepted them.
  TempDir dir;
  make_outbox(dir.db(), 12);
  make_outbox(dir.db(), 2, "taqsq", "zapp");
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("INSERT INTO metrix_app_pause (app_id, reason, since, next_probe_at, interval_ms) "
                     "VALUES ('zapp', 'S2S_FEATURE_NOT_AVAILABLE', 0, 0, 200)"));
  }
  std::string zapp_key = "zapp-key-77a1";
  std::ofstream(dir.file("relay.toml")) << app_key_config(dir, "zapp", zapp_key);
  auto fake = FakeMetrix::start(dir, {"--app", "app1", "--app", "zapp", "--latency-ms", "300"},
                                {{"FAKE_METRIX_KEYS", "app1=" + kDevKey + ",zapp=" + zapp_key}});
  auto r = run(relay_args(dir.db(), fake.url(), {"--config", dir.file("relay.toml").string(), "--until-idle",
                                                  "--concurrency", "1", "--timeout", "500ms", "--lease", "2s",
                                                  "--shutdown-timeout", "1s", "--pause-interval", "200ms"}),
               {}, relay_env(), 90s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 14);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_app_pause") == 0);
  CHECK(r.err.find("app zapp resumed") != std::string::npos);
}

TEST_CASE("rows waiting for a request slot are never sent after their lease ends, so two slow relays never both send one") {
  // Each relay claims far more rows than its single request slot can send within the lease
  // (2s, at 0.3s per request): without the guard, the second relay would claim the first
  // one's expired rows while the first still meant to send them.
  TempDir dir;
  make_outbox(dir.db(), 24);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "300"}), fake_env());
  std::vector<std::string> extra = {"--until-idle", "--concurrency", "1", "--timeout", "500ms", "--lease", "2s",
                                    "--shutdown-timeout", "1s"};
  auto a = Process::start(relay_args(dir.db(), fake.url(), extra), relay_env());
  auto b = Process::start(relay_args(dir.db(), fake.url(), extra), relay_env());
  CHECK(a.wait(90s) == 0);
  CHECK(b.wait(90s) == 0);
  CHECK(count_status(dir.db(), "sent") == 24);
  auto copies = copies_by_body(fake);
  CHECK(copies.size() == 24);
  // Each copy is an attempt recorded on the row: a second copy only after an attempt that got
  // no answer in time (in doubt, sent again; slow builds such as ThreadSanitizer's see that).
  // A relay sending a row whose lease had ended would leave a copy with no attempt, its
  // outcome fenced off by the newer claim.
  for (const auto& copy : copies) {
    const auto& body = copy.first;  // (not a structured binding: CHECK_MESSAGE captures it)
    const auto n = copy.second;
    auto user = nlohmann::json::parse(body)["metrixUserId"].get<std::string>();  // "user-<row id>"
    CHECK_MESSAGE(n == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id = " + user.substr(5)),
                  body);
  }
  CHECK(duplicates(copies) == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status IS NULL"));
}
