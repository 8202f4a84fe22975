// Observing the relay as an operator does: the built relay with --admin-listen, scraped over
// loopback while it drains into fake-metrix (failures, an app paused by a 403), /metrics
// checked by `promtool check metrics` and against the rows the outbox says were sent, failed
// and paused; /livez, /readyz, /status against `status --json`. Then poison rows (a request
// that never answers, the relay killed while it is in flight) and --max-rate.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <thread>

#include "relay/rate.h"
#include "tests/operator_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

// Sample values of /metrics: "name{labels}" -> value.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// The value of one sample, which must be there (a missing sample is not a zero).
double value(const std::map<std::string, double>& samples, const std::string& key) {
  auto it = samples.find(key);
  REQUIRE_MESSAGE(it != samples.end(), "no sample " << key);
  return it->second;
}

// `promtool check metrics` on a scrape: empty when it has nothing to say.
std::string promtool_complaints(const std::string& scrape) {
  auto r = run({"/usr/bin/promtool", "check", "metrics"}, scrape, {}, 30s);
  if (r.exit_code != 0 && r.out.empty() && r.err.empty()) return "promtool did not run (apt-get install prometheus)";
  return r.exit_code == 0 ? std::string() : r.out + r.err;
}

std::string config_with_keys(const TempDir& dir, const std::string& extra = "") {
  const auto path = dir.file("relay.toml");
  std::ofstream(path) << extra << app_key_config(dir, "app1", kDevKey) << app_key_config(dir, "app2", "key-2");
  return path.string();
}

// Requests fake-metrix received for events of `slug` (it records an event before it waits).
int requests_for(const FakeMetrix& fake, const std::string& slug) {
  int n = 0;
  for (const auto& r : fake.records()) {
    if (r["body"].get<std::string>().find("\"eventSlug\":\"" + slug + "\"") != std::string::npos) ++n;
  }
  return n;
}

std::int64_t rows_of(const std::string& db, const std::string& app, const std::string& status) {
  return scalar(db, "SELECT count(*) FROM metrix_outbox WHERE app_id = '" + app + "' AND status = '" + status + "'");
}

}  // namespace

