// requeue and purge on a postgresql:// URI, through the built binary: the same rows in an SQLite
// outbox and a PostgreSQL one, the same commands on both, and the same output, exit codes and
// resulting rows; then what only a server shows (a purge killed mid-way, a row claimed while
// requeue waits for its lock).
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>

#include <cctype>

#include "storage/postgres/connection.h"
#include "tests/operator_fixture.h"
#include "tests/pg_outbox_fixture.h"
#include "tests/same_rows_fixture.h"

using namespace metrix;
using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kDay = 86'400'000;

struct RowSpec {
  const char* app;  // nullptr: the default app
  const char* slug;
  const char* status;
  int age_days;       // created_at is now minus this
  int attempts;       // attempt rows, and the attempts column
  const char* error;  // last_error, or nullptr
};

// Every status, old and new, two apps and the default one, two slugs and two errors.
const std::vector<RowSpec> kRows = {
    {nullptr, "taqsq", "sent", 90, 1, nullptr},       {"app1", "taqsq", "sent", 60, 2, nullptr},
    {"app1", "purchase", "failed", 50, 1, "EVENT_TYPE_DOES_NOT_EXIST"},
    {"app2", "purchase", "failed", 40, 2, "EVENT_TYPE_DOES_NOT_EXIST"},
    {"app2", "taqsq", "failed", 35, 1, "INVALID_ADVERTISING_ID"},
    {"app1", "taqsq", "dead", 45, 5, "http 500"},       {"app2", "purchase", "dead", 5, 5, "http 500"},
    {nullptr, "taqsq", "held", 70, 0, "app paused"},    {"app1", "taqsq", "pending", 80, 2, "http 503"},
    {"app2", "taqsq", "sending", 75, 1, nullptr},      {nullptr, "purchase", "failed", 3, 1, "EVENT_TYPE_DOES_NOT_EXIST"},
    {"app1", "taqsq", "sent", 2, 1, nullptr},          {nullptr, "taqsq", "pending", 1, 0, nullptr},
    {"app2", "purchase", "sent", 33, 3, nullptr},     {"app1", "purchase", "held", 31, 0, "app paused"},
    {nullptr, "taqsq", "dead", 95, 2, "stale"},
};

std::string quoted(const char* text) { return text ? "'" + std::string(text) + "'" : "NULL"; }

// The statements that write kRows (ids 1..n, in order) into a fresh outbox: an INSERT as a
// producer makes it, then what the relay would have written. Plain SQL both databases read.
std::string fixture_sql(std::int64_t now) {
  std::string sql;
  for (size_t i = 0; i < kRows.size(); ++i) {
    const auto& r = kRows[i];
    const std::int64_t id = static_cast<std::int64_t>(i) + 1;
    const std::int64_t created = now - r.age_days * kDay;
    sql += "INSERT INTO metrix_outbox (app_id, payload, created_at, next_attempt_at) VALUES (" + quoted(r.app) + ", '" +
           valid_payload(static_cast<int>(id), r.slug) + "', " + std::to_string(created) + ", " +
           std::to_string(created) + ");\n";
    const bool sent = std::string(r.status) == "sent";
    sql += "UPDATE metrix_outbox SET status = '" + std::string(r.status) + "', attempts = " +
           std::to_string(r.attempts) + ", last_error = " + quoted(r.error) + ", lease_expiries = " +
           std::to_string(id % 3) + ", sent_at = " + (sent ? std::to_string(created + kDay) : "NULL") +
           " WHERE id = " + std::to_string(id) + ";\n";
    for (int a = 1; a <= r.attempts; ++a) {
      sql += "INSERT INTO metrix_outbox_attempt (outbox_id, attempt, started_at, finished_at, http_status, error) "
             "VALUES (" + std::to_string(id) + ", " + std::to_string(a) + ", " + std::to_string(created + a) + ", " +
             std::to_string(created + a + 5) + ", 500, 'attempt " + std::to_string(a) + "');\n";
    }
  }
  return sql;
}

