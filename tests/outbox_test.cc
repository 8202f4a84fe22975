// The relay's storage operations on a real database file: claim order, leases, fencing.
#include <doctest/doctest.h>

#include "storage/outbox.h"
#include "tests/outbox_fixture.h"
#include "storage/clock.h"

using namespace metrix;
using metrix::test::TempDir;

TEST_CASE("claim leases due rows oldest first, fixes event_time, and skips rows in backoff") {
  TempDir dir;
  test::make_outbox(dir.db(), 5);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  REQUIRE(db->exec("UPDATE metrix_outbox SET next_attempt_at = 9e15 WHERE id = 2"));  // in backoff
  Outbox outbox(*db);
  auto claims = outbox.claim(std::nullopt, now_ms(), 60000, 3);
  REQUIRE(claims);
  REQUIRE(claims->size() == 3);
  CHECK((*claims)[0].id == 1);
  CHECK((*claims)[1].id == 3);
  CHECK((*claims)[2].id == 4);
  CHECK((*claims)[0].event_time == (*claims)[0].created_at);
  CHECK_FALSE((*claims)[0].payload_has_event_time);
  CHECK_FALSE((*claims)[0].lease_expired);
  CHECK(test::count_status(dir.db(), "sending") == 3);
  auto again = outbox.claim(std::nullopt, now_ms(), 60000, 10);  // leased rows are not due
  REQUIRE(again);
  REQUIRE(again->size() == 1);
  CHECK((*again)[0].id == 5);
}

TEST_CASE("record() counts what it wrote by the rows' new status") {
  TempDir dir;
  test::make_outbox(dir.db(), 6);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  Outbox outbox(*db);
  auto claims = outbox.claim(std::nullopt, now_ms(), 60000, 6);
  REQUIRE(claims);
  REQUIRE(claims->size() == 6);
  const RowStatus statuses[] = {RowStatus::sent, RowStatus::failed, RowStatus::dead,
                                RowStatus::held, RowStatus::pending, RowStatus::pending};
  std::vector<Outcome> outcomes;
  for (size_t i = 0; i < 6; ++i) {
    Outcome o;
    o.id = (*claims)[i].id;
    o.lease_token = (*claims)[i].lease_token;
    o.status = statuses[i];
    o.attempted = i != 5;  // the last one is handed back without an attempt: not a retry
    outcomes.push_back(o);
  }
  auto report = outbox.record(outcomes);
  REQUIRE(report);
  CHECK(report->recorded == 6);
  CHECK(report->fenced == 0);
  CHECK(report->sent == 1);
  CHECK(report->failed == 1);
  CHECK(report->dead == 1);
  CHECK(report->held == 1);
  CHECK(report->retried == 1);
}

