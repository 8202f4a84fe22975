// Pacer: when the relay's loop starts a write round, and how many rows the round may claim.
// The loop reports what it holds and what each round did; the pacer keeps the times that
// follow from them. No clock: every call is given the time (ms since the epoch), so a test
// drives it with plain numbers. Used from the relay's loop thread only.
//
// The rules:
// - one round per --commit-interval at most, so outcomes are durable within milliseconds of
//   their answer (the duplicate window after a crash) and the write lock stays free nearly
//   all the time;
// - beside producers (a round saw another connection's commit within the last second), a
//   round that held the write lock for d is followed by a pause of at least 4·d: the relay
//   holds the lock at most about a fifth of the time however fast it drains, and a producer's
//   commit waits for one round at most;
// - starving (nothing in flight, no claimed row waiting, and no producer beside it), the relay
//   writes at once: there is no request to keep fed and nobody to leave the lock to;
// - claims keep up to window() rows claimed and unanswered, and are made only while fewer
//   than half of that wait for a request slot;
// - a round that found nothing due claims again a --poll-interval later, or when the next
//   retry is due if that is sooner; one that emptied the relay's hands claims again at once;
// - stopping: no claims; outcomes, the heartbeat and pauses are still written, without
//   waiting for the commit interval;
// - after a round that failed, no round for a second (waiting, not spinning, on a locked or
//   full database);
// - no round while one is running.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace metrix {

struct PacerSettings {
  std::int64_t commit_interval_ms = 10;  // --commit-interval
  std::int64_t poll_interval_ms = 100;   // --poll-interval
  int concurrency = 64;                  // --concurrency: requests in flight at most
};

// What the loop holds when it asks.
struct LoopLoad {
  std::size_t in_flight = 0;   // requests in flight
  std::size_t ready = 0;       // claimed rows waiting for a request slot
  bool outcomes = false;       // outcomes decided and not yet committed
  bool other_writes = false;   // a heartbeat or an app pause waiting to be written
  bool stopping = false;       // asked to stop: nothing more is claimed
  bool round_running = false;  // a round is on the writer thread
};

// What a committed round did.
struct RoundReport {
  int claim_limit = 0;         // the rows it was allowed to claim
  std::size_t claimed = 0;     // the rows it claimed
  bool found_apps = false;     // it listed an app with due rows the round before did not
  bool had_outcomes = false;   // it had outcomes to record (recorded or fenced off)
  bool others_wrote = false;   // another connection committed since the round before
  std::int64_t lock_us = 0;    // how long it held the write lock
  std::optional<std::int64_t> next_due_at = std::nullopt;  // when a row it could not claim becomes due
};

class Pacer {
 public:
  explicit Pacer(PacerSettings settings) : settings_(settings) {}

  // New settings (a reload); the times already decided stand.
  void set_settings(PacerSettings settings) { settings_ = settings; }

  // Rows claimed and not yet answered at most: the requests in flight plus a reserve that
  // keeps every request slot fed while a round and the pause after it run (at 20,000 events/s,
  // 50 ms use 1,000 rows).
  int window() const { return settings_.concurrency + std::max(2048, settings_.concurrency); }

  // A round committed at `now`. `empty_handed`: after taking in the round's claims, nothing
  // is in flight, ready or waiting to be recorded. Returns true when the round was allowed
  // to claim and found nothing due (and no new app): the moment an --until-idle run checks
  // whether it is done.
  bool committed(std::int64_t now, const RoundReport& round, bool empty_handed);

  // A round failed at `now`: nothing of it was written.
  void failed(std::int64_t now) { storage_retry_at_ = now + 1000; }

  // How many rows a round started at `now` may claim (0: none; claims are not due, half the
  // window waits for a slot, or the loop is stopping).
  int claim_limit(std::int64_t now, const LoopLoad& load) const;

  // Whether to start a round at `now`, and the rows it may claim; nullopt: not now.
  std::optional<int> round_to_start(std::int64_t now, const LoopLoad& load) const;

  // How long the loop may wait for answers from `now` before a round may be due: 0 to 50 ms
  // (50 while a round runs: the writer wakes the loop when it is done).
  int wait_ms(std::int64_t now, const LoopLoad& load) const;

  // A round saw another connection's commit within the second before `now`.
  bool beside_producers(std::int64_t now) const { return now - producers_seen_at_ < 1000; }

  // Nothing to send and no producer to leave the write lock to.
  bool starving(std::int64_t now, const LoopLoad& load) const {
    return load.in_flight == 0 && load.ready == 0 && !beside_producers(now);
  }

 private:
  PacerSettings settings_;
  std::int64_t next_claim_at_ = 0;        // no claim before this
  std::int64_t next_write_allowed_ = 0;   // the commit interval, or the pause beside producers
  std::int64_t storage_retry_at_ = 0;     // after a failed round: no round before this
  std::int64_t producers_seen_at_ = -1'000'000;  // when a round last saw another connection's commit
};

}  // namespace metrix
