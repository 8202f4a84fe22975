// The producer API on PostgreSQL: enqueue on the application's own PGconn, inside its own
// transaction, against a throwaway server.
#include <doctest/doctest.h>

#include "storage/postgres/connection.h"
#include "storage/postgres/migrate.h"
#include "storage/postgres/producer.h"
#include "tests/support/pg_server.h"

using metrix::Errc;
using metrix::Event;
using metrix::pg::Connection;
using metrix::pg::Producer;
using metrix::test::PgServer;

namespace {

const std::string kValid = R"({"metrixUserId":"u-1","eventSlug":"taqsq","oaid":"o-1"})";

Connection migrated(const PgServer& pg) {
  auto db = Connection::open(pg.uri());
  REQUIRE(db);
  auto m = metrix::pg::migrate(*db);
  REQUIRE_MESSAGE(m, (m ? std::string() : m.error().message));
  return std::move(*db);
}

// The application's statements, as a producer runs them around enqueue().
void exec(Connection& app, const std::string& sql) {
  auto s = app.exec_script(sql);
  REQUIRE_MESSAGE(s, (sql + ": " + (s ? std::string() : s.error().message)));
}

}  // namespace

TEST_CASE("an event enqueued in a transaction is there, byte for byte, once the transaction commits") {
  PgServer pg;
  Connection app = migrated(pg);
  Producer producer(app.handle());
  const std::string spaced = R"({ "metrixUserId" : "u-1", "eventSlug":"taqsq", "oaid":"o-1", "customMetrics": {"n": 1.50} })";
  exec(app, "BEGIN");
  auto id = producer.enqueue(spaced, {.app_id = "app-9", .dedup_key = "order-1"});
  REQUIRE(id);
  CHECK(pg.psql("SELECT count(*) FROM metrix_outbox") == "0\n");  // not yet committed
  exec(app, "COMMIT");
  CHECK(pg.psql("SELECT id || '|' || payload || '|' || app_id || '|' || dedup_key || '|' || status FROM metrix_outbox") ==
        std::to_string(*id) + "|" + spaced + "|app-9|order-1|pending\n");
}

TEST_CASE("an event enqueued in a transaction that rolls back never existed") {
  PgServer pg;
  Connection app = migrated(pg);
  Producer producer(app.handle());
  exec(app, "BEGIN");
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "order-1"}));
  exec(app, "ROLLBACK");
  CHECK(pg.psql("SELECT count(*) FROM metrix_outbox") == "0\n");
  // Its key was never taken.
  CHECK(producer.enqueue(kValid, {.dedup_key = "order-1"}));
}

