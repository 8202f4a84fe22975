// check: an fsck for the outbox. Read-only unless asked to repair; every finding says what
// it means and what to do, and, where repair_outbox() can mend it, what that would do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"

namespace metrix {

struct CheckFinding {
  enum class Level { ok, warning, error };
  Level level = Level::ok;
  std::string check;    // e.g. "integrity", "schema", "leases", "wal", "heartbeats"
  std::string message;
  std::string repair;   // what repair_outbox() does about it, e.g. "removes their heartbeats"; "" if nothing
  // The storage error this finding reports, when it is one (the schema check's): its code says
  // what mends it (Errc::no_outbox and Errc::old_schema: migrate()).
  std::optional<Errc> error;
};

struct CheckReport {
  std::vector<CheckFinding> findings;
  std::int64_t expired_leases = 0;     // rows in 'sending' whose lease has expired
  std::int64_t stale_heartbeats = 0;   // heartbeats of relays that are not alive (relay_alive, heartbeat.h)
  std::int64_t wal_bytes = 0;
  bool repaired = false;
  // What a repair did (as counted by SQLite, not as found before): rows released, heartbeats
  // removed, and whether the WAL was truncated (not when another connection still reads it).
  std::int64_t released_leases = 0;
  std::int64_t removed_heartbeats = 0;
  bool wal_truncated = false;
  // PostgreSQL only (storage/postgres/check.h; 0 on SQLite): dead row versions of the outbox
  // tables, and how long the oldest transaction holding back vacuum has been open, in ms.
  std::int64_t dead_tuples = 0;
  std::int64_t vacuum_horizon_age_ms = 0;
  bool healthy() const;
};

// Checks the database at `path`: PRAGMA integrity_check (or quick_check), the schema version
// and migration checksums, rows stuck in 'sending' with expired leases, stale relay
// heartbeats (by relay_alive, the rule status judges relays by), the WAL size. Opens
// read-only and writes nothing.
Result<CheckReport> check_outbox(const std::string& path, bool quick, std::int64_t now_ms);

// The last_error of a row whose expired lease a repair released, on either backend.
inline constexpr const char* kLeaseReleasedByRepair = "lease expired: released by a repair (may have reached Metrix)";

// What can be repaired safely, when integrity and schema are fine: rows with expired leases go
// back to 'pending' (a relay would claim them again anyway; at least once) with last_error
// kLeaseReleasedByRepair, stale heartbeats are removed (never one of a relay that is alive),
// and the WAL is checkpointed and truncated.
// Leases and heartbeats change in one transaction. A damaged database is not touched: the
// report comes back with repaired false.
Result<CheckReport> repair_outbox(const std::string& path, std::int64_t now_ms);

}  // namespace metrix
