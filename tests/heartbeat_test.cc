// The one rule for "is this relay alive", and the repair of stale heartbeats, on a real
// database file with a fake clock.
#include <doctest/doctest.h>

#include <algorithm>

#include "storage/check.h"
#include "storage/heartbeat.h"
#include "storage/outbox.h"
#include "tests/operator_fixture.h"

using namespace metrix;
using metrix::test::TempDir;

namespace {

Heartbeat beat(const std::string& relay_id, std::int64_t beat_at, std::int64_t interval_ms) {
  Heartbeat h;
  h.relay_id = relay_id;
  h.host = "host";
  h.pid = 1;
  h.started_at = 0;
  h.beat_at = beat_at;
  h.interval_ms = interval_ms;
  return h;
}

}  // namespace

TEST_CASE("a relay is alive for three of its intervals after its last beat, and for three seconds at least") {
  // Each: interval, the last moment it is alive.
  for (const auto& c : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {200, 3000}, {1000, 3000}, {1500, 4500}, {10'000, 30'000}}) {
    CAPTURE(c.first);
    const Heartbeat h = beat("r", 1'000'000, c.first);
    CHECK(relay_alive(h, 1'000'000));
    CHECK(relay_alive(h, 1'000'000 + c.second));
    CHECK_FALSE(relay_alive(h, 1'000'000 + c.second + 1));
  }
}

TEST_CASE("check counts and a repair removes the heartbeats of relays that are not alive, and keeps the others") {
  TempDir dir;
  test::make_outbox(dir.db(), 1);
  const std::int64_t now = test::scalar(dir.db(), "SELECT CAST(unixepoch('now') AS INTEGER) * 1000");
  {
    auto db = Database::open(dir.db());
    REQUIRE(db);
    Outbox outbox(*db);
    REQUIRE(outbox.beat(beat("fast, a second late", now - 1000, 200)));     // a stall: alive
    REQUIRE(outbox.beat(beat("slow, 20s ago", now - 20'000, 10'000)));      // alive
    REQUIRE(outbox.beat(beat("fast, 4s ago", now - 4000, 200)));            // stale
    REQUIRE(outbox.beat(beat("slow, a minute ago", now - 60'000, 10'000)));  // stale
  }
  auto found = check_outbox(dir.db(), false, now);
  REQUIRE(found);
  CHECK(found->stale_heartbeats == 2);

  auto repaired = repair_outbox(dir.db(), now);
  REQUIRE(repaired);
  CHECK(repaired->removed_heartbeats == 2);
  auto db = Database::open(dir.db());
  REQUIRE(db);
  auto left = read_heartbeats(*db);
  REQUIRE(left);
  std::vector<std::string> ids;
  for (const auto& h : *left) ids.push_back(h.relay_id);
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"fast, a second late", "slow, 20s ago"});
  for (const auto& h : *left) CHECK(relay_alive(h, now));
}
