// Schema migrations on PostgreSQL: the numbered SQL files of storage/postgres/migrations/,
// embedded in the binary at build time (cmake/EmbedMigrations.cmake) like the SQLite ones,
// applied in order in one transaction, in the connection's current schema, and recorded
// with their SHA-256 in metrix_schema_migrations.
//
// Safe to run concurrently from several processes and hosts: the transaction takes a
// transaction-scoped advisory lock before it reads what is applied, so a second run waits,
// then finds the work done. An applied migration is never edited; a change is a new file.
#pragma once

#include <vector>

#include "storage/migrate.h"
#include "storage/postgres/connection.h"
#include "storage/result.h"

namespace metrix {

// All PostgreSQL migrations built into this binary, version 1..N in order.
const std::vector<Migration>& embedded_pg_migrations();

namespace pg {

// Creates or upgrades the outbox schema. Refuses (Errc::schema, nothing written) a schema
// newer than this binary, or one of whose applied migrations was altered.
Result<MigrateReport> migrate(Connection& db);

// For every use but migrate(): the schema must be exactly this binary's. Refused: no outbox
// (Errc::no_outbox) or an older one (Errc::old_schema), which migrate() mends; a newer or
// altered one (Errc::schema), which it does not.
Status check_schema(Connection& db);

}  // namespace pg
}  // namespace metrix
