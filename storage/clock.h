// The wall clock. Every time the outbox stores (created_at, next_attempt_at, sent_at, an
// attempt's started_at and finished_at) is milliseconds since the Unix epoch, UTC, from it.
//
// It is the system clock, not a monotonic one: it may step when the host's time is set. The
// outbox tolerates that (a step back delays retries, a step forward makes them due early);
// durations measured inside one process use std::chrono::steady_clock instead.
#pragma once

#include <chrono>
#include <cstdint>

namespace metrix {

// Milliseconds since the Unix epoch, from the system clock.
inline std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace metrix
