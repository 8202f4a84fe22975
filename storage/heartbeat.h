// Heartbeats: whether a relay is alive, judged from its row in metrix_relay_heartbeat. The
// relay writes the row when it starts, refreshes it every interval (interval_ms, stored with
// it) and deletes it when it exits cleanly; a row left behind is a relay that crashed, was
// killed or hangs.
#pragma once

#include <cstdint>
#include <vector>

#include "storage/database.h"
#include "storage/outbox.h"
#include "storage/result.h"

namespace metrix {

// A relay is taken for running while its heartbeat is younger than three of its intervals
// (it refreshes the row every interval, and deletes it when it exits cleanly).
bool relay_alive(const Heartbeat& heartbeat, std::int64_t now);

// Every heartbeat row, alive or stale, the newest beat first. A read.
Result<std::vector<Heartbeat>> read_heartbeats(Database& db);

}  // namespace metrix
