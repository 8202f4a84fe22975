// metrix-relay enqueue and import on a postgresql:// URI, through the built binary, against a
// throwaway server: the SQLite commands' output, exit codes and messages, and the password
// of a URI never shown.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>

#include "tests/operator_fixture.h"
#include "tests/support/pg_server.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

const std::string kValid = R"({"metrixUserId":"u-1","eventSlug":"taqsq","oaid":"o-1"})";

std::string migrated(const PgServer& pg) {
  auto r = relay_cli({"migrate", "--db", pg.uri()});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return pg.uri();
}

std::int64_t pg_count(const PgServer& pg, const std::string& sql = "SELECT count(*) FROM metrix_outbox") {
  return std::stoll(pg.psql(sql));
}

std::int64_t wait_for_pg_count(const PgServer& pg, std::int64_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t value = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    value = pg_count(pg);
    if (value >= n) break;
    std::this_thread::sleep_for(50ms);
  }
  return value;
}

}  // namespace

TEST_CASE("enqueue on a URI prints the new row id, and refuses invalid and duplicate events as on SQLite") {
  PgServer pg;
  auto db = migrated(pg);
  auto first = relay_cli({"enqueue", "--db", db, "--json", kValid, "--dedup-key", "order-7"});
  CHECK_MESSAGE(first.exit_code == 0, first.err);
  CHECK(first.out == "1\n");
  auto second = relay_cli({"enqueue", "--db", db, "--json", "-", "--app-id", "app-2"}, kValid);
  CHECK(second.exit_code == 0);
  CHECK(second.out == "2\n");

  auto invalid = relay_cli({"enqueue", "--db", db, "--json",
                            R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":1}})"});
  CHECK(invalid.exit_code == 2);
  CHECK(invalid.err == "metrix-relay: customAttributes._currency: must be one of IRR, USD, EUR\n");
  CHECK(invalid.out.empty());
  auto malformed = relay_cli({"enqueue", "--db", db, "--json", "-"}, "{\"metrixUserId\": ");
  CHECK(malformed.exit_code == 2);
  CHECK(malformed.err == "metrix-relay: payload: must be valid JSON text\n");
  auto empty_key = relay_cli({"enqueue", "--db", db, "--json", kValid, "--dedup-key", ""});
  CHECK(empty_key.exit_code == 2);
  CHECK(empty_key.err == "metrix-relay: dedup_key: must be NULL or a non-empty string\n");

  auto duplicate = relay_cli({"enqueue", "--db", db, "--json", kValid, "--dedup-key", "order-7"});
  CHECK(duplicate.exit_code == 3);
  CHECK(duplicate.err == "metrix-relay: dedup_key: 'order-7' is already in the outbox\n");
  CHECK(duplicate.out.empty());
  CHECK(pg.psql("SELECT string_agg(coalesce(dedup_key, '-') || '/' || coalesce(app_id, '-'), ',' ORDER BY id) "
                "FROM metrix_outbox") == "order-7/-,-/app-2\n");
}

TEST_CASE("enqueue and import on a URI without the outbox say to run migrate") {
  PgServer pg;
  auto enqueue = relay_cli({"enqueue", "--db", pg.uri(), "--json", kValid});
  CHECK(enqueue.exit_code == 1);
  CHECK(enqueue.err.find("create one with 'metrix-relay migrate --db postgresql://") != std::string::npos);
  TempDir dir;
  write_ndjson(dir.file("in.ndjson"), 3);
  auto import = relay_cli({"import", "--db", pg.uri(), dir.file("in.ndjson").string()});
  CHECK(import.exit_code == 1);
  CHECK(import.err.find("create one with 'metrix-relay migrate") != std::string::npos);
}

TEST_CASE("an import on a URI stores bare payloads byte for byte and wrapper lines with their key and app") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  const std::string bare = R"({ "metrixUserId" : "u-1", "eventSlug":"taqsq", "oaid":"o-1", "customMetrics": {"n": 1.50} })";
  std::ofstream(dir.file("in.ndjson"))
      << bare << "\r\n"
      << "\n"
      << R"({"payload": {"metrixUserId":"u-2","eventSlug":"buy","idfa":"i-2"}, "dedup_key": "order-2", "app_id": "app-9"})"
      << "\n"
      << R"({"dedup_key": null, "payload":{"metrixUserId":"u-3","eventSlug":"buy","idfa":"i-3"}})" << "\n";
  auto r = relay_cli({"import", "--db", db, dir.file("in.ndjson").string()});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.find("imported 3 rows, skipped 0 already in the outbox (dedup_key), 4 lines") == 0);
  CHECK(pg.psql("SELECT payload || '|' || coalesce(dedup_key, 'NULL') || '|' || coalesce(app_id, 'NULL') || '|' || "
                "status FROM metrix_outbox ORDER BY id") ==
        bare + "|NULL|NULL|pending\n" + R"({"metrixUserId":"u-2","eventSlug":"buy","idfa":"i-2"})" +
            "|order-2|app-9|pending\n" + R"({"metrixUserId":"u-3","eventSlug":"buy","idfa":"i-3"})" +
            "|NULL|NULL|pending\n");
}

