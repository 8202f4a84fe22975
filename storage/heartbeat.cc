#include "storage/heartbeat.h"

#include <algorithm>

#include "storage/query.h"

namespace metrix {

namespace {

constexpr std::int64_t kMissedBeats = 3;
constexpr std::int64_t kShortestIntervalMs = 1000;  // three of them: the floor of three seconds

}  // namespace

bool relay_alive(const Heartbeat& h, std::int64_t now) {
  return now - h.beat_at <= kMissedBeats * std::max(h.interval_ms, kShortestIntervalMs);
}

Result<std::vector<Heartbeat>> read_heartbeats(Database& db) {
  auto beats = db.prepare(
      "SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, coalesce(windows, '') "
      "FROM metrix_relay_heartbeat "
      "ORDER BY beat_at DESC, relay_id");
  if (!beats) return beats.error();
  std::vector<Heartbeat> heartbeats;
  auto st = for_each_row(*beats, [&](const Statement& r) {
    heartbeats.push_back(Heartbeat{r.text(0), r.text(1), r.int64(2), r.int64(3), r.int64(4), r.int64(5), r.int64(6),
                                   r.optional_int64(7), r.text(8)});
  });
  if (!st) return st.error();
  return heartbeats;
}

Result<std::int64_t> remove_stale_heartbeats(Database& db, std::int64_t now) {
  auto beats = read_heartbeats(db);
  if (!beats) return beats.error();
  auto remove = db.prepare("DELETE FROM metrix_relay_heartbeat WHERE relay_id = ?1 AND beat_at = ?2");
  if (!remove) return remove.error();
  std::int64_t removed = 0;
  for (const Heartbeat& h : *beats) {
    if (relay_alive(h, now)) continue;
    remove->bind(1, std::string_view(h.relay_id)).bind(2, h.beat_at);
    if (auto s = remove->run(); !s) return s.error();
    removed += sqlite3_changes(db.handle());
  }
  return removed;
}

}  // namespace metrix
