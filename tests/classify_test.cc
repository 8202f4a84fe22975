// The answer table of relay/classify.h, row by row, and the backoff and duration rules.
#include <doctest/doctest.h>

#include "relay/classify.h"
#include "relay/config.h"

using namespace metrix;

namespace {
Classification answer(int status, const std::string& body = "", std::optional<std::int64_t> retry_after = {}) {
  Answer a;
  a.http_status = status;
  a.body = body;
  a.retry_after_ms = retry_after;
  a.request_sent = true;
  return classify(a);
}
}  // namespace

TEST_CASE("a 2xx answer means sent") {
  CHECK(answer(200).verdict == Verdict::sent);
  CHECK(answer(204).verdict == Verdict::sent);
}

TEST_CASE("a 400 is failed for good, with the error name found anywhere in the body") {
  auto c = answer(400, R"({"errors":[{"type":"ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET"}]})");
  CHECK(c.verdict == Verdict::failed);
  CHECK(c.error == "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET");
  CHECK(answer(400, "<html>bad</html>").error == "http 400");
}

TEST_CASE("a 404 EVENT_TYPE_DOES_NOT_EXIST is failed") {
  auto c = answer(404, "EVENT_TYPE_DOES_NOT_EXIST");
  CHECK(c.verdict == Verdict::failed);
  CHECK(c.error == "EVENT_TYPE_DOES_NOT_EXIST");
}

TEST_CASE("a 403 pauses the app instead of failing the row") {
  CHECK(answer(403, "S2S_FEATURE_NOT_AVAILABLE").verdict == Verdict::pause);
  CHECK(answer(403, "S2S_FEATURE_NOT_AVAILABLE").error == "S2S_FEATURE_NOT_AVAILABLE");
  CHECK(answer(403, "INVALID_PARAMETERS").error == "INVALID_PARAMETERS");
  CHECK(answer(403).verdict == Verdict::pause);
}

TEST_CASE("408, 429 and 5xx are retried; a 429 is marked as Metrix asking for less traffic") {
  for (int s : {408, 429, 500, 502, 503, 504}) {
    CAPTURE(s);
    CHECK(answer(s).verdict == Verdict::retry);
    CHECK(answer(s).error == "http " + std::to_string(s));
    CHECK(answer(s).throttled == (s == 429));
  }
}

TEST_CASE("other 4xx answers are failed") {
  for (int s : {401, 405, 409, 410, 413, 422}) {
    CAPTURE(s);
    CHECK(answer(s).verdict == Verdict::failed);
  }
}

TEST_CASE("answers that are not part of the API are retried, never counted as success") {
  for (int s : {100, 301, 302, 304}) {
    CAPTURE(s);
    CHECK(answer(s).verdict == Verdict::retry);
  }
}

TEST_CASE("a transport error is retried, and in doubt only if the request may have arrived") {
  Answer refused;
  refused.transport_error = "connection refused";
  CHECK(classify(refused).verdict == Verdict::retry);
  CHECK(classify(refused).error == "connection refused");
  CHECK_FALSE(classify(refused).in_doubt);
  Answer timeout;
  timeout.transport_error = "timeout";
  timeout.request_sent = true;
  CHECK(classify(timeout).in_doubt);
}

TEST_CASE("Retry-After is read as seconds or as an HTTP date") {
  CHECK(parse_retry_after_ms("7", 0) == 7000);
  CHECK(parse_retry_after_ms(" 0 \r\n", 0) == 0);
  CHECK(parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470000) == 10000);
  CHECK(parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490000) == 0);
  CHECK_FALSE(parse_retry_after_ms("soon", 0).has_value());
  CHECK_FALSE(parse_retry_after_ms("-5", 0).has_value());
  CHECK(*parse_retry_after_ms("999999999999999999999999", 0) > 0);  // absurd, capped by the relay
}

TEST_CASE("backoff grows exponentially up to the cap, with full jitter") {
  CHECK(backoff_ms(1, 1000, 60000, 0.0) == 0);
  CHECK(backoff_ms(1, 1000, 60000, 0.999999) == 1000);
  CHECK(backoff_ms(3, 1000, 60000, 0.999999) == 4000);
  CHECK(backoff_ms(30, 1000, 60000, 0.999999) == 60000);
  CHECK(backoff_ms(1000000, 1000, 60000, 0.5) <= 60000);
}

TEST_CASE("durations take a unit") {
  CHECK(parse_duration_ms("250ms").value() == 250);
  CHECK(parse_duration_ms("5s").value() == 5000);
  CHECK(parse_duration_ms("2m").value() == 120000);
  CHECK(parse_duration_ms("1h30m").value() == 5400000);
  CHECK(parse_duration_ms("7d").value() == 604800000);
  CHECK_FALSE(parse_duration_ms("5").ok());
  CHECK_FALSE(parse_duration_ms("").ok());
  CHECK_FALSE(parse_duration_ms("5x").ok());
  CHECK_FALSE(parse_duration_ms("-5s").ok());
  CHECK_FALSE(parse_duration_ms("99999999999999999d").ok());
  CHECK(parse_duration_ms("5").error().message.find("use a number and a unit") != std::string::npos);
}

TEST_CASE("the relay configuration refuses unsafe or inconsistent settings") {
  RelayConfig c;
  c.db_path = "x.db";
  CHECK(validate(c).ok());
  c.endpoint = "http://analytics.metrix.ir";
  CHECK(validate(c).error().message.find("plain http") != std::string::npos);
  c.allow_insecure_http = true;
  CHECK(validate(c).ok());
  c.endpoint = "http://127.0.0.1:8080";
  c.allow_insecure_http = false;
  CHECK(validate(c).ok());
  c.endpoint = "http://[::1]:8080";
  CHECK(validate(c).ok());
  c.endpoint = "http://[0:0:0:0:0:0:0:01]:8080";  // another spelling of ::1
  CHECK(validate(c).ok());
  c.endpoint = "http://[::1%25lo]:8080";
  CHECK(validate(c).ok());
  c.endpoint = "http://[::2]:8080";
  CHECK(validate(c).error().message.find("plain http") != std::string::npos);
  c.endpoint = "http://[::ffff:10.0.0.1]:8080";
  CHECK(validate(c).error().message.find("plain http") != std::string::npos);
  c.endpoint = "http://127.0.0.1:8080";
  c.lease_ms = 5000;
  c.timeout_ms = 10000;
  CHECK(validate(c).error().message.find("--lease") != std::string::npos);
  c = RelayConfig{};
  c.db_path = "x.db";
  c.concurrency = 0;
  CHECK_FALSE(validate(c).ok());
}
