// The producer API inside the producer's own transactions, on a real database file.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "storage/migrate.h"
#include "storage/producer.h"
#include "tests/support/process.h"
#include "storage/clock.h"

using metrix::Event;
using metrix::Producer;

namespace {

const std::string kValid = R"({"metrixUserId":"u-1","eventSlug":"taqsq","oaid":"o-1"})";

// The application's own connection, opened the way an application would.
struct AppConnection {
  sqlite3* db = nullptr;
  explicit AppConnection(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
  }
  ~AppConnection() { sqlite3_close(db); }
  void exec(const char* sql) { REQUIRE_MESSAGE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK, sqlite3_errmsg(db)); }
  std::int64_t count(const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    auto n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
  }
};

std::string migrated(const metrix::test::TempDir& dir) {
  auto db = metrix::Database::open(dir.db(), {.create = true});
  REQUIRE(db);
  REQUIRE(metrix::migrate(*db));
  return dir.db();
}

}  // namespace

TEST_CASE("an event enqueued in a transaction that rolls back never existed") {
  metrix::test::TempDir dir;
  AppConnection app(migrated(dir));
  app.exec("CREATE TABLE orders(id INTEGER PRIMARY KEY)");
  {
    Producer producer(app.db);
    app.exec("BEGIN");
    app.exec("INSERT INTO orders VALUES (1)");
    auto id = producer.enqueue(kValid);
    REQUIRE(id);
    CHECK(*id == 1);
    CHECK_FALSE(sqlite3_get_autocommit(app.db));  // enqueue neither committed nor ended it
    app.exec("ROLLBACK");
  }
  CHECK(app.count("SELECT count(*) FROM metrix_outbox") == 0);
  CHECK(app.count("SELECT count(*) FROM orders") == 0);

  // The same with plain SQL, as a producer in any language writes it.
  app.exec("BEGIN");
  app.exec(R"(INSERT INTO metrix_outbox(payload) VALUES ('{"metrixUserId":"u","eventSlug":"s","idfa":"i"}'))");
  app.exec("ROLLBACK");
  CHECK(app.count("SELECT count(*) FROM metrix_outbox") == 0);
}

TEST_CASE("a committed event survives closing and reopening the database") {
  metrix::test::TempDir dir;
  std::int64_t before = metrix::now_ms();
  {
    AppConnection app(migrated(dir));
    Producer producer(app.db);
    app.exec("BEGIN");
    REQUIRE(producer.enqueue(Event::custom("u-1", "taqsq").oaid("o"), {.app_id = "app-2", .dedup_key = "order-1"}));
    app.exec("COMMIT");
  }
  std::int64_t after = metrix::now_ms();
  auto db = metrix::Database::open(dir.db());
  REQUIRE(db);
  auto row = db->prepare("SELECT payload, app_id, dedup_key, status, attempts, created_at FROM metrix_outbox");
  REQUIRE(row);
  REQUIRE(*row->step());
  CHECK(row->text(0) == R"({"metrixUserId":"u-1","eventSlug":"taqsq","oaid":"o"})");
  CHECK(row->text(1) == "app-2");
  CHECK(row->text(2) == "order-1");
  CHECK(row->text(3) == "pending");
  CHECK(row->int64(4) == 0);
  CHECK(row->int64(5) >= before);  // milliseconds, filled in by the database
  CHECK(row->int64(5) <= after);
}

TEST_CASE("enqueue works in autocommit mode and returns increasing ids that are never reused") {
  metrix::test::TempDir dir;
  AppConnection app(migrated(dir));
  Producer producer(app.db);
  auto a = producer.enqueue(kValid);
  auto b = producer.enqueue(kValid);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*b == *a + 1);
  app.exec("DELETE FROM metrix_outbox WHERE id = 2");
  auto c = producer.enqueue(kValid);
  REQUIRE(c);
  CHECK(*c == 3);
}

TEST_CASE("a refused event leaves the producer's transaction open and usable") {
  metrix::test::TempDir dir;
  AppConnection app(migrated(dir));
  Producer producer(app.db);
  app.exec("BEGIN");
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "k"}));
  auto bad = producer.enqueue(R"({"metrixUserId":"u","eventSlug":"s"})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == metrix::Errc::invalid_event);
  auto duplicate = producer.enqueue(kValid, {.dedup_key = "k"});
  REQUIRE_FALSE(duplicate);
  CHECK(duplicate.error().code == metrix::Errc::duplicate);
  CHECK(duplicate.error().message == "dedup_key: 'k' is already in the outbox");
  CHECK_FALSE(sqlite3_get_autocommit(app.db));
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "k2"}));
  app.exec("COMMIT");
  CHECK(app.count("SELECT count(*) FROM metrix_outbox") == 2);
}

