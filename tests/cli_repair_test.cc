// metrix-relay requeue and purge, and the in-doubt hold policy they serve, through the built
// binaries with a real relay and fake-metrix on loopback.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "storage/producer.h"
#include "tests/operator_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;
using Rows = std::vector<std::vector<std::string>>;

namespace {

RunResult relay_until_idle(const TempDir& dir, const FakeMetrix& fake, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = relay_args(dir.db(), fake.url(), extra);
  args.push_back("--until-idle");
  return run(args, {}, relay_env(), 60s);
}

// Rows 1..n in the given statuses, written through SQL the way the relay leaves them.
void rows_in_statuses(const std::string& db, const std::vector<std::string>& statuses) {
  make_outbox(db, static_cast<int>(statuses.size()));
  for (size_t i = 0; i < statuses.size(); ++i) {
    exec(db, "UPDATE metrix_outbox SET status = '" + statuses[i] +
                 "', attempts = 3, lease_token = 7, next_attempt_at = 4102444800000, last_error = 'e" +
                 std::to_string(i + 1) + "', sent_at = CASE WHEN '" + statuses[i] +
                 "' = 'sent' THEN 1600000000000 END WHERE id = " + std::to_string(i + 1));
  }
}

}  // namespace

TEST_CASE("requeue by error after the slug is defined delivers the refused events and keeps their history") {
  TempDir dir;
  make_outbox(dir.db(), 5);
  make_outbox(dir.db(), 3, "purchase");  // ids 6..8: a slug not yet defined in the Metrix panel
  auto fake = FakeMetrix::start(dir, fake_args({"--slug", "taqsq"}), fake_env());
  REQUIRE(relay_until_idle(dir, fake).exit_code == 0);
  REQUIRE(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'failed' "
                           "AND last_error = 'EVENT_TYPE_DOES_NOT_EXIST'") == 3);
  auto before = rows(dir.db(), "SELECT * FROM metrix_outbox ORDER BY id");

  auto dry = relay_cli({"requeue", "--db", dir.db(), "--error", "EVENT_TYPE_DOES_NOT_EXIST", "--dry-run"});
  CHECK_MESSAGE(dry.exit_code == 0, dry.err);
  CHECK(dry.out.find("dry run: would requeue 3 rows:\n") == 0);
  CHECK(dry.out.find("purchase") != std::string::npos);
  CHECK(rows(dir.db(), "SELECT * FROM metrix_outbox ORDER BY id") == before);  // nothing changed

  fake.control("slugs=taqsq,purchase");  // the operator defined the slug
  auto requeue = relay_cli({"requeue", "--db", dir.db(), "--error", "EVENT_TYPE_DOES_NOT_EXIST"});
  CHECK_MESSAGE(requeue.exit_code == 0, requeue.err);
  CHECK(requeue.out == "requeued 3 rows\n");
  CHECK(rows(dir.db(), "SELECT id, status, attempts FROM metrix_outbox WHERE id >= 6") ==
        Rows{{"6", "pending", "1"}, {"7", "pending", "1"}, {"8", "pending", "1"}});

  auto again = relay_until_idle(dir, fake);
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(count_status(dir.db(), "sent") == 8);
  CHECK(rows(dir.db(), "SELECT outbox_id, attempt, http_status, coalesce(error, '-') FROM metrix_outbox_attempt "
                       "WHERE outbox_id >= 6 ORDER BY outbox_id, attempt") ==
        Rows{{"6", "1", "404", "EVENT_TYPE_DOES_NOT_EXIST"}, {"6", "2", "200", "-"},
             {"7", "1", "404", "EVENT_TYPE_DOES_NOT_EXIST"}, {"7", "2", "200", "-"},
             {"8", "1", "404", "EVENT_TYPE_DOES_NOT_EXIST"}, {"8", "2", "200", "-"}});
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE id >= 6 AND attempts = 2") == 3);
  CHECK(fake.records().size() == 8);  // each event arrived once
}