TEST_CASE("/metrics, /livez, /readyz and /status tell an operator what the outbox says") {
  TempDir dir;
  make_outbox(dir.db(), 300, "taqsq", "app1");
  make_outbox(dir.db(), 20, "unknown-slug", "app1");  // 404: failed
  make_outbox(dir.db(), 20, "taqsq", "app2");         // 403: the app is paused
  auto fake = FakeMetrix::start(
      dir, {"--app", "app1", "--app", "app2", "--slug", "taqsq", "--error-rate", "0.2", "--s2s-disabled", "app2"},
      {{"FAKE_METRIX_KEYS", "app1=" + kDevKey + ",app2=key-2"}});
  auto relay = Process::start({relay_binary(), "run", "--db", dir.db(), "--endpoint", fake.url(), "--config",
                               config_with_keys(dir), "--admin-listen", "127.0.0.1:0", "--backoff-base", "10ms",
                               "--backoff-max", "50ms", "--progress-interval", "200ms"});
  const std::string url = admin_url(relay);
  HttpClient http;

  // During the drain: a valid scrape.
  auto during = http.get(url + "/metrics");
  REQUIRE_MESSAGE(during.status == 200, relay.err());
  CHECK(during.header("content-type").find("text/plain; version=0.0.4") == 0);
  CHECK_MESSAGE(promtool_complaints(during.body).empty(), promtool_complaints(during.body), during.body);

  // Every row of app1 finished: the counters equal what the outbox holds.
  REQUIRE_MESSAGE(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE app_id = 'app1' AND status "
                                           "IN ('sent', 'failed')", 320, 60s) == 320, relay.err());
  // An outcome counts once its round commits; the backlog gauges are read every few seconds.
  std::map<std::string, double> m;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    m = samples(http.get(url + "/metrics").body);
    if (m["metrix_relay_events_total{app_id=\"app1\",outcome=\"sent\"}"] == 300 &&
        m["metrix_relay_outbox_rows{app_id=\"app1\",status=\"sent\"}"] == 300) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  const auto after = http.get(url + "/metrics");
  CHECK_MESSAGE(promtool_complaints(after.body).empty(), promtool_complaints(after.body));
  m = samples(after.body);
  CHECK(value(m, "metrix_relay_events_total{app_id=\"app1\",outcome=\"sent\"}") == rows_of(dir.db(), "app1", "sent"));
  CHECK(value(m, "metrix_relay_events_total{app_id=\"app1\",outcome=\"failed\"}") == rows_of(dir.db(), "app1", "failed"));
  CHECK(value(m, "metrix_relay_events_total{app_id=\"app1\",outcome=\"failed\"}") == 20);
  CHECK(value(m, "metrix_relay_outbox_rows{app_id=\"app1\",status=\"sent\"}") == 300);
  CHECK(value(m, "metrix_relay_outbox_rows{app_id=\"app1\",status=\"failed\"}") == 20);
  CHECK(value(m, "metrix_relay_outbox_rows{app_id=\"app2\",status=\"pending\"}") == 20);
  // Retries: one per 5xx answer (fake-metrix fails a fifth of the requests at random).
  const double answers_5xx = value(m, "metrix_relay_http_responses_total{app_id=\"app1\",code=\"5xx\"}");
  CHECK(value(m, "metrix_relay_events_total{app_id=\"app1\",outcome=\"retried\"}") == answers_5xx);
  CHECK(value(m, "metrix_relay_http_responses_total{app_id=\"app1\",code=\"2xx\"}") == 300);
  CHECK(value(m, "metrix_relay_app_paused{app_id=\"app2\",reason=\"S2S_FEATURE_NOT_AVAILABLE\"}") == 1);
  CHECK(value(m, "metrix_relay_app_paused{app_id=\"app1\",reason=\"\"}") == 0);
  CHECK(value(m, "metrix_relay_events_total{app_id=\"app2\",outcome=\"sent\"}") == 0);
  CHECK(value(m, "metrix_relay_last_sent_timestamp_seconds") > 0);
  CHECK(value(m, "metrix_relay_write_rounds_total") > 0);
  CHECK(value(m, "metrix_relay_http_request_duration_seconds_count") >= 340);
  CHECK(value(m, "metrix_relay_build_info{version=\"0.1.0\",sqlite=\"" + std::string(sqlite3_libversion()) + "\",curl=\"" +
          curl_version_info(CURLVERSION_NOW)->version + "\"}") == 1);
  for (const auto& sample : m) {  // (not a structured binding: clang 14 cannot capture one in INFO)
    INFO(sample.first);
    CHECK(sample.first.find("user-") == std::string::npos);  // no row's data in a label
  }

  // Alive and ready: app1 can still be sent to although app2 is paused. `http` keeps its
  // connection open, as Prometheus does; a probe on a connection of its own is answered
  // meanwhile (the listener keeps an idle connection for 5 s).
  HttpClient probe;
  probe.set_timeout(3s);
  CHECK(probe.get(url + "/livez").status == 200);
  auto ready = http.get(url + "/readyz");
  CHECK_MESSAGE(ready.status == 200, ready.body);

  // /status is `status --json` (the clock and relay heartbeat aside).
  auto served = nlohmann::json::parse(http.get(url + "/status").body);
  auto cli = json_of(relay_cli({"status", "--db", dir.db(), "--json"}));
  CHECK(served["counts"] == cli["counts"]);
  CHECK(served["apps"] == cli["apps"]);
  CHECK(served["paused_apps"] == cli["paused_apps"]);
  CHECK(served["relay_running"] == true);
  CHECK(http.get(url + "/nothing-here").status == 404);

  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
  CHECK(relay.err().find(kDevKey) == std::string::npos);
}

