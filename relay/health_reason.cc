#include "relay/health_reason.h"

#include <fmt/format.h>

#include "storage/row_filter.h"
#include "storage/time_text.h"

namespace metrix {

std::string health_reason(const StatusSnapshot& snap, const HealthThresholds& t, const Health& health) {
  std::string paused;
  for (const auto& p : snap.pauses) paused += fmt::format("; app {} is paused ({})", p.app_id, p.reason);
  switch (health.problem) {
    case Health::Problem::backlog: {
      if (!snap.oldest_due) break;  // not the snapshot the verdict was drawn from
      const OldestDue& o = *snap.oldest_due;
      return fmt::format("backlog: row {} (app {}) has been due for {}, longer than --max-backlog-age {}; "
                         "{} rows are due{}",
                         o.id, o.app_id.value_or(kDefaultAppLabel), describe_duration(snap.now - o.due_since),
                         describe_duration(t.max_backlog_age_ms), snap.due, paused);
    }
    case Health::Problem::stalled: {
      const std::int64_t unfinished = snap.counts.at(RowStatus::pending) + snap.counts.at(RowStatus::sending);
      const std::int64_t oldest = snap.oldest_unfinished_created_at.value_or(snap.now);
      std::string idle = snap.last_sent_at
                             ? fmt::format("nothing sent for {}", describe_duration(snap.now - *snap.last_sent_at))
                             : std::string("nothing ever sent");
      return fmt::format("stalled: {} while {} rows wait (pending or sending; the oldest for {}), longer than "
                         "--max-idle {}{}",
                         idle, unfinished, describe_duration(snap.now - oldest), describe_duration(t.max_idle_ms), paused);
    }
    case Health::Problem::none: break;
  }
  std::string due = snap.oldest_due
                        ? fmt::format(", oldest due for {}", describe_duration(snap.now - snap.oldest_due->due_since))
                        : std::string();
  return fmt::format("{} rows due, {} in backoff{}{}", snap.due, snap.in_backoff, due, paused);
}

}  // namespace metrix
