// Migrations: create, re-run, concurrent creation, refusals. Through the built binary
// where a user would use it.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>

#include "storage/migrate.h"
#include "tests/support/process.h"

using metrix::test::relay_binary;
using metrix::test::run;
using metrix::test::TempDir;

namespace {

std::string query_text(const std::string& path, const std::string& sql) {
  auto db = metrix::Database::open(path);
  REQUIRE(db);
  auto stmt = db->prepare(sql);
  REQUIRE(stmt);
  auto row = stmt->step();
  REQUIRE(row);
  REQUIRE(*row);
  return stmt->text(0);
}

const std::string kLatest = std::to_string(metrix::latest_schema_version());

// "1,2,...": the versions a fully migrated database has recorded.
std::string all_versions() {
  std::string versions;
  for (int v = 1; v <= metrix::latest_schema_version(); ++v) {
    if (v > 1) versions += ',';
    versions += std::to_string(v);
  }
  return versions;
}

}  // namespace

TEST_CASE("migrate creates an owner-only WAL outbox and a second run changes nothing") {
  TempDir dir;
  auto first = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(first.exit_code == 0);
  CHECK(first.out.find("migrated schema from version 0 to " + kLatest) != std::string::npos);

  struct stat st {};
  REQUIRE(stat(dir.db().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(query_text(dir.db(), "PRAGMA journal_mode") == "wal");
  CHECK(query_text(dir.db(), "SELECT group_concat(version) FROM metrix_schema_migrations") == all_versions());
  auto checksum = query_text(dir.db(), "SELECT checksum FROM metrix_schema_migrations WHERE version = 1");
  CHECK(checksum == metrix::embedded_migrations()[0].checksum);
  CHECK(checksum.size() == 64);

  auto second = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(second.exit_code == 0);
  CHECK(second.out.find("up to date (version " + kLatest + ")") != std::string::npos);
  CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_schema_migrations") == kLatest);
}

TEST_CASE("eight processes migrating the same new file at once all succeed") {
  TempDir dir;
  std::vector<metrix::test::Process> processes;
  for (int i = 0; i < 8; ++i) processes.push_back(metrix::test::Process::start({relay_binary(), "migrate", "--db", dir.db()}));
  for (auto& p : processes) {
    auto code = p.wait(std::chrono::seconds(30));
    REQUIRE(code.has_value());
    CHECK_MESSAGE(*code == 0, p.err());
  }
  CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_schema_migrations") == kLatest);
  CHECK(query_text(dir.db(), "PRAGMA integrity_check") == "ok");
}

TEST_CASE("migrate adds the outbox beside a producer's own tables and keeps them") {
  TempDir dir;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY, total REAL); INSERT INTO orders VALUES (1, 9.5)",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  CHECK(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  CHECK(query_text(dir.db(), "SELECT total FROM orders WHERE id = 1") == "9.5");
  CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_outbox") == "0");
}

TEST_CASE("a database with a newer schema is refused by migrate and enqueue, and left untouched") {
  TempDir dir;
  REQUIRE(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("INSERT INTO metrix_schema_migrations VALUES (99, '0099_future', 'abc', 0)"));
  }
  auto migrate = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(migrate.exit_code == 1);
  CHECK(migrate.err.find("schema version 99 (0099_future) is newer than this metrix-relay knows") != std::string::npos);

  auto enqueue = run({relay_binary(), "enqueue", "--db", dir.db(), "--json",
                      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})"});
  CHECK(enqueue.exit_code == 1);
  CHECK(enqueue.err.find("is newer than this metrix-relay knows") != std::string::npos);
  CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_outbox") == "0");
}

TEST_CASE("a database whose applied migration was altered is refused") {
  TempDir dir;
  REQUIRE(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("UPDATE metrix_schema_migrations SET checksum = 'edited' WHERE version = 1"));
  }
  auto migrate = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(migrate.exit_code == 1);
  CHECK(migrate.err.find("checksum mismatch") != std::string::npos);
}