TEST_CASE("an enqueued payload cannot be changed afterwards") {
  metrix::test::TempDir dir;
  AppConnection app(migrated(dir));
  Producer producer(app.db);
  REQUIRE(producer.enqueue(kValid));
  int rc = sqlite3_exec(app.db, R"(UPDATE metrix_outbox SET payload = '{"metrixUserId":"x","eventSlug":"s","oaid":"o"}')",
                        nullptr, nullptr, nullptr);
  CHECK(rc == SQLITE_CONSTRAINT);
  CHECK(std::string(sqlite3_errmsg(app.db)) == "payload: an enqueued event cannot be changed; enqueue a new one");
}

TEST_CASE("a plain SQL insert may not set the id or the relay's columns, nor times that are not milliseconds") {
  metrix::test::TempDir dir;
  AppConnection app(migrated(dir));
  const std::string created_at =
      "created_at: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and "
      "2100-01-01 (left out, it is the time of the insert)";
  const std::string relays = "attempts/lease_token/event_time/last_http_status/last_error/sent_at: the relay "
                             "writes these; leave them out of an INSERT";
  struct Case {
    std::string columns, values, message;
  };
  for (const Case& c : std::vector<Case>{
           // Before: accepted, and every enqueue after it failed with "database or disk is full".
           {"id", "9223372036854775807", "id: the database assigns it; leave it out of an INSERT"},
           {"id", "1", "id: the database assigns it; leave it out of an INSERT"},
           {"created_at", "'yesterday'", created_at},
           {"created_at", "1577872800000.5", created_at},
           {"created_at", "1700000000", created_at},  // seconds
           {"created_at", "4102444800001", created_at},
           {"next_attempt_at", "'soon'", "next_attempt_at: must be an integer number of milliseconds since the "
                                         "Unix epoch (left out, the row is due at once)"},
           {"status", "'sent'", "status: a new row is pending; leave the status to the relay"},
           {"status", "'held'", "status: a new row is pending; leave the status to the relay"},
           {"event_time", "'z'", relays},  // the relay sent it as "eventTime":0
           {"event_time", "5", relays},
           {"attempts", "3", relays},
           {"lease_token", "7", relays},
           {"last_http_status", "200", relays},
           {"last_error", "''", relays},
           {"sent_at", "1700000000000", relays},
       }) {
    CAPTURE(c.columns);
    CAPTURE(c.values);
    const std::string sql = "INSERT INTO metrix_outbox (payload, " + c.columns + ") VALUES ('" + kValid + "', " +
                            c.values + ")";
    CHECK(sqlite3_exec(app.db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_CONSTRAINT);
    CHECK(std::string(sqlite3_errmsg(app.db)) == c.message);
  }
  CHECK(app.count("SELECT count(*) FROM metrix_outbox") == 0);

  // What producers and the tests' fixtures write: the defaults, a row written in the past, a
  // row due later, and the values the defaults would have given.
  app.exec(("INSERT INTO metrix_outbox (payload) VALUES ('" + kValid + "')").c_str());
  app.exec(("INSERT INTO metrix_outbox (payload, created_at, next_attempt_at) VALUES ('" + kValid +
            "', 1577872800000, 4102444800000)").c_str());
  app.exec(("INSERT INTO metrix_outbox (payload, created_at, status, attempts, lease_token) VALUES ('" + kValid +
            "', '1577872800000', 'pending', 0, 0)").c_str());
  CHECK(app.count("SELECT count(*) FROM metrix_outbox WHERE status = 'pending'") == 3);
  CHECK(app.count("SELECT max(id) FROM metrix_outbox") == 3);
}

TEST_CASE("enqueue on a database without the outbox says to apply the migrations") {
  metrix::test::TempDir dir;
  AppConnection app(dir.db());
  Producer producer(app.db);
  auto id = producer.enqueue(kValid);
  REQUIRE_FALSE(id);
  CHECK(id.error().code == metrix::Errc::schema);
  // The library's words: a producer has no metrix-relay command (the CLI adds it).
  CHECK(id.error().message == "this database has no metrix_outbox table; apply the outbox migrations first (migrate())");
}