TEST_CASE("requeue touches failed, dead and held rows only, sent ones only with --include-sent, and never pending or sending") {
  TempDir dir;
  rows_in_statuses(dir.db(), {"pending", "sending", "sent", "failed", "dead", "held"});
  auto untouched = rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id <= 3 ORDER BY id");
  auto r = relay_cli({"requeue", "--db", dir.db(), "1-6"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "requeued 3 rows\n");
  CHECK(rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id <= 3 ORDER BY id") == untouched);
  // Due now, with the attempt count and the last answer kept.
  CHECK(rows(dir.db(), "SELECT id, status, attempts, last_error, lease_token, "
                       "next_attempt_at <= CAST(unixepoch('now') AS INTEGER) * 1000 + 1000 FROM metrix_outbox WHERE id > 3") ==
        Rows{{"4", "pending", "3", "e4", "7", "1"}, {"5", "pending", "3", "e5", "7", "1"}, {"6", "pending", "3", "e6", "7", "1"}});

  auto pending = relay_cli({"requeue", "--db", dir.db(), "--status", "pending"});
  CHECK(pending.exit_code == 2);
  CHECK(pending.err.find("requeue never touches pending or sending rows") != std::string::npos);
  auto sent = relay_cli({"requeue", "--db", dir.db(), "--status", "sent"});
  CHECK(sent.exit_code == 2);
  CHECK(sent.err.find("--include-sent") != std::string::npos);
  auto everything = relay_cli({"requeue", "--db", dir.db()});
  CHECK(everything.exit_code == 2);
  CHECK(everything.err.find("say which rows") != std::string::npos);
  CHECK(rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id <= 3 ORDER BY id") == untouched);

  auto resend = relay_cli({"requeue", "--db", dir.db(), "--include-sent", "3"});
  CHECK(resend.out == "requeued 1 rows\n");
  CHECK(text(dir.db(), "SELECT status FROM metrix_outbox WHERE id = 3") == "pending");
  // Nothing requeued: stdout says 0, stderr says why (before: nothing said why).
  auto none = relay_cli({"requeue", "--db", dir.db(), "999"});
  CHECK(none.exit_code == 0);
  CHECK(none.out == "requeued 0 rows\n");
  CHECK(none.err == "metrix-relay: no row matches the selection\n");
  auto dry = relay_cli({"requeue", "--db", dir.db(), "--dry-run", "--json", "999"});
  CHECK(dry.exit_code == 0);
  CHECK(dry.err == "metrix-relay: no row matches the selection\n");
  auto left_alone = relay_cli({"requeue", "--db", dir.db(), "1-2"});
  CHECK(left_alone.out == "requeued 0 rows\n");
  CHECK(left_alone.err.find("none of the 2 matching rows is failed, dead or held (sent rows only with "
                            "--include-sent; pending and sending rows never)") != std::string::npos);
}

TEST_CASE("requeue works through thousands of rows in short transactions") {
  TempDir dir;
  make_outbox(dir.db(), 2500);
  exec(dir.db(), "UPDATE metrix_outbox SET status = CASE WHEN id % 2 THEN 'dead' ELSE 'sent' END, attempts = 20");
  auto r = relay_cli({"requeue", "--db", dir.db(), "--status", "dead", "--json"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(json_of(r)["requeued"] == 1250);
  CHECK(count_status(dir.db(), "pending") == 1250);
  CHECK(count_status(dir.db(), "sent") == 1250);
}

TEST_CASE("a timeout after sending with --in-doubt hold makes the row held, and requeue of held rows delivers it") {
  TempDir dir;
  make_outbox(dir.db(), 1);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "1500"}), fake_env());
  auto held = relay_until_idle(dir, fake, {"--timeout", "300ms", "--in-doubt", "hold"});
  CHECK_MESSAGE(held.exit_code == 0, held.err);
  CHECK(rows(dir.db(), "SELECT status, attempts, last_error FROM metrix_outbox") == Rows{{"held", "1", "in doubt: timeout"}});
  CHECK(json_of(relay_cli({"status", "--db", dir.db(), "--json"}))["counts"]["held"] == 1);
  CHECK(relay_cli({"list", "--db", dir.db(), "--status", "held"}).out.find("in doubt: timeout") != std::string::npos);

  fake.control("latency-ms=0");
  CHECK(relay_cli({"requeue", "--db", dir.db(), "--status", "held"}).out == "requeued 1 rows\n");
  auto delivered = relay_until_idle(dir, fake, {"--timeout", "300ms", "--in-doubt", "hold"});
  CHECK_MESSAGE(delivered.exit_code == 0, delivered.err);
  CHECK(rows(dir.db(), "SELECT status, attempts FROM metrix_outbox") == Rows{{"sent", "2"}});
  CHECK(rows(dir.db(), "SELECT attempt, coalesce(http_status, '-'), coalesce(error, '-') FROM metrix_outbox_attempt "
                       "ORDER BY attempt") == Rows{{"1", "-", "in doubt: timeout"}, {"2", "200", "-"}});
}

TEST_CASE("purge deletes sent rows past the retention with their attempts, and never an undelivered row") {
  TempDir dir;
  make_outbox(dir.db(), 10);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  REQUIRE(relay_until_idle(dir, fake).exit_code == 0);
  // Rows 1..5 were delivered 100 days ago; 6..10 just now.
  exec(dir.db(), "UPDATE metrix_outbox SET sent_at = sent_at - 100 * 86400000 WHERE id <= 5");
  // Undelivered rows, all written long ago: 11 pending (a sent row requeued for a re-send keeps
  // its old sent_at), 12 sending, 13 failed, 14 dead, 15 held.
  exec(dir.db(), "INSERT INTO metrix_outbox (payload, created_at) SELECT '" + valid_payload(0) +
                     "', 1500000000000 FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 "
                     "UNION ALL SELECT 5)");
  exec(dir.db(), "UPDATE metrix_outbox SET sent_at = 1500000000000 WHERE id = 11;"
                 "UPDATE metrix_outbox SET status = 'sending' WHERE id = 12;"
                 "UPDATE metrix_outbox SET status = 'failed' WHERE id = 13;"
                 "UPDATE metrix_outbox SET status = 'dead' WHERE id = 14;"
                 "UPDATE metrix_outbox SET status = 'held' WHERE id = 15;");
  auto undelivered = rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id > 10 ORDER BY id");

  auto dry = relay_cli({"purge", "--db", dir.db(), "--older-than", "30d", "--dry-run"});
  CHECK_MESSAGE(dry.exit_code == 0, dry.err);
  CHECK(dry.out.find("dry run: would delete 5 rows (sent 5) and 5 attempts older than 30d") == 0);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 15);

  auto purge = relay_cli({"purge", "--db", dir.db(), "--older-than", "30d"});
  CHECK_MESSAGE(purge.exit_code == 0, purge.err);
  CHECK(purge.out.find("deleted 5 rows (sent 5) and 5 attempts older than 30d") == 0);
  CHECK(purge.out.find("space: ") != std::string::npos);
  CHECK(rows(dir.db(), "SELECT id FROM metrix_outbox WHERE id <= 10") == Rows{{"6"}, {"7"}, {"8"}, {"9"}, {"10"}});
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id <= 5") == 0);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt WHERE outbox_id BETWEEN 6 AND 10") == 5);
  CHECK(rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id > 10 ORDER BY id") == undelivered);

  for (const char* status : {"pending", "sending"}) {
    auto refused = relay_cli({"purge", "--db", dir.db(), "--older-than", "1d", "--status", status});
    CHECK(refused.exit_code == 2);
    CHECK(refused.err.find("purge never deletes an undelivered event") != std::string::npos);
  }
  CHECK(rows(dir.db(), "SELECT * FROM metrix_outbox WHERE id > 10 ORDER BY id") == undelivered);

  // Named explicitly, old failed and dead rows go; held stays unless named.
  auto named = relay_cli({"purge", "--db", dir.db(), "--older-than", "30d", "--status", "failed,dead"});
  CHECK_MESSAGE(named.exit_code == 0, named.err);
  CHECK(rows(dir.db(), "SELECT id, status FROM metrix_outbox WHERE id > 10 ORDER BY id") ==
        Rows{{"11", "pending"}, {"12", "sending"}, {"15", "held"}});
  // Ids are never reused.
  CHECK(relay_cli({"enqueue", "--db", dir.db(), "--json", valid_payload(99)}).out == "16\n");
  CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
}

TEST_CASE("a large purge goes in chunks while a producer keeps committing beside it") {
  TempDir dir;
  make_outbox(dir.db(), 12000);
  exec(dir.db(), "UPDATE metrix_outbox SET status = 'sent', sent_at = 1500000000000");
  std::atomic<bool> done{false};
  std::atomic<int> committed{0}, refused{0};
  std::thread producer([&] {
    // No doctest assertions off the main thread: failures are counted and checked after.
    auto db = metrix::Database::open(dir.db(), {.busy_timeout_ms = 2000});
    if (!db) {
      ++refused;
      return;
    }
    metrix::Producer p(db->handle());
    for (int i = 0; !done.load(); ++i) {
      if (p.enqueue(valid_payload(i))) ++committed;
      else ++refused;
      std::this_thread::sleep_for(2ms);
    }
  });
  auto r = relay_cli({"purge", "--db", dir.db(), "--older-than", "1d", "--json"});
  done = true;
  producer.join();
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(json_of(r)["rows"]["sent"] == 12000);
  CHECK(count_status(dir.db(), "sent") == 0);
  CHECK(refused == 0);
  CHECK(committed > 0);
  CHECK(count_status(dir.db(), "pending") == committed);
  CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
}