TEST_CASE("/readyz is 503 with the reason when no app can be sent to; /livez stays 200") {
  TempDir dir;
  make_outbox(dir.db(), 5, "taqsq", "app2");
  auto fake = FakeMetrix::start(dir, {"--app", "app2", "--s2s-disabled", "app2"}, {{"FAKE_METRIX_KEYS", "app2=key-2"}});
  const auto config = dir.file("relay.toml");
  std::ofstream(config) << app_key_config(dir, "app2", "key-2");
  auto relay = Process::start({relay_binary(), "run", "--db", dir.db(), "--endpoint", fake.url(), "--config",
                               config.string(), "--admin-listen", "localhost:0"});
  const std::string url = admin_url(relay);
  HttpClient http;
  REQUIRE_MESSAGE(relay.wait_for_err("paused", 30s), relay.err());
  // The pause is logged a moment before /readyz hears of it.
  auto ready = http.get(url + "/readyz");
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       ready.status != 503 && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
    ready = http.get(url + "/readyz");
  }
  CHECK(ready.status == 503);
  CHECK(ready.body.find("every app with a dev key is paused") != std::string::npos);
  CHECK(http.get(url + "/livez").status == 200);
}

TEST_CASE("the admin listener binds loopback only, unless --admin-allow-remote") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto refused = run(relay_args(dir.db(), "http://127.0.0.1:9", {"--admin-listen", "0.0.0.0:0"}), {}, relay_env(), 30s);
  CHECK(refused.exit_code == 2);
  CHECK_MESSAGE(refused.err.find("--admin-listen 0.0.0.0:0: not a loopback address") != std::string::npos, refused.err);
  auto bad = run(relay_args(dir.db(), "http://127.0.0.1:9", {"--admin-listen", "9464"}), {}, relay_env(), 30s);
  CHECK(bad.exit_code == 2);
  CHECK_MESSAGE(bad.err.find("must be HOST:PORT") != std::string::npos, bad.err);

  auto relay = Process::start(relay_args(dir.db(), "http://127.0.0.1:9", {"--admin-listen", "0.0.0.0:0",
                                                                          "--admin-allow-remote"}),
                              relay_env());
  const std::string url = admin_url(relay);
  CHECK(relay.err().find("WARNING: the admin listener on 0.0.0.0:0 is reachable from other hosts") != std::string::npos);
  HttpClient http;
  CHECK(http.get("http://127.0.0.1" + url.substr(url.rfind(':')) + "/livez").status == 200);

  // A second relay cannot take the same port (it would answer half the scrapes).
  auto second = run(relay_args(dir.db(), "http://127.0.0.1:9", {"--admin-listen", "127.0.0.1" + url.substr(url.rfind(':'))}),
                    {}, relay_env(), 30s);
  CHECK(second.exit_code == 1);
  CHECK_MESSAGE(second.err.find("admin listener: cannot listen on 127.0.0.1 port") != std::string::npos, second.err);
}

