// Helpers for tests of the relay on a PostgreSQL outbox: a migrated outbox on a PgServer
// with valid events, and reads of it through psql.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "tests/outbox_fixture.h"
#include "tests/support/pg_server.h"

namespace metrix::test {

// Migrates `pg`'s outbox (the real binary) and inserts events first..last, as
// valid_payload(i) writes them, in one statement.
inline void add_pg_events(const PgServer& pg, int first, int last) {
  pg.psql("INSERT INTO metrix_outbox (payload) SELECT '{\"metrixUserId\":\"user-' || i || '\",\"eventSlug\":\"taqsq\","
          "\"advertisingId\":\"38400000-8cf0-11bd-b23e-10b96e40000d\",\"customAttributes\":{\"n\":\"' || i || '\"}}' "
          "FROM generate_series(" + std::to_string(first) + ", " + std::to_string(last) + ") i");
}

inline void make_pg_outbox(const PgServer& pg, int n) {
  auto migrated = run({relay_binary(), "migrate", "--db", pg.uri()});
  REQUIRE_MESSAGE(migrated.exit_code == 0, migrated.err);
  if (n > 0) add_pg_events(pg, 1, n);
}

// The first column of the first row of `sql`, as a number.
inline std::int64_t pg_scalar(const PgServer& pg, const std::string& sql) {
  const std::string out = pg.psql(sql);
  REQUIRE_MESSAGE(!out.empty(), sql);
  return std::stoll(out);
}

inline std::int64_t pg_count_status(const PgServer& pg, const std::string& status) {
  return pg_scalar(pg, "SELECT count(*) FROM metrix_outbox WHERE status = '" + status + "'");
}

}  // namespace metrix::test
