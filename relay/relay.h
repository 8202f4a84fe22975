// The relay: claim due rows -> build each request -> send (libcurl multi) -> classify the
// answer -> record the outcome. One loop thread with one HttpClient; the outcomes commit and
// the claims are made in write rounds on a second thread with its own connection (writer.h),
// so requests keep flowing while a round holds the write lock. The loop itself is
// relay/loop.h; what becomes of a row after an answer (or without one) is relay/policy.h;
// when a round starts and what it claims is relay/pacer.h.
//
// Guarantees (README.md, "Delivery guarantees"):
// - at least once: a row leaves 'pending'/'sending' only through a recorded outcome; a crash
//   leaves claimed rows leased, and they are due again when the lease expires;
// - outcomes are committed in batches within milliseconds of the answer (beside producers,
//   within about five times a round's lock time), so only requests in flight and answers not
//   yet committed can be sent twice after a crash;
// - beside producers (a round saw a commit not its relay's within the last second), rounds
//   are paced so the relay holds the write lock at most about a fifth of the time;
// - fencing: an outcome is recorded only while the row still carries this relay's lease
//   token, so a relay that stalled past its lease never overwrites a newer claim;
// - the body is the producer's payload byte for byte, with "eventTime" inserted first when the
//   payload has none; event_time is fixed at the first claim, so every retry is identical.
// - poison rows: a row whose leases expired --poison-after times in a row with no answer (its
//   relay died or hung while holding it) is not sent again but made dead; the relay holds one
//   such suspect at a time, so rows merely claimed beside the culprit are cleared by an answer;
// - --max-rate: each app's requests start at most rate * T + 1 times in any T >= 1 s.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "relay/classify.h"
#include "relay/config.h"
#include "storage/relay_store.h"

namespace metrix {

// The request body for a claimed row.
std::string request_body(const Claim& claim);

// What a running relay hears from outside. `stop` (SIGINT/SIGTERM): stop claiming, finish
// what is in flight, exit. `reload` (SIGHUP): the loop clears it and calls `load` for the new
// configuration; one that does not load, or changes what check_reloadable() refuses, is
// logged and not used. `reload` and `load` may be null: no reloads.
struct RelayControl {
  const std::atomic<bool>* stop = nullptr;
  std::atomic<bool>* reload = nullptr;
  std::function<Result<RelayConfig>()> load;
};

// Runs until `stop` becomes true, or with until_idle once no row is pending or sending.
// Under systemd (NOTIFY_SOCKET set) it tells the service manager how it is doing
// (relay/notify.h). Returns the exit code: 0 done, 1 a runtime failure or (until_idle) rows
// that cannot be delivered because their app is paused or has no dev key, 2 an invalid config.
int run_relay(const RelayConfig& config, const RelayControl& control);

}  // namespace metrix
