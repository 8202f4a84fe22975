// metrix-relay run against fake-metrix, both real processes on loopback: delivery, the
// request body, and each row of the answer table (relay/classify.h).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "relay/relay.h"
#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using metrix::test::TempDir;

namespace {

RunResult run_relay_until_idle(const TempDir& dir, const FakeMetrix& fake, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = relay_args(dir.db(), fake.url(), extra);
  args.push_back("--until-idle");
  return run(args, {}, relay_env(), std::chrono::seconds(60));
}

}  // namespace

TEST_CASE("every committed event is delivered once, byte for byte, with eventTime from created_at") {
  TempDir dir;
  make_outbox(dir.db(), 200);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 200);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE event_time = created_at AND sent_at IS NOT NULL "
                         "AND last_http_status = 200 AND attempts = 1") == 200);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status = 200") == 200);

  auto records = fake.records();
  REQUIRE(records.size() == 200);
  std::set<std::string> bodies;
  for (const auto& rec : records) bodies.insert(rec["body"].get<std::string>());
  CHECK(bodies.size() == 200);
  // Each body is the payload as written, with "eventTime" (the row's created_at) inserted first.
  auto db = metrix::Database::open(dir.db());
  REQUIRE(db);
  auto rows = db->prepare("SELECT payload, created_at FROM metrix_outbox");
  REQUIRE(rows);
  while (*rows->step()) {
    std::string payload = rows->text(0);
    std::string expected = "{\"eventTime\":" + std::to_string(rows->int64(1)) + "," + payload.substr(1);
    CHECK(bodies.count(expected) == 1);
  }
  CHECK(r.err.find("finished: sent 200") != std::string::npos);
}

TEST_CASE("--until-idle ends once its last outcome is recorded, not a poll interval later") {
  TempDir dir;
  // Answers after 50 ms, 16 at a time: the drain takes about a second, so a claim round finds
  // nothing left to claim while requests are still in flight, and the next claim is then a
  // poll interval away.
  make_outbox(dir.db(), 300);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "50"}), fake_env());
  // The poll interval is three times the run's timeout: a relay that waits for it is killed.
  auto r = run(relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "16", "--poll-interval", "60s"}), {},
               relay_env(), std::chrono::seconds(20));
  CHECK_MESSAGE(!r.timed_out, r.err);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 300);
}

TEST_CASE("--until-idle whose last rows wait for a retry claims them when they are due, not a poll interval later") {
  TempDir dir;
  make_outbox(dir.db(), 20);
  // The first answers fail: those rows are retried after their backoff, up to 500 ms, so
  // they are not due yet when the relay has recorded everything else.
  auto fake = FakeMetrix::start(dir, fake_args({"--script", "500,503,502"}), fake_env());
  // The poll interval is three times the run's timeout: a relay that waits for it is killed.
  auto r = run(relay_args(dir.db(), fake.url(),
                          {"--until-idle", "--poll-interval", "60s", "--backoff-base", "500ms", "--backoff-max", "500ms"}),
               {}, relay_env(), std::chrono::seconds(20));
  CHECK_MESSAGE(!r.timed_out, r.err);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 20);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE http_status >= 500") == 3);
}

TEST_CASE("a retried event is sent byte-identical on every attempt") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  // Two answers lost after the event arrived, then a normal answer: three copies arrive.
  auto fake = FakeMetrix::start(dir, fake_args({"--script", "drop,drop,200"}), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  auto records = fake.records();
  REQUIRE(records.size() == 3);
  CHECK(records[0]["body"] == records[1]["body"]);
  CHECK(records[1]["body"] == records[2]["body"]);
  CHECK(scalar(dir.db(), "SELECT attempts FROM metrix_outbox WHERE id = 1") == 3);
  CHECK(text(dir.db(), "SELECT status FROM metrix_outbox WHERE id = 1") == "sent");
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id = 1 AND http_status IS NULL "
                         "AND error LIKE 'connection closed%'") == 2);
}

