// relay/policy.h's rules, row by row: what an answer, a fresh claim, a hand-back and the
// shutdown deadline make of a claimed row. Whole outcomes are compared.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "relay/classify.h"
#include "relay/config.h"
#include "relay/policy.h"

using namespace metrix;

namespace {

constexpr std::int64_t kNow = 1'764'000'000'000;  // 2025-11-24

std::string show(const Outcome& o) {
  return fmt::format("id {} token {} {} attempted {} next {} http {} error '{}' response '{}' started {} finished {} tag {}",
                     o.id, o.lease_token, row_status_name(o.status), o.attempted, o.next_attempt_at,
                     o.http_status ? std::to_string(*o.http_status) : "-", o.error, o.response, o.started_at,
                     o.finished_at, o.tag);
}

RelayConfig settings() {
  RelayConfig c;
  c.max_attempts = 5;
  c.backoff_base_ms = 1000;
  c.backoff_max_ms = 60'000;
  c.max_age_ms = 24 * 3'600'000;
  c.poison_after = 3;
  c.pause_interval_ms = 60'000;
  c.in_doubt = InDoubtPolicy::resend;
  return c;
}

Claim claim(std::int64_t attempts = 0) {
  Claim c;
  c.id = 42;
  c.lease_token = 7;
  c.created_at = kNow - 5000;
  c.attempts = attempts;
  return c;
}

Answer http(int status, std::string body = "", std::optional<std::int64_t> retry_after_ms = {}) {
  Answer a;
  a.http_status = status;
  a.body = std::move(body);
  a.request_sent = true;
  a.retry_after_ms = retry_after_ms;
  return a;
}

Answer transport(const std::string& error, bool request_sent) {
  Answer a;
  a.transport_error = error;
  a.request_sent = request_sent;
  return a;
}

// The outcome of `answer` to the claim's next attempt, started a second before kNow.
Outcome answer_to(const Claim& c, const Answer& answer, const RelayConfig& config, double unit_random = 0.0,
                  std::optional<std::int64_t> next_probe_at = std::nullopt) {
  const Classification verdict = classify(answer);
  return answered(AttemptAnswer{.claim = c,
                                .answer = answer,
                                .verdict = verdict,
                                .started_at = kNow - 1000,
                                .finished_at = kNow,
                                .next_probe_at = next_probe_at,
                                .unit_random = unit_random,
                                .tag = 3},
                  config);
}

// An outcome with an attempt, as answer_to() times it.
Outcome attempt(RowStatus status, std::int64_t next_attempt_at, std::optional<std::int64_t> http_status,
                std::string error, std::string response = "") {
  Outcome o;
  o.id = 42;
  o.lease_token = 7;
  o.status = status;
  o.attempted = true;
  o.next_attempt_at = next_attempt_at;
  o.http_status = http_status;
  o.error = std::move(error);
  o.response = std::move(response);
  o.started_at = kNow - 1000;
  o.finished_at = kNow;
  o.tag = 3;
  return o;
}

// An outcome without an attempt, settled at kNow.
Outcome no_attempt(RowStatus status, std::int64_t next_attempt_at, std::string error = "") {
  Outcome o;
  o.id = 42;
  o.lease_token = 7;
  o.status = status;
  o.attempted = false;
  o.next_attempt_at = next_attempt_at;
  o.error = std::move(error);
  o.started_at = o.finished_at = kNow;
  o.tag = 3;
  return o;
}

}  // namespace

TEST_CASE("a 2xx answer makes the row sent, with the answer recorded as its attempt") {
  CHECK(show(answer_to(claim(2), http(200, "{}"), settings())) ==
        show(attempt(RowStatus::sent, kNow, 200, "", "{}")));
}

TEST_CASE("an event Metrix refuses for good (400, 404, other 4xx) makes the row failed") {
  CHECK(show(answer_to(claim(), http(400, "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET"), settings())) ==
        show(attempt(RowStatus::failed, kNow, 400, "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET",
                     "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET")));
  CHECK(show(answer_to(claim(), http(404, "EVENT_TYPE_DOES_NOT_EXIST"), settings())) ==
        show(attempt(RowStatus::failed, kNow, 404, "EVENT_TYPE_DOES_NOT_EXIST", "EVENT_TYPE_DOES_NOT_EXIST")));
  CHECK(show(answer_to(claim(), http(410), settings())) == show(attempt(RowStatus::failed, kNow, 410, "http 410")));
}