TEST_CASE("a dropped or replaced trigger, index or view of the outbox is refused by check, migrate and enqueue") {
  const std::string invalid = R"({"metrixUserId":"u","eventSlug":"s"})";  // no device id
  struct Case {
    const char* change;
    const char* says;
  };
  for (const Case& c : {
           Case{"DROP TRIGGER metrix_outbox_validate", "trigger metrix_outbox_validate (migration 3, 0003_validation_trigger) is missing"},
           Case{"DROP TRIGGER metrix_outbox_validate; "
                "CREATE TRIGGER metrix_outbox_validate BEFORE INSERT ON metrix_outbox BEGIN SELECT 1; END",
                "trigger metrix_outbox_validate (migration 3, 0003_validation_trigger) differs from the one it created"},
           Case{"DROP TRIGGER metrix_outbox_new_row", "trigger metrix_outbox_new_row (migration 3, 0003_validation_trigger) is missing"},
           Case{"DROP INDEX metrix_outbox_due", "index metrix_outbox_due (migration 1, 0001_outbox) is missing"},
           Case{"DROP VIEW metrix_outbox_audit", "view metrix_outbox_audit (migration 2, 0002_heartbeat_and_audit_views) is missing"},
       }) {
    CAPTURE(c.change);
    TempDir dir;
    REQUIRE(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
    {
      auto db = metrix::Database::open(dir.db());
      REQUIRE(db);
      REQUIRE(db->exec(c.change));
    }
    auto check = run({relay_binary(), "check", "--db", dir.db()});
    CHECK(check.exit_code == 1);
    CHECK_MESSAGE(check.out.find(c.says) != std::string::npos, check.out);

    auto migrate = run({relay_binary(), "migrate", "--db", dir.db()});
    CHECK(migrate.exit_code == 1);
    CHECK_MESSAGE(migrate.err.find(c.says) != std::string::npos, migrate.err);

    auto enqueue = run({relay_binary(), "enqueue", "--db", dir.db(), "--json", invalid});
    CHECK(enqueue.exit_code == 1);
    CHECK_MESSAGE(enqueue.err.find(c.says) != std::string::npos, enqueue.err);
    CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_outbox") == "0");
  }
}

TEST_CASE("an index, trigger or column an operator adds beside the outbox's own is accepted") {
  TempDir dir;
  REQUIRE(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("ALTER TABLE metrix_outbox ADD COLUMN order_ref TEXT; "
                     "CREATE INDEX bank_outbox_dedup ON metrix_outbox (dedup_key, created_at); "
                     "CREATE TABLE bank_audit (id INTEGER); "
                     "CREATE TRIGGER bank_outbox_audit AFTER INSERT ON metrix_outbox "
                     "BEGIN INSERT INTO bank_audit VALUES (NEW.id); END"));
  }
  auto check = run({relay_binary(), "check", "--db", dir.db()});
  CHECK_MESSAGE(check.exit_code == 0, check.out << check.err);
  CHECK(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  auto enqueue = run({relay_binary(), "enqueue", "--db", dir.db(), "--json",
                      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})"});
  CHECK_MESSAGE(enqueue.exit_code == 0, enqueue.err);
  CHECK(query_text(dir.db(), "SELECT count(*) FROM bank_audit") == "1");
}

TEST_CASE("a file that is not a database, or not an outbox, is refused with a clear message") {
  TempDir dir;
  std::ofstream(dir.db()) << "this is not a database, it is a text file of some length........................"
                             "................................................................................";
  auto garbage = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(garbage.exit_code == 1);
  CHECK(garbage.err.find("is not an SQLite database") != std::string::npos);

  TempDir other;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(other.db().c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto not_outbox = run({relay_binary(), "enqueue", "--db", other.db(), "--json",
                         R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})"});
  CHECK(not_outbox.exit_code == 1);
  CHECK(not_outbox.err.find("is not a metrix outbox") != std::string::npos);
  CHECK(not_outbox.err.find("metrix-relay migrate --db") != std::string::npos);

  // A directory: said so (before: "disk I/O error; the disk may be full..." from the readers,
  // "permission denied" from the writers, even for root).
  const std::string folder = dir.path().string();
  for (const std::vector<std::string>& command : std::vector<std::vector<std::string>>{
           {"migrate"}, {"check"}, {"status"}, {"list"}, {"enqueue", "--json", R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})"},
           {"run", "--app-id", "a", "--until-idle"}}) {
    CAPTURE(command[0]);
    std::vector<std::string> argv{relay_binary(), command[0], "--db", folder};
    argv.insert(argv.end(), command.begin() + 1, command.end());
    auto r = run(argv, {}, {{"METRIX_DEV_KEY", "k"}});
    CHECK(r.exit_code == 1);
    const std::string said = r.err + r.out;
    CHECK_MESSAGE(said.find(folder + " is a directory, not a database file") != std::string::npos, said);
  }
}

TEST_CASE("a database at an older schema is refused by enqueue and upgraded by migrate, keeping its rows") {
  TempDir dir;
  {
    // What an older metrix-relay left: migration 1 only, and an event.
    auto db = metrix::Database::open(dir.db(), {.create = true});
    REQUIRE(db);
    const auto& first = metrix::embedded_migrations()[0];
    REQUIRE(db->exec(first.sql));
    REQUIRE(db->exec("CREATE TABLE metrix_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)"));
    REQUIRE(db->exec(std::string("INSERT INTO metrix_schema_migrations VALUES (1, '") + first.name + "', '" +
                     first.checksum + "', 0)"));
    REQUIRE(db->exec(R"(INSERT INTO metrix_outbox (payload) VALUES ('{"metrixUserId":"u","eventSlug":"s","oaid":"o"}'))"));
  }
  auto enqueue = run({relay_binary(), "enqueue", "--db", dir.db(), "--json",
                      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})"});
  CHECK(enqueue.exit_code == 1);
  CHECK(enqueue.err.find("schema version 1 is older than this metrix-relay's (" + kLatest +
                         "); upgrade it with 'metrix-relay migrate") !=
        std::string::npos);
  // check reports the schema as a finding, with the same remedy (it was lost once storage
  // stopped naming commands).
  auto check = run({relay_binary(), "check", "--db", dir.db()});
  CHECK(check.exit_code == 1);
  CHECK_MESSAGE(check.out.find("schema version 1 is older than this metrix-relay's (" + kLatest +
                               "); upgrade it with 'metrix-relay migrate --db " + dir.db() + "'") != std::string::npos,
                check.out);
  auto migrate = run({relay_binary(), "migrate", "--db", dir.db()});
  CHECK(migrate.exit_code == 0);
  CHECK(migrate.out.find("migrated schema from version 1 to " + kLatest) != std::string::npos);
  CHECK(query_text(dir.db(), "SELECT count(*) FROM metrix_outbox_audit") == "1");
  // The upgraded database validates with the latest trigger (migration 1's raised "integer overflow").
  auto upgraded = run({relay_binary(), "enqueue", "--db", dir.db(), "--json",
                       R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customMetrics":{"n":-9223372036854775808}})"});
  CHECK_MESSAGE(upgraded.exit_code == 0, upgraded.err);
}
