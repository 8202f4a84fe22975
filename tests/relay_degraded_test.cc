// The relay against a degraded Metrix (fake-metrix answering 5xx and 429): the app's window
// of requests in flight adapts instead of stalling, a dead Metrix sees one probe at a time,
// a Retry-After holds the app, and every row's attempt history stays true.
#include <doctest/doctest.h>

#include <fstream>
#include <thread>

#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

std::int64_t requests(const FakeMetrix& fake) { return fake.stats()["requests"].get<std::int64_t>(); }

// Every sent row's attempt history is true: one attempt row per counted attempt, numbered
// 1..attempts, the last one its 2xx, every earlier one an error (a 5xx or 429, or a transport
// error such as a timeout); nothing is sent that fake-metrix did not accept.
void check_attempt_histories(const std::string& db) {
  CHECK(scalar(db, "SELECT count(*) FROM metrix_outbox o WHERE attempts != (SELECT count(*) FROM "
                   "metrix_outbox_attempt a WHERE a.outbox_id = o.id)") == 0);
  CHECK(scalar(db, "SELECT count(*) FROM metrix_outbox o WHERE status = 'sent' AND (SELECT http_status FROM "
                   "metrix_outbox_attempt a WHERE a.outbox_id = o.id ORDER BY attempt DESC LIMIT 1) "
                   "NOT BETWEEN 200 AND 299") == 0);
  CHECK(scalar(db, "SELECT count(*) FROM metrix_outbox_attempt a JOIN metrix_outbox o ON o.id = a.outbox_id "
                   "WHERE a.attempt < o.attempts AND a.http_status BETWEEN 200 AND 299") == 0);
  CHECK(text(db, "PRAGMA integrity_check") == "ok");
}

}  // namespace

TEST_CASE("a share of 5xx answers costs only the failed rows' retries: all is delivered, histories true") {
  TempDir dir;
  make_outbox(dir.db(), 2000);
  auto fake = FakeMetrix::start(dir, fake_args({"--error-rate", "0.05", "--latency-ms", "5", "--seed", "3"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "32", "--verbose"}), {},
               relay_env(), 180s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 2000);
  // Each attempt beyond the first of a row answers one 5xx (or a timeout, in a slow build).
  const std::int64_t retries = scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt") - 2000;
  CHECK(retries == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status >= 500 "
                                    "OR http_status IS NULL"));
  CHECK(retries > 0);
  check_attempt_histories(dir.db());
  // The progress line shows the app's window.
  CHECK(r.err.find("window app1 ") != std::string::npos);
}

TEST_CASE("when every request fails the relay probes one request at a time, rows stay pending, and it resumes") {
  TempDir dir;
  make_outbox(dir.db(), 500);
  auto fake = FakeMetrix::start(dir, fake_args({"--error-rate", "1", "--seed", "5"}), fake_env());
  // Probes every 100-200 ms at first, doubling to at most 1 s; rows back off as usual.
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--until-idle", "--backoff-base", "200ms",
                                                                "--backoff-max", "1s", "--progress-interval", "200ms",
                                                                "--max-attempts", "100"}),
                              relay_env());
  REQUIRE_MESSAGE(relay.wait_for_err("circuit open", 60s), relay.err());

  // Open: the rows go back to pending and are not claimed again, but for one probe.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (count_status(dir.db(), "sending") > 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  const std::int64_t before = requests(fake);
  int most_sending = 0;
  for (int i = 0; i < 40; ++i) {  // about 2 s
    most_sending = std::max<int>(most_sending, static_cast<int>(count_status(dir.db(), "sending")));
    std::this_thread::sleep_for(50ms);
  }
  const std::int64_t during = requests(fake) - before;
  CHECK(most_sending <= 1);
  // At least 100 ms between probes: at most about 20 in 2 s, where a flood would be thousands.
  CHECK(during <= 25);
  CHECK(scalar(dir.db(), "SELECT max(attempts) FROM metrix_outbox") < 30);

  // status shows it, from the relay's heartbeat.
  std::string shown;
  for (int i = 0; i < 100 && shown.find("circuit open") == std::string::npos; ++i) {
    shown = run({relay_binary(), "status", "--db", dir.db()}).out;
    std::this_thread::sleep_for(50ms);
  }
  CHECK_MESSAGE(shown.find("app1 circuit open") != std::string::npos, shown);

  // Metrix is back: the first good probe closes the circuit and everything goes.
  fake.control("error-rate=0");
  auto code = relay.wait(120s);
  REQUIRE(code.has_value());
  CHECK_MESSAGE(*code == 0, relay.err());
  CHECK(relay.err().find("circuit closed") != std::string::npos);
  CHECK(count_status(dir.db(), "sent") == 500);
  check_attempt_histories(dir.db());
}