TEST_CASE("a 403 keeps the row pending until the app's next probe, however many attempts it has had") {
  const Answer refused = http(403, "S2S_FEATURE_NOT_AVAILABLE");
  CHECK(show(answer_to(claim(), refused, settings(), 0.5, kNow + 60'000)) ==
        show(attempt(RowStatus::pending, kNow + 60'000, 403, "S2S_FEATURE_NOT_AVAILABLE", "S2S_FEATURE_NOT_AVAILABLE")));
  CHECK(show(answer_to(claim(100), refused, settings(), 0.5, kNow + 240'000)) ==
        show(attempt(RowStatus::pending, kNow + 240'000, 403, "S2S_FEATURE_NOT_AVAILABLE", "S2S_FEATURE_NOT_AVAILABLE")));
}

TEST_CASE("a 403 for an app that has no pause leaves the row due a pause interval later") {
  RelayConfig config = settings();
  config.pause_interval_ms = 90'000;
  CHECK(show(answer_to(claim(), http(403), config)) ==
        show(attempt(RowStatus::pending, kNow + 90'000, 403, "http 403")));
}

TEST_CASE("a retried answer leaves the row pending until the backoff has passed") {
  // Attempt 3: a ceiling of 4 s; the jitter's draw picks the delay within it.
  CHECK(show(answer_to(claim(2), http(503), settings(), 0.999999)) ==
        show(attempt(RowStatus::pending, kNow + 4000, 503, "http 503")));
  CHECK(show(answer_to(claim(2), http(503), settings(), 0.0)) == show(attempt(RowStatus::pending, kNow, 503, "http 503")));
  // The backoff stops growing at --backoff-max.
  RelayConfig config = settings();
  config.max_attempts = 100;
  CHECK(show(answer_to(claim(40), http(500), config, 0.999999)) ==
        show(attempt(RowStatus::pending, kNow + 60'000, 500, "http 500")));
}

TEST_CASE("a transport error that never reached Metrix is retried after the backoff, with no HTTP status") {
  CHECK(show(answer_to(claim(), transport("connection refused", false), settings(), 0.999999)) ==
        show(attempt(RowStatus::pending, kNow + 1000, std::nullopt, "connection refused")));
}

TEST_CASE("a Retry-After longer than the backoff is honoured, up to --backoff-max") {
  CHECK(show(answer_to(claim(), http(429, "", 30'000), settings(), 0.5)) ==
        show(attempt(RowStatus::pending, kNow + 30'000, 429, "http 429")));
  CHECK(show(answer_to(claim(), http(503, "", std::int64_t{1} << 50), settings(), 0.5)) ==
        show(attempt(RowStatus::pending, kNow + 60'000, 503, "http 503")));
}

TEST_CASE("a Retry-After shorter than the backoff does not shorten it") {
  CHECK(show(answer_to(claim(2), http(503, "", 1000), settings(), 0.999999)) ==
        show(attempt(RowStatus::pending, kNow + 4000, 503, "http 503")));
  CHECK(show(answer_to(claim(2), http(503, "", 0), settings(), 0.999999)) ==
        show(attempt(RowStatus::pending, kNow + 4000, 503, "http 503")));
}

TEST_CASE("the --max-attempts'th retried attempt makes the row dead, saying how many were made") {
  CHECK(show(answer_to(claim(3), http(503), settings(), 0.5)).find("pending") != std::string::npos);
  CHECK(show(answer_to(claim(4), http(503), settings(), 0.5)) ==
        show(attempt(RowStatus::dead, kNow, 503, "http 503 (gave up after 5 attempts)")));
  CHECK(show(answer_to(claim(9), transport("timeout", true), settings(), 0.5)) ==
        show(attempt(RowStatus::dead, kNow, std::nullopt, "timeout (gave up after 10 attempts)")));
}

TEST_CASE("an attempt in doubt is held under --in-doubt hold, even when it was the last one allowed") {
  RelayConfig hold = settings();
  hold.in_doubt = InDoubtPolicy::hold;
  CHECK(show(answer_to(claim(), transport("timeout", true), hold)) ==
        show(attempt(RowStatus::held, kNow, std::nullopt, "in doubt: timeout")));
  CHECK(show(answer_to(claim(4), transport("timeout", true), hold)) ==
        show(attempt(RowStatus::held, kNow, std::nullopt, "in doubt: timeout")));
  // A request that never left is not in doubt: retried as usual.
  CHECK(show(answer_to(claim(), transport("connection refused", false), hold, 0.0)) ==
        show(attempt(RowStatus::pending, kNow, std::nullopt, "connection refused")));
}

TEST_CASE("an attempt in doubt is retried by default (at least once)") {
  CHECK(show(answer_to(claim(), transport("timeout", true), settings(), 0.0)) ==
        show(attempt(RowStatus::pending, kNow, std::nullopt, "timeout")));
}

TEST_CASE("a fresh claim of an app that can be sent to goes out") {
  CHECK_FALSE(settled_before_sending(claim(), true, kNow, settings(), 3).has_value());
  Claim c = claim(4);
  c.lease_expiries = 2;  // a suspect below the poison limit is sent
  CHECK_FALSE(settled_before_sending(c, true, kNow, settings(), 3).has_value());
}

TEST_CASE("a row older than --max-age is dead as stale, without a request") {
  Claim c = claim();
  c.created_at = kNow - 24 * 3'600'000 - 1;
  auto o = settled_before_sending(c, true, kNow, settings(), 3);
  REQUIRE(o.has_value());
  CHECK(show(*o) == show(no_attempt(RowStatus::dead, kNow, "stale: older than --max-age 1d00h")));
  c.created_at = kNow - 24 * 3'600'000;  // exactly --max-age old: still sent
  CHECK_FALSE(settled_before_sending(c, true, kNow, settings(), 3).has_value());
}

TEST_CASE("a row whose lease expired --poison-after times in a row is dead as poison, without a request") {
  Claim c = claim();
  c.lease_expired = true;
  c.lease_expiries = 3;
  auto o = settled_before_sending(c, true, kNow, settings(), 3);
  REQUIRE(o.has_value());
  CHECK(show(*o) == show(no_attempt(RowStatus::dead, kNow,
                                    "poison: the relay stopped 3 times in a row while sending this row (its lease "
                                    "expired with no answer recorded); not sent again")));
  CHECK(is_poison(*o));
}

TEST_CASE("a stale row is dead as stale even when it is also poison") {
  Claim c = claim();
  c.created_at = kNow - 48 * 3'600'000;
  c.lease_expiries = 5;
  auto o = settled_before_sending(c, true, kNow, settings(), 3);
  REQUIRE(o.has_value());
  CHECK(o->error == "stale: older than --max-age 1d00h");
  CHECK_FALSE(is_poison(*o));
}

TEST_CASE("a row whose last lease expired with no answer is held under --in-doubt hold, and sent otherwise") {
  Claim c = claim();
  c.lease_expired = true;
  c.lease_expiries = 1;
  RelayConfig hold = settings();
  hold.in_doubt = InDoubtPolicy::hold;
  auto o = settled_before_sending(c, true, kNow, hold, 3);
  REQUIRE(o.has_value());
  CHECK(show(*o) ==
        show(no_attempt(RowStatus::held, kNow, "in doubt: a relay claimed it and stopped before recording an answer")));
  CHECK_FALSE(settled_before_sending(c, true, kNow, settings(), 3).has_value());
}

TEST_CASE("a row of an app that lost its dev key is handed back, due now, its last error kept") {
  auto o = settled_before_sending(claim(), false, kNow, settings(), 3);
  REQUIRE(o.has_value());
  CHECK(show(*o) == show(no_attempt(RowStatus::pending, kNow)));
}

TEST_CASE("a row handed back is pending at the time given, with no attempt recorded") {
  CHECK(show(handed_back(claim(2), kNow, kNow + 5000, 3)) == show(no_attempt(RowStatus::pending, kNow + 5000)));
}

TEST_CASE("a request abandoned at the shutdown deadline is held under --in-doubt hold, and handed back otherwise") {
  RelayConfig hold = settings();
  hold.in_doubt = InDoubtPolicy::hold;
  CHECK(show(abandoned(claim(), kNow, hold, 3)) ==
        show(no_attempt(RowStatus::held, kNow, "in doubt: the relay stopped before the answer came")));
  CHECK(show(abandoned(claim(), kNow, settings(), 3)) == show(no_attempt(RowStatus::pending, kNow)));
}

TEST_CASE("only a retried answer's Retry-After makes the app wait, capped at --backoff-max") {
  auto wait = [](const Answer& a) { return app_wait_ms(a, classify(a), settings()); };
  CHECK(wait(http(429, "", 30'000)) == 30'000);
  CHECK(wait(http(503, "", std::int64_t{1} << 50)) == 60'000);
  CHECK_FALSE(wait(http(503)).has_value());
  CHECK_FALSE(wait(http(503, "", 0)).has_value());
  CHECK_FALSE(wait(http(200, "", 30'000)).has_value());
  CHECK_FALSE(wait(http(403, "", 30'000)).has_value());
  CHECK_FALSE(wait(http(400, "", 30'000)).has_value());
}

TEST_CASE("only a dead row of the poison rule counts as poison") {
  Outcome o = no_attempt(RowStatus::dead, kNow, "poison: the relay stopped 3 times");
  CHECK(is_poison(o));
  o.status = RowStatus::failed;
  CHECK_FALSE(is_poison(o));
  CHECK_FALSE(is_poison(no_attempt(RowStatus::dead, kNow, "http 503 (gave up after 5 attempts)")));
}
