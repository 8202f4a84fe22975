// The health verdict of storage/status.h in words: the one line `metrix-relay status --check`
// prints, and the "reason" of `status --json` and of the admin listener's /status. The
// thresholds go by the names of the status command's flags (--max-backlog-age, --max-idle).
// Pure; thread-safe.
#pragma once

#include <string>

#include "storage/status.h"

namespace metrix {

// E.g. "3 rows due, 0 in backoff, oldest due for 2s", or "backlog: row 1 (app (default)) has
// been due for 1h00m, longer than --max-backlog-age 15m00s; 1 rows are due"; paused apps are
// named at the end.
std::string health_reason(const StatusSnapshot& snapshot, const HealthThresholds& thresholds, const Health& health);

}  // namespace metrix
