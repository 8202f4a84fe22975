// metrix-relay import, through the built binary, on real files: atomic batches, every bad
// line reported, re-runs that add nothing twice, and a real SIGKILL in the middle.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "storage/event.h"

#include "tests/operator_fixture.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

std::string migrated(const TempDir& dir) {
  make_outbox(dir.db(), 0);
  return dir.db();
}

std::int64_t row_count(const std::string& db) { return scalar(db, "SELECT count(*) FROM metrix_outbox"); }

}  // namespace

TEST_CASE("an import stores bare payloads byte for byte and wrapper lines with their dedup key and app") {
  TempDir dir;
  auto db = migrated(dir);
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
  CHECK(rows(db, "SELECT payload, dedup_key, app_id, status FROM metrix_outbox ORDER BY id") ==
        std::vector<std::vector<std::string>>{
            {bare, "NULL", "NULL", "pending"},
            {R"({"metrixUserId":"u-2","eventSlug":"buy","idfa":"i-2"})", "order-2", "app-9", "pending"},
            {R"({"metrixUserId":"u-3","eventSlug":"buy","idfa":"i-3"})", "NULL", "NULL", "pending"}});
}

TEST_CASE("a broken batch imports nothing and reports every bad line with its number and rule") {
  TempDir dir;
  auto db = migrated(dir);
  {
    std::ofstream out(dir.file("broken.ndjson"));
    for (int i = 1; i <= 2500; ++i) {
      if (i == 7) out << R"({"metrixUserId":"u","eventSlug":"s"})" << "\n";
      else if (i == 1200) out << "not json at all\n";
      else if (i == 1900) out << R"({"payload":{"metrixUserId":"u","eventSlug":"s","oaid":"o"},"dedup_key":42})" << "\n";
      else if (i == 2001) out << R"({"payload":{"metrixUserId":"u","eventSlug":"s","oaid":"o"},"colour":"red"})" << "\n";
      else if (i == 2500)
        out << R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":1}})"
            << "\n";
      else out << import_line(i, "key-" + std::to_string(i)) << "\n";
    }
  }
  auto r = relay_cli({"import", "--db", db, dir.file("broken.ndjson").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.out.find("nothing imported: 5 bad lines") == 0);
  CHECK(r.err ==
        "line 7: idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
        "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)\n"
        "line 1200: payload: must be valid JSON text\n"
        "line 1900: dedup_key: must be a string (or null) in an import line\n"
        "line 2001: colour: unknown key in an import line; a line is a payload, or {\"payload\": {...}, "
        "\"dedup_key\": \"...\", \"app_id\": \"...\"}\n"
        "line 2500: customAttributes._currency: must be one of IRR, USD, EUR\n");
  CHECK(row_count(db) == 0);
  // The lock was given back: the database takes writes, and nothing was left behind.
  CHECK(relay_cli({"enqueue", "--db", db, "--json", valid_payload(1)}).exit_code == 0);
  CHECK(text(db, "PRAGMA integrity_check") == "ok");
}

TEST_CASE("importing the same file twice adds nothing the second time and counts what it skipped") {
  TempDir dir;
  auto db = migrated(dir);
  write_ndjson(dir.file("batch.ndjson"), 3000);
  auto first = relay_cli({"import", "--db", db, dir.file("batch.ndjson").string(), "--json"});
  CHECK_MESSAGE(first.exit_code == 0, first.err);
  auto j1 = json_of(first);
  CHECK(j1["inserted"] == 3000);
  CHECK(j1["skipped_duplicates"] == 0);
  CHECK(j1["complete"] == true);
  // The fast path: lines checked in parallel by the trigger on private copies of the outbox,
  // and the database's own triggers not run a second time.
  CHECK(j1["checked_in_parallel"] == true);
  auto second = relay_cli({"import", "--db", db, dir.file("batch.ndjson").string(), "--json"});
  CHECK_MESSAGE(second.exit_code == 0, second.err);
  auto j2 = json_of(second);
  CHECK(j2["inserted"] == 0);
  CHECK(j2["skipped_duplicates"] == 3000);
  CHECK(row_count(db) == 3000);
  CHECK(scalar(db, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == 3000);
}

TEST_CASE("lines without a dedup key are inserted again on every run, as documented") {
  TempDir dir;
  auto db = migrated(dir);
  std::ofstream(dir.file("keyless.ndjson")) << import_line(1) << "\n" << import_line(2, "k-2") << "\n";
  CHECK(relay_cli({"import", "--db", db, dir.file("keyless.ndjson").string()}).exit_code == 0);
  auto again = relay_cli({"import", "--db", db, dir.file("keyless.ndjson").string()});
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("imported 1 rows, skipped 1 already in the outbox") == 0);
  CHECK(row_count(db) == 3);
}

TEST_CASE("an import killed mid-way imports nothing, and the same import run again imports every line once") {
  TempDir dir;
  auto db = migrated(dir);
  const int n = 40000;
  write_ndjson(dir.file("big.ndjson"), n);
  auto import = Process::start({relay_binary(), "import", "--db", db, dir.file("big.ndjson").string()});
  // Kill it once it is visibly at work (progress is only printed every few seconds when
  // stderr is not a terminal, so wait on the clock).
  std::this_thread::sleep_for(700ms);
  import.kill(SIGKILL);
  import.wait(10s);
  // One transaction: all or nothing. All, when the kill came after the commit (the process
  // may still be running then, printing its summary).
  const auto after_kill = row_count(db);
  CHECK((after_kill == 0 || after_kill == n));
  const bool killed_mid_way = after_kill == 0;
  auto again = relay_cli({"import", "--db", db, dir.file("big.ndjson").string()});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(row_count(db) == n);
  CHECK(scalar(db, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  CHECK(text(db, "PRAGMA integrity_check") == "ok");
  if (!killed_mid_way) MESSAGE("the import finished before it could be killed; the crash was not exercised");
}

TEST_CASE("a chunked import killed mid-way keeps its committed chunks, and re-running it finishes without duplicates") {
  TempDir dir;
  auto db = migrated(dir);
  const int n = 40000;
  write_ndjson(dir.file("big.ndjson"), n);
  auto import = Process::start({relay_binary(), "import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string()});
  auto committed = wait_for_count(db, "SELECT count(*) FROM metrix_outbox", 4000, 60s);
  import.kill(SIGKILL);
  import.wait(10s);
  auto after_kill = row_count(db);
  CHECK(committed >= 4000);
  CHECK(after_kill % 2000 == 0);  // whole chunks only
  CHECK(after_kill < n);
  auto again = relay_cli({"import", "--db", db, "--chunk", "2000", dir.file("big.ndjson").string(), "--json"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  auto j = json_of(again);
  CHECK(j["skipped_duplicates"] == after_kill);
  CHECK(j["inserted"] == n - after_kill);
  CHECK(row_count(db) == n);
  CHECK(scalar(db, "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  // Rows arrive in file order: ids and keys agree.
  CHECK(scalar(db, "SELECT count(*) FROM metrix_outbox WHERE dedup_key <> 'key-' || id") == 0);
  CHECK(text(db, "PRAGMA integrity_check") == "ok");
}

TEST_CASE("a chunked import stops at the first chunk with a bad line and keeps the chunks before it") {
  TempDir dir;
  auto db = migrated(dir);
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
  CHECK(row_count(db) == 40);
  // Fixed, the same file finishes the job.
  {
    std::ofstream out(dir.file("in.ndjson"));
    for (int i = 1; i <= 100; ++i) out << import_line(i, "key-" + std::to_string(i)) << "\n";
  }
  auto fixed = relay_cli({"import", "--db", db, "--chunk", "20", dir.file("in.ndjson").string()});
  CHECK_MESSAGE(fixed.exit_code == 0, fixed.err);
  CHECK(fixed.out.find("imported 60 rows, skipped 40") == 0);
  CHECK(row_count(db) == 100);
}

TEST_CASE("import reads standard input and prints plain progress lines when stderr is not a terminal") {
  TempDir dir;
  auto db = migrated(dir);
  std::string input;
  for (int i = 1; i <= 500; ++i) input += import_line(i, "key-" + std::to_string(i)) + "\n";
  auto r = relay_cli({"import", "--db", db, "-"}, input);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.find("imported 500 rows") == 0);
  CHECK(r.err.find('\r') == std::string::npos);  // no bar redrawn in place in a log
  CHECK(row_count(db) == 500);
}

TEST_CASE("a trigger someone added to the outbox still runs for imported rows") {
  TempDir dir;
  auto db = migrated(dir);
  exec(db,
       "CREATE TABLE audit_copy (outbox_id INTEGER);"
       "CREATE TRIGGER app_copy AFTER INSERT ON metrix_outbox BEGIN INSERT INTO audit_copy VALUES (NEW.id); END;");
  write_ndjson(dir.file("in.ndjson"), 300);
  auto r = relay_cli({"import", "--db", db, dir.file("in.ndjson").string(), "--json"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(json_of(r)["checked_in_parallel"] == false);
  CHECK(scalar(db, "SELECT count(*) FROM audit_copy") == 300);
  std::ofstream(dir.file("bad.ndjson")) << import_line(1, "new-1") << "\n" << R"({"metrixUserId":"u","eventSlug":"s"})" << "\n";
  auto bad = relay_cli({"import", "--db", db, dir.file("bad.ndjson").string()});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("line 2: idfa/advertisingId/oaid: exactly one is required") == 0);
  CHECK(row_count(db) == 300);
}

TEST_CASE("import refuses a missing file, a directory and a database that is not an outbox") {
  TempDir dir;
  auto db = migrated(dir);
  auto missing = relay_cli({"import", "--db", db, dir.file("nope.ndjson").string()});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("nope.ndjson: No such file or directory") != std::string::npos);
  // Before: "reading the input: Is a directory", exit 1, without the path.
  auto folder = relay_cli({"import", "--db", db, dir.path().string()});
  CHECK(folder.exit_code == 2);
  CHECK(folder.err.find(dir.path().string() + ": is a directory, not a file of events") != std::string::npos);
  std::ofstream(dir.file("in.ndjson")) << import_line(1) << "\n";
  { std::ofstream(dir.file("plain.db")) << "not a database"; }
  auto not_db = relay_cli({"import", "--db", dir.file("plain.db").string(), dir.file("in.ndjson").string()});
  CHECK(not_db.exit_code == 1);
  CHECK(not_db.err.find("not an SQLite database") != std::string::npos);
}

TEST_CASE("import judges every line exactly as the database's own trigger does") {
  // Import checks lines in batches on threads of its own; this compares its verdict on each
  // line with the trigger's (validate_payload runs the trigger) over hand-made edge cases and
  // seeded random mutations of a valid event.
  TempDir dir;
  auto db = migrated(dir);
  std::vector<std::string> payloads = {
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":"::"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":"1:2:3:4:5:6:7:8"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":"1:2:3:4:5:6:7:8:9"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":"fe80::1%eth0"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":"255.255.255.255"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","deviceIp":" 1.2.3.4"})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customMetrics":{"x":1e400}})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customMetrics":{"_revenue":-0.0},"customAttributes":{"_currency":"EUR"}})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","eventTime":4102444800001})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","eventTime":"1700000000000"})",
      R"({"metrixUserId":"u\u0000","eventSlug":"s","oaid":"o"})",
      R"({"metrixUserId":"ü","eventSlug":"s","oaid":"o","customAttributes":{"k":"\u00e9"}})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"a":{"b":"c"}}})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"x":"1","x":"2"}})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","customAttributes":{"\u0061":"1"}})",
      R"({"metrixUserId":"u","eventSlug":"s","advertisingId":null})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o","metrixSessionId":null})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o",})",
      R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"} trailing)",
      R"([{"metrixUserId":"u","eventSlug":"s","oaid":"o"}])",
      R"(null)",
      R"(17)",
  };
  std::mt19937 rng(20261126);
  const std::vector<std::string> keys = {"metrixUserId", "metrixSessionId", "idfa",      "advertisingId", "oaid",
                                         "customAttributes", "customMetrics", "deviceIp", "eventSlug",    "eventTime",
                                         "extra"};
  const std::vector<std::string> values = {"\"v\"", "\"\"", "7", "1.5", "1700000000000", "null", "true", "[]", "{}",
                                           R"({"_currency":"IRR"})", R"({"_revenue":3})", R"({"k":"v"})",
                                           "\"10.1.2.3\"", "\"::1\"", "\"GBP\""};
  for (int i = 0; i < 300; ++i) {
    nlohmann::ordered_json event = nlohmann::ordered_json::parse(R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})");
    for (int m = 0, n = 1 + static_cast<int>(rng() % 3); m < n; ++m) {
      const std::string& key = keys[rng() % keys.size()];
      if (rng() % 4 == 0) event.erase(key);
      else event[key] = nlohmann::ordered_json::parse(values[rng() % values.size()]);
    }
    payloads.push_back(event.dump());
  }
  {
    std::ofstream out(dir.file("cases.ndjson"));
    for (const auto& p : payloads) out << p << "\n";
  }
  auto r = relay_cli({"import", "--db", db, dir.file("cases.ndjson").string()});
  std::map<std::int64_t, std::string> reported;
  std::istringstream err(r.err);
  for (std::string line; std::getline(err, line);) {
    auto colon = line.find(": ");
    REQUIRE(line.rfind("line ", 0) == 0);
    reported[std::stoll(line.substr(5, colon - 5))] = line.substr(colon + 2);
  }
  int bad = 0;
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto violation = metrix::validate_payload(payloads[i]).value();
    auto it = reported.find(static_cast<std::int64_t>(i + 1));
    INFO("line " << i + 1 << ": " << payloads[i]);
    if (violation) {
      ++bad;
      REQUIRE(it != reported.end());
      CHECK(it->second == violation->message());
    } else {
      CHECK(it == reported.end());
    }
  }
  CHECK(static_cast<int>(reported.size()) == bad);
  CHECK(bad > 100);  // the mutations do break rules
  CHECK(r.exit_code == 2);
}
