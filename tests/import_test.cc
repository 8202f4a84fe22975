// import_ndjson in this process, on a real outbox file: what it leaves on the caller's
// connection, and how it reports SQLite failing under it (out of memory, a full disk, a
// lock held too long) -- as an error of the import, never as a bad line.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "storage/import.h"
#include "tests/operator_fixture.h"

using namespace metrix;
using namespace metrix::test;

namespace {

const std::string kNoDevice = R"({"metrixUserId":"u","eventSlug":"s"})";
const std::string kNoDeviceRule =
    "idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
    "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)";

// Reads `lines` one after the other; with `fail_after`, fails as a broken input would once
// that many lines were read.
LineReader reader_of(const std::vector<std::string>& lines, std::int64_t fail_after = -1) {
  auto next = std::make_shared<size_t>(0);
  return [&lines, next, fail_after](std::string& line) -> Result<bool> {
    if (fail_after >= 0 && static_cast<std::int64_t>(*next) == fail_after) {
      return Error{Errc::io, "reading the input: gone"};
    }
    if (*next == lines.size()) return false;
    line = lines[(*next)++];
    return true;
  };
}

// Lines 1..n, each a good event with the dedup key "key-<i>" (none when `keys` is false).
std::vector<std::string> good_lines(int n, bool keys = true) {
  std::vector<std::string> lines;
  for (int i = 1; i <= n; ++i) lines.push_back(import_line(i, keys ? "key-" + std::to_string(i) : ""));
  return lines;
}

std::int64_t cache_size(Database& db) {
  auto s = db.prepare("PRAGMA cache_size");
  REQUIRE(s);
  REQUIRE(s->step());
  return s->int64(0);
}

bool triggers_enabled(Database& db) {
  int enabled = -1;
  REQUIRE(sqlite3_db_config(db.handle(), SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &enabled) == SQLITE_OK);
  return enabled == 1;
}

// SQLite's allocations fail beyond `bytes` in all, in this whole process, until destroyed.
class HeapLimit {
 public:
  explicit HeapLimit(std::int64_t bytes) { sqlite3_hard_heap_limit64(bytes); }
  ~HeapLimit() { sqlite3_hard_heap_limit64(0); }
  HeapLimit(const HeapLimit&) = delete;
  HeapLimit& operator=(const HeapLimit&) = delete;
};

std::string problems_of(const ImportReport& report) {
  std::string text;
  for (const auto& p : report.problems) text += "line " + std::to_string(p.line) + ": " + p.message + "\n";
  return text;
}

}  // namespace

TEST_CASE("an import leaves the caller's page cache size and triggers as it found them, whatever the outcome") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  REQUIRE(db->exec("PRAGMA cache_size = 321"));
  auto bad = good_lines(30);
  bad[11] = kNoDevice;

  auto imported = import_ndjson(*db, reader_of(good_lines(20)), {});
  REQUIRE(imported);
  CHECK(imported->inserted == 20);
  CHECK(cache_size(*db) == 321);
  CHECK(triggers_enabled(*db));

  auto refused = import_ndjson(*db, reader_of(bad), {});
  REQUIRE(refused);
  CHECK(problems_of(*refused) == "line 12: " + kNoDeviceRule + "\n");
  CHECK(cache_size(*db) == 321);
  CHECK(triggers_enabled(*db));

  auto chunked = import_ndjson(*db, reader_of(bad), {.chunk_lines = 5});
  REQUIRE(chunked);
  CHECK(chunked->committed_lines == 10);
  CHECK(cache_size(*db) == 321);
  CHECK(triggers_enabled(*db));

  const auto lines = good_lines(3000);
  auto broken_input = import_ndjson(*db, reader_of(lines, 2500), {});
  REQUIRE_FALSE(broken_input);
  CHECK(broken_input.error().message == "reading the input: gone");
  CHECK(cache_size(*db) == 321);
  CHECK(triggers_enabled(*db));

  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 20);
}

TEST_CASE("an import on a connection whose triggers are off leaves them off, and still refuses a bad line") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  REQUIRE(sqlite3_db_config(db->handle(), SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr) == SQLITE_OK);
  auto bad = good_lines(30);
  bad[11] = kNoDevice;
  auto refused = import_ndjson(*db, reader_of(bad), {});
  REQUIRE(refused);
  CHECK(problems_of(*refused) == "line 12: " + kNoDeviceRule + "\n");
  CHECK_FALSE(triggers_enabled(*db));
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 0);
}