TEST_CASE("a row whose request never answers ends dead as poison after --poison-after kills; the others flow") {
  TempDir dir;
  make_outbox(dir.db(), 1, "hang");  // row 1: its request never gets an answer
  make_outbox(dir.db(), 40);         // rows 2..41: answered at once
  // fake-metrix holds the answer to a "hang" event longer than the test waits before it kills
  // the relay. One request in flight at a time, so that rows claimed with row 1 are still
  // waiting, unsent, at every kill: only row 1 may be blamed for the relay's deaths.
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "12000", "--latency-slug", "hang"}), fake_env());
  // Short leases: the kills' leases expire within seconds. The request timeout is longer than
  // the wait for the kill, so no timeout answer resets the count: generously, since under
  // ThreadSanitizer fake-metrix once took over 2 s to take the first request.
  const std::vector<std::string> fast = {"--timeout", "10s", "--lease", "21s", "--shutdown-timeout", "1s",
                                         "--poll-interval", "50ms", "--concurrency", "1"};
  for (int kill = 1; kill <= 3; ++kill) {
    CAPTURE(kill);
    auto relay = Process::start(relay_args(dir.db(), fake.url(), fast), relay_env());
    // Row 1 goes first (the oldest), and again once the lease of the relay killed before it
    // has expired: the kill-th request for a "hang" event.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (requests_for(fake, "hang") < kill && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    // More than `kill`: the request timed out before the kill and was sent again.
    REQUIRE_MESSAGE(requests_for(fake, "hang") == kill, relay.err());
    relay.kill(SIGKILL);
    relay.wait(10s);
    CHECK(text(dir.db(), "SELECT status FROM metrix_outbox WHERE id = 1") == "sending");
  }
  CHECK(scalar(dir.db(), "SELECT lease_expiries FROM metrix_outbox WHERE id = 1") == 2);
  // The rows claimed with it at the first kill were never blamed more than once.
  CHECK(scalar(dir.db(), "SELECT max(lease_expiries) FROM metrix_outbox WHERE id > 1") <= 1);

  // The next relay does not send row 1 a fourth time; every other row is delivered.
  auto last = run(relay_args(dir.db(), fake.url(), [&] {
                    auto args = fast;
                    args.push_back("--until-idle");
                    return args;
                  }()),
                  {}, relay_env(), 120s);
  CHECK_MESSAGE(last.exit_code == 0, last.err);
  CHECK(text(dir.db(), "SELECT status FROM metrix_outbox WHERE id = 1") == "dead");
  const std::string error = text(dir.db(), "SELECT last_error FROM metrix_outbox WHERE id = 1");
  CHECK_MESSAGE(error.rfind("poison: the relay stopped 3 times in a row while sending this row", 0) == 0, error);
  CHECK(count_status(dir.db(), "sent") == 40);
  CHECK(requests_for(fake, "hang") == 3);
  CHECK(last.err.find("row 1: dead: poison:") != std::string::npos);

  // show and list show the count; requeue gives the row its tries back.
  auto shown = json_of(relay_cli({"show", "--db", dir.db(), "1", "--json"}));
  CHECK(shown["lease_expiries"] == 3);
  auto listed = relay_cli({"list", "--db", dir.db(), "--status", "dead"});
  CHECK(listed.out.find("STOPS") != std::string::npos);
  CHECK(relay_cli({"requeue", "--db", dir.db(), "--status", "dead"}).exit_code == 0);
  CHECK(scalar(dir.db(), "SELECT lease_expiries FROM metrix_outbox WHERE id = 1") == 0);
  CHECK(text(dir.db(), "SELECT status FROM metrix_outbox WHERE id = 1") == "pending");
}

TEST_CASE("--max-rate: a backlog drains at the rate, never above it in any second") {
  TempDir dir;
  make_outbox(dir.db(), 600);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto r = run(relay_args(dir.db(), fake.url(), {"--max-rate", "200", "--until-idle"}), {}, relay_env(), 120s);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 600);
  CHECK(r.err.find("requests waited for --max-rate") != std::string::npos);
  // When each request started, as the relay recorded it: at most 200 in any window of one
  // second, the window's closing edge included (TokenBucket's bound: rate * 1 s + 1).
  auto starts = rows(dir.db(), "SELECT started_at FROM metrix_outbox_attempt ORDER BY started_at");
  REQUIRE(starts.size() == 600);
  size_t most = 0;
  for (size_t i = 0, j = 0; i < starts.size(); ++i) {
    const std::int64_t t = std::stoll(starts[i][0]);
    while (std::stoll(starts[j][0]) < t - 1000) ++j;
    most = std::max(most, i - j + 1);
  }
  CHECK_MESSAGE(most <= 201, most);
}

