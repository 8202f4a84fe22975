// RelayStore: the outbox as the relay loop uses it, whatever database holds it. The relay
// (relay/) depends on this header only; storage/sqlite_relay_store.h implements it on an
// SQLite file. A second backend implements the same class; what follows is its contract.
//
// The table it works on is the public contract of README "The outbox": metrix_outbox (one
// row per event, status pending -> sending -> sent | failed | dead | held, or back to
// pending), metrix_outbox_attempt (one row per HTTP attempt), metrix_app_pause (an app
// paused by a 403, shared by every relay) and metrix_relay_heartbeat (one row per running
// relay).
//
// Clock: every time is milliseconds since the Unix epoch, UTC. `now` arguments are the
// relay's reading of the wall clock (storage/clock.h); a store may use its database's clock
// instead, as long as it uses one clock for every time it writes and compares.
//
// Leases and fencing: a claim sets status 'sending', next_attempt_at = now + lease (the
// lease's end) and a new lease_token. A row stays the claiming relay's until it records an
// outcome or the lease ends; after that another claim may take it. Every write about a
// claimed row (record) applies only while the row is still 'sending' with the claim's
// lease_token: an outcome of a relay that stalled past its lease is dropped, never written
// over a newer claim. Rows are never deleted or re-created here.
//
// Threads: one RelayStore per thread; the relay keeps two (its loop's and its writer's).
// Errors are values; nothing here throws. Errc::busy: the database stayed locked past the busy
// timeout (try again later); Errc::schema: the database is damaged or was replaced (stop);
// anything else: the operation failed and wrote nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix {

// A row leased to this relay. `lease_token` fences the outcome: recording it only touches
// the row while it still carries this token.
struct Claim {
  std::int64_t id = 0;
  std::optional<std::string> app_id;  // as stored; NULL means the default app
  std::string payload;                // the producer's text, byte for byte
  std::int64_t created_at = 0;
  std::int64_t event_time = 0;        // fixed at the first claim, sent on every attempt
  bool payload_has_event_time = false;
  std::int64_t attempts = 0;          // HTTP attempts before this one
  std::int64_t lease_token = 0;
  bool lease_expired = false;         // claimed before by a relay that never recorded an outcome
  // Leases of this row in a row that expired with no answer recorded (its relay died or hung
  // while sending it), the one this claim found included: the poison-row count.
  std::int64_t lease_expiries = 0;
};

// What happened to one claimed row.
struct Outcome {
  std::int64_t id = 0;
  std::int64_t lease_token = 0;
  RowStatus status = RowStatus::pending;  // never sending: only a claim gives that
  bool attempted = true;               // an HTTP attempt was made (false: stale, in doubt, handed back)
  std::int64_t next_attempt_at = 0;    // for pending
  std::optional<std::int64_t> http_status;
  std::string error;                   // last_error: error name, transport error or reason
  std::string response;                // bounded snippet of the answer
  std::int64_t started_at = 0;
  std::int64_t finished_at = 0;
  std::uint32_t tag = 0;               // the caller's own (the relay: the row's app); not stored
};

// An app paused by a 403, in metrix_app_pause: every relay on the outbox honours it.
struct AppPause {
  std::string app_id;
  std::string reason;
  std::int64_t since = 0;
  std::int64_t next_probe_at = 0;
  std::int64_t interval_ms = 0;
};

// A relay's sign of life in metrix_relay_heartbeat, for status and health checks.
struct Heartbeat {
  std::string relay_id;
  std::string host;
  std::int64_t pid = 0;
  std::int64_t started_at = 0;
  std::int64_t beat_at = 0;
  std::int64_t interval_ms = 0;
  std::int64_t sent = 0;
  std::optional<std::int64_t> last_sent_at;
  std::string windows;  // each app's window of requests in flight, e.g. "app1 64/64"
};

// What recording outcomes wrote, counted by the rows' new status.
struct RecordReport {
  int recorded = 0;
  int fenced = 0;  // outcomes dropped because another relay claimed the row since
  std::vector<std::int64_t> fenced_ids;  // their rows
  int sent = 0;
  int failed = 0;
  int dead = 0;
  int held = 0;
  int retried = 0;  // pending again after an attempt (a row handed back without one is not counted)