// Every row as the commands leave it, the same SQL on both: a next_attempt_at at or after
// `since` (written by requeue's clock) reads -7.
std::string rows_sql(std::int64_t since) {
  return "SELECT id || '|' || coalesce(app_id, '-') || '|' || status || '|' || attempts || '|' || "
         "(CASE WHEN next_attempt_at >= " + std::to_string(since) + " THEN -7 ELSE next_attempt_at END) || '|' || "
         "lease_expiries || '|' || coalesce(last_error, '-') || '|' || coalesce(sent_at, -1) || '|' || "
         "(SELECT count(*) FROM metrix_outbox_attempt a WHERE a.outbox_id = o.id) FROM metrix_outbox o ORDER BY id";
}
const std::string kAttemptsSql = "SELECT 'attempts ' || count(*) FROM metrix_outbox_attempt";

std::string sqlite_lines(const std::string& path, const std::string& sql) {
  std::string out;
  for (const auto& row : rows(path, sql)) out += row.at(0) + "\n";
  return out;
}

// Two outboxes holding kRows: an SQLite file and a PostgreSQL database.
struct Twins : SameRows {
  Twins() : SameRows([](std::int64_t now) { return std::vector<std::string>{fixture_sql(now)}; }) {
    REQUIRE(sqlite_state() == pg_state());
    REQUIRE(sqlite_state().find("attempts 27") != std::string::npos);
  }
  std::string sqlite_state() const {
    return sqlite_lines(sqlite(), rows_sql(now())) + sqlite_lines(sqlite(), kAttemptsSql);
  }
  std::string pg_state() const { return pg().psql(rows_sql(now())) + pg().psql(kAttemptsSql); }
};

// The cutoff's time in purge's output is each run's own clock: the same text without it, every
// "(YYYY-MM-DDTHH:MM:SSZ)" made "(cutoff)". (Not std::regex: GCC 12 warns inside it under the
// sanitizers.)
std::string without_cutoff(std::string text) {
  const std::string shape = "(dddd-dd-ddTdd:dd:ddZ)";
  auto fits = [&](size_t at) {
    for (size_t i = 0; i < shape.size(); ++i) {
      const char c = text[at + i];
      if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(c)) : c != shape[i]) return false;
    }
    return true;
  };
  for (size_t at = 0; at + shape.size() <= text.size(); ++at) {
    if (fits(at)) text.replace(at, shape.size(), "(cutoff)");
  }
  return text;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n') + 1); }

// Runs `args` with --db of each outbox; both must agree on exit code, stdout and stderr
// (`compare_out` maps stdout first), and leave the same rows.
void same_on_both(Twins& t, std::vector<std::string> args, int exit_code,
                  const std::function<std::string(const std::string&)>& compare_out = nullptr) {
  CAPTURE(args);
  const auto both = t.run(args);
  const RunResult& lite = both.sqlite;
  const RunResult& pg = both.pg;
  CHECK_MESSAGE(lite.exit_code == exit_code, lite.err);
  CHECK_MESSAGE(pg.exit_code == exit_code, pg.err);
  if (compare_out) CHECK(compare_out(pg.out) == compare_out(lite.out));
  else CHECK(pg.out == lite.out);
  CHECK(pg.err == lite.err);
  CHECK(t.pg_state() == t.sqlite_state());
}

}  // namespace

TEST_CASE("requeue on a URI changes the rows SQLite changes, with the same output and exit codes") {
  Twins t;
  same_on_both(t, {"requeue", "2", "8-10"}, 0);  // sent, held and pending, sending: only the held one
  same_on_both(t, {"requeue", "--error", "EVENT_TYPE_DOES_NOT_EXIST", "--slug", "purchase", "--app-id", "app2"}, 0);
  same_on_both(t, {"requeue", "--status", "dead", "--json"}, 0);
  same_on_both(t, {"requeue", "--include-sent", "--app-id", "(default)", "--until", "2030-01-01"}, 0);
  same_on_both(t, {"requeue", "--error", "INVALID_ADVERTISING_ID", "--since", "2000-01-01"}, 0);
  same_on_both(t, {"requeue", "--status", "sent"}, 2);
  same_on_both(t, {"requeue", "--status", "pending,failed"}, 2);
  same_on_both(t, {"requeue", "--status", "sending", "--include-sent"}, 2);
  same_on_both(t, {"requeue"}, 2);
  same_on_both(t, {"requeue", "--include-sent", "1-1000"}, 0);
  CHECK(pg_count_status(t.pg(), "pending") + pg_count_status(t.pg(), "sending") ==
        static_cast<std::int64_t>(kRows.size()));
}

