#include "storage/sqlite_relay_store.h"

#include <algorithm>
#include <chrono>
#include <iterator>

#include "storage/migrate.h"

namespace metrix {

Result<std::unique_ptr<SqliteRelayStore>> SqliteRelayStore::open(const std::string& path, const OpenOptions& options) {
  auto db = Database::open(path, options);
  if (!db) return db.error();
  if (auto s = check_schema(*db); !s) return s.error();
  return std::unique_ptr<SqliteRelayStore>(new SqliteRelayStore(std::move(*db)));
}

Result<RoundResult> SqliteRelayStore::write_round(const WriteJob& job) {
  RoundResult done;
  // One short write transaction for everything: the fewer times the relay takes the write
  // lock, the less a producer committing beside it waits. An error return rolls it back as
  // `tx` goes out of scope: nothing of the round is written and no row is ours.
  auto tx = Transaction::begin(db_.handle());
  if (!tx) return tx.error();
  const auto locked = std::chrono::steady_clock::now();  // the lock is held from here, not the wait for it
  // Read with the write lock held, so no commit of another connection falls between this
  // round and the next unseen.
  auto version = db_.data_version();
  if (!version) return version.error();
  done.others_wrote = data_version_ && *data_version_ != *version;
  data_version_ = *version;
  if (!job.outcomes.empty()) {
    auto report = outbox_.record(job.outcomes);
    if (!report) return report.error();
    done.recorded = std::move(*report);
  }
  if (job.heartbeat) {
    if (auto s = outbox_.beat(*job.heartbeat); !s) return s.error();
  }
  for (const auto& [app, pause] : job.pauses) {
    if (auto s = pause ? outbox_.save_pause(*pause) : outbox_.clear_pause(app); !s) return s.error();
  }
  for (const auto& [app, reason] : job.notes) {
    if (auto s = outbox_.note_unroutable(app, reason); !s) return s.error();
  }
  auto active = outbox_.active_apps();
  if (!active) return active.error();
  done.active_apps = std::move(*active);
  int limit = job.claim_limit;
  bool suspect_taken = !job.claim_suspect;
  for (const auto& app : done.active_apps) {
    auto gate = job.gates.find(app);
    if (limit <= 0) break;
    if (gate == job.gates.end() || gate->second <= 0) continue;
    const int asked = std::min(limit, gate->second);
    int skipped = 0;
    auto claims = outbox_.claim(app, job.now, job.lease_ms, asked, suspect_taken ? 0 : 1, &skipped);
    if (!claims) return claims.error();
    for (const Claim& c : *claims) suspect_taken = suspect_taken || c.lease_expiries > 0;
    // Rows left due because they are suspects do not make the next claim worth making
    // sooner: it would find them again.
    if (static_cast<int>(claims->size()) < asked && skipped == 0) {
      auto due = outbox_.next_due_at(app);
      if (!due) return due.error();
      if (*due && (!done.next_due_at || **due < *done.next_due_at)) done.next_due_at = *due;
    }
    limit -= static_cast<int>(claims->size());
    std::move(claims->begin(), claims->end(), std::back_inserter(done.claims));
  }
  if (auto s = tx->commit(); !s) return s.error();
  done.lock_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - locked).count();
  return done;
}

}  // namespace metrix
