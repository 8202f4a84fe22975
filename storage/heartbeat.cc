#include "storage/heartbeat.h"

#include <algorithm>

#include "storage/query.h"

namespace metrix {

bool relay_alive(const Heartbeat& h, std::int64_t now) {
  return now - h.beat_at <= 3 * std::max<std::int64_t>(h.interval_ms, 1000);
}

Result<std::vector<Heartbeat>> read_heartbeats(Database& db) {
  auto beats = db.prepare(
      "SELECT relay_id, host, pid, started_at, beat_at, interval_ms, sent, last_sent_at, coalesce(windows, '') "
      "FROM metrix_relay_heartbeat "
      "ORDER BY beat_at DESC");
  if (!beats) return beats.error();
  std::vector<Heartbeat> heartbeats;
  auto st = for_each_row(*beats, [&](const Statement& r) {
    heartbeats.push_back(Heartbeat{r.text(0), r.text(1), r.int64(2), r.int64(3), r.int64(4), r.int64(5), r.int64(6),
                                   r.optional_int64(7), r.text(8)});
  });
  if (!st) return st.error();
  return heartbeats;
}

}  // namespace metrix
