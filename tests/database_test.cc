// The Transaction guard on a real database file: when it begins, joins, or refuses.
#include <doctest/doctest.h>

#include "storage/database.h"
#include "tests/outbox_fixture.h"

using namespace metrix;
using metrix::test::TempDir;

namespace {
std::int64_t count(Database& db) {
  auto s = db.prepare("SELECT count(*) FROM t");
  REQUIRE(s);
  REQUIRE(s->step());
  return s->int64(0);
}
}  // namespace

TEST_CASE("a write transaction inside an open read transaction is refused, not joined") {
  TempDir dir;
  auto db = Database::open(dir.db(), {.create = true});
  REQUIRE(db);
  REQUIRE(db->exec("CREATE TABLE t(x)"));
  auto read = Transaction::begin_read(db->handle());
  REQUIRE(read);
  CHECK(count(*db) == 0);  // the snapshot is taken
  auto write = Transaction::begin(db->handle());
  REQUIRE_FALSE(write);
  CHECK(write.error().code == Errc::invalid_argument);
  CHECK(write.error().message.find("a write cannot join it") != std::string::npos);

  // A deferred BEGIN that has not written yet holds no write lock either.
  auto deferred = Database::open(dir.db());
  REQUIRE(deferred);
  REQUIRE(deferred->exec("BEGIN"));
  CHECK_FALSE(Transaction::begin(deferred->handle()));
  REQUIRE(deferred->exec("ROLLBACK"));
}

TEST_CASE("a write transaction inside an open write transaction joins it, and the outer one decides") {
  TempDir dir;
  auto db = Database::open(dir.db(), {.create = true});
  REQUIRE(db);
  REQUIRE(db->exec("CREATE TABLE t(x)"));
  {
    auto outer = Transaction::begin(db->handle());
    REQUIRE(outer);
    {
      auto inner = Transaction::begin(db->handle());
      REQUIRE(inner);
      REQUIRE(db->exec("INSERT INTO t VALUES (1)"));
      REQUIRE(inner->commit());  // joined: commits nothing yet
      auto read = Transaction::begin_read(db->handle());  // a read joins any transaction
      REQUIRE(read);
    }
    CHECK(count(*db) == 1);
    // outer rolls back here
  }
  CHECK(count(*db) == 0);
}