TEST_CASE("a payload with its own eventTime is sent exactly as the producer wrote it") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  const std::string payload = R"({ "metrixUserId" : "u-9", "eventTime": 1570274953412, "eventSlug":"taqsq", "idfa":"i",
    "customMetrics": {"_revenue": 53.700}, "customAttributes": {"_currency": "IRR"} })";
  REQUIRE(run({relay_binary(), "enqueue", "--db", dir.db(), "--json", payload}).exit_code == 0);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  auto records = fake.records();
  REQUIRE(records.size() == 1);
  CHECK(records[0]["body"] == payload);
  CHECK(scalar(dir.db(), "SELECT event_time FROM metrix_outbox") == 1570274953412);
}

TEST_CASE("answers that refuse the event for good make the row failed with the error name") {
  TempDir dir;
  make_outbox(dir.db(), 3);
  auto fake = FakeMetrix::start(
      dir, fake_args({"--script", "400:IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL,404:EVENT_TYPE_DOES_NOT_EXIST,410",
                      "--threads", "1"}),
      fake_env());
  auto r = run_relay_until_idle(dir, fake, {"--concurrency", "1"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT group_concat(status || ':' || last_http_status || ':' || last_error, ' ') FROM "
                       "(SELECT * FROM metrix_outbox ORDER BY id)") ==
        "failed:400:IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL failed:404:EVENT_TYPE_DOES_NOT_EXIST failed:410:http 410");
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE response LIKE '%EVENT_TYPE_DOES_NOT_EXIST%'") == 1);
  CHECK(fake.records().empty());
}

TEST_CASE("an undefined slug is failed with EVENT_TYPE_DOES_NOT_EXIST and the rest is delivered") {
  TempDir dir;
  make_outbox(dir.db(), 5);
  make_outbox(dir.db(), 2, "undefined-slug");
  auto fake = FakeMetrix::start(dir, fake_args({"--slug", "taqsq"}), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 5);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'failed' AND last_http_status = 404 "
                         "AND last_error = 'EVENT_TYPE_DOES_NOT_EXIST' AND event_slug = 'undefined-slug'") == 2);
}

TEST_CASE("408, 429, 5xx and unknown answers are retried until delivered") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  auto fake = FakeMetrix::start(dir, fake_args({"--script", "408,429,500,502,503,504,302,200"}), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT status || ' ' || attempts FROM metrix_outbox") == "sent 8");
  CHECK(text(dir.db(), "SELECT group_concat(http_status || ' ' || coalesce(error, ''), ',') FROM "
                       "(SELECT http_status, error FROM metrix_outbox_attempt ORDER BY attempt)") ==
        "408 http 408,429 http 429,500 http 500,502 http 502,503 http 503,504 http 504,302 unexpected http 302,200 ");
  CHECK(fake.records().size() == 1);
}

TEST_CASE("a connection error is retried with backoff and the row becomes dead when attempts run out") {
  TempDir dir;
  make_outbox(dir.db(), 2);
  // Nothing listens on this port: every attempt is refused.
  auto r = run(relay_args(dir.db(), "http://127.0.0.1:9", {"--max-attempts", "3", "--until-idle"}), {}, relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT group_concat(status || ' ' || attempts || ' ' || last_error, '|') FROM metrix_outbox") ==
        "dead 3 connection refused (gave up after 3 attempts)|dead 3 connection refused (gave up after 3 attempts)");
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE error = 'connection refused'") == 4);
}

TEST_CASE("a request that times out is retried, and the timeout is recorded") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "1500"}), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--timeout", "300ms", "--max-attempts", "2", "--until-idle"}), {},
               relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT status || ' ' || last_error FROM metrix_outbox") ==
        "dead timeout (gave up after 2 attempts)");
}