TEST_CASE("an invalid event is refused with the SQLite producer's message and the transaction stays usable") {
  PgServer pg;
  Connection app = migrated(pg);
  Producer producer(app.handle());
  exec(app, "BEGIN");
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "k-1"}));
  auto none = producer.enqueue(R"({"metrixUserId":"u","eventSlug":"s"})");
  REQUIRE_FALSE(none);
  CHECK(none.error().code == Errc::invalid_event);
  CHECK(none.error().message ==
        "idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
        "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)");
  auto unknown = producer.enqueue(R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceId":"d"})");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::invalid_event);
  CHECK(unknown.error().message.starts_with("payload: unknown key; the keys are "));
  CHECK(unknown.error().message.ends_with(" (here: \"deviceId\")"));
  auto empty_key = producer.enqueue(kValid, {.dedup_key = ""});
  REQUIRE_FALSE(empty_key);
  CHECK(empty_key.error().message == "dedup_key: must be NULL or a non-empty string");
  auto malformed = producer.enqueue("{\"metrixUserId\": ");
  REQUIRE_FALSE(malformed);
  CHECK(malformed.error().message == "payload: must be valid JSON text");
  // What PostgreSQL's text cannot hold, and SQLite's rules let through: refused here, not by
  // the server (22021), which would abort the transaction; a NUL is never cut short.
  auto latin1 = producer.enqueue("{\"metrixUserId\":\"Jos\xe9\",\"eventSlug\":\"s\",\"oaid\":\"o\"}");
  REQUIRE_FALSE(latin1);
  CHECK(latin1.error().code == Errc::invalid_event);
  CHECK(latin1.error().message.starts_with("payload: must be UTF-8 text without a NUL byte"));
  auto nul_key = producer.enqueue(kValid, {.dedup_key = std::string("k-1\0x", 5)});
  REQUIRE_FALSE(nul_key);
  CHECK(nul_key.error().code == Errc::invalid_event);
  CHECK(nul_key.error().message.starts_with("dedup_key: must be UTF-8 text without a NUL byte"));
  auto bad_app = producer.enqueue(kValid, {.app_id = std::string("app\xff")});
  REQUIRE_FALSE(bad_app);
  CHECK(bad_app.error().message.starts_with("app_id: must be UTF-8 text"));
  CHECK(PQtransactionStatus(app.handle()) == PQTRANS_INTRANS);
  // The application's own work and another event still go in, and commit.
  exec(app, "CREATE TABLE orders (id int)");
  exec(app, "INSERT INTO orders VALUES (1)");
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "k-2"}));
  exec(app, "COMMIT");
  CHECK(pg.psql("SELECT string_agg(dedup_key, ',' ORDER BY id) FROM metrix_outbox") == "k-1,k-2\n");
  CHECK(pg.psql("SELECT count(*) FROM orders") == "1\n");
}

TEST_CASE("a duplicate dedup key is refused as on SQLite and the transaction stays usable") {
  PgServer pg;
  Connection app = migrated(pg);
  Producer producer(app.handle());
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "order-7"}));  // autocommit: its own transaction
  exec(app, "BEGIN");
  auto committed_before = producer.enqueue(kValid, {.dedup_key = "order-7"});
  REQUIRE_FALSE(committed_before);
  CHECK(committed_before.error().code == Errc::duplicate);
  CHECK(committed_before.error().message == "dedup_key: 'order-7' is already in the outbox");
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "order-8"}));
  auto earlier_here = producer.enqueue(kValid, {.dedup_key = "order-8"});
  REQUIRE_FALSE(earlier_here);
  CHECK(earlier_here.error().code == Errc::duplicate);
  CHECK(PQtransactionStatus(app.handle()) == PQTRANS_INTRANS);
  REQUIRE(producer.enqueue(kValid, {.dedup_key = "order-9"}));
  exec(app, "COMMIT");
  CHECK(pg.psql("SELECT string_agg(dedup_key, ',' ORDER BY id) FROM metrix_outbox") == "order-7,order-8,order-9\n");
}

TEST_CASE("the Event builder's events go in as built") {
  PgServer pg;
  Connection app = migrated(pg);
  Producer producer(app.handle());
  auto event = Event::revenue("user-1", "purchase", 53.7, metrix::Currency::IRR)
                   .advertising_id("38400000-8cf0-11bd-b23e-10b96e40000d")
                   .attribute("content_type", "wallets");
  auto id = producer.enqueue(event, {.dedup_key = "order-1234"});
  REQUIRE(id);
  CHECK(pg.psql("SELECT payload FROM metrix_outbox WHERE id = " + std::to_string(*id)) == event.payload() + "\n");
  auto bad = producer.enqueue(Event::custom("", "s").oaid("o"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "metrixUserId: is required and must be a non-empty string");
}

TEST_CASE("enqueue on a database without the outbox says to apply the migrations") {
  PgServer pg;
  auto app = Connection::open(pg.uri());
  REQUIRE(app);
  auto id = Producer(app->handle()).enqueue(kValid);
  REQUIRE_FALSE(id);
  CHECK(id.error().code == Errc::schema);
  CHECK(id.error().message.find("apply the outbox migrations first") != std::string::npos);
}
