// Schema migrations: numbered SQL files from migrations/, embedded in the binary at build
// time (cmake/EmbedMigrations.cmake), applied in order, each in its own BEGIN IMMEDIATE
// transaction, and recorded with their SHA-256 in metrix_schema_migrations.
//
// Safe to run concurrently from several processes: each step takes the write lock and
// re-reads what is applied before applying anything, so the second process finds the
// work done. An applied migration is never edited; a change is a new numbered file.
#pragma once

#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"

namespace metrix {

struct Migration {
  int version;
  const char* name;
  const char* checksum;  // SHA-256 of the file, hex
  const char* sql;
};

// All migrations built into this binary, version 1..N in order.
const std::vector<Migration>& embedded_migrations();
int latest_schema_version();

// One row of a ledger of applied migrations against the migrations `known` to this binary:
// refused (Errc::schema) when it is newer than them, or when it differs from the one built
// in (its checksum). `database` names the database in the message.
Status check_applied(const std::string& database, const std::vector<Migration>& known, int version,
                     const std::string& name, const std::string& checksum);

struct MigrateReport {
  int from_version = 0;
  int to_version = 0;
};

// Creates or upgrades the outbox schema. Refuses (Errc::schema, nothing written) a database
// whose schema is newer than this binary, or one of whose applied migrations was altered.
Result<MigrateReport> migrate(Database& db);

// For every use but migrate(): the database must hold exactly this binary's schema.
// Refused: a database with no outbox schema (Errc::no_outbox) or an older one
// (Errc::old_schema), both of which migrate() mends; a newer or altered one (Errc::schema),
// which it does not.
Status check_schema(Database& db);

}  // namespace metrix
