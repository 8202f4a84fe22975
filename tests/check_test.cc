// metrix-relay check: the outbox fsck, through the built binary (and storage's check.h), on
// healthy, interrupted and damaged databases.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "storage/check.h"
#include "tests/operator_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
// True once the process is stopped by a signal (its state in /proc is 'T').
bool stopped(pid_t pid) {
  std::string stat = file_bytes("/proc/" + std::to_string(pid) + "/stat");
  auto after_name = stat.rfind(')');
  return after_name != std::string::npos && stat.compare(after_name, 3, ") T") == 0;
}
}  // namespace

TEST_CASE("check passes a healthy outbox and writes nothing") {
  TempDir dir;
  make_outbox(dir.db(), 10);
  auto before = file_bytes(dir.db());
  auto r = run({relay_binary(), "check", "--db", dir.db()});
  CHECK_MESSAGE(r.exit_code == 0, r.out << r.err);
  CHECK(r.out.find("integrity_check: ok") != std::string::npos);
  CHECK(r.out.find("migration checksums match") != std::string::npos);
  CHECK(file_bytes(dir.db()) == before);
  bool wal_written = std::filesystem::exists(dir.db() + "-wal") && std::filesystem::file_size(dir.db() + "-wal") > 0;
  CHECK_FALSE(wal_written);
}

TEST_CASE("after a killed relay, check finds the expired leases and --repair releases them") {
  TempDir dir;
  make_outbox(dir.db(), 2000);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "200"}), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--lease", "2s", "--timeout", "500ms", "--shutdown-timeout",
                                                                "1s", "--concurrency", "16"}),
                              relay_env());
  REQUIRE(fake.wait_for_accepted(10, 20s));
  relay.kill(SIGKILL);
  relay.wait(5s);
  auto sending = count_status(dir.db(), "sending");
  REQUIRE(sending > 0);
  std::this_thread::sleep_for(3500ms);  // the lease (2s) and three heartbeat intervals (1s) pass

  auto found = run({relay_binary(), "check", "--db", dir.db(), "--json"});
  CHECK(found.exit_code == 1);
  auto report = nlohmann::json::parse(found.out);
  CHECK(report["expired_leases"] == sending);
  CHECK(report["stale_heartbeats"] == 1);
  CHECK(report["healthy"] == false);
  CHECK(count_status(dir.db(), "sending") == sending);  // check alone changed nothing

  auto repaired = run({relay_binary(), "check", "--db", dir.db(), "--repair"});
  CHECK_MESSAGE(repaired.exit_code == 0, repaired.out << repaired.err);
  CHECK(count_status(dir.db(), "sending") == 0);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE last_error LIKE 'lease expired: released by%'") == sending);
  // Each released row counts a lease that expired without an answer (poison rows).
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE lease_expiries = 1") == sending);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_relay_heartbeat") == 0);
  CHECK(repaired.out.find("repaired: " + std::to_string(sending) + " expired leases released, 1 stale heartbeats removed") !=
        std::string::npos);
  CHECK(run({relay_binary(), "check", "--db", dir.db()}).exit_code == 0);
  // Nothing left to repair: it says so in numbers (before: the same "repaired: expired leases
  // released, stale heartbeats removed" as above).
  auto again = run({relay_binary(), "check", "--db", dir.db(), "--repair"});
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("repaired: 0 expired leases released, 0 stale heartbeats removed") != std::string::npos);
}

