#include "relay/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <utility>

#include "storage/time_text.h"

namespace metrix {
namespace {

// How last_error starts for a poison row.
constexpr std::string_view kPoisonPrefix = "poison: ";

// A row settled without a request: no attempt is recorded, so storage keeps its last answer
// (and its last_error, when `error` is empty).
Outcome without_attempt(const Claim& claim, RowStatus status, std::int64_t now, std::int64_t due, std::string error,
                        std::uint32_t tag) {
  Outcome o;
  o.id = claim.id;
  o.lease_token = claim.lease_token;
  o.status = status;
  o.attempted = false;
  o.started_at = o.finished_at = now;
  o.next_attempt_at = due;
  o.error = std::move(error);
  o.tag = tag;
  return o;
}

}  // namespace

Outcome answered(const AttemptAnswer& a, const RelayConfig& config) {
  const std::int64_t now = a.finished_at;
  const std::int64_t attempt = a.claim.attempts + 1;
  Outcome o;
  o.tag = a.tag;
  o.id = a.claim.id;
  o.lease_token = a.claim.lease_token;
  o.started_at = a.started_at;
  o.finished_at = now;
  o.next_attempt_at = now;
  if (a.answer.http_status) o.http_status = a.answer.http_status;
  o.error = a.verdict.error;
  o.response = a.answer.body;

  switch (a.verdict.verdict) {
    case Verdict::sent:
      o.status = RowStatus::sent;
      break;
    case Verdict::failed:
      o.status = RowStatus::failed;
      break;
    case Verdict::pause:
      o.status = RowStatus::pending;
      o.next_attempt_at = a.next_probe_at ? *a.next_probe_at : now + config.pause_interval_ms;
      break;
    case Verdict::retry: {
      if (a.verdict.in_doubt && config.in_doubt == InDoubtPolicy::hold) {
        o.status = RowStatus::held;
        o.error = "in doubt: " + a.verdict.error;
        break;
      }
      if (attempt >= config.max_attempts) {
        o.status = RowStatus::dead;
        o.error = fmt::format("{} (gave up after {} attempts)", a.verdict.error, attempt);
        break;
      }
      std::int64_t delay = backoff_ms(attempt, config.backoff_base_ms, config.backoff_max_ms, a.unit_random);
      if (auto wait = app_wait_ms(a.answer, a.verdict, config)) delay = std::max(delay, *wait);
      o.status = RowStatus::pending;
      o.next_attempt_at = now + delay;
      break;
    }
  }
  return o;
}

std::optional<Outcome> settled_before_sending(const Claim& claim, bool routable, std::int64_t now,
                                              const RelayConfig& config, std::uint32_t tag) {
  if (now - claim.created_at > config.max_age_ms) {
    return without_attempt(claim, RowStatus::dead, now, now,
                           fmt::format("stale: older than --max-age {}", describe_duration(config.max_age_ms)), tag);
  }
  if (claim.lease_expiries >= config.poison_after) {
    // Every relay that claimed it since its last answer died or hung while sending it (or
    // `check --repair` released its expired lease): do not let it stop this one too.
    return without_attempt(
        claim, RowStatus::dead, now, now,
        fmt::format("{}the relay stopped {} times in a row while sending this row (its lease expired with no answer "
                    "recorded); not sent again",
                    kPoisonPrefix, claim.lease_expiries),
        tag);
  }
  if (claim.lease_expired && config.in_doubt == InDoubtPolicy::hold) {
    return without_attempt(claim, RowStatus::held, now, now,
                           "in doubt: a relay claimed it and stopped before recording an answer", tag);
  }
  // Claimed by a round that started before a reload removed the app's key: not sent.
  if (!routable) return handed_back(claim, now, now, tag);
  return std::nullopt;
}

Outcome handed_back(const Claim& claim, std::int64_t now, std::int64_t due, std::uint32_t tag) {
  return without_attempt(claim, RowStatus::pending, now, due, {}, tag);
}

Outcome abandoned(const Claim& claim, std::int64_t now, const RelayConfig& config, std::uint32_t tag) {
  if (config.in_doubt == InDoubtPolicy::hold) {
    return without_attempt(claim, RowStatus::held, now, now, "in doubt: the relay stopped before the answer came", tag);
  }
  return handed_back(claim, now, now, tag);
}

std::optional<std::int64_t> app_wait_ms(const Answer& answer, const Classification& verdict,
                                        const RelayConfig& config) {
  if (verdict.verdict != Verdict::retry || !answer.retry_after_ms || *answer.retry_after_ms <= 0) return std::nullopt;
  return std::min(*answer.retry_after_ms, config.backoff_max_ms);
}

bool is_poison(const Outcome& outcome) {
  return outcome.status == RowStatus::dead && outcome.error.starts_with(kPoisonPrefix);
}

}  // namespace metrix
