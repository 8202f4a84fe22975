// Outbox: the relay's statements on an SQLite outbox: claim due rows, record outcomes, keep
// app pauses and heartbeats. storage/sqlite_relay_store.h runs them as the rounds of
// storage/relay_store.h, whose contract (leases, fencing, order, suspects) they implement.
//
// claim() and record() are one short BEGIN IMMEDIATE transaction each, or join the caller's;
// the other writes are single statements, in the caller's transaction or their own (the
// write lock is held for milliseconds, so a producer committing at the same time waits at
// most that long). One Outbox per connection, used from one thread.
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
#include "storage/relay_store.h"
#include "storage/result.h"

namespace metrix {

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
