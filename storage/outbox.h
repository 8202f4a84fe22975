// Outbox: the relay's side of metrix_outbox: claim due rows, record outcomes, hand back
// claims, keep app pauses. Together with producer.h, the only code that writes the outbox.
//
// Every method is one short BEGIN IMMEDIATE transaction (the write lock is held for
// milliseconds, so a producer committing at the same time waits at most that long).
// One Outbox per connection, used from one thread.
//
// Durability: an outcome is durable once record() returns; a crash before that leaves the
// row in 'sending' with its lease, and the row is claimed again when the lease expires
// (at least once: the event may be sent twice, never lost).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix {

// A row leased to this relay. `lease_token` fences the outcome: record() and release()
// only touch the row while it still carries this token.
struct Claim {
  std::int64_t id = 0;
  std::optional<std::string> app_id;  // as stored; NULL means the default app
  std::string payload;
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

// A suspect is a row whose last lease ended with no answer recorded (lease_expiries > 0, or
// 'sending' with an expired lease): the relay that held it died or hung, maybe because of it,
// maybe because of another row it held. The relay holds one suspect at a time: when a row
// stops it again and again, the rows that only happened to be claimed with it become suspects
// once, are each sent in turn, and an answer clears them, while the culprit's count climbs to
// the relay's poison limit.

// What happened to one claimed row.
struct Outcome {
  std::int64_t id = 0;
  std::int64_t lease_token = 0;
  RowStatus status = RowStatus::pending;
  bool attempted = true;               // an HTTP attempt was made (false: stale, in doubt, handed back)
  std::int64_t next_attempt_at = 0;    // for pending
  std::optional<std::int64_t> http_status;
  std::string error;                   // last_error: error name, transport error or reason
  std::string response;                // bounded snippet of the answer
  std::int64_t started_at = 0;
  std::int64_t finished_at = 0;
  std::uint32_t tag = 0;               // the caller's own (the relay: the row's app); not stored
};

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

// What record() wrote, counted by the rows' new status.
struct RecordReport {
  int recorded = 0;
  int fenced = 0;  // outcomes dropped because another relay claimed the row since
  std::vector<std::int64_t> fenced_ids;  // their rows
  int sent = 0;
  int failed = 0;
  int dead = 0;
  int held = 0;
  int retried = 0;  // pending again after an attempt (a row handed back without one is not counted)
};

class Outbox {
 public:
  explicit Outbox(Database& db) : db_(db) {}

  // The distinct app_id values (NULL included) of rows that are pending or sending.
  // Index seeks only: cheap at any backlog.
  Result<std::vector<std::optional<std::string>>> active_apps();

  // Leases up to `limit` due rows of one app until `now + lease_ms`, oldest due first.
  // Due: pending with next_attempt_at <= now, or sending with an expired lease (which adds
  // one to the row's lease_expiries). Fixes event_time at the first claim (the payload's
  // eventTime, else created_at). With `max_suspects`, takes that many suspects at most and
  // leaves the others due, untouched, counted in `*skipped`; it reads past a few thousand of
  // them at most. Without suspects due, it costs what a claim without the limit costs.
  Result<std::vector<Claim>> claim(const std::optional<std::string>& app_id, std::int64_t now, std::int64_t lease_ms,
                                   int limit, std::optional<int> max_suspects = std::nullopt, int* skipped = nullptr);

  // When the next row of one app becomes due (a retry's next_attempt_at, or a claim's lease
  // expiry), or nullopt if it has none pending or sending. One index seek.
  Result<std::optional<std::int64_t>> next_due_at(const std::optional<std::string>& app_id);

  // Records outcomes in one transaction: each row's new state, and an attempt row for each
  // outcome with attempted = true (an answer, which also sets lease_expiries back to 0).
  // Rows no longer carrying the outcome's lease token are left alone and counted as fenced.
  Result<RecordReport> record(const std::vector<Outcome>& outcomes);

  // Notes on every pending row of one app why it is not being sent (e.g. no dev key), in
  // last_error. No attempt is counted; the rows stay pending.
  Status note_unroutable(const std::optional<std::string>& app_id, const std::string& reason);

  // Rows that are pending or sending (all apps).
  Result<std::int64_t> unfinished_count();

  Status beat(const Heartbeat& heartbeat);
  Status remove_heartbeat(const std::string& relay_id);

  Result<std::vector<AppPause>> pauses();
  Status save_pause(const AppPause& pause);
  Status clear_pause(const std::string& app_id);

 private:
  Database& db_;
  Statement due_;
  Statement next_due_;
  Statement claim_;
  Statement update_;
  Statement attempt_;
};

}  // namespace metrix
