// Fuzz target: the answer classifier (relay/classify.h): classify(), metrix_error_name(),
// parse_retry_after_ms(), and the row's outcome the retry policy (relay/policy.h) builds from
// them with backoff_ms().
//
// The input reads like an HTTP answer as the transport hands it over:
//
//   HTTP/1.1 429 Too Many Requests        a status line; any other first line is a transport
//   Retry-After: 120                      error (status 0), e.g. "timeout"; header lines, each
//                                         "Retry-After:" parsed as relay/http.cc does (the last wins)
//   {"error":"INVALID_PARAMETERS"}        after the first empty line: the body
//
// Invariants: a 2xx is 'sent' and nothing else is; a 403 pauses and nothing else does; a
// 'failed' answer is a 4xx other than 403, 408 and 429; only 429 and 503 slow the app down;
// only a transport error is in doubt, exactly when the request may have been sent; every
// verdict but 'sent' names an error; the error name found is one of the table's and is in
// the body; Retry-After is never negative; the outcome follows the verdict, and the delay the
// relay waits is within [0, backoff-max].
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fuzz/support.h"
#include "relay/classify.h"
#include "relay/config.h"
#include "relay/policy.h"

namespace {

using metrix::fuzz::printable;

struct ParsedAnswer {
  metrix::Answer answer;
  std::vector<std::string> retry_after_values;  // each header's value, CRLF included
};

// Splits the input into lines ('\n' kept, as curl hands header lines to relay/http.cc).
std::vector<std::string_view> lines_of(std::string_view text, std::string_view* rest) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end == std::string_view::npos ? text.size() : end + 1);
    text.remove_prefix(line.size());
    if (line == "\n" || line == "\r\n") break;  // the blank line: the body follows
    lines.push_back(line);
  }
  *rest = text;
  return lines;
}

ParsedAnswer parse(std::string_view input) {
  ParsedAnswer parsed;
  std::string_view body;
  auto lines = lines_of(input, &body);
  metrix::Answer& a = parsed.answer;
  a.body = std::string(body);
  if (lines.empty()) return parsed;  // no status line: a transport error without a name
  std::string_view first = lines.front();
  if (first.substr(0, 5) == "HTTP/") {
    size_t space = first.find(' ');
    std::string_view code = space == std::string_view::npos ? std::string_view() : first.substr(space + 1);
    int status = 0;
    std::from_chars(code.data(), code.data() + code.size(), status);  // any int: the classifier must cope
    a.http_status = status;
    a.request_sent = true;
  } else {
    while (!first.empty() && (first.back() == '\n' || first.back() == '\r')) first.remove_suffix(1);
    a.transport_error = std::string(first);
    // As relay/http.cc decides: a connection that never opened cannot have carried the request.
    a.request_sent = first.find("connect") == std::string_view::npos && first.find("resolve") == std::string_view::npos;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    constexpr std::string_view kRetryAfter = "retry-after:";
    if (line.size() > kRetryAfter.size() &&
        std::equal(kRetryAfter.begin(), kRetryAfter.end(), line.begin(),
                   [](char x, char y) { return x == std::tolower(static_cast<unsigned char>(y)); })) {
      parsed.retry_after_values.emplace_back(line.substr(kRetryAfter.size()));
    }
  }
  return parsed;
}

constexpr std::int64_t kNow = 1'764'000'000'000;  // 2025-11-24, a realistic clock