TEST_CASE("a broken import on a URI writes nothing and names every bad line with its rule") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  {
    std::ofstream out(dir.file("broken.ndjson"));
    for (int i = 1; i <= 2500; ++i) {
      if (i == 7) out << R"({"metrixUserId":"u","eventSlug":"s"})" << "\n";
      else if (i == 1200) out << "not json at all\n";
      else if (i == 1900) out << R"({"payload":{"metrixUserId":"u","eventSlug":"s","oaid":"o"},"dedup_key":42})" << "\n";
      else if (i == 2001) out << R"({"payload":{"metrixUserId":"u","eventSlug":"s","oaid":"o"},"colour":"red"})" << "\n";
      else if (i == 2200) out << R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceId":"d"})" << "\n";
      else if (i == 2300) out << "{\"metrixUserId\":\"Jos\xe9\",\"eventSlug\":\"s\",\"oaid\":\"o\"}\n";  // Latin-1
      else if (i == 2500)
        out << R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":1}})"
            << "\n";
      else out << import_line(i, "key-" + std::to_string(i)) << "\n";
    }
  }
  auto r = relay_cli({"import", "--db", db, dir.file("broken.ndjson").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.out.find("nothing imported: 7 bad lines") == 0);
  const std::string unknown_key = r.err.substr(r.err.find("line 2200: "), r.err.find("line 2300: ") - r.err.find("line 2200: "));
  CHECK(unknown_key.starts_with("line 2200: payload: unknown key; the keys are "));
  CHECK(unknown_key.ends_with(" (here: \"deviceId\")\n"));
  CHECK(r.err ==
        "line 7: idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
        "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)\n"
        "line 1200: payload: must be valid JSON text\n"
        "line 1900: dedup_key: must be a string (or null) in an import line\n"
        "line 2001: colour: unknown key in an import line; a line is a payload, or {\"payload\": {...}, "
        "\"dedup_key\": \"...\", \"app_id\": \"...\"}\n" +
            unknown_key +
            "line 2300: payload: must be UTF-8 text without a NUL byte (PostgreSQL's text holds nothing else)\n"
            "line 2500: customAttributes._currency: must be one of IRR, USD, EUR\n");
  CHECK(pg_count(pg) == 0);
  // The transaction is gone: the outbox takes writes.
  CHECK(relay_cli({"enqueue", "--db", db, "--json", kValid}).exit_code == 0);
}

TEST_CASE("importing the same file twice on a URI adds nothing the second time and counts what it skipped") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  write_ndjson(dir.file("batch.ndjson"), 3000);
  auto first = relay_cli({"import", "--db", db, dir.file("batch.ndjson").string(), "--json"});
  CHECK_MESSAGE(first.exit_code == 0, first.err);
  auto j1 = json_of(first);
  CHECK(j1["inserted"] == 3000);
  CHECK(j1["skipped_duplicates"] == 0);
  CHECK(j1["complete"] == true);
  auto second = relay_cli({"import", "--db", db, dir.file("batch.ndjson").string(), "--json"});
  CHECK_MESSAGE(second.exit_code == 0, second.err);
  auto j2 = json_of(second);
  CHECK(j2["inserted"] == 0);
  CHECK(j2["skipped_duplicates"] == 3000);
  CHECK(pg_count(pg) == 3000);
  CHECK(pg_count(pg, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == 3000);
  // A bad line whose key is already there is skipped, not reported, as on SQLite.
  std::ofstream(dir.file("again.ndjson")) << R"({"payload":{"metrixUserId":"","eventSlug":"s","oaid":"o"},"dedup_key":"key-5"})"
                                          << "\n" << import_line(1, "key-1") << "\n" << import_line(3001, "key-3001") << "\n";
  auto third = relay_cli({"import", "--db", db, dir.file("again.ndjson").string()});
  CHECK_MESSAGE(third.exit_code == 0, third.err);
  CHECK(third.out.find("imported 1 rows, skipped 2 already in the outbox (dedup_key), 3 lines") == 0);
}

