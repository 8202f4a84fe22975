// metrix-relay enqueue and --help, through the built binary.
#include <doctest/doctest.h>

#include "tests/support/process.h"

using metrix::test::relay_binary;
using metrix::test::run;
using metrix::test::TempDir;

namespace {
const std::string kValid = R"({"metrixUserId":"u-1","eventSlug":"taqsq","oaid":"o-1"})";

std::string migrated(const TempDir& dir) {
  REQUIRE(run({relay_binary(), "migrate", "--db", dir.db()}).exit_code == 0);
  return dir.db();
}
}  // namespace

TEST_CASE("enqueue prints the new row id and exits 0") {
  TempDir dir;
  auto db = migrated(dir);
  auto first = run({relay_binary(), "enqueue", "--db", db, "--json", kValid});
  CHECK(first.exit_code == 0);
  CHECK(first.out == "1\n");
  auto second = run({relay_binary(), "enqueue", "--db", db, "--json", "-", "--app-id", "app-2"}, kValid);
  CHECK(second.exit_code == 0);
  CHECK(second.out == "2\n");
}

TEST_CASE("an invalid event exits 2 and names the field and the rule") {
  TempDir dir;
  auto db = migrated(dir);
  auto r = run({relay_binary(), "enqueue", "--db", db, "--json",
                R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":1}})"});
  CHECK(r.exit_code == 2);
  CHECK(r.err == "metrix-relay: customAttributes._currency: must be one of IRR, USD, EUR\n");
  CHECK(r.out.empty());
}

TEST_CASE("an empty --dedup-key or --app-id is refused as SQL and import refuse it, not dropped") {
  // As `--dedup-key "$ORDER_ID"` with the variable unset: dropping the key would store the
  // event without its idempotency key, and a replay would store it twice.
  TempDir dir;
  auto db = migrated(dir);
  auto key = run({relay_binary(), "enqueue", "--db", db, "--json", kValid, "--dedup-key", ""});
  CHECK(key.exit_code == 2);
  CHECK(key.err == "metrix-relay: dedup_key: must be NULL or a non-empty string\n");
  auto app = run({relay_binary(), "enqueue", "--db", db, "--json", kValid, "--app-id", ""});
  CHECK(app.exit_code == 2);
  CHECK(app.err.find("metrix-relay: app_id: ") == 0);
  CHECK(run({relay_binary(), "status", "--db", db, "--json"}).out.find("\"total\": 0") != std::string::npos);
}

TEST_CASE("malformed JSON exits 2 with a clear message") {
  TempDir dir;
  auto db = migrated(dir);
  auto r = run({relay_binary(), "enqueue", "--db", db, "--json", "-"}, "{\"metrixUserId\": ");
  CHECK(r.exit_code == 2);
  CHECK(r.err == "metrix-relay: payload: must be valid JSON text\n");
}

TEST_CASE("a duplicate dedup key exits 3 and writes nothing") {
  TempDir dir;
  auto db = migrated(dir);
  CHECK(run({relay_binary(), "enqueue", "--db", db, "--json", kValid, "--dedup-key", "order-7"}).exit_code == 0);
  auto again = run({relay_binary(), "enqueue", "--db", db, "--json", kValid, "--dedup-key", "order-7"});
  CHECK(again.exit_code == 3);
  CHECK(again.err == "metrix-relay: dedup_key: 'order-7' is already in the outbox\n");
  auto next = run({relay_binary(), "enqueue", "--db", db, "--json", kValid});
  CHECK(next.out == "2\n");  // the refused row took no id... AUTOINCREMENT only counts committed rows
}

TEST_CASE("a missing database or required flag is a clear error") {
  TempDir dir;
  auto missing = run({relay_binary(), "enqueue", "--db", dir.file("none.db").string(), "--json", kValid});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no such file (run 'metrix-relay migrate' first)") != std::string::npos);
  auto usage = run({relay_binary(), "enqueue", "--json", kValid});
  CHECK(usage.exit_code == 2);
  CHECK(usage.err.find("--db is required") != std::string::npos);
  auto none = run({relay_binary()});
  CHECK(none.exit_code == 2);
  // Before: "A subcommand is required", as if none had been given.
  auto typo = run({relay_binary(), "enqeue", "--db", "x.db"});
  CHECK(typo.exit_code == 2);
  CHECK(typo.err.find("metrix-relay: unknown command 'enqeue'; the commands are: migrate, enqueue, run,") == 0);
}

TEST_CASE("--version prints the version and exits 0") {
  auto version = run({relay_binary(), "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("metrix-relay ", 0) == 0);
  CHECK(version.out.find('.') != std::string::npos);
}

TEST_CASE("--help explains the tool and each subcommand") {
  auto top = run({relay_binary(), "--help"});
  CHECK(top.exit_code == 0);
  CHECK(top.out.find("migrate") != std::string::npos);
  CHECK(top.out.find("enqueue") != std::string::npos);
  CHECK(top.out.find("Exit codes") != std::string::npos);
  auto enqueue = run({relay_binary(), "enqueue", "--help"});
  CHECK(enqueue.exit_code == 0);
  CHECK(enqueue.out.find("--dedup-key") != std::string::npos);
  CHECK(enqueue.out.find("Examples:") != std::string::npos);
}
