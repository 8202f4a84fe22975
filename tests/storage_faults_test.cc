// Storage that fails under the relay and the producer: a file size limit reached mid-run
// (what a full disk looks like to a process) and a database locked by another process for
// longer than the busy timeout. Nothing is marked sent that was not recorded, no row is lost,
// and work resumes when the fault is gone.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <functional>
#include <thread>

#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

std::int64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

std::int64_t wait_for(const std::function<std::int64_t()>& value, std::int64_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t v = value();
  while (v < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    v = value();
  }
  return v;
}

}  // namespace

TEST_CASE("a relay that cannot write (file size limit) records nothing as sent, waits, and resumes when lifted") {
  TempDir dir;
  make_outbox(dir.db(), 300);
  {  // fold the WAL into the database, so the limit below leaves room for nothing new
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  // Big enough to open and read, too small for the WAL to take a transaction.
  // A soft limit only: raising it again later needs no privilege.
  std::vector<std::string> args = {"/usr/bin/prlimit", "--fsize=" + std::to_string(file_size(dir.db()) + 4096) + ":unlimited",
                                   "--"};
  for (auto& a : relay_args(dir.db(), fake.url(), {"--lease", "60s", "--shutdown-timeout", "5s"})) args.push_back(a);
  auto relay = Process::start(args, relay_env());
  std::this_thread::sleep_for(2500ms);
  CHECK(relay.running());
  CHECK(count_status(dir.db(), "sent") == 0);  // nothing could be recorded, so nothing is 'sent'
  CHECK(relay.err().find("cannot write to the outbox") != std::string::npos);
  CHECK(relay.err().find("retrying in 1s") != std::string::npos);

  // The disk has room again.
  REQUIRE(run({"/usr/bin/prlimit", "--pid", std::to_string(relay.pid()), "--fsize=unlimited"}).exit_code == 0);
  CHECK(wait_for([&] { return count_status(dir.db(), "sent"); }, 300, 30s) == 300);
  relay.kill(SIGTERM);
  CHECK(relay.wait(10s) == 0);
  CHECK(fake.records().size() >= 300);
  CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
}

TEST_CASE("enqueue past a file size limit fails cleanly and leaves no partial row") {
  TempDir dir;
  make_outbox(dir.db(), 50);
  {
    auto db = metrix::Database::open(dir.db());
    REQUIRE(db);
    REQUIRE(db->exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  // Keep a connection open so the -shm and -wal files exist: the limit then bites when the
  // insert's pages are appended to the WAL, inside the transaction.
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &reader) == SQLITE_OK);
  REQUIRE(sqlite3_exec(reader, "SELECT count(*) FROM metrix_outbox", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto r = run({"/usr/bin/prlimit", "--fsize=6000:unlimited", "--", relay_binary(), "enqueue", "--db", dir.db(),
                "--json", valid_payload(1)});
  sqlite3_close(reader);
  CHECK(r.exit_code == 1);
  CHECK_FALSE(r.err.empty());
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 50);
  CHECK(text(dir.db(), "PRAGMA integrity_check") == "ok");
  CHECK(run({relay_binary(), "enqueue", "--db", dir.db(), "--json", valid_payload(1)}).out == "51\n");
}

TEST_CASE("a database locked by another process past the busy timeout: the relay waits, then resumes") {
  TempDir dir;
  make_outbox(dir.db(), 100);
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  sqlite3* locker = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &locker) == SQLITE_OK);
  REQUIRE(sqlite3_exec(locker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--busy-timeout", "300ms"}), relay_env());
  std::this_thread::sleep_for(2s);
  CHECK(relay.running());
  CHECK(relay.err().find("database is locked") != std::string::npos);
  CHECK(fake.records().empty());  // nothing claimed, nothing sent

  // The enqueue command gives up with a clear message after its own busy timeout.
  auto blocked = run({relay_binary(), "enqueue", "--db", dir.db(), "--json", valid_payload(7)});
  CHECK(blocked.exit_code == 1);
  CHECK(blocked.err.find("locked") != std::string::npos);

  REQUIRE(sqlite3_exec(locker, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(locker);
  CHECK(wait_for([&] { return count_status(dir.db(), "sent"); }, 100, 30s) == 100);
  relay.kill(SIGTERM);
  CHECK(relay.wait(10s) == 0);
}
