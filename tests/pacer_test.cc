// relay/pacer.h's rules with a fake clock: when the relay's loop starts a write round, what
// the round may claim, and how long the loop may wait for answers meanwhile.
#include <doctest/doctest.h>

#include <optional>

#include "relay/pacer.h"

using namespace metrix;

namespace {

constexpr std::int64_t kT = 1'764'000'000'000;  // the fake clock's start, ms

PacerSettings settings() { return PacerSettings{.commit_interval_ms = 10, .poll_interval_ms = 100, .concurrency = 64}; }

// A relay with requests in flight: neither starving nor empty-handed.
LoopLoad busy_sending() { return LoopLoad{.in_flight = 10, .ready = 100}; }

// A round that claimed `claimed` of `claim_limit` rows.
RoundReport round(int claim_limit, std::size_t claimed, std::int64_t lock_us = 2000) {
  return RoundReport{.claim_limit = claim_limit, .claimed = claimed, .lock_us = lock_us};
}

}  // namespace

TEST_CASE("a new relay starts a round at once, claiming the whole window") {
  Pacer pacer(settings());
  CHECK(pacer.window() == 64 + 2048);
  CHECK(pacer.round_to_start(kT, LoopLoad{}) == std::optional<int>(2112));
}

TEST_CASE("the window keeps as many rows in reserve as requests in flight once --concurrency passes 2048") {
  Pacer pacer(PacerSettings{.concurrency = 4000});
  CHECK(pacer.window() == 8000);
}

TEST_CASE("a relay alone writes again once the commit interval has passed, and not before") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 2112), false);
  LoopLoad load = busy_sending();
  load.outcomes = true;
  CHECK_FALSE(pacer.round_to_start(kT + 9, load).has_value());
  CHECK(pacer.round_to_start(kT + 10, load) == std::optional<int>(2112 - 110));
}

TEST_CASE("beside producers, a round that held the write lock for d is followed by a pause of 4·d") {
  Pacer pacer(settings());
  RoundReport r = round(2112, 2112, 30'000);  // 30 ms under the lock
  r.others_wrote = true;
  pacer.committed(kT, r, false);
  CHECK(pacer.beside_producers(kT));
  LoopLoad load = busy_sending();
  load.outcomes = true;
  CHECK_FALSE(pacer.round_to_start(kT + 119, load).has_value());
  CHECK(pacer.round_to_start(kT + 120, load).has_value());
}

TEST_CASE("beside producers, a short round still waits the commit interval") {
  Pacer pacer(settings());
  RoundReport r = round(2112, 2112, 1000);  // 4 ms of pause is less than the interval
  r.others_wrote = true;
  pacer.committed(kT, r, false);
  LoopLoad load = busy_sending();
  load.outcomes = true;
  CHECK_FALSE(pacer.round_to_start(kT + 9, load).has_value());
  CHECK(pacer.round_to_start(kT + 10, load).has_value());
}

TEST_CASE("a relay alone is not paced by how long its rounds hold the lock") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 2112, 30'000), false);
  CHECK_FALSE(pacer.beside_producers(kT));
  LoopLoad load = busy_sending();
  load.outcomes = true;
  CHECK(pacer.round_to_start(kT + 10, load).has_value());
}

TEST_CASE("producers are no longer taken to be there a second after the last round that saw them") {
  Pacer pacer(settings());
  RoundReport r = round(2112, 2112);
  r.others_wrote = true;
  pacer.committed(kT, r, false);
  CHECK(pacer.beside_producers(kT + 999));
  CHECK_FALSE(pacer.beside_producers(kT + 1000));
}

TEST_CASE("a starving relay writes its outcomes at once, before the commit interval passes") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 5), false);
  const LoopLoad starving{.outcomes = true};
  CHECK(pacer.starving(kT + 1, starving));
  CHECK(pacer.round_to_start(kT + 1, starving).has_value());
  CHECK(pacer.wait_ms(kT + 1, starving) == 0);
}

