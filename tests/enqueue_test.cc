// The producer API inside the producer's own transactions, on a real database file.
#include <doctest/doctest.h>

#include <thread>

#include "storage/migrate.h"
#include "storage/producer.h"
#include "tests/support/process.h"

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

TEST_CASE("enqueue on a database without the outbox says to run migrate") {
  metrix::test::TempDir dir;
  AppConnection app(dir.db());
  Producer producer(app.db);
  auto id = producer.enqueue(kValid);
  REQUIRE_FALSE(id);
  CHECK(id.error().code == metrix::Errc::schema);
  CHECK(id.error().message.find("metrix-relay migrate") != std::string::npos);
}