TEST_CASE("a 429 with Retry-After holds the whole app for that long; the other rows wait too") {
  TempDir dir;
  make_outbox(dir.db(), 3);
  auto fake = FakeMetrix::start(dir, fake_args({"--script", "429", "--retry-after", "2"}), fake_env());
  // Retry-After is honoured up to --backoff-max.
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "1", "--backoff-max", "5s", "--verbose"}),
               {}, relay_env(), 60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 3);
  // The first request was answered 429 with Retry-After: 2; no request of the app went out
  // for the next 2 s (a slow machine only makes the gap longer).
  const std::int64_t answered = scalar(dir.db(), "SELECT finished_at FROM metrix_outbox_attempt WHERE http_status = 429");
  CHECK(scalar(dir.db(), "SELECT min(started_at) FROM metrix_outbox_attempt WHERE started_at > " +
                             std::to_string(answered)) -
            answered >=
        1900);
  CHECK(r.err.find("with Retry-After") != std::string::npos);
  check_attempt_histories(dir.db());
}

TEST_CASE("a 429 without a wait asked for shrinks the window and does not stop the app") {
  TempDir dir;
  make_outbox(dir.db(), 200);
  // The 429 comes after 40 good answers, once the answer time is known: a slow build's first
  // answers (connections being made) cannot shrink the window before it and hide it.
  std::string script;
  for (int i = 0; i < 40; ++i) script += "200,";
  auto fake = FakeMetrix::start(dir, fake_args({"--script", script + "429", "--retry-after", "0", "--latency-ms", "5"}),
                                fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "8", "--verbose"}), {}, relay_env(),
               60s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 200);
  CHECK_MESSAGE(r.err.find("(a 429)") != std::string::npos, r.err);  // "app app1: window 8 -> 4 (a 429)"
  CHECK(r.err.find("circuit open") == std::string::npos);
  CHECK(r.err.find("with Retry-After") == std::string::npos);
  check_attempt_histories(dir.db());
}

TEST_CASE("apps take turns for the request slots: one app's backlog does not hold another's rows back") {
  TempDir dir;
  make_outbox(dir.db(), 200);                    // app1 (the relay's --app-id), first in line
  make_outbox(dir.db(), 5, "taqsq", "app2");
  std::string key2 = "second-app-key-7c41";
  std::ofstream(dir.file("relay.toml")) << app_key_config(dir, "app2", key2);
  auto fake = FakeMetrix::start(dir, {"--app", "app1", "--app", "app2", "--latency-ms", "5"},
                                {{"FAKE_METRIX_KEYS", "app1=" + kDevKey + ",app2=" + key2}});
  // One request slot for both apps: every answer frees it for the app whose turn it is.
  auto r = run(relay_args(dir.db(), fake.url(),
                          {"--until-idle", "--concurrency", "1", "--config", dir.file("relay.toml").string()}),
               {}, relay_env(), 120s);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 205);
  // app2's five rows went out among app1's first requests, not after all 200 of them.
  const std::string last_of = "SELECT max(a.finished_at) FROM metrix_outbox_attempt a JOIN metrix_outbox o "
                              "ON o.id = a.outbox_id WHERE o.app_id IS ";
  CHECK(scalar(dir.db(), last_of + "'app2'") < scalar(dir.db(), "SELECT min(a.started_at) FROM metrix_outbox_attempt a "
                                                                "JOIN metrix_outbox o ON o.id = a.outbox_id WHERE "
                                                                "o.app_id IS NULL AND o.id > 20"));
  check_attempt_histories(dir.db());
}
