// Storage that fails under the relay and the producer: a file size limit reached mid-run
// (what a full disk looks like to a process) and a database locked by another process for
// longer than the busy timeout. Nothing is marked sent that was not recorded, no row is lost,
// and work resumes when the fault is gone.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "tests/outbox_fixture.h"
#include "tests/support/fake_metrix.h"

using namespace metrix::test;
using namespace std::chrono_literals;

namespace {

std::int64_t wait_for(const std::function<std::int64_t()>& value, std::int64_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t v = value();
  while (v < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    v = value();
  }
  return v;
}

// Copies every page of the WAL into the database file and empties the WAL.
void fold_wal(const std::string& path) {
  auto db = metrix::Database::open(path);
  REQUIRE(db);
  REQUIRE(db->exec("PRAGMA wal_checkpoint(TRUNCATE)"));
}

// User and system CPU time of a running process (/proc/PID/stat, fields 14 and 15).
double cpu_seconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

TEST_CASE("a relay that cannot write (file size limit) records nothing as sent, waits, and resumes when lifted") {
  TempDir dir;
  make_outbox(dir.db(), 300);
  fold_wal(dir.db());  // so the limit below leaves room for nothing new
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());
  // Room for the 32 KiB -shm file, so the relay opens and reads, and for one WAL frame
  // or so, far less than claiming 300 rows writes. (The limit is per file: one just above
  // the database's size left the WAL room for a whole claim whenever that touched fewer
  // pages than the file has, and the test failed now and then.)
  // A soft limit only: raising it again later needs no privilege.
  REQUIRE(std::filesystem::file_size(dir.db()) > 64 * 1024);
  std::vector<std::string> args = {"/usr/bin/prlimit", "--fsize=" + std::to_string(32 * 1024 + 8 * 1024) + ":unlimited",
                                   "--"};
  for (auto& a : relay_args(dir.db(), fake.url(), {"--lease", "90s", "--shutdown-timeout", "5s"})) args.push_back(a);
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

TEST_CASE("a database damaged under a running relay: it stops with exit 1, says so, and does not retry") {
  TempDir dir;
  make_outbox(dir.db(), 3000);
  fold_wal(dir.db());
  // Slowed answers, so that the relay is mid-way, with rows claimed and answers coming in,
  // when the file is damaged.
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "20"}), fake_env());
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--concurrency", "8", "--lease", "90s"}), relay_env());
  REQUIRE(wait_for([&] { return static_cast<std::int64_t>(fake.records().size()); }, 20, 30s) >= 20);
  {
    // The WAL folded into the database file, so that what the relay reads next comes from
    // the file, bar the few pages it writes meanwhile; then garbage over every page after
    // the schema's and the tables' and indexes' root pages, as a failing disk or a stray
    // write leaves them.
    fold_wal(dir.db());
    const auto size = std::filesystem::file_size(dir.db());
    const auto last_kept = std::max(scalar(dir.db(), "SELECT max(rootpage) FROM sqlite_schema"),
                                    scalar(dir.db(), "SELECT max(pageno) FROM dbstat WHERE name = 'sqlite_schema'"));
    const auto from = static_cast<std::uintmax_t>(last_kept * scalar(dir.db(), "PRAGMA page_size"));
    REQUIRE(size > from * 4);
    std::fstream file(dir.db(), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(from));
    const std::string garbage(size - from, '\xA5');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  // Retrying would not mend the file, and writing on could make it worse: the relay stops,
  // rather than retry every second as it does for a full or locked disk, and reports the
  // outcomes it could not record at once, rather than after ten more tries (5 s) as before.
  CHECK_MESSAGE(relay.wait(60s) == 1, relay.err());
  CHECK(relay.err().find("stopping: the database is damaged") != std::string::npos);
  CHECK(relay.err().find("check it with 'PRAGMA integrity_check'") != std::string::npos);
  CHECK(relay.err().find("retrying in 1s") == std::string::npos);
  CHECK_MESSAGE(relay.err().find("not recording") != std::string::npos, relay.err());
  CHECK(relay.err().find("giving up on recording") == std::string::npos);
  CHECK(relay.err().find("finished: sent ") != std::string::npos);
  CHECK(relay.err().find(kDevKey) == std::string::npos);
  CHECK(text(dir.db(), "PRAGMA integrity_check") != "ok");
}

