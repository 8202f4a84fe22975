// migrate on PostgreSQL: the real binary against a throwaway server.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <future>

#include "relay/config.h"
#include "storage/postgres/connection.h"
#include "tests/support/pg_server.h"
#include "tests/support/process.h"

using namespace metrix::test;

namespace {

RunResult migrate(const std::string& uri, const std::map<std::string, std::string>& env = {}) {
  return run({relay_binary(), "migrate", "--db", uri}, {}, env);
}

}  // namespace

TEST_CASE("migrate creates the outbox in the current schema, once, and says so") {
  PgServer pg;
  auto first = migrate(pg.uri());
  CHECK(first.exit_code == 0);
  CHECK(first.out.find("migrated schema from version 0 to") != std::string::npos);
  auto again = migrate(pg.uri());
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("schema is up to date") != std::string::npos);
  CHECK(pg.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN "
                "('metrix_outbox', 'metrix_outbox_attempt', 'metrix_app_pause', 'metrix_relay_heartbeat', "
                "'metrix_schema_migrations')") == "5\n");

  // options=-csearch_path: another schema of the same database gets its own outbox, even with
  // the first one later in the search_path.
  pg.psql("CREATE SCHEMA bank");
  auto other = migrate(pg.uri() + "?options=-csearch_path%3Dbank%2Cpublic");
  CHECK(other.exit_code == 0);
  CHECK(other.out.find("from version 0") != std::string::npos);
  CHECK(pg.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'bank'") != "0\n");
}

TEST_CASE("migrate brings an older outbox up to date, and prints no notice of the server's") {
  PgServer pg;
  REQUIRE(migrate(pg.uri()).exit_code == 0);
  const std::string latest = pg.psql("SELECT max(version) FROM metrix_schema_migrations");
  const int version = std::stoi(latest);
  pg.psql("DELETE FROM metrix_schema_migrations WHERE version = " + latest);  // as a database left one behind
  auto upgrade = migrate(pg.uri());
  CHECK(upgrade.exit_code == 0);
  CHECK_MESSAGE(upgrade.out.find(fmt::format("from version {} to {}", version - 1, version)) != std::string::npos,
                upgrade.out);
  CHECK_MESSAGE(upgrade.err.empty(), upgrade.err);  // libpq printed "NOTICE: ... already exists, skipping"
  CHECK(pg.psql("SELECT count(*) FROM metrix_schema_migrations") == latest);
}

TEST_CASE("concurrent migrate runs apply each migration once") {
  PgServer pg;
  std::vector<std::future<RunResult>> runs;
  for (int i = 0; i < 4; ++i) runs.push_back(std::async(std::launch::async, [&] { return migrate(pg.uri()); }));
  int created = 0;
  for (auto& r : runs) {
    auto result = r.get();
    CHECK_MESSAGE(result.exit_code == 0, result.err);
    created += result.out.find("from version 0") != std::string::npos;
  }
  CHECK(created == 1);
  CHECK(pg.psql("SELECT count(*) = count(DISTINCT version) FROM metrix_schema_migrations") == "t\n");
}

TEST_CASE("a newer or altered schema is refused, and nothing is written") {
  PgServer pg;
  REQUIRE(migrate(pg.uri()).exit_code == 0);
  pg.psql("INSERT INTO metrix_schema_migrations VALUES (999, 'from_the_future', 'x', 0)");
  auto newer = migrate(pg.uri());
  CHECK(newer.exit_code != 0);
  CHECK(newer.err.find("newer than this metrix-relay knows") != std::string::npos);
  pg.psql("DELETE FROM metrix_schema_migrations WHERE version = 999; "
          "UPDATE metrix_schema_migrations SET checksum = 'altered' WHERE version = 1");
  auto altered = migrate(pg.uri());
  CHECK(altered.exit_code != 0);
  CHECK(altered.err.find("checksum mismatch") != std::string::npos);
}

TEST_CASE("a password in the URI is never printed") {
  PgServer pg;
  pg.psql("ALTER ROLE metrix PASSWORD 'hunter2-secret'");
  const std::string uri = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/nosuchdb";
  auto r = migrate(uri);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("nosuchdb") != std::string::npos);
  CHECK(r.err.find("hunter2") == std::string::npos);
  CHECK(r.out.find("hunter2") == std::string::npos);
  auto ok = migrate("postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/postgres");
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("hunter2") == std::string::npos);
  CHECK(ok.out.find("***") != std::string::npos);
}

TEST_CASE("postgresql:// alone takes everything from libpq's environment") {
  PgServer pg;
  auto r = migrate("postgresql://", {{"PGHOST", "127.0.0.1"}, {"PGPORT", std::to_string(pg.port())},
                                     {"PGUSER", "metrix"}, {"PGDATABASE", "postgres"}});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(pg.psql("SELECT count(*) FROM metrix_schema_migrations") != "0\n");
}

TEST_CASE("a connection notices a dead network within a minute unless the URI says otherwise") {
  PgServer pg;
  auto setting = [](PGconn* conn, const std::string& keyword) {
    std::string value;
    PQconninfoOption* options = PQconninfo(conn);
    for (PQconninfoOption* o = options; o && o->keyword; ++o) {
      if (keyword == o->keyword && o->val) value = o->val;
    }
    PQconninfoFree(options);
    return value;
  };
  auto plain = metrix::pg::Connection::open(pg.uri());
  REQUIRE(plain);
  CHECK(setting(plain->handle(), "keepalives_idle") == "30");
  CHECK(setting(plain->handle(), "tcp_user_timeout") == "60000");
  auto own = metrix::pg::Connection::open(pg.uri() + "?keepalives_idle=7&tcp_user_timeout=5000");
  REQUIRE(own);
  CHECK(setting(own->handle(), "keepalives_idle") == "7");
  CHECK(setting(own->handle(), "tcp_user_timeout") == "5000");
  CHECK(setting(own->handle(), "keepalives_count") == "3");
}

TEST_CASE("a password is left out of every message, however the URI spells it") {
  using metrix::pg::redact;
  CHECK(redact("postgresql://u:s3cret@db.internal:6432/bank") == "postgresql://u:***@db.internal:6432/bank");
  CHECK(redact("postgresql://u@db/bank?password=s3cret&sslmode=require") == "postgresql://u:***@db/bank");
  CHECK(redact("postgresql://u@db/bank?sslpassword=s3cret") == "postgresql://u:***@db/bank");
  CHECK(redact("postgresql://u@db/bank?pass%77ord=s3cret") == "postgresql://u:***@db/bank");
  CHECK(redact("postgresql://") == "postgresql://");
  CHECK(redact("/var/lib/app/app.db") == "/var/lib/app/app.db");
  // libpq's own parse errors quote the whole URI: neither is shown.
  for (const std::string bad : {"postgresql://u:s3cret@[::1/db", "postgresql://u:s3%zzcret@db/bank"}) {
    CHECK(redact(bad).find("s3") == std::string::npos);
    auto r = migrate(bad);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("not a valid PostgreSQL connection URI") != std::string::npos);
    CHECK(r.err.find("s3") == std::string::npos);
  }
}

TEST_CASE("a reload that changes a PostgreSQL --db names it without its password") {
  metrix::RelayConfig running, reloaded;
  running.db_path = "postgresql://relay:old-s3cret@db.internal/bank";
  reloaded.db_path = "postgresql://relay:new-s3cret@db.internal/bank";
  auto refused = metrix::check_reloadable(running, reloaded);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("db cannot change on reload") != std::string::npos);
  CHECK(refused.error().message.find("s3cret") == std::string::npos);
}
