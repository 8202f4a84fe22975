// Heartbeats: whether a relay is alive, judged from its row in metrix_relay_heartbeat. The
// relay writes the row when it starts, refreshes it every interval (interval_ms, stored with
// it: the relay's progress interval, which a reload may change) and deletes it when it exits
// cleanly; a row left behind is a relay that crashed, was killed or hangs.
//
// relay_alive() is the one rule: what shows a relay as running or stale (the status
// snapshot's readers) and check_outbox()/repair_outbox() (check.h), which count and remove
// stale heartbeats, all judge by it, so nothing calls a relay running while something else
// removes its heartbeat as stale.
#pragma once

#include <cstdint>
#include <vector>

#include "storage/database.h"
#include "storage/relay_store.h"
#include "storage/result.h"

namespace metrix {

// A relay is taken for alive while its last beat is at most three of its intervals old, and
// in any case for three seconds: a beat is written by the relay's next write round, which
// waits behind a producer's commit or a slow disk, so three missed beats of a fast interval
// (200 ms) are a stall, not a stop. Pure.
bool relay_alive(const Heartbeat& heartbeat, std::int64_t now);

// Every heartbeat row, alive or stale, the newest beat first. A read.
Result<std::vector<Heartbeat>> read_heartbeats(Database& db);

// Deletes the heartbeat of every relay that is not alive at `now`; returns how many. Run it
// inside a write transaction (BEGIN IMMEDIATE): no beat can then land between the reading
// and the deleting, so a relay that beats again in time keeps its row.
Result<std::int64_t> remove_stale_heartbeats(Database& db, std::int64_t now);

}  // namespace metrix