TEST_CASE("a row older than --max-age is not sent but dead, stale") {
  TempDir dir;
  make_outbox(dir.db(), 2);
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    // created_at is immutable for producers; an old row is made by inserting it old.
    REQUIRE(db->exec("INSERT INTO metrix_outbox (payload, created_at) VALUES "
                     "('{\"metrixUserId\":\"u\",\"eventSlug\":\"s\",\"oaid\":\"o\"}', 1000000000000)"));
  }
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_relay_until_idle(dir, fake, {"--max-age", "1d"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(text(dir.db(), "SELECT status || ' ' || attempts || ' ' || last_error FROM metrix_outbox WHERE id = 3") ==
        "dead 0 stale: older than --max-age 1d00h");
  CHECK(fake.records().size() == 2);
}

TEST_CASE("rows of an app without a dev key stay pending with a clear reason and --until-idle says why") {
  TempDir dir;
  make_outbox(dir.db(), 2);
  make_outbox(dir.db(), 1, "taqsq", "app-without-key");
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run_relay_until_idle(dir, fake);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("WARNING: not sent: no dev key for app app-without-key") != std::string::npos);
  CHECK(r.err.find("cannot finish: 1 rows wait") != std::string::npos);
  CHECK(count_status(dir.db(), "sent") == 2);
  CHECK(text(dir.db(), "SELECT status || ' ' || attempts || ' ' || last_error FROM metrix_outbox WHERE id = 3")
            .find("pending 0 not sent: no dev key for app app-without-key") == 0);
}

TEST_CASE("keys of several apps come from a TOML config file and rows are routed by app_id") {
  TempDir dir;
  make_outbox(dir.db(), 2);
  make_outbox(dir.db(), 3, "taqsq", "app2");
  std::string key2 = "second-app-key-0d8e";
  std::ofstream(dir.file("relay.toml")) << "db = \"" << dir.db()
                                        << "\"\napp-id = \"app1\"\nconcurrency = 4\nbackoff-base = \"10ms\"\n"
                                        << app_key_config(dir, "app2", key2);
  auto fake = FakeMetrix::start(dir, {"--app", "app1", "--app", "app2"},
                                {{"FAKE_METRIX_KEYS", "app1=" + kDevKey + ",app2=" + key2}});
  auto r = run({relay_binary(), "run", "--config", dir.file("relay.toml").string(), "--endpoint", fake.url(),
                "--until-idle"},
               {}, relay_env());
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 5);
  std::map<std::string, int> per_app;
  for (const auto& rec : fake.records()) per_app[rec["app_id"].get<std::string>()]++;
  CHECK(per_app["app1"] == 2);
  CHECK(per_app["app2"] == 3);
  CHECK(r.err.find(key2) == std::string::npos);
}

TEST_CASE("bad run options exit 2 with a message naming the option") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto lease = run({relay_binary(), "run", "--db", dir.db(), "--app-id", "a", "--lease", "1s", "--timeout", "10s"});
  CHECK(lease.exit_code == 2);
  CHECK(lease.err.find("--lease") != std::string::npos);
  auto duration = run({relay_binary(), "run", "--db", dir.db(), "--timeout", "10"});
  CHECK(duration.exit_code == 2);
  CHECK(duration.err.find("--timeout: '10' is not a duration") != std::string::npos);
  auto insecure = run({relay_binary(), "run", "--db", dir.db(), "--endpoint", "http://analytics.metrix.ir"});
  CHECK(insecure.exit_code == 2);
  CHECK(insecure.err.find("plain http") != std::string::npos);
  auto key_flag = run({relay_binary(), "run", "--db", dir.db(), "--dev-key", "abc"});
  CHECK(key_flag.exit_code == 2);
  for (const char* interval : {"--poll-interval", "--progress-interval"}) {
    auto zero = run({relay_binary(), "run", "--db", dir.db(), "--app-id", "a", interval, "0s"});
    CHECK(zero.exit_code == 2);
    CHECK(zero.err == "metrix-relay: " + std::string(interval) + " must be positive\n");  // before: "intervals must..."
  }

  // A directory or a missing file where a file is wanted: said so, not run with defaults
  // (before: a directory as --config ran against the default endpoint) or with a wrong cause
  // (before: a directory as key file was "readable by others", with a chmod hint).
  const std::string folder = dir.path().string(), missing = dir.file("missing.toml").string();
  for (const auto& c : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--config", folder, folder + ": is a directory, not a file"},
           {"--config", missing, missing + ": cannot read it: No such file or directory"},
           {"--dev-key-file", folder, "dev key file " + folder + ": is a directory, not a file"},
           {"--dev-key-file", missing, "dev key file " + missing + ": cannot read it: No such file or directory"}}) {
    const std::string& flag = std::get<0>(c);  // (not a structured binding: doctest's macros capture these)
    const std::string& path = std::get<1>(c);
    const std::string& says = std::get<2>(c);
    CAPTURE(flag);
    CAPTURE(path);
    auto r = run({relay_binary(), "run", "--db", dir.db(), "--app-id", "a", flag, path, "--until-idle"},
                 {}, {}, std::chrono::seconds(20));
    CHECK(r.exit_code == 2);
    CHECK_MESSAGE(r.err.find(says) != std::string::npos, r.err);
  }
}

