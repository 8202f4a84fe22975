#include "relay/classify.h"

#include <algorithm>
#include <charconv>
#include <ctime>

namespace metrix {

std::string_view metrix_error_name(std::string_view body) {
  // The names of the reference's error table. INVALID_PARAMETERS last: it is the least specific.
  static constexpr std::string_view kNames[] = {
      "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL", "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET",
      "S2S_FEATURE_NOT_AVAILABLE", "EVENT_TYPE_DOES_NOT_EXIST", "INVALID_PARAMETERS"};
  for (std::string_view name : kNames) {
    if (body.find(name) != std::string_view::npos) return name;
  }
  return {};
}

Classification classify(const Answer& answer) {
  Classification c;
  const int s = answer.http_status;
  std::string_view name = metrix_error_name(answer.body);
  auto named = [&](std::string_view fallback) { return std::string(name.empty() ? fallback : name); };

  if (s == 0) {
    // No answer: timeout, refused or dropped connection, TLS failure. Retried; in doubt when
    // the request may have arrived (a duplicate is possible, a loss is not).
    c.verdict = Verdict::retry;
    c.error = answer.transport_error.empty() ? "transport error" : answer.transport_error;
    c.in_doubt = answer.request_sent;
  } else if (s >= 200 && s < 300) {
    // Delivered.
    c.verdict = Verdict::sent;
  } else if (s == 400) {
    // The event is malformed for Metrix (e.g. none or both device ids): retrying cannot help.
    c.verdict = Verdict::failed;
    c.error = named("http 400");
  } else if (s == 403) {
    // S2S_FEATURE_NOT_AVAILABLE or INVALID_PARAMETERS (wrong dev key, server IP not allowed):
    // a fault of the app's set-up, not of this event. Pause the app; burn no rows.
    c.verdict = Verdict::pause;
    c.error = named("http 403");
  } else if (s == 408 || s == 429 || s >= 500) {
    // Request timeout, too many requests, server errors: transient. A 429 asks for less
    // traffic: the app's window of requests in flight shrinks (relay/concurrency.h).
    c.verdict = Verdict::retry;
    c.error = named("http " + std::to_string(s));
    c.throttled = s == 429;
  } else if (s >= 400) {
    // 404 EVENT_TYPE_DOES_NOT_EXIST (the slug is not defined; requeue once it is), and every
    // other 4xx: refused for good.
    c.verdict = Verdict::failed;
    c.error = named("http " + std::to_string(s));
  } else {
    // 1xx and 3xx are not answers this API gives: never counted as success, retried.
    c.verdict = Verdict::retry;
    c.error = "unexpected http " + std::to_string(s);
  }
  return c;
}

std::optional<std::int64_t> parse_retry_after_ms(std::string_view value, std::int64_t now_ms) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' || value.back() == '\n')) {
    value.remove_suffix(1);
  }
  if (value.empty()) return std::nullopt;
  std::int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && end == value.data() + value.size()) {
    if (seconds < 0) return std::nullopt;
    // Absurd values are capped by the caller; avoid overflow here.
    return std::min<std::int64_t>(seconds, std::int64_t{1} << 40) * 1000;
  }
  if (ec == std::errc::result_out_of_range) return std::int64_t{1} << 50;
  // HTTP-date, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
  std::tm tm{};
  std::string text(value);
  const char* parsed = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!parsed || *parsed != '\0') return std::nullopt;
  std::int64_t at_ms = static_cast<std::int64_t>(timegm(&tm)) * 1000;
  return std::max<std::int64_t>(0, at_ms - now_ms);
}

std::int64_t backoff_ms(std::int64_t attempt, std::int64_t base_ms, std::int64_t max_ms, double unit_random) {
  std::int64_t ceiling = base_ms;
  for (std::int64_t i = 1; i < attempt && ceiling < max_ms; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, max_ms);
  return static_cast<std::int64_t>(unit_random * static_cast<double>(ceiling + 1));
}

}  // namespace metrix
