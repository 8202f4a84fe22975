// PgRelayStore: storage/relay_store.h on a PostgreSQL outbox (storage/postgres/migrations/),
// shared by any number of relays on any number of hosts. The contract is relay_store.h's; what
// follows is how this backend keeps it.
//
// A write round is one transaction in one round trip: its statements go out together in libpq's
// pipeline mode and run in the pipeline's implicit transaction, committed at its sync point.
// Each is prepared once per connection (planning the claim costs more than running a small one).
// Outcomes are one statement (arrays and unnest: the fenced UPDATE and the attempt rows in one
// data-modifying CTE), the claim another (each gated app's due rows read off metrix_outbox_due
// with FOR UPDATE SKIP LOCKED, then one UPDATE that leases them). Two relays never lease one
// row at once: a row locked by another relay's round is skipped, and once that round commits
// the row is 'sending' with a lease that has not ended. No row lock outlives the round: a
// request is sent after its claim committed.
//
// Clock: every time this store writes is on the database's clock. A round measures the skew
// between the database (its transaction start) and the relay (WriteJob::now) and shifts the
// relay's times by it when writing them (outcomes' next_attempt_at, sent_at and attempt times,
// heartbeat times, pause times, the claim's now and lease end), and back when returning times
// the relay schedules by (next_due_at; pauses()' since and next_probe_at). Claim::created_at
// and event_time are event data: returned as stored. beat() outside a round takes its skew from
// the heartbeat's beat_at, pauses() from this host's clock at the call.
//
// RoundResult::others_wrote: the outbox's id sequence moved since this store's previous round,
// which only a producer's INSERT does (relays never insert), so the relay paces its rounds
// beside producers as on SQLite; lock_us is the round's time from sending its statements to
// reading its commit: the share of the database's time the relay takes, which that pacing caps.
//
// Connection loss or a server restart: the call fails with Errc::busy and nothing of a round is
// durable (unless the commit happened and only its answer was lost: then the outcomes come back
// fenced and the claims return to the pool after their lease). Later calls reconnect, no more
// often than a backoff allows (100 ms doubling to 5 s; meanwhile they fail with Errc::busy at
// once: this store never sleeps). It logs nothing; the caller does.
//
// Threads: one PgRelayStore per thread (it owns its connection).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "storage/postgres/connection.h"
#include "storage/relay_store.h"

namespace metrix::pg {

class PgRelayStore final : public RelayStore {
 public:
  // Connects to `uri` and checks that it holds this build's schema (check_schema).
  static Result<std::unique_ptr<PgRelayStore>> open(const std::string& uri);

  Result<RoundResult> write_round(const WriteJob& job) override;
  Result<std::vector<AppPause>> pauses() override;
  Status beat(const Heartbeat& heartbeat) override;
  Status remove_heartbeat(const std::string& relay_id) override;
  Result<std::vector<std::optional<std::string>>> active_apps() override;
  Result<std::int64_t> unfinished_count() override;

 private:
  explicit PgRelayStore(Connection db) : db_(std::move(db)) {}

  // Reconnects a lost connection when the backoff allows: Errc::busy when it does not or fails.
  Status ready();
  // Notes a failure: a lost connection starts the backoff.
  Error failed(Error error);

  Connection db_;
  std::int64_t retry_at_us_ = 0;     // monotonic; no reconnection before
  std::int64_t backoff_ms_ = 0;      // the next wait after a failed reconnection
  bool lost_ = false;
  std::optional<std::int64_t> last_id_;  // metrix_outbox_id_seq at the previous round
  std::set<std::string> prepared_;  // statements prepared on this connection
};

}  // namespace metrix::pg