TEST_CASE("a relay that beats every 200ms and stalls for a second is alive for status, check and check --repair alike") {
  TempDir dir;
  make_outbox(dir.db(), 20);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--progress-interval", "200ms"}), relay_env());
  REQUIRE_MESSAGE(wait_for_count(dir.db(), "SELECT count(*) FROM metrix_outbox WHERE status = 'sent'", 20) == 20,
                  relay.err());
  REQUIRE(scalar(dir.db(), "SELECT interval_ms FROM metrix_relay_heartbeat") == 200);

  // A second without a beat, five of its intervals, as a slow disk or a busy host can stall a
  // running relay; here SIGSTOP does, between two write rounds (stopped inside one, it would
  // hold the write lock and the repair would wait for it). It is no crash: it goes on after.
  auto write_lock_free = [&] {
    auto db = metrix::Database::open(dir.db(), {.busy_timeout_ms = 0});
    REQUIRE(db);
    if (!db->exec("BEGIN IMMEDIATE")) return false;
    REQUIRE(db->exec("ROLLBACK"));
    return true;
  };
  auto stall = [&] {  // stopped between two write rounds; returns the last beat's time
    for (int tries = 0;; ++tries) {
      relay.kill(SIGSTOP);
      while (!stopped(relay.pid())) std::this_thread::sleep_for(1ms);
      if (write_lock_free()) break;
      REQUIRE(tries < 50);
      relay.kill(SIGCONT);
      std::this_thread::sleep_for(20ms);
    }
    return scalar(dir.db(), "SELECT beat_at FROM metrix_relay_heartbeat");
  };
  // The three commands must all run within three seconds of the last beat (the floor of
  // "three intervals"); a host too slow for that (a sanitizer build on a busy machine) cannot
  // tell a stall from a stop, so the stall is tried again rather than judged.
  std::int64_t beat_at = 0;
  RunResult found, repaired;
  nlohmann::json status;
  for (int attempt = 1;; ++attempt) {
    beat_at = stall();
    std::this_thread::sleep_for(1s);
    found = run({relay_binary(), "check", "--db", dir.db(), "--json"});
    repaired = run({relay_binary(), "check", "--db", dir.db(), "--repair"});
    status = json_of(relay_cli({"status", "--db", dir.db(), "--json"}));
    if (status["now"].get<std::int64_t>() - beat_at < 3000) break;
    REQUIRE_MESSAGE(attempt < 5, "five stalls in a row took the commands more than 3 s: this host is too slow");
    relay.kill(SIGCONT);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (scalar(dir.db(), "SELECT beat_at FROM metrix_relay_heartbeat") == beat_at) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(20ms);
    }
  }

  auto report = nlohmann::json::parse(found.out, nullptr, false);
  REQUIRE_MESSAGE(!report.is_discarded(), found.out << found.err);
  CHECK(report["stale_heartbeats"] == 0);
  CHECK_MESSAGE(found.exit_code == 0, found.out);
  CHECK_MESSAGE(repaired.exit_code == 0, repaired.out << repaired.err);
  CHECK_MESSAGE(repaired.out.find("0 stale heartbeats removed") != std::string::npos, repaired.out);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_relay_heartbeat WHERE beat_at = " + std::to_string(beat_at)) == 1);
  CHECK(status["relay_running"] == true);
  REQUIRE(status["relays"].size() == 1);
  CHECK(status["relays"][0]["alive"] == true);

  relay.kill(SIGCONT);
  relay.kill(SIGTERM);
  CHECK(relay.wait(30s) == 0);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_relay_heartbeat") == 0);  // a clean exit says goodbye
}

TEST_CASE("check's findings and the rows a repair releases say what a repair does, in storage's words") {
  TempDir dir;
  make_outbox(dir.db(), 3);
  exec(dir.db(), "UPDATE metrix_outbox SET status = 'sending', next_attempt_at = 1000, lease_token = 1 WHERE id = 2");
  exec(dir.db(), "INSERT INTO metrix_relay_heartbeat (relay_id, host, pid, started_at, beat_at, interval_ms, sent) "
                 "VALUES ('gone', 'host', 1, 1, 1, 1000, 0)");
  const std::int64_t now = scalar(dir.db(), "SELECT CAST(unixepoch('now') AS INTEGER) * 1000");
  auto found = metrix::check_outbox(dir.db(), false, now);
  REQUIRE(found);
  std::map<std::string, std::string> repairs;
  for (const auto& f : found->findings) {
    CAPTURE(f.message);
    CHECK(f.message.find("--") == std::string::npos);  // a flag is the command line's to name
    CHECK(f.message.find("metrix-relay") == std::string::npos);
    if (!f.repair.empty()) repairs[f.check] = f.repair;
  }
  CHECK(repairs == std::map<std::string, std::string>{{"heartbeats", "removes their heartbeats"},
                                                      {"leases", "makes them pending now"}});
  auto repaired = metrix::repair_outbox(dir.db(), now);
  REQUIRE(repaired);
  CHECK(repaired->released_leases == 1);
  CHECK(text(dir.db(), "SELECT last_error FROM metrix_outbox WHERE id = 2") ==
        "lease expired: released by a repair (may have reached Metrix)");
  // The command line adds the flag, as before.
  exec(dir.db(), "UPDATE metrix_outbox SET status = 'sending', next_attempt_at = 1000 WHERE id = 2");
  auto printed = run({relay_binary(), "check", "--db", dir.db()});
  CHECK_MESSAGE(printed.out.find("(they may have reached Metrix); --repair makes them pending now") != std::string::npos,
                printed.out);
}