TEST_CASE("SQLite running out of memory mid-import is an error of the import, never a bad line") {
  // Line 1 is bad and the 2,000 after it are good, so nothing is written and every later line
  // is still judged: by the checking threads, or -- with a trigger this build does not know
  // -- by the writer itself. A hard heap limit makes SQLite's allocations fail wherever the
  // import is when it runs out; however far it got, the report may only ever name line 1.
  for (bool extra_trigger : {false, true}) {
    CAPTURE(extra_trigger);
    TempDir dir;
    make_outbox(dir.db(), 0);
    if (extra_trigger) exec(dir.db(), "CREATE TRIGGER app_extra AFTER INSERT ON metrix_outbox BEGIN SELECT 1; END;");
    std::vector<std::string> lines = {kNoDevice};
    for (const auto& line : good_lines(2000, false)) lines.push_back(line);
    auto db = Database::open(dir.db());
    REQUIRE(db);
    int failed = 0, finished = 0;
    for (std::int64_t headroom = 4096; headroom <= (std::int64_t{64} << 20); headroom *= 2) {
      CAPTURE(headroom);
      auto report = [&] {
        HeapLimit limit(sqlite3_memory_used() + headroom);
        return import_ndjson(*db, reader_of(lines), {.validators = 2, .batch_lines = 500});
      }();
      if (!report) {
        ++failed;
        CHECK(report.error().code != Errc::invalid_event);
        CHECK(report.error().message.find("out of memory") != std::string::npos);
        continue;
      }
      ++finished;
      CHECK(problems_of(*report) == "line 1: " + kNoDeviceRule + "\n");
      CHECK(report->inserted == 0);
    }
    CHECK(failed > 0);    // the limit did bite (SQLite counts its memory in this process)
    CHECK(finished > 0);  // and with room enough, the import judged every line
    CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 0);
    CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
  }
}

TEST_CASE("a full disk mid-import is an error of the import; whole chunks stay, and the same import finishes later") {
  // What a full disk looks like to a process: a file size limit (RLIMIT_FSIZE) that the
  // write-ahead log reaches part-way through the import.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction previous {};
  REQUIRE(sigaction(SIGXFSZ, &ignore, &previous) == 0);
  rlimit unlimited{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &unlimited) == 0);
  const auto lines = good_lines(20000);
  for (std::int64_t chunk : {std::int64_t{0}, std::int64_t{1000}}) {
    CAPTURE(chunk);
    TempDir dir;
    make_outbox(dir.db(), 0);
    {
      auto db = Database::open(dir.db());
      REQUIRE(db);
      rlimit limited = unlimited;
      limited.rlim_cur = 1 << 20;
      REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
      auto report = import_ndjson(*db, reader_of(lines), {.chunk_lines = chunk});
      REQUIRE(setrlimit(RLIMIT_FSIZE, &unlimited) == 0);
      REQUIRE_FALSE(report);
      CHECK_MESSAGE(report.error().code == Errc::io, report.error().message);
      CHECK_MESSAGE(report.error().message.find("the disk may be full") != std::string::npos, report.error().message);
    }
    const auto kept = scalar(dir.db(), "SELECT count(*) FROM metrix_outbox");
    CHECK(kept < 20000);
    CHECK(kept % (chunk > 0 ? chunk : 20000) == 0);
    CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
    auto db = Database::open(dir.db());
    REQUIRE(db);
    auto again = import_ndjson(*db, reader_of(lines), {.chunk_lines = chunk});
    REQUIRE_MESSAGE(again.ok(), (again ? std::string() : again.error().message));
    CHECK(again->problems.empty());
    CHECK(again->skipped == kept);
    CHECK(again->inserted == 20000 - kept);
  }
  REQUIRE(sigaction(SIGXFSZ, &previous, nullptr) == 0);
}

TEST_CASE("a database locked past the busy timeout is an error of the import, not a bad line") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  auto holder = Database::open(dir.db());
  REQUIRE(holder);
  REQUIRE(holder->exec("BEGIN IMMEDIATE"));
  auto db = Database::open(dir.db(), {.busy_timeout_ms = 50});
  REQUIRE(db);
  auto report = import_ndjson(*db, reader_of(good_lines(10)), {});
  REQUIRE_FALSE(report);
  CHECK_MESSAGE(report.error().code == Errc::busy, report.error().message);
  REQUIRE(holder->exec("ROLLBACK"));
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 0);
}
