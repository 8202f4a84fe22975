#include "storage/migrate.h"
#include "storage/clock.h"

#include <fmt/format.h>

#include <map>
#include <string>

namespace metrix {

int latest_schema_version() { return static_cast<int>(embedded_migrations().size()); }

Status check_applied(const std::string& database, const std::vector<Migration>& known, int version,
                     const std::string& name, const std::string& checksum) {
  if (version > static_cast<int>(known.size())) {
    return Error{Errc::schema,
                 fmt::format("{}: schema version {} ({}) is newer than this metrix-relay knows (up to {}); "
                             "use a newer metrix-relay",
                             database, version, name, known.size())};
  }
  if (version < 1 || checksum != known[static_cast<size_t>(version - 1)].checksum) {
    return Error{Errc::schema,
                 fmt::format("{}: applied migration {} ({}) differs from the one built into this metrix-relay "
                             "(checksum mismatch); the schema was altered, refusing to touch it",
                             database, version, name)};
  }
  return {};
}

namespace {

constexpr std::string_view kCreateLedger =
    "CREATE TABLE IF NOT EXISTS metrix_schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)";

Result<bool> table_exists(Database& db, std::string_view name) {
  auto stmt = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, name);
  return stmt->step();
}

// Reads the ledger and checks it against the embedded migrations: the version applied so
// far, or why this binary must not touch the database.
Result<int> verify_applied(Database& db) {
  auto stmt = db.prepare("SELECT version, name, checksum FROM metrix_schema_migrations ORDER BY version");
  if (!stmt) return stmt.error();
  const auto& known = embedded_migrations();
  int current = 0;
  for (;;) {
    auto row = stmt->step();
    if (!row) return row.error();
    if (!*row) break;
    const int version = static_cast<int>(stmt->int64(0));
    if (auto s = check_applied(db.path(), known, version, stmt->text(1), stmt->text(2)); !s) return s.error();
    current = version;
  }
  return current;
}

// An object of the schema as SQLite keeps it in sqlite_schema, and the migration that
// created it in this form.
struct SchemaObject {
  std::string type, name, sql;
  int version = 0;
};
using SchemaObjects = std::map<std::string, SchemaObject>;  // by name

Result<SchemaObjects> read_objects(Database& db) {
  // Not SQLite's own automatic indexes: they come and go with their table's constraints.
  auto stmt = db.prepare("SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
  if (!stmt) return stmt.error();
  SchemaObjects objects;
  for (;;) {
    auto row = stmt->step();
    if (!row) return row.error();
    if (!*row) return objects;
    SchemaObject o{stmt->text(0), stmt->text(1), stmt->text(2)};
    objects.emplace(o.name, std::move(o));
  }
}

// What the schema holds after migrations 1..v, for each v: the embedded migrations applied
// to an empty in-memory database, as this build's SQLite writes them down. Built once.
const Result<std::vector<SchemaObjects>>& reference_schemas() {
  static const Result<std::vector<SchemaObjects>> schemas = []() -> Result<std::vector<SchemaObjects>> {
    auto db = Database::open_memory();
    if (!db) return db.error();
    std::vector<SchemaObjects> schemas{{}};  // version 0: nothing
    for (const Migration& m : embedded_migrations()) {
      if (auto s = db->exec(m.sql); !s) return s.error();
      auto objects = read_objects(*db);
      if (!objects) return objects.error();
      for (auto& [name, o] : *objects) {
        auto before = schemas.back().find(name);
        o.version = before != schemas.back().end() && before->second.sql == o.sql ? before->second.version : m.version;
      }
      schemas.push_back(std::move(*objects));
    }
    return schemas;
  }();
  return schemas;
}

// Every table, index, trigger and view that migrations 1..version made is there, and each
// index, trigger and view as they made it: a dropped validation trigger would let invalid
// events in unnoticed. A table only has to be there: a column an operator added with ALTER
// TABLE changes its stored text, and refusing such an outbox would strand its rows. Objects
// someone added beside them (an index of their own, say) are theirs, and fine.
Status verify_objects(Database& db, int version) {
  const auto& schemas = reference_schemas();
  if (!schemas) return schemas.error();
  auto actual = read_objects(db);
  if (!actual) return actual.error();
  for (const auto& [name, expected] : (*schemas)[static_cast<size_t>(version)]) {
    auto found = actual->find(name);
    const bool table = expected.type == "table";
    const char* what = found == actual->end() || found->second.type != expected.type ? "is missing"
                       : !table && found->second.sql != expected.sql                 ? "differs from the one it created"
                                                                                     : nullptr;
    if (!what) continue;
    const Migration& m = embedded_migrations()[static_cast<size_t>(expected.version - 1)];
    const std::string fix = table ? "restore the database from a backup"
                                  : fmt::format("re-create it with its CREATE statement from migrations/{}.sql, "
                                                "copied exactly, or restore the database from a backup",
                                                m.name);
    return Error{Errc::schema, fmt::format("{}: the schema was altered: {} {} (migration {}, {}) {}; refusing to "
                                           "touch it ({})",
                                           db.path(), expected.type, name, m.version, m.name, what, fix)};
  }
  return {};
}

// The version the ledger records, once the schema is checked to hold what migrations 1..it
// made. Both are read in one snapshot: a migrate committing its next migration between the
// two reads would otherwise look like an altered schema to a process reading beside it.
Result<int> verified_version(Database& db) {
  auto snapshot = Transaction::begin_read(db.handle());
  if (!snapshot) return snapshot.error();
  auto current = verify_applied(db);
  if (!current) return current.error();
  if (auto s = verify_objects(db, *current); !s) return s.error();
  return current;
}

}  // namespace

Result<MigrateReport> migrate(Database& db) {
  auto outbox = table_exists(db, "metrix_outbox");
  if (!outbox) return outbox.error();
  auto ledger = table_exists(db, "metrix_schema_migrations");
  if (!ledger) return ledger.error();
  if (*outbox && !*ledger) {
    return Error{Errc::schema, fmt::format("{}: has a metrix_outbox table that metrix-relay did not create "
                                           "(no metrix_schema_migrations); refusing to touch it",
                                           db.path())};
  }
  if (*ledger) {
    if (auto current = verified_version(db); !current) return current.error();
  }
  MigrateReport report;
  bool first = true;
  for (const Migration& m : embedded_migrations()) {
    auto tx = Transaction::begin(db.handle());
    if (!tx) return tx.error();
    if (auto s = db.exec(kCreateLedger); !s) return s.error();
    auto current = verify_applied(db);
    if (!current) return current.error();
    if (first) {
      report.from_version = *current;
      first = false;
    }
    if (*current >= m.version) continue;  // another process got here first; tx rolls back
    if (auto s = db.exec(m.sql); !s) {
      return Error{s.error().code, fmt::format("migration {} ({}): {}", m.version, m.name, s.error().message)};
    }
    auto insert = db.prepare(
        "INSERT INTO metrix_schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)");
    if (!insert) return insert.error();
    insert->bind(1, std::int64_t{m.version}).bind(2, std::string_view(m.name)).bind(3, std::string_view(m.checksum)).bind(4, now_ms());
    if (auto s = insert->run(); !s) return s.error();
    if (auto s = tx->commit(); !s) return s.error();
  }
  auto current = verified_version(db);
  if (!current) return current.error();
  report.to_version = *current;
  return report;
}

Status check_schema(Database& db) {
  auto ledger = table_exists(db, "metrix_schema_migrations");
  if (!ledger) return ledger.error();
  if (!*ledger) {
    return Error{Errc::no_outbox,
                 fmt::format("{} is not a metrix outbox (no metrix_schema_migrations table)", db.path())};
  }
  auto current = verified_version(db);
  if (!current) return current.error();
  if (*current < latest_schema_version()) {
    return Error{Errc::old_schema, fmt::format("{}: schema version {} is older than this metrix-relay's ({})", db.path(),
                                               *current, latest_schema_version())};
  }
  return {};
}

}  // namespace metrix