TEST_CASE("a corrupted database is reported, not repaired, and not written") {
  TempDir dir;
  make_outbox(dir.db(), 3000);
  {
    // Overwrite a stretch in the middle of the file with garbage, as a bad disk would.
    std::fstream f(dir.db(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(dir.db()) / 2));
    std::string garbage(8192, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto before = file_bytes(dir.db());
  auto r = run({relay_binary(), "check", "--db", dir.db()});
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("error    integrity") != std::string::npos);
  auto repair = run({relay_binary(), "check", "--db", dir.db(), "--repair"});
  CHECK(repair.exit_code == 1);
  CHECK(file_bytes(dir.db()) == before);
  // The relay refuses to run on it rather than make it worse.
  auto relay = run(relay_args(dir.db(), "http://127.0.0.1:9", {"--until-idle"}), {}, relay_env());
  CHECK(relay.exit_code == 1);
}

TEST_CASE("an index that lost rows is reported, and the copy check advises is a sound outbox with every row") {
  TempDir dir;
  make_outbox(dir.db(), 10);
  // An index missing rows, as a bug or a bad disk can leave one: rows inserted while SQLite
  // took the index for one that holds none, then its definition put back.
  const std::string index = text(dir.db(), "SELECT sql FROM sqlite_schema WHERE name = 'metrix_outbox_created'");
  auto define = [&](const std::string& sql) {
    auto r = run({"/usr/bin/sqlite3", dir.db(), "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = '" + sql +
                                           "' WHERE name = 'metrix_outbox_created'"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  };
  define(index + " WHERE 0");
  for (int i = 11; i <= 15; ++i) {
    auto r = run({"/usr/bin/sqlite3", dir.db(), "INSERT INTO metrix_outbox (payload) VALUES ('" + valid_payload(i) + "')"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  define(index);
  auto r = run({relay_binary(), "check", "--db", dir.db()});
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.out.find("missing from index metrix_outbox_created") != std::string::npos, r.out);

  // The advice, run as printed (SQLite 3.40's .recover, advised before, fails on this schema).
  auto at = r.out.find("'(umask 077; sqlite3 ");
  REQUIRE_MESSAGE(at != std::string::npos, r.out);
  auto end = r.out.find('\'', at + 1);
  REQUIRE(end != std::string::npos);
  auto copied = run({"/bin/sh", "-c", r.out.substr(at + 1, end - at - 1)});
  CHECK_MESSAGE(copied.exit_code == 0, copied.err);
  const std::string copy = dir.db() + ".recovered";
  REQUIRE(std::filesystem::exists(copy));
  // Readable by its owner only, as migrate makes an outbox: it holds the same events.
  CHECK((std::filesystem::status(copy).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  auto sound = run({relay_binary(), "check", "--db", copy});
  CHECK_MESSAGE(sound.exit_code == 0, sound.out);
  CHECK(scalar(copy, "SELECT count(*) FROM metrix_outbox") == 15);
}

TEST_CASE("a truncated file, a file that is not a database, and one that is not an outbox are refused clearly") {
  TempDir dir;
  make_outbox(dir.db(), 100);
  std::filesystem::resize_file(dir.db(), 1000);
  auto truncated = run({relay_binary(), "check", "--db", dir.db()});
  CHECK(truncated.exit_code == 1);
  CHECK(truncated.err.find("database disk image is malformed") != std::string::npos);

  std::ofstream(dir.file("notes.db")) << std::string(4096, 'x');
  auto text = run({relay_binary(), "check", "--db", dir.file("notes.db").string()});
  CHECK(text.exit_code == 1);
  CHECK(text.err.find("is not an SQLite database") != std::string::npos);

  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.file("app.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE orders(id INTEGER PRIMARY KEY)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto other = run({relay_binary(), "check", "--db", dir.file("app.db").string()});
  CHECK(other.exit_code == 1);
  CHECK(other.out.find("is not a metrix outbox") != std::string::npos);

  auto missing = run({relay_binary(), "check", "--db", dir.file("missing.db").string()});
  CHECK(missing.exit_code == 1);
  CHECK_FALSE(std::filesystem::exists(dir.file("missing.db")));
}