TEST_CASE("--max-rate on one app does not hold back another app's rows") {
  TempDir dir;
  // More rows of appA than the relay keeps claimed (about 2,000): had appA's claims filled that
  // budget, appB would wait until appA drained below half of it.
  make_outbox(dir.db(), 2500, "taqsq", "appA");  // 6.25 s at 400/s; sorts first among the apps
  make_outbox(dir.db(), 300, "taqsq", "appB");   // not capped
  auto fake = FakeMetrix::start(dir, {"--app", "appA", "--app", "appB"},
                                {{"FAKE_METRIX_KEYS", "appA=" + kDevKey + ",appB=" + kDevKey}});
  const auto config = dir.file("relay.toml");
  std::ofstream(config) << app_key_config(dir, "appA", kDevKey) << "max-rate = 400\n"
                        << app_key_config(dir, "appB", kDevKey);
  auto r = run({relay_binary(), "run", "--db", dir.db(), "--endpoint", fake.url(), "--config", config.string(),
                "--concurrency", "8", "--until-idle"},
               {}, {}, 120s);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(count_status(dir.db(), "sent") == 2800);
  // appB's rows were all sent before appA's 1000th request, which its cap of 400/s holds back
  // at least 2.5 seconds after its first: appB never waited for appA's backlog.
  const std::int64_t a1000 = scalar(dir.db(), "SELECT started_at FROM metrix_outbox_attempt JOIN metrix_outbox ON id = "
                                              "outbox_id WHERE app_id = 'appA' ORDER BY started_at LIMIT 1 OFFSET 999");
  const std::int64_t b_last = scalar(dir.db(), "SELECT max(started_at) FROM metrix_outbox_attempt JOIN metrix_outbox "
                                               "ON id = outbox_id WHERE app_id = 'appB'");
  CHECK_MESSAGE(b_last < a1000, "appB's last request at " << b_last << ", appA's 1000th at " << a1000);
}

TEST_CASE("TokenBucket: a loop that wakes late still gets within 3.3% of the rate, never above it") {
  for (double rate : {7.0, 29.0, 30.0, 50.0, 99.0, 150.0, 199.0, 200.0, 1000.0}) {
    CAPTURE(rate);
    metrix::TokenBucket bucket;
    bucket.set_rate(rate, 0);
    // As the relay's loop does: sleep until the next token, rounded up to a millisecond, and
    // wake 0.1 ms later still.
    std::vector<std::int64_t> taken;
    for (std::int64_t now = 0; now <= 20'000'000;) {
      while (bucket.take(now)) taken.push_back(now);
      const std::int64_t wait = bucket.next_token_us(now) - now;
      now += (wait + 999) / 1000 * 1000 + 100;
    }
    size_t most = 0;
    for (size_t i = 0, j = 0; i < taken.size(); ++i) {
      while (taken[j] < taken[i] - 1'000'000) ++j;
      most = std::max(most, i - j + 1);
    }
    CHECK(static_cast<double>(most) <= rate + 1);
    CHECK(static_cast<double>(taken.size()) >= rate * 20 * (1 - 0.033));
  }
}

TEST_CASE("TokenBucket: at most rate * T + 1 events in any window of T >= 1 s, and the rate over a long run") {
  for (double rate : {0.5, 1.0, 7.0, 200.0, 5000.0}) {
    CAPTURE(rate);
    metrix::TokenBucket bucket;
    bucket.set_rate(rate, 0);
    // A loop that tries every 3 ms (a fake clock) for 20 s.
    std::vector<std::int64_t> taken;
    for (std::int64_t now = 0; now <= 20'000'000; now += 3000) {
      while (bucket.take(now)) taken.push_back(now);
      CHECK(bucket.next_token_us(now) > now);
    }
    size_t most = 0;
    for (size_t i = 0, j = 0; i < taken.size(); ++i) {
      while (taken[j] < taken[i] - 1'000'000) ++j;
      most = std::max(most, i - j + 1);
    }
    CHECK(static_cast<double>(most) <= rate + 1);
    // And it does reach the rate (within a token's worth of refill rounding, and a burst).
    CHECK(static_cast<double>(taken.size()) >= rate * 20 * 0.98);
  }
  metrix::TokenBucket unlimited;
  for (int i = 0; i < 1000; ++i) CHECK(unlimited.take(0));
}
