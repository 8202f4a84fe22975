// What an answer from Metrix means for the row: the answer table of README "Running the
// relay", in one pure function. No I/O, no clock, no randomness: relay/policy.h turns the
// verdict into the row's outcome.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace metrix {

// One finished HTTP attempt, as the transport saw it.
struct Answer {
  int http_status = 0;                       // 0: no HTTP answer (transport error)
  std::string transport_error;               // e.g. "timeout", "connection refused"; empty if answered
  bool request_sent = false;                 // the request may have reached the server
  std::optional<std::int64_t> retry_after_ms;
  std::string body;                          // the first bytes of the answer body
};

enum class Verdict {
  sent,    // delivered: the row becomes 'sent'
  failed,  // refused for good: 'failed', an operator may requeue after fixing the cause
  retry,   // try again after a backoff: stays 'pending' (or 'dead' once attempts/age run out)
  pause,   // the app is refused (403): the row stays 'pending', the app is paused and probed
};

struct Classification {
  Verdict verdict = Verdict::retry;
  std::string error;      // the error name from the answer, "http 503", or the transport error
  bool throttled = false; // 429: Metrix asks for less traffic, so the app's window shrinks
  bool in_doubt = false;  // no answer, but the request may have reached Metrix
};

Classification classify(const Answer& answer);

// The Metrix error name found anywhere in `body` (the reference's error table), or "".
std::string_view metrix_error_name(std::string_view body);

// Parses a Retry-After header value: delay-seconds or an HTTP-date. nullopt if neither.
std::optional<std::int64_t> parse_retry_after_ms(std::string_view value, std::int64_t now_ms);

// Exponential backoff with full jitter: a uniformly random delay in
// [0, min(max_ms, base_ms * 2^(attempt-1))]. `unit_random` is in [0, 1).
std::int64_t backoff_ms(std::int64_t attempt, std::int64_t base_ms, std::int64_t max_ms, double unit_random);

}  // namespace metrix