TEST_CASE("an expired lease makes the row due again, and the old lease can no longer record") {
  TempDir dir;
  test::make_outbox(dir.db(), 1);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  Outbox outbox(*db);
  std::int64_t t0 = now_ms();
  auto first = outbox.claim(std::nullopt, t0, 1000, 1);
  REQUIRE(first);
  REQUIRE(first->size() == 1);
  auto second = outbox.claim(std::nullopt, t0 + 1001, 1000, 1);  // the first relay "died"
  REQUIRE(second);
  REQUIRE(second->size() == 1);
  CHECK((*second)[0].lease_expired);
  CHECK((*second)[0].event_time == (*first)[0].event_time);  // fixed at the first claim
  CHECK((*second)[0].lease_token == (*first)[0].lease_token + 1);

  Outcome stale;
  stale.id = 1;
  stale.lease_token = (*first)[0].lease_token;
  stale.status = RowStatus::failed;
  stale.error = "stale relay";
  auto fenced = outbox.record({stale});
  REQUIRE(fenced);
  CHECK(fenced->fenced == 1);
  CHECK(fenced->recorded == 0);
  CHECK(fenced->failed == 0);  // a fenced outcome is counted as fenced, nothing else
  CHECK(test::count_status(dir.db(), "sending") == 1);
  CHECK(test::scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt") == 0);

  Outcome fresh = stale;
  fresh.lease_token = (*second)[0].lease_token;
  fresh.status = RowStatus::sent;
  fresh.http_status = 200;
  fresh.error.clear();
  fresh.finished_at = t0 + 1500;
  auto recorded = outbox.record({fresh});
  REQUIRE(recorded);
  CHECK(recorded->recorded == 1);
  CHECK(recorded->sent == 1);
  CHECK(recorded->fenced == 0);
  CHECK(test::text(dir.db(), "SELECT status || ' ' || attempts || ' ' || sent_at FROM metrix_outbox") ==
        "sent 1 " + std::to_string(t0 + 1500));
  CHECK(test::scalar(dir.db(), "SELECT attempt FROM metrix_outbox_attempt WHERE outbox_id = 1") == 1);
}

TEST_CASE("lease_expiries counts expired leases in a row; an answer sets it back, a hand-back does not") {
  TempDir dir;
  test::make_outbox(dir.db(), 1);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  Outbox outbox(*db);
  std::int64_t t = now_ms();
  auto claim = [&] {
    auto c = outbox.claim(std::nullopt, t, 1000, 1);
    REQUIRE(c);
    REQUIRE(c->size() == 1);
    t += 1001;  // and let the lease expire
    return (*c)[0];
  };
  auto record = [&](const Claim& c, bool attempted) {
    Outcome o;
    o.id = c.id;
    o.lease_token = c.lease_token;
    o.status = RowStatus::pending;
    o.attempted = attempted;
    o.next_attempt_at = t;
    REQUIRE(outbox.record({o}));
  };
  CHECK(claim().lease_expiries == 0);
  CHECK(claim().lease_expiries == 1);
  const Claim third = claim();
  CHECK(third.lease_expiries == 2);
  CHECK(test::scalar(dir.db(), "SELECT lease_expiries FROM metrix_outbox") == 2);
  record(third, false);  // handed back (a clean shutdown): not an answer, the count stays
  CHECK(test::scalar(dir.db(), "SELECT lease_expiries FROM metrix_outbox") == 2);
  const Claim fourth = claim();  // pending, not an expired lease: nothing to add
  CHECK_FALSE(fourth.lease_expired);
  CHECK(fourth.lease_expiries == 2);
  record(fourth, true);  // an answer (a 503, say)
  CHECK(test::scalar(dir.db(), "SELECT lease_expiries FROM metrix_outbox") == 0);
}

TEST_CASE("a payload's own eventTime is kept and sent unchanged") {
  TempDir dir;
  test::make_outbox(dir.db(), 0);
  {
    auto db = Database::open(dir.db());
    REQUIRE(db);
    Producer producer(db->handle());
    REQUIRE(producer.enqueue(R"({ "metrixUserId": "u", "eventTime": 1570274953412, "eventSlug": "s", "oaid": "o" })"));
  }
  auto db = Database::open(dir.db());
  REQUIRE(db);
  Outbox outbox(*db);
  auto claims = outbox.claim(std::nullopt, now_ms(), 60000, 1);
  REQUIRE(claims);
  REQUIRE(claims->size() == 1);
  CHECK((*claims)[0].payload_has_event_time);
  CHECK((*claims)[0].event_time == 1570274953412);
}

TEST_CASE("a claim handed back without an attempt is pending again and keeps its last answer") {
  TempDir dir;
  test::make_outbox(dir.db(), 1);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  Outbox outbox(*db);
  auto first = outbox.claim(std::nullopt, now_ms(), 60000, 1);
  REQUIRE(first);
  Outcome failed_once;
  failed_once.id = 1;
  failed_once.lease_token = (*first)[0].lease_token;
  failed_once.status = RowStatus::pending;
  failed_once.http_status = 503;
  failed_once.error = "http 503";
  REQUIRE(outbox.record({failed_once}));
  auto second = outbox.claim(std::nullopt, now_ms(), 60000, 1);
  REQUIRE(second);
  REQUIRE(second->size() == 1);
  Outcome handed_back;
  handed_back.id = 1;
  handed_back.lease_token = (*second)[0].lease_token;
  handed_back.status = RowStatus::pending;
  handed_back.attempted = false;
  REQUIRE(outbox.record({handed_back}));
  CHECK(test::text(dir.db(), "SELECT status || ' ' || attempts || ' ' || last_http_status || ' ' || last_error "
                             "FROM metrix_outbox") == "pending 1 503 http 503");
  CHECK(test::scalar(dir.db(), "SELECT count(*) FROM metrix_outbox_attempt") == 1);
  auto again = outbox.claim(std::nullopt, now_ms(), 60000, 1);
  REQUIRE(again);
  CHECK(again->size() == 1);
}

TEST_CASE("active apps lists every app with unfinished rows, the NULL app included") {
  TempDir dir;
  test::make_outbox(dir.db(), 2);
  test::make_outbox(dir.db(), 1, "taqsq", "zeta");
  test::make_outbox(dir.db(), 1, "taqsq", "alpha");
  auto db = Database::open(dir.db());
  REQUIRE(db);
  REQUIRE(db->exec("UPDATE metrix_outbox SET status = 'sent' WHERE app_id = 'zeta'"));
  Outbox outbox(*db);
  auto apps = outbox.active_apps();
  REQUIRE(apps);
  REQUIRE(apps->size() == 2);
  CHECK_FALSE((*apps)[0].has_value());
  CHECK((*apps)[1] == "alpha");
}