TEST_CASE("a dev key file others can read is refused, naming the file, without printing the key") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  const std::string& key = kDevKey;
  {
    std::ofstream key_file(dir.file("app.key"));
    key_file << key << "\n";
  }
  std::filesystem::permissions(dir.file("app.key"), std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write |
                                                        std::filesystem::perms::group_read);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run({relay_binary(), "run", "--db", dir.db(), "--endpoint", fake.url(), "--app-id", "app1",
                "--dev-key-file", dir.file("app.key").string(), "--until-idle"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("dev key file " + dir.file("app.key").string() + ": readable by others (mode 640)") !=
                    std::string::npos,
                r.err);
  CHECK(r.err.find(key) == std::string::npos);
  CHECK(r.out.find(key) == std::string::npos);
  CHECK(fake.records().empty());
  CHECK(count_status(dir.db(), "pending") == 1);

  std::filesystem::permissions(dir.file("app.key"), std::filesystem::perms::group_read,
                               std::filesystem::perm_options::remove);
  auto fixed = run({relay_binary(), "run", "--db", dir.db(), "--endpoint", fake.url(), "--app-id", "app1",
                    "--dev-key-file", dir.file("app.key").string(), "--until-idle"});
  CHECK_MESSAGE(fixed.exit_code == 0, fixed.err);
  CHECK(fake.records().size() == 1);
  CHECK(count_status(dir.db(), "sent") == 1);
  CHECK(fixed.err.find(key) == std::string::npos);
}

TEST_CASE("plain http to a host that is not loopback runs only when allowed, and then says so loudly") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  std::vector<std::string> args = {relay_binary(), "run", "--db", dir.db(), "--endpoint", "http://metrix.example",
                                   "--app-id", "app1", "--until-idle"};
  auto refused = run(args, {}, relay_env());
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("plain http sends the dev key in clear") != std::string::npos);
  args.push_back("--allow-insecure-http");
  auto allowed = run(args, {}, relay_env());
  CHECK_MESSAGE(allowed.exit_code == 0, allowed.err);
  CHECK(allowed.err.find("WARNING: --allow-insecure-http: the dev key goes in clear over plain http to "
                         "metrix.example") != std::string::npos);
  CHECK(allowed.err.find(kDevKey) == std::string::npos);
  auto loopback = run({relay_binary(), "run", "--db", dir.db(), "--endpoint", "http://127.0.0.1:9", "--app-id", "app1",
                       "--until-idle"},
                      {}, relay_env());
  CHECK_MESSAGE(loopback.exit_code == 0, loopback.err);
  CHECK(loopback.err.find("WARNING") == std::string::npos);
}

TEST_CASE("a log that cannot be written any more does not stop the relay: stderr piped into head") {
  TempDir dir;
  make_outbox(dir.db(), 300);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "20"}), fake_env());
  // As an operator's `metrix-relay run ... 2>&1 | head -n 1`: head exits after the first line,
  // and every later line (a progress line every 100 ms of a drain of about 1.5 s) meets a
  // closed pipe.
  std::vector<std::string> args =
      relay_args(dir.db(), fake.url(), {"--until-idle", "--concurrency", "4", "--progress-interval", "100ms"});
  args.insert(args.begin(), {"/bin/bash", "-c", "\"$@\" 2>&1 | head -n 1 >/dev/null; exit ${PIPESTATUS[0]}", "bash"});
  auto r = run(args, {}, relay_env(), std::chrono::seconds(60));
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 300);
  CHECK(count_status(dir.db(), "sending") == 0);
}
