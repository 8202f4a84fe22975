// What becomes of a claimed row: the retry policy, in pure functions beside classify()
// (relay/classify.h says what an answer means; this says what the row does about it). No
// I/O, no clock, no randomness: the time and the backoff's random draw are passed in, and the
// settings read are RelayConfig's max_attempts, backoff_base_ms, backoff_max_ms, max_age_ms,
// poison_after, pause_interval_ms and in_doubt.
//
// Every Outcome the relay records is built by one of the functions below, so that its fields
// (attempted or not, which times, which error) follow one rule set.
#pragma once

#include <cstdint>
#include <optional>

#include "relay/classify.h"
#include "relay/config.h"
#include "storage/relay_store.h"

namespace metrix {

// One answered attempt of a claimed row (an HTTP answer or a transport error).
struct AttemptAnswer {
  const Claim& claim;
  const Answer& answer;
  const Classification& verdict;  // classify(answer)
  std::int64_t started_at = 0;    // ms since the epoch
  std::int64_t finished_at = 0;
  // The app's next probe as the answer left the app's pause (a 403 pauses the app first);
  // nullopt when the app is not paused.
  std::optional<std::int64_t> next_probe_at = std::nullopt;
  double unit_random = 0;         // in [0, 1): the backoff's jitter
  std::uint32_t tag = 0;          // Outcome::tag, the caller's
};

// The row's outcome for an answered attempt: an attempt is recorded (the answer's status,
// error and body), and the row becomes, by the verdict:
//   sent (2xx)                 -> sent
//   failed (400, 404, 4xx)     -> failed
//   pause (403)                -> pending, due at the app's next probe (next_probe_at, else
//                                 finished_at + pause_interval_ms); never dead through 403s,
//                                 however many: the app's set-up is refused, not this event
//   retry, in doubt, and --in-doubt hold
//                              -> held, "in doubt: <error>": an operator decides whether
//                                 Metrix has it (a gap rather than a duplicate)
//   retry, this attempt is the --max-attempts'th (or later)
//                              -> dead, "<error> (gave up after N attempts)"
//   retry                      -> pending, due after the backoff (backoff_ms: full jitter,
//                                 capped at --backoff-max) or after Retry-After if that is
//                                 longer; Retry-After counts up to --backoff-max only
// The attempt's number is the claim's attempts plus one.
Outcome answered(const AttemptAnswer& attempt, const RelayConfig& config);

// A row a round has just claimed, looked at before any request. The first rule that matches
// settles it without a request (no attempt recorded, due and timed at `now`):
//   created more than --max-age ago       -> dead, "stale: older than --max-age 7d00h"
//   its lease expired --poison-after times in a row with no answer (its relays died or hung
//   while sending it)                     -> dead, "poison: ..." (is_poison); an operator
//                                            can look at it and requeue it
//   its last lease expired with no answer, and --in-doubt hold
//                                         -> held, "in doubt: a relay claimed it and stopped
//                                            before recording an answer"
//   its app cannot be sent to (`routable` false: no dev key since a reload)
//                                         -> pending, due now, last_error kept
// and nullopt when none does: send it.
std::optional<Outcome> settled_before_sending(const Claim& claim, bool routable, std::int64_t now,
                                              const RelayConfig& config, std::uint32_t tag);

// A claimed row given back unsent (stopping, its app paused or held by Retry-After, its lease
// running short in the queue, its app's key removed): pending, due at `due`, no attempt
// recorded, its last answer and last_error kept.
Outcome handed_back(const Claim& claim, std::int64_t now, std::int64_t due, std::uint32_t tag);

// A request still in flight when the shutdown deadline passed: it may have reached Metrix.
// With --in-doubt hold, held ("in doubt: the relay stopped before the answer came");
// otherwise handed back, due now (sent again: at least once).
Outcome abandoned(const Claim& claim, std::int64_t now, const RelayConfig& config, std::uint32_t tag);

// How long Metrix asked the whole app to wait: a retried answer's Retry-After, capped at
// --backoff-max like a backoff; nullopt when it asked for no wait (none, or zero).
std::optional<std::int64_t> app_wait_ms(const Answer& answer, const Classification& verdict,
                                        const RelayConfig& config);

// A dead outcome of the poison rule (its error starts "poison: "), counted apart in the metrics.
bool is_poison(const Outcome& outcome);

}  // namespace metrix