TEST_CASE("a chunked import on a URI stops at the first chunk with a bad line and keeps the chunks before it") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  {
    std::ofstream out(dir.file("in.ndjson"));
    for (int i = 1; i <= 100; ++i) {
      if (i == 45 || i == 48) out << R"({"metrixUserId":"","eventSlug":"s","oaid":"o"})" << "\n";
      else out << import_line(i, "key-" + std::to_string(i)) << "\n";
    }
  }
  auto r = relay_cli({"import", "--db", db, "--chunk", "20", dir.file("in.ndjson").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err ==
        "line 45: metrixUserId: is required and must be a non-empty string\n"
        "line 48: metrixUserId: is required and must be a non-empty string\n");
  CHECK(r.out.find("lines 1..40 are imported (40 rows, 0 skipped") != std::string::npos);
  CHECK(pg_count(pg) == 40);
  write_ndjson(dir.file("in.ndjson"), 100);
  auto fixed = relay_cli({"import", "--db", db, "--chunk", "20", dir.file("in.ndjson").string()});
  CHECK_MESSAGE(fixed.exit_code == 0, fixed.err);
  CHECK(fixed.out.find("imported 60 rows, skipped 40") == 0);
  CHECK(pg_count(pg) == 100);
}

TEST_CASE("an import on a URI killed mid-way imports nothing, and run again imports every line once") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  const int n = 40000;
  write_ndjson(dir.file("big.ndjson"), n);
  auto import = Process::start({relay_binary(), "import", "--db", db, dir.file("big.ndjson").string()});
  // Killed once its one transaction has written rows (the server gave it a transaction id),
  // however fast or slow the machine is.
  for (int i = 0; i < 1200 && import.running(); ++i) {
    if (pg_count(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                     "AND pid <> pg_backend_pid()") > 0) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  import.kill(SIGKILL);
  import.wait(10s);
  const auto after_kill = pg_count(pg);
  CHECK((after_kill == 0 || after_kill == n));  // one transaction: all or nothing
  auto again = relay_cli({"import", "--db", db, dir.file("big.ndjson").string()});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(pg_count(pg) == n);
  CHECK(pg_count(pg, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  if (after_kill == n) MESSAGE("the import finished before it could be killed; the crash was not exercised");
}

TEST_CASE("a chunked import on a URI killed mid-way keeps whole chunks, and re-running it finishes without duplicates") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  const int n = 40000;
  write_ndjson(dir.file("big.ndjson"), n);
  auto import = Process::start({relay_binary(), "import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string()});
  auto committed = wait_for_pg_count(pg, 4000, 60s);
  import.kill(SIGKILL);
  import.wait(10s);
  const auto after_kill = pg_count(pg);
  CHECK(committed >= 4000);
  CHECK(after_kill % 2000 == 0);  // whole chunks only
  CHECK(after_kill < n);
  auto again = relay_cli({"import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string(), "--json"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  auto j = json_of(again);
  CHECK(j["skipped_duplicates"] == after_kill);
  CHECK(j["inserted"] == n - after_kill);
  CHECK(pg_count(pg) == n);
  CHECK(pg_count(pg, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  // Rows arrive in file order.
  CHECK(pg_count(pg, "SELECT count(*) FROM (SELECT dedup_key, row_number() OVER (ORDER BY id) AS n FROM metrix_outbox) "
                     "r WHERE dedup_key <> 'key-' || n") == 0);
}

TEST_CASE("an import on a URI counts a key repeated in the file as skipped, line for line as an import into SQLite") {
  PgServer pg;
  auto uri = migrated(pg);
  TempDir dir;
  make_outbox(dir.db(), 0);
  {
    // Repeats within a batch, across batches of the reader (1,000 lines) and across chunks, and
    // a bad line whose key came earlier in the file (skipped, not reported).
    std::ofstream out(dir.file("repeats.ndjson"));
    for (int i = 1; i <= 2600; ++i) {
      if (i % 500 == 0) out << import_line(i, "key-" + std::to_string(i - 499)) << "\n";
      else if (i == 7) out << import_line(i, "key-5") << "\n";
      else if (i == 2222) out << R"({"payload":{"metrixUserId":"","eventSlug":"s","oaid":"o"},"dedup_key":"key-3"})" << "\n";
      else out << import_line(i, "key-" + std::to_string(i)) << "\n";
    }
  }
  // All or nothing, then (into fresh outboxes) a transaction per 700 lines, then the same again.
  pg.create_database("chunked");
  make_outbox(dir.file("chunked.db").string(), 0);
  REQUIRE(relay_cli({"migrate", "--db", pg.uri("chunked")}).exit_code == 0);
  struct Run {
    std::string sqlite, pg, chunk;
    int inserted;
  };
  for (const Run& run : {Run{dir.db(), uri, "0", 2593}, Run{dir.file("chunked.db").string(), pg.uri("chunked"), "700", 2593},
                         Run{dir.file("chunked.db").string(), pg.uri("chunked"), "700", 0}}) {
    CAPTURE(run.chunk);
    CAPTURE(run.inserted);
    auto with = [&](const std::string& db) {
      std::vector<std::string> argv = {"import", "--db", db, "--json", dir.file("repeats.ndjson").string()};
      if (run.chunk != "0") argv.insert(argv.end(), {"--chunk", run.chunk});
      auto r = relay_cli(argv);
      CHECK_MESSAGE(r.exit_code == 0, r.err);
      auto j = json_of(r);
      j.erase("seconds");
      return j;
    };
    auto on_sqlite = with(run.sqlite);
    auto on_pg = with(run.pg);
    CHECK(on_pg == on_sqlite);
    CHECK(on_pg["inserted"] == run.inserted);
    CHECK(on_pg["skipped_duplicates"] == 2600 - run.inserted);
  }
  CHECK(pg_count(pg) == 2593);
  CHECK(pg_count(pg) == scalar(dir.db(), "SELECT count(*) FROM metrix_outbox"));
  // The first line with a key is the one kept, in file order on both.
  CHECK(pg.psql("SELECT string_agg(dedup_key || ':' || (payload::json->>'metrixUserId'), ',' ORDER BY id) FROM "
                "metrix_outbox WHERE dedup_key IN ('key-1', 'key-5', 'key-501')") ==
        "key-1:user-1,key-5:user-5,key-501:user-501\n");
}

TEST_CASE("an import on a URI stores tabs, backslashes and newlines of payloads and keys byte for byte, and skips them again") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  // A tab between the payload's tokens, escapes inside its strings (a backslash, a newline, a
  // tab), and a dedup key that holds a real tab, backslash, newline and carriage return.
  const std::string payload = "{\"metrixUserId\":\"u\\\\1\\n\\t\",\t\"eventSlug\":\"taqsq\",\"oaid\":\"o-\\\\N\"}";
  std::ofstream(dir.file("in.ndjson")) << payload << "\n"
                                       << R"({"payload":{"metrixUserId":"u","eventSlug":"taqsq","oaid":"o"},)"
                                       << R"("dedup_key":"a\tb\\c\nd\r\\N","app_id":"x\\y"})" << "\n";
  for (int run = 0; run < 2; ++run) {
    CAPTURE(run);
    auto r = relay_cli({"import", "--db", db, dir.file("in.ndjson").string()});
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find(run == 0 ? "imported 2 rows, skipped 0" : "imported 1 rows, skipped 1") == 0);
  }
  CHECK(pg.psql("SELECT payload FROM metrix_outbox WHERE dedup_key IS NULL ORDER BY id LIMIT 1") == payload + "\n");
  CHECK(pg_count(pg, "SELECT count(*) FROM metrix_outbox WHERE dedup_key = E'a\\tb\\\\c\\nd\\r\\\\N' "
                     "AND app_id = E'x\\\\y'") == 1);
  CHECK(pg_count(pg) == 3);  // the bare payload, without a key, went in twice
}

TEST_CASE("an import on a URI looks up non-ASCII dedup keys whatever client encoding the environment asks for") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  std::ofstream(dir.file("in.ndjson")) << R"({"payload":{"metrixUserId":"u","eventSlug":"taqsq","oaid":"o"},)"
                                       << R"("dedup_key":"سفارش-۱"})" << "\n";
  // The checking threads' own connections once took PGCLIENTENCODING from the environment and
  // failed on these UTF-8 bytes ("invalid byte sequence for encoding SJIS").
  for (int run = 0; run < 2; ++run) {
    CAPTURE(run);
    auto r = metrix::test::run({relay_binary(), "import", "--db", db, dir.file("in.ndjson").string()}, {},
                               {{"PGCLIENTENCODING", "SJIS"}});
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find(run == 0 ? "imported 1 rows, skipped 0" : "imported 0 rows, skipped 1") == 0);
  }
  CHECK(pg_count(pg, "SELECT count(*) FROM metrix_outbox WHERE dedup_key = 'سفارش-۱'") == 1);
}

TEST_CASE("an import on a URI killed in its chunks, then killed again in its re-run, ends with every line once") {
  PgServer pg;
  auto db = migrated(pg);
  TempDir dir;
  const int n = 40000;
  write_ndjson(dir.file("big.ndjson"), n);
  auto first = Process::start({relay_binary(), "import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string()});
  wait_for_pg_count(pg, 4000, 60s);
  first.kill(SIGKILL);
  first.wait(10s);
  const auto after_first = pg_count(pg);
  CHECK(after_first % 2000 == 0);
  // The re-run, all or nothing, skips the lines already there and is killed once its one
  // transaction has written rows.
  auto second = Process::start({relay_binary(), "import", "--db", db, dir.file("big.ndjson").string()});
  for (int i = 0; i < 1200 && second.running(); ++i) {
    if (pg_count(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                     "AND pid <> pg_backend_pid()") > 0) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  second.kill(SIGKILL);
  second.wait(10s);
  const auto after_second = pg_count(pg);
  CHECK((after_second == after_first || after_second == n));
  auto last = relay_cli({"import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string(), "--json"});
  CHECK_MESSAGE(last.exit_code == 0, last.err);
  auto j = json_of(last);
  CHECK(j["skipped_duplicates"] == after_second);
  CHECK(j["inserted"] == n - after_second);
  CHECK(pg_count(pg) == n);
  CHECK(pg_count(pg, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  // Nothing of the killed sessions is left behind: no transaction open, no staging table.
  CHECK(pg_count(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()") ==
        0);
  if (after_first == n || after_second == n) MESSAGE("an import finished before it could be killed");
}

TEST_CASE("a password in the URI appears in no output of enqueue or import") {
  PgServer pg;
  migrated(pg);
  pg.psql("ALTER ROLE metrix PASSWORD 'hunter2-secret'");
  const std::string base = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port());
  TempDir dir;
  write_ndjson(dir.file("in.ndjson"), 10);
  std::ofstream(dir.file("bad.ndjson")) << "not json\n";
  std::vector<RunResult> runs = {
      relay_cli({"enqueue", "--db", base + "/postgres", "--json", kValid}),
      relay_cli({"enqueue", "--db", base + "/postgres", "--json", "{}"}),
      relay_cli({"enqueue", "--db", base + "/nosuchdb", "--json", kValid}),
      relay_cli({"import", "--db", base + "/postgres", dir.file("in.ndjson").string()}),
      relay_cli({"import", "--db", base + "/postgres", dir.file("bad.ndjson").string(), "--json"}),
      relay_cli({"import", "--db", base + "/nosuchdb", dir.file("in.ndjson").string()}),
      relay_cli({"enqueue", "--db", base + "/postgres?password=hunter2-secret", "--json", kValid}),
  };
  CHECK(runs[0].exit_code == 0);
  CHECK(runs[1].exit_code == 2);
  CHECK(runs[2].exit_code == 1);
  CHECK(runs[2].err.find("postgresql://metrix:***@") != std::string::npos);
  CHECK(runs[3].exit_code == 0);
  CHECK(runs[4].exit_code == 2);
  CHECK(runs[5].exit_code == 1);
  for (const auto& r : runs) {
    CHECK(r.out.find("hunter2") == std::string::npos);
    CHECK(r.err.find("hunter2") == std::string::npos);
  }
}

TEST_CASE("the operator commands on a URI never print the password") {
  PgServer pg;
  migrated(pg);
  const std::string uri = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  for (std::vector<std::string> args : {std::vector<std::string>{"status"}, {"status", "--json"}, {"list"},
                                        {"show", "1"}, {"report"},
                                        {"requeue", "--id", "1"}, {"purge", "--older-than", "30d"}}) {
    args.insert(args.begin() + 1, {"--db", uri});
    auto r = relay_cli(args);
    INFO(args[0] << ": " << r.out << r.err);
    CHECK(r.exit_code == (args[0] == "show" ? 1 : 0));
    CHECK(r.out.find("hunter2") == std::string::npos);
    CHECK(r.err.find("hunter2") == std::string::npos);
  }
  CHECK(relay_cli({"status", "--db", uri}).out.starts_with("outbox postgresql://metrix:***@127.0.0.1:"));
}