  // Counts `o` as recorded, by the row's new status.
  void count(const Outcome& o) {
    ++recorded;
    switch (o.status) {
      case RowStatus::sent: ++sent; break;
      case RowStatus::failed: ++failed; break;
      case RowStatus::dead: ++dead; break;
      case RowStatus::held: ++held; break;
      case RowStatus::pending: retried += o.attempted ? 1 : 0; break;
      case RowStatus::sending: break;  // never an outcome's
    }
  }
};

// What one write round is asked to do, in this order, all in one transaction.
struct WriteJob {
  std::int64_t now = 0;
  // 1. Record each outcome (fenced, see above): the row's new status and next_attempt_at,
  //    and sent_at (finished_at for sent, else NULL). When attempted: attempts + 1,
  //    last_http_status and last_error from the outcome, lease_expiries back to 0, and one
  //    metrix_outbox_attempt row numbered after the row's last one. When not (a row handed
  //    back, stale, in doubt): attempts and last_http_status stay, and last_error changes
  //    only if the outcome has an error. An outcome never leaves a row 'sending'.
  std::vector<Outcome> outcomes;
  // 2. The relay's own rows: its heartbeat (upsert by relay_id) when one is due, and app
  //    pauses to store (a value, upsert by app_id) or clear (nullopt), in order.
  std::optional<Heartbeat> heartbeat;
  std::vector<std::pair<std::string, std::optional<AppPause>>> pauses;
  // 3. Apps whose unfinished rows (pending or sending) get last_error = reason (why they are
  //    not sent, e.g. no dev key). No attempt is counted; no status changes.
  std::vector<std::pair<std::optional<std::string>, std::string>> notes;
  // 4. Claim: of each app with unfinished rows (NULL app included) that has a gate, up to its
  //    gate, and up to claim_limit in all, apps in app_id order. Due rows: pending with
  //    next_attempt_at <= now, or sending with next_attempt_at <= now (an expired lease, which
  //    adds 1 to the row's lease_expiries and sets Claim::lease_expired). Oldest due first
  //    (next_attempt_at, then id). event_time is fixed at a row's first claim: the payload's
  //    eventTime if it has one, else created_at. A suspect is a row whose last lease ended
  //    with no answer (lease_expiries > 0, or sending with an expired lease): at most one
  //    suspect is claimed in the round, and only when claim_suspect; other suspects are left
  //    due, untouched.
  int claim_limit = 0;
  std::int64_t lease_ms = 0;
  std::map<std::optional<std::string>, int> gates;
  bool claim_suspect = false;
};

// What a write round did. Nothing of it is durable unless write_round() returned it.
struct RoundResult {
  RecordReport recorded;
  std::vector<Claim> claims;  // leased to this relay by the round
  std::vector<std::optional<std::string>> active_apps;  // apps with pending or sending rows, in app_id order
  // The earliest time a row of an app that got fewer rows than its gate becomes due (a
  // retry's next_attempt_at, or a lease's end), unless suspects were left aside: when the
  // next claim is worth making, rather than a poll interval later.
  std::optional<std::int64_t> next_due_at;
  std::int64_t lock_us = 0;   // how long the round held the database's write lock (0 if it has none)
  // Another connection committed since this store's previous round: producers are writing, so
  // the relay paces its rounds beside them. A backend without a single write lock may say false.
  bool others_wrote = false;
};

class RelayStore {
 public:
  virtual ~RelayStore() = default;

  // One transaction: all of `job` is durable when this returns a value (fsync'd as the
  // store's durability setting says), none of it when it returns an error.
  virtual Result<RoundResult> write_round(const WriteJob& job) = 0;

  // Each its own short transaction, outside the rounds.
  virtual Result<std::vector<AppPause>> pauses() = 0;        // every stored pause
  virtual Status beat(const Heartbeat& heartbeat) = 0;       // upsert by relay_id
  virtual Status remove_heartbeat(const std::string& relay_id) = 0;  // on a clean exit
  // Reads, without a lock that would stall producers.
  virtual Result<std::vector<std::optional<std::string>>> active_apps() = 0;  // as in RoundResult
  virtual Result<std::int64_t> unfinished_count() = 0;  // rows pending or sending, all apps
};

}  // namespace metrix