TEST_CASE("beside producers, a relay with nothing to send still waits for the pause") {
  Pacer pacer(settings());
  RoundReport r = round(2112, 5, 20'000);
  r.others_wrote = true;
  pacer.committed(kT, r, false);
  const LoopLoad idle{.outcomes = true};
  CHECK_FALSE(pacer.starving(kT + 1, idle));
  CHECK_FALSE(pacer.round_to_start(kT + 1, idle).has_value());
  CHECK(pacer.wait_ms(kT + 1, idle) == 50);
  CHECK(pacer.wait_ms(kT + 70, idle) == 10);
  CHECK(pacer.round_to_start(kT + 80, idle).has_value());
}

TEST_CASE("a round that found nothing due says so, and the next claim waits a poll interval") {
  Pacer pacer(settings());
  CHECK(pacer.committed(kT, round(2112, 0), true));
  const LoopLoad idle{};
  CHECK(pacer.claim_limit(kT + 99, idle) == 0);
  CHECK_FALSE(pacer.round_to_start(kT + 99, idle).has_value());
  CHECK(pacer.wait_ms(kT + 60, idle) == 40);
  CHECK(pacer.claim_limit(kT + 100, idle) == 2112);
  CHECK(pacer.round_to_start(kT + 100, idle) == std::optional<int>(2112));
}

TEST_CASE("a round that found nothing due claims again when the next retry is due, if that is sooner") {
  Pacer pacer(settings());
  RoundReport r = round(2112, 0);
  r.next_due_at = kT + 30;
  CHECK(pacer.committed(kT, r, true));
  CHECK(pacer.claim_limit(kT + 29, LoopLoad{}) == 0);
  CHECK(pacer.claim_limit(kT + 30, LoopLoad{}) == 2112);
}

TEST_CASE("a round that claimed rows, found a new app or was not allowed to claim does not count as finding nothing") {
  Pacer pacer(settings());
  CHECK_FALSE(pacer.committed(kT, round(2112, 1), false));
  RoundReport new_app = round(2112, 0);
  new_app.found_apps = true;
  CHECK_FALSE(pacer.committed(kT, new_app, false));
  CHECK(pacer.claim_limit(kT + 1, LoopLoad{}) == 2112);  // the new app is claimed from the next round
  CHECK_FALSE(pacer.committed(kT, round(0, 0), true));
}

TEST_CASE("a round that recorded the relay's last outcomes claims again at once") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 0), true);  // nothing due: the next claim is a poll interval away
  RoundReport last = round(0, 0);
  last.had_outcomes = true;
  CHECK_FALSE(pacer.committed(kT + 20, last, true));
  CHECK(pacer.claim_limit(kT + 20, LoopLoad{}) == 2112);
}

TEST_CASE("a round that recorded outcomes while rows are still in flight leaves the next claim where it was") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 0), true);
  RoundReport r = round(0, 0);
  r.had_outcomes = true;
  pacer.committed(kT + 20, r, false);
  CHECK(pacer.claim_limit(kT + 20, busy_sending()) == 0);
  CHECK(pacer.claim_limit(kT + 100, busy_sending()) == 2112 - 110);
}

TEST_CASE("claims stop while half the window of claimed rows waits for a request slot") {
  Pacer pacer(settings());
  CHECK(pacer.claim_limit(kT, LoopLoad{.in_flight = 64, .ready = 1055}) == 2112 - 64 - 1055);
  CHECK(pacer.claim_limit(kT, LoopLoad{.in_flight = 64, .ready = 1056}) == 0);
  // Nothing to claim and nothing to record: no round, and the loop waits for answers.
  const LoopLoad full{.in_flight = 64, .ready = 1056};
  CHECK_FALSE(pacer.round_to_start(kT, full).has_value());
  CHECK(pacer.wait_ms(kT, full) == 50);
}

TEST_CASE("a stopping relay claims nothing but writes its outcomes without waiting for the interval") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 2112), false);
  LoopLoad stopping = busy_sending();
  stopping.stopping = true;
  CHECK(pacer.claim_limit(kT + 1, stopping) == 0);
  CHECK_FALSE(pacer.round_to_start(kT + 1, stopping).has_value());
  stopping.outcomes = true;
  CHECK(pacer.round_to_start(kT + 1, stopping) == std::optional<int>(0));
}

TEST_CASE("a heartbeat or a pause to write starts a round like an outcome, but does not cut the loop's wait") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 2112), false);
  LoopLoad load{.in_flight = 64, .ready = 1056, .other_writes = true};
  CHECK_FALSE(pacer.round_to_start(kT + 5, load).has_value());
  CHECK(pacer.wait_ms(kT + 5, load) == 50);
  CHECK(pacer.round_to_start(kT + 10, load) == std::optional<int>(0));
}

TEST_CASE("after a failed round no round starts for a second, and the loop waits rather than spins") {
  Pacer pacer(settings());
  pacer.failed(kT);
  const LoopLoad starving{.outcomes = true};
  CHECK_FALSE(pacer.round_to_start(kT + 999, starving).has_value());
  CHECK(pacer.wait_ms(kT + 500, starving) == 50);
  CHECK(pacer.wait_ms(kT + 990, starving) == 10);
  CHECK(pacer.round_to_start(kT + 1000, starving).has_value());
}

TEST_CASE("no round starts while one is running, and the loop waits for the writer to wake it") {
  Pacer pacer(settings());
  const LoopLoad running{.outcomes = true, .round_running = true};
  CHECK_FALSE(pacer.round_to_start(kT, running).has_value());
  CHECK(pacer.wait_ms(kT, running) == 50);
}

TEST_CASE("outcomes to write cut the loop's wait to the commit interval, even when no claim is due") {
  Pacer pacer(settings());
  pacer.committed(kT, round(2112, 0), false);  // nothing due: the next claim is 100 ms away
  LoopLoad load = busy_sending();
  CHECK(pacer.wait_ms(kT + 2, load) == 50);
  load.outcomes = true;
  CHECK(pacer.wait_ms(kT + 2, load) == 8);
}

TEST_CASE("new settings take effect for the next decision") {
  Pacer pacer(settings());
  pacer.set_settings(PacerSettings{.commit_interval_ms = 200, .poll_interval_ms = 100, .concurrency = 64});
  pacer.committed(kT, round(2112, 2112), false);
  LoopLoad load = busy_sending();
  load.outcomes = true;
  CHECK_FALSE(pacer.round_to_start(kT + 199, load).has_value());
  CHECK(pacer.round_to_start(kT + 200, load).has_value());
}