void check_retry_after(std::string_view value) {
  // The clock may be anywhere between the epoch and the end of the rules' range (2100).
  for (std::int64_t now : {std::int64_t{0}, kNow, std::int64_t{4'102'444'800'000}}) {
    auto ms = metrix::parse_retry_after_ms(value, now);
    METRIX_FUZZ_REQUIRE(!ms || *ms >= 0, "Retry-After '{}' gives a negative delay {} at {}", printable(value), *ms,
                        now);
  }
  // Delay-seconds, digits only: exactly that many seconds.
  std::string_view trimmed = value;
  while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t')) trimmed.remove_prefix(1);
  while (!trimmed.empty() && std::string_view(" \t\r\n").find(trimmed.back()) != std::string_view::npos) {
    trimmed.remove_suffix(1);
  }
  if (!trimmed.empty() && trimmed.size() <= 12 &&
      std::all_of(trimmed.begin(), trimmed.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t seconds = std::stoll(std::string(trimmed));
    auto ms = metrix::parse_retry_after_ms(value, kNow);
    METRIX_FUZZ_REQUIRE(ms && *ms == seconds * 1000, "Retry-After '{}' is not {} s", printable(value), seconds);
  }
}

void check_classification(const metrix::Answer& a, const metrix::Classification& c) {
  const int s = a.http_status;
  using metrix::Verdict;
  METRIX_FUZZ_REQUIRE((c.verdict == Verdict::sent) == (s >= 200 && s <= 299), "status {} gives verdict {}", s,
                      static_cast<int>(c.verdict));
  METRIX_FUZZ_REQUIRE((c.verdict == Verdict::pause) == (s == 403), "status {} pauses: {}", s,
                      c.verdict == Verdict::pause);
  if (c.verdict == Verdict::failed) {
    METRIX_FUZZ_REQUIRE(s >= 400 && s <= 499 && s != 403 && s != 408 && s != 429, "status {} fails the row for good",
                        s);
  }
  METRIX_FUZZ_REQUIRE(!c.throttled || s == 429, "status {} throttles the app", s);
  METRIX_FUZZ_REQUIRE(c.in_doubt == (s == 0 && a.request_sent), "status {} (sent {}) in doubt: {}", s, a.request_sent,
                      c.in_doubt);
  METRIX_FUZZ_REQUIRE(c.verdict == Verdict::sent || !c.error.empty(), "status {}: verdict without an error name", s);
  if (s == 0) METRIX_FUZZ_REQUIRE(c.verdict == Verdict::retry, "a transport error is not retried");

  static const std::set<std::string_view> kNames = {
      "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL", "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET",
      "S2S_FEATURE_NOT_AVAILABLE", "EVENT_TYPE_DOES_NOT_EXIST", "INVALID_PARAMETERS"};
  std::string_view name = metrix::metrix_error_name(a.body);
  if (!name.empty()) {
    METRIX_FUZZ_REQUIRE(kNames.count(name) == 1, "metrix_error_name gives '{}'", printable(name));
    METRIX_FUZZ_REQUIRE(a.body.find(name) != std::string::npos, "metrix_error_name '{}' is not in the body", name);
    if (s >= 400) METRIX_FUZZ_REQUIRE(c.error == name, "status {}: error '{}', the body names {}", s, c.error, name);
  } else {
    for (std::string_view known : kNames) {
      METRIX_FUZZ_REQUIRE(a.body.find(known) == std::string::npos, "the body names {}, metrix_error_name finds none",
                          known);
    }
  }
}

// The row's outcome (relay/policy.h's answered()) for every attempt number up to past
// --max-attempts, under both --in-doubt policies, for the default settings and the extremes
// parse_duration_ms allows: sent, failed and pending after a 403 exactly as the verdict says;
// a retry held exactly when in doubt under hold, else dead exactly from the --max-attempts'th
// attempt, else pending after a delay within [0, backoff-max]: the backoff, or Retry-After
// if longer.
void check_outcome(const metrix::Answer& a, const metrix::Classification& c, std::uint64_t seed) {
  using metrix::RowStatus;
  using metrix::Verdict;
  double unit_random = static_cast<double>(seed >> 11) * 0x1.0p-53;  // [0, 1)
  constexpr std::int64_t kLongest = std::numeric_limits<std::int64_t>::max() / 4;
  struct Settings {
    std::int64_t base_ms, max_ms;
    int max_attempts;
  };
  for (Settings st : {Settings{1000, 300'000, 20}, Settings{1, 1, 1}, Settings{1, kLongest, 100},
                      Settings{kLongest, kLongest, 3}}) {
    for (metrix::InDoubtPolicy in_doubt : {metrix::InDoubtPolicy::resend, metrix::InDoubtPolicy::hold}) {
      metrix::RelayConfig config;
      config.backoff_base_ms = st.base_ms;
      config.backoff_max_ms = st.max_ms;
      config.max_attempts = st.max_attempts;
      config.in_doubt = in_doubt;
      for (std::int64_t attempt = 1; attempt <= st.max_attempts + 1; attempt += 1 + static_cast<std::int64_t>(seed % 7)) {
        std::int64_t delay = metrix::backoff_ms(attempt, st.base_ms, st.max_ms, unit_random);
        METRIX_FUZZ_REQUIRE(delay >= 0 && delay <= st.max_ms, "backoff_ms({}, {}, {}, {}) = {}", attempt, st.base_ms,
                            st.max_ms, unit_random, delay);
        metrix::Claim claim;
        claim.attempts = attempt - 1;
        const metrix::Outcome o = metrix::answered(metrix::AttemptAnswer{.claim = claim,
                                                                         .answer = a,
                                                                         .verdict = c,
                                                                         .started_at = kNow - 1,
                                                                         .finished_at = kNow,
                                                                         .next_probe_at = kNow + 60'000,
                                                                         .unit_random = unit_random,
                                                                         .tag = 0},
                                                   config);
        METRIX_FUZZ_REQUIRE(o.attempted && o.finished_at == kNow, "an answer is not recorded as an attempt");
        const std::string_view status = metrix::row_status_name(o.status);
        switch (c.verdict) {
          case Verdict::sent:
            METRIX_FUZZ_REQUIRE(o.status == RowStatus::sent, "a sent verdict makes the row {}", status);
            break;
          case Verdict::failed:
            METRIX_FUZZ_REQUIRE(o.status == RowStatus::failed, "a failed verdict makes the row {}", status);
            break;
          case Verdict::pause:
            METRIX_FUZZ_REQUIRE(o.status == RowStatus::pending && o.next_attempt_at == kNow + 60'000,
                                "a 403 makes the row {} due at {}", status, o.next_attempt_at);
            break;
          case Verdict::retry:
            if (c.in_doubt && in_doubt == metrix::InDoubtPolicy::hold) {
              METRIX_FUZZ_REQUIRE(o.status == RowStatus::held, "in doubt under hold: the row is {}", status);
            } else if (attempt >= st.max_attempts) {
              METRIX_FUZZ_REQUIRE(o.status == RowStatus::dead, "attempt {} of {}: the row is {}", attempt,
                                  st.max_attempts, status);
            } else {
              if (a.retry_after_ms) delay = std::max(delay, std::min(*a.retry_after_ms, st.max_ms));
              METRIX_FUZZ_REQUIRE(o.status == RowStatus::pending && o.next_attempt_at == kNow + delay,
                                  "attempt {}: the row is {} due in {}, not in {}", attempt, status,
                                  o.next_attempt_at - kNow, delay);
              METRIX_FUZZ_REQUIRE(delay >= 0 && delay <= st.max_ms, "retry delay {} outside [0, {}]", delay, st.max_ms);
            }
            break;
        }
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  ParsedAnswer parsed = parse(input);
  for (std::string_view value : parsed.retry_after_values) {
    check_retry_after(value);
    parsed.answer.retry_after_ms = metrix::parse_retry_after_ms(value, kNow);
  }
  metrix::Classification c = metrix::classify(parsed.answer);
  check_classification(parsed.answer, c);
  check_outcome(parsed.answer, c, metrix::fuzz::fingerprint(input));
  return 0;
}