// --dry-run lists the rows, and a requeue that changes nothing counts the selection to say why.
TEST_CASE("requeue --dry-run and a requeue that changes nothing say the same on a URI as on SQLite") {
  Twins t;
  same_on_both(t, {"requeue", "--status", "failed", "--dry-run"}, 0);
  same_on_both(t, {"requeue", "--status", "failed", "--dry-run", "--json", "--limit", "1"}, 0);
  same_on_both(t, {"requeue", "9-10"}, 0);
  same_on_both(t, {"requeue", "500"}, 0);
}

TEST_CASE("purge on a URI deletes the rows and attempts SQLite deletes, says so alike, and refuses the same") {
  Twins t;
  same_on_both(t, {"purge", "--older-than", "30d", "--dry-run"}, 0, without_cutoff);
  same_on_both(t, {"purge", "--older-than", "30d", "--dry-run", "--status", "sent,failed,dead,held", "--json"}, 0,
               [](const std::string& out) {
                 auto j = nlohmann::json::parse(out, nullptr, false);
                 if (j.is_discarded()) return out;
                 j.erase("cutoff");
                 return j.dump();
               });
  same_on_both(t, {"purge", "--older-than", "1d", "--status", "sent,pending"}, 2);
  same_on_both(t, {"purge", "--older-than", "1d", "--status", "sending"}, 2);
  same_on_both(t, {"purge", "--older-than", "soon"}, 2);
  // The space line is each database's own; what was deleted is the same.
  same_on_both(t, {"purge", "--older-than", "30d"}, 0,
               [](const std::string& out) { return without_cutoff(first_line(out)); });
  same_on_both(t, {"purge", "--older-than", "40d", "--status", "failed,dead,held"}, 0,
               [](const std::string& out) { return without_cutoff(first_line(out)); });
  auto again = relay_cli({"purge", "--db", t.uri(), "--older-than", "0ms", "--status", "held"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  const std::string space = again.out.substr(again.out.find('\n') + 1);
  CHECK(space.starts_with("space: vacuumed: the deleted rows' space is reused by new rows; the tables take "));
  CHECK(pg_scalar(t.pg(), "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'metrix_outbox%' "
                        "AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL") == 2);
}

TEST_CASE("a purge of every status it may delete on a URI leaves pending and sending rows and their attempts") {
  Twins t;
  const std::string unfinished =
      "SELECT o.id || ':' || status || ':' || (SELECT count(*) FROM metrix_outbox_attempt a WHERE a.outbox_id = o.id) "
      "FROM metrix_outbox o WHERE status IN ('pending', 'sending') ORDER BY o.id";
  const std::string before = t.pg().psql(unfinished);
  REQUIRE(before == "9:pending:2\n10:sending:1\n13:pending:0\n");
  auto r = relay_cli({"purge", "--db", t.uri(), "--older-than", "0ms", "--status", "sent,failed,dead,held"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.starts_with("deleted 13 rows (dead 3, failed 4, held 2, sent 4) and 24 attempts older than 0ms ("));
  CHECK(t.pg().psql(unfinished) == before);
  CHECK(pg_scalar(t.pg(), "SELECT count(*) FROM metrix_outbox") == 3);
  CHECK(pg_scalar(t.pg(), "SELECT count(*) FROM metrix_outbox_attempt") == 3);
}

TEST_CASE("a purge on a URI killed mid-way has deleted whole chunks, and running it again finishes the job") {
  PgServer pg;
  make_pg_outbox(pg, 30000);
  pg.psql("UPDATE metrix_outbox SET status = 'sent', attempts = 1, sent_at = created_at - 86400000::bigint * 40;"
          "INSERT INTO metrix_outbox_attempt (outbox_id, attempt, started_at, finished_at, http_status) "
          "SELECT id, a, created_at, created_at + 1, 200 FROM metrix_outbox, generate_series(1, 2) a");
  add_pg_events(pg, 30001, 30010);  // pending: never touched
  auto purge = Process::start({relay_binary(), "purge", "--db", pg.uri(), "--older-than", "30d"});
  std::int64_t left = 30010;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (left == 30010 && std::chrono::steady_clock::now() < deadline) left = pg_scalar(pg, "SELECT count(*) FROM metrix_outbox");
  purge.kill(SIGKILL);
  REQUIRE(purge.wait(10s) == -SIGKILL);
  left = pg_scalar(pg, "SELECT count(*) FROM metrix_outbox");
  const std::int64_t deleted = 30010 - left;
  CAPTURE(deleted);
  CHECK(deleted > 0);
  CHECK(deleted < 30000);
  CHECK(deleted % 5000 == 0);  // chunks of 5,000 rows, each all or nothing
  // Every row left has both its attempts; no attempt outlived its row.
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox_attempt") == 2 * (left - 10));
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox_attempt a WHERE NOT EXISTS "
                      "(SELECT 1 FROM metrix_outbox o WHERE o.id = a.outbox_id)") == 0);
  // The killed client's server session ends (its open chunk rolled back, its row locks gone)
  // once it finishes the statement it was running; until then the rows it holds are skipped.
  deadline = std::chrono::steady_clock::now() + 30s;
  while (pg_scalar(pg, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                       "AND pid <> pg_backend_pid()") > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  auto again = relay_cli({"purge", "--db", pg.uri(), "--older-than", "30d"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(again.out.starts_with(fmt::format("deleted {} rows (sent {}) and {} attempts older than 30d (", left - 10,
                                          left - 10, 2 * (left - 10))));
  CHECK(pg.psql("SELECT status || ' ' || count(*) FROM metrix_outbox GROUP BY status") == "pending 10\n");
  CHECK(pg_scalar(pg, "SELECT count(*) FROM metrix_outbox_attempt") == 0);
}

TEST_CASE("requeue on a URI leaves alone a row that changed to sending while requeue waited for its lock") {
  Twins t;
  auto other = pg::Connection::open(t.uri());
  REQUIRE(other);
  // Another session takes failed row 3 and, uncommitted yet, makes it a row on its way.
  REQUIRE(other->exec("BEGIN"));
  REQUIRE(other->exec("UPDATE metrix_outbox SET status = 'sending' WHERE id = 3"));
  auto requeue = Process::start({relay_binary(), "requeue", "--db", t.uri(), "--status", "failed"});
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (pg_scalar(t.pg(), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(other->exec("COMMIT"));
  REQUIRE(requeue.wait(30s) == 0);
  CHECK(requeue.out() == "requeued 3 rows\n");  // 4, 5 and 11, and not 3
  CHECK(t.pg().psql("SELECT id || ' ' || status FROM metrix_outbox WHERE id IN (3, 4, 5, 11) ORDER BY id") ==
        "3 sending\n4 pending\n5 pending\n11 pending\n");
}

TEST_CASE("requeue and purge on a URI never show its password") {
  PgServer pg;
  pg.create_database("empty");
  const std::string uri = "postgresql://metrix:hunter2-secret@127.0.0.1:" + std::to_string(pg.port()) + "/empty";
  for (std::vector<std::string> args : {std::vector<std::string>{"requeue", "--status", "failed"},
                                        {"purge", "--older-than", "30d"}, {"purge", "--older-than", "30d", "--dry-run"}}) {
    args.insert(args.begin() + 1, {"--db", uri});
    auto r = relay_cli(args);
    INFO(args[0] << ": " << r.err);
    CHECK(r.exit_code == 1);  // no outbox there
    CHECK(r.err.find("metrix:***@127.0.0.1") != std::string::npos);
    CHECK(r.err.find("hunter2") == std::string::npos);
    CHECK(r.out.find("hunter2") == std::string::npos);
  }
}
