#include "relay/pacer.h"

#include <cstdint>

namespace metrix {

bool Pacer::committed(std::int64_t now, const RoundReport& round, bool empty_handed) {
  // Beside producers, pace the writes: after a round that held the lock for d, wait at least
  // 4·d. Alone (no other connection committed for a second), the next round may start after
  // the interval.
  if (round.others_wrote) producers_seen_at_ = now;
  next_write_allowed_ =
      now + std::max(settings_.commit_interval_ms, beside_producers(now) ? 4 * round.lock_us / 1000 : 0);
  if (round.claim_limit > 0 && round.claimed == 0 && !round.found_apps) {
    // Nothing was due: look again a poll interval later (for rows new to the outbox), or when
    // the next retry becomes due, if that is sooner.
    next_claim_at_ = std::min(now + settings_.poll_interval_ms, round.next_due_at.value_or(INT64_MAX));
    return true;
  }
  if (round.had_outcomes && empty_handed) {
    // Its hands are empty: look for due rows at once, not a poll interval after the last
    // empty claim. An --until-idle run whose last outcomes are final then ends as soon as
    // they are recorded; one whose last row waits to be retried ends as soon as that retry
    // is answered.
    next_claim_at_ = now;
  }
  return false;
}

int Pacer::claim_limit(std::int64_t now, const LoopLoad& load) const {
  const int window = this->window();
  if (load.stopping || now < next_claim_at_ || load.ready >= static_cast<std::size_t>(window / 2)) return 0;
  return window - static_cast<int>(load.ready + load.in_flight);
}

std::optional<int> Pacer::round_to_start(std::int64_t now, const LoopLoad& load) const {
  if (load.round_running || now < storage_retry_at_) return std::nullopt;
  // A relay with nothing to send writes at once, unless producers are committing: beside them
  // the pause holds even when every claimed row has already been sent.
  const bool allowed = now >= next_write_allowed_ || starving(now, load);
  const int claims = claim_limit(now, load);
  const bool to_record = load.outcomes || load.other_writes;
  if ((to_record && (allowed || load.stopping)) || (claims > 0 && allowed)) return claims;
  return std::nullopt;
}

int Pacer::wait_ms(std::int64_t now, const LoopLoad& load) const {
  if (load.round_running) return 50;
  // A starving relay may write before the commit interval passes, so it need not wait for it
  // either.
  const std::int64_t write_allowed_at = starving(now, load) ? now : next_write_allowed_;
  const bool may_claim = !load.stopping && load.ready < static_cast<std::size_t>(window() / 2);
  std::int64_t next_write_at = load.outcomes || may_claim ? std::max(write_allowed_at, next_claim_at_) : now + 50;
  if (load.outcomes) next_write_at = std::min(next_write_at, write_allowed_at);
  next_write_at = std::max(next_write_at, storage_retry_at_);  // after a failed round: wait, not spin
  return static_cast<int>(std::clamp<std::int64_t>(next_write_at - now, 0, 50));
}

}  // namespace metrix