TEST_CASE("enqueue past a file size limit fails cleanly and leaves no partial row") {
  TempDir dir;
  make_outbox(dir.db(), 50);
  fold_wal(dir.db());
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
  // Between attempts it sleeps. Before, it polled without waiting for the second after each
  // failed attempt: it burnt about a CPU-second a second.
  CHECK(cpu_seconds(relay.pid()) < 0.5);
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

TEST_CASE("while another connection holds the write lock, the relay keeps sending the rows it already claimed") {
  // Outcomes commit on the relay's writer thread; its HTTP loop does not wait for them. Before,
  // one thread did both, and a round waiting for the lock stopped every request.
  TempDir dir;
  make_outbox(dir.db(), 1000);
  auto fake = FakeMetrix::start(dir, fake_args({"--latency-ms", "20"}), fake_env());
  // relay_args' long timeout and lease: no claimed row is handed back for waiting too long
  // (that needs a write, which the lock holds up), and no request times out and is sent again,
  // even in a slow build on a busy machine (under ThreadSanitizer beside another run, a 10 s
  // timeout delivered 1,004 copies of 1,000 events).
  auto relay = Process::start(relay_args(dir.db(), fake.url(), {"--concurrency", "4", "--until-idle"}), relay_env());
  REQUIRE(wait_for([&] { return std::int64_t(fake.records().size()); }, 20, 30s) >= 20);

  sqlite3* locker = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &locker) == SQLITE_OK);
  sqlite3_busy_timeout(locker, 10'000);
  REQUIRE(sqlite3_exec(locker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  const auto before = fake.records().size();
  std::this_thread::sleep_for(3s);
  const auto during = fake.records().size() - before;
  const auto sent_during = count_status(dir.db(), "sent");  // a reader is never blocked (WAL)
  REQUIRE(sqlite3_exec(locker, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(locker);

  // 4 requests in flight, each answered after 20 ms: about 600 in the 3 s. With the loop
  // blocked, at most the 4 in flight arrive.
  CHECK_MESSAGE(during >= 20, during << " events arrived while the lock was held");
  CHECK(relay.wait(60s) == 0);
  CHECK(count_status(dir.db(), "sent") == 1000);
  CHECK(fake.records().size() == 1000);
  CHECK(sent_during <= std::int64_t(before) + 8);  // nothing recorded while the lock was held
}

namespace {

// Makes `lock` immutable (chattr +i) and checks that enqueue, import and the relay refuse the
// outbox at `db` with `refused` in their message, adding and sending nothing, that status
// still reads it when `readable`, and that the relay delivers everything once `lock` is
// writable again. The tests run as root, for whom file modes do not apply: the immutable
// attribute does. Without it (another file system, no CAP_LINUX_IMMUTABLE) this cannot run.
void refused_while_immutable(const TempDir& dir, const std::string& db, const std::string& lock,
                             const std::string& refused, bool readable) {
  make_outbox(db, 20);
  const std::string chattr = "/usr/bin/chattr";  // e2fsprogs, a required Debian package
  auto immutable = std::filesystem::exists(chattr) ? run({chattr, "+i", lock}) : RunResult{-1, 0, "", "no " + chattr, false};
  if (immutable.exit_code != 0) {
    MESSAGE("skipped: cannot make a file read-only here: " << immutable.err);
    return;
  }
  struct Unlock {
    std::string path;
    ~Unlock() { run({"/usr/bin/chattr", "-i", path}); }
  } unlock{lock};
  auto fake = FakeMetrix::start(dir, fake_args(), fake_env());

  auto enqueued = run({relay_binary(), "enqueue", "--db", db, "--json", valid_payload(21)});
  CHECK(enqueued.exit_code == 1);
  CHECK_MESSAGE(enqueued.err.find(refused) != std::string::npos, enqueued.err);
  std::ofstream(dir.file("batch.ndjson")) << valid_payload(22) << "\n" << valid_payload(23) << "\n";
  auto imported = run({relay_binary(), "import", "--db", db, dir.file("batch.ndjson").string()});
  CHECK(imported.exit_code == 1);
  CHECK_MESSAGE(imported.err.find(refused) != std::string::npos, imported.err);
  auto relay = run(relay_args(db, fake.url(), {"--until-idle"}), {}, relay_env(), 20s);
  CHECK(relay.exit_code == 1);
  CHECK_MESSAGE(relay.err.find(refused) != std::string::npos, relay.err);
  CHECK(fake.records().empty());
  CHECK((run({relay_binary(), "status", "--db", db}).exit_code == 0) == readable);

  CHECK(run({chattr, "-i", lock}).exit_code == 0);
  auto resumed = run(relay_args(db, fake.url(), {"--until-idle"}), {}, relay_env(), 60s);
  CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
  CHECK(count_status(db, "sent") == 20);
  CHECK(scalar(db, "SELECT count(*) FROM metrix_outbox") == 20);
  CHECK(fake.records().size() == 20);
  CHECK(text(db, "PRAGMA integrity_check") == "ok");
}

}  // namespace

TEST_CASE("a read-only database file: enqueue, import and the relay refuse it clearly, add nothing, send nothing") {
  // Before the fix, the relay opened the file read-only without knowing and retried its
  // writes every second for ever, even after the file became writable again.
  TempDir dir;
  refused_while_immutable(dir, dir.db(), dir.db(),
                          "cannot open database " + dir.db() + " for writing: the file is read-only", true);
}

TEST_CASE("a database in a directory that cannot be written (no room for -wal and -shm) is refused, saying so") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("vault"));
  const std::string db = dir.file("vault/outbox.db").string();
  refused_while_immutable(dir, db, dir.file("vault").string(),
                          "the directory " + dir.file("vault").string() + " is not writable, and SQLite must create " +
                              db + "-wal and " + db + "-shm in it",
                          false);
}
