// bench-outbox: the database side of tools/bench/run-bench.
//
//   bench-outbox fill     --db PATH --rows N --payload-file F
//       Creates and migrates PATH and leaves N pending rows of the payload in metrix_outbox,
//       in one transaction. The payload goes through the producer API (and so the validation
//       trigger and CHECK constraints) once; the other N-1 rows are copies inserted with
//       triggers off on this connection (SQLITE_DBCONFIG_ENABLE_TRIGGER) and
//       ignore_check_constraints, because the trigger costs hundreds of microseconds per row
//       and a million rows would take minutes. The enqueue path's own cost is what `enqueue`
//       measures. In each copy, the value of the first "metrixUserId" in the text becomes
//       "user-" and the row number in 12 digits (row 1 keeps the file's own), so that no two
//       payloads are alike, as in a real outbox: SQLite keeps the last JSON texts it parsed
//       within a statement, and identical payloads would hide the cost of the relay's JSON
//       lookups.
//
//   bench-outbox enqueue  --db PATH --target raw|outbox --synchronous normal|full --batch B
//                         --rows N --max-seconds T --payload-file F
//       Phases S and E: inserts the payload in transactions of B rows (BEGIN IMMEDIATE ...
//       COMMIT) until N rows or T seconds. raw (S): a prepared INSERT into a plain table
//       (id INTEGER PRIMARY KEY, payload TEXT NOT NULL); outbox (E): metrix::Producer into
//       metrix_outbox. Both on a connection opened by metrix::Database::open (WAL, busy
//       timeout) with the given synchronous setting. PATH must not exist.
//
//   bench-outbox producer --db PATH --rate R --seconds T --payload-file F [--synchronous full|normal]
//       Phase Mixed: one single-row transaction (BEGIN IMMEDIATE; Producer::enqueue; COMMIT)
//       every 1/R seconds for T seconds, like a bank's backend next to the relay. Reports the
//       commit latency (BEGIN to COMMIT returned) percentiles, how often the write lock was
//       found taken (busy_waits: the busy handler ran), how many transactions failed with
//       SQLITE_BUSY after the 5 s busy timeout (busy_errors), and the largest -wal file seen.
//       Also the delay from the schedule (when a transaction was due to COMMIT returned,
//       sched_*): a commit that waits delays every one due behind it, and only this figure
//       counts those (the commit latency alone hides them: coordinated omission). It means
//       something only at a rate the producer keeps up with.
//
// Each prints one JSON object on stdout. Exit codes: 0 ok, 1 a database error, 2 usage.
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/database.h"
#include "storage/migrate.h"
#include "storage/producer.h"

namespace {

using Clock = std::chrono::steady_clock;

int usage(const std::string& why) {
  std::fprintf(stderr,
               "bench-outbox: %s\n"
               "usage: bench-outbox fill --db PATH --rows N --payload-file F\n"
               "       bench-outbox enqueue --db PATH --target raw|outbox --synchronous normal|full --batch B "
               "--rows N --max-seconds T --payload-file F\n"
               "       bench-outbox producer --db PATH --rate R --seconds T --payload-file F "
               "[--synchronous full|normal]\n",
               why.c_str());
  return 2;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "bench-outbox: %s\n", what.c_str());
  return 1;
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Runs SQL without results on a raw connection; the error names the statement.
std::string exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return {};
  std::string error = std::string(sql) + ": " + (message ? message : sqlite3_errstr(rc));
  sqlite3_free(message);
  return error;
}

struct Args {
  std::map<std::string, std::string> values;
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  double number(const std::string& name, double fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : std::atof(it->second.c_str());
  }
};

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return true;
}

metrix::Result<metrix::Database> open_db(const std::string& path, metrix::Synchronous synchronous) {
  metrix::OpenOptions options;
  options.create = true;
  options.synchronous = synchronous;
  return metrix::Database::open(path, options);
}

int fill(const Args& args, const std::string& payload) {
  const std::string path = args.get("db");
  const auto rows = static_cast<long>(args.number("rows", 0));
  if (path.empty() || rows < 1) return usage("fill needs --db and --rows >= 1");
  auto t0 = Clock::now();
  // synchronous=OFF: the file is a benchmark fixture, rebuilt if the machine crashes.
  auto db = open_db(path, metrix::Synchronous::normal);
  if (!db) return fail(db.error().message);
  if (auto m = metrix::migrate(*db); !m) return fail(m.error().message);
  sqlite3* h = db->handle();
  if (auto e = exec(h, "PRAGMA synchronous=OFF; PRAGMA cache_size=-262144; BEGIN IMMEDIATE"); !e.empty()) return fail(e);
  {
    metrix::Producer producer(h);
    auto id = producer.enqueue(payload);
    if (!id) return fail("the payload is refused by the outbox: " + id.error().message);
    // Every further row is a copy of the one the trigger and the CHECK constraints just
    // accepted, with another metrixUserId of plain characters, so neither is run again.
    constexpr std::string_view kUser = "\"metrixUserId\":\"";
    const size_t user_at = payload.find(kUser);
    const size_t user_end = user_at == std::string::npos ? user_at : payload.find('"', user_at + kUser.size());
    if (user_end == std::string::npos || payload.find('\\', user_at) < user_end) {
      return fail("fill: the payload must contain \"metrixUserId\":\"...\" without spaces or escapes");
    }
    const std::string head = payload.substr(0, user_at + kUser.size()) + "user-";
    const std::string tail = payload.substr(user_end);
    int enabled = -1;
    if (sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &enabled) != SQLITE_OK || enabled != 0) {
      return fail("cannot turn triggers off for the bulk copy");
    }
    if (auto e = exec(h, "PRAGMA ignore_check_constraints=ON"); !e.empty()) return fail(e);
    sqlite3_stmt* raw = nullptr;
    const char* sql = "INSERT INTO metrix_outbox (payload) VALUES (?1)";
    if (sqlite3_prepare_v2(h, sql, -1, &raw, nullptr) != SQLITE_OK) return fail(sqlite3_errmsg(h));
    metrix::Statement insert(raw);
    std::string row_payload;
    char digits[24];
    for (long i = 1; i < rows; ++i) {
      std::snprintf(digits, sizeof digits, "%012ld", i + 1);
      row_payload.assign(head).append(digits).append(tail);
      insert.bind(1, std::string_view(row_payload));
      if (auto s = insert.run(); !s) return fail(s.error().message);
    }
  }
  if (auto e = exec(h, "COMMIT"); !e.empty()) return fail(e);
  // Fold the WAL into the database so the relay starts from a checkpointed file.
  if (auto e = exec(h, "PRAGMA wal_checkpoint(TRUNCATE)"); !e.empty()) return fail(e);
  std::printf("{\"rows\":%ld,\"seconds\":%.3f}\n", rows, seconds_since(t0));
  return 0;
}

int enqueue(const Args& args, const std::string& payload) {
  const std::string path = args.get("db");
  const std::string target = args.get("target");
  const std::string sync = args.get("synchronous", "full");
  const auto batch = static_cast<long>(args.number("batch", 1));
  const auto max_rows = static_cast<long>(args.number("rows", 100000));
  const double max_seconds = args.number("max-seconds", 5);
  if (path.empty() || (target != "raw" && target != "outbox") || (sync != "full" && sync != "normal") || batch < 1) {
    return usage("enqueue needs --db, --target raw|outbox, --synchronous normal|full, --batch >= 1");
  }
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) return usage(path + " exists: enqueue measures a fresh database");
  auto db = open_db(path, sync == "full" ? metrix::Synchronous::full : metrix::Synchronous::normal);
  if (!db) return fail(db.error().message);
  sqlite3* h = db->handle();
  metrix::Statement raw_insert;
  if (target == "raw") {
    if (auto e = exec(h, "CREATE TABLE plain (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"); !e.empty()) return fail(e);
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v3(h, "INSERT INTO plain (payload) VALUES (?1)", -1, SQLITE_PREPARE_PERSISTENT, &raw,
                           nullptr) != SQLITE_OK) {
      return fail(sqlite3_errmsg(h));
    }
    raw_insert = metrix::Statement(raw);
  } else if (auto m = metrix::migrate(*db); !m) {
    return fail(m.error().message);
  }
  metrix::Producer producer(h);
  // One untimed row each way, so that preparing the statements is not counted.
  if (target == "raw") {
    if (auto s = raw_insert.bind(1, std::string_view(payload)).run(); !s) return fail(s.error().message);
  } else if (auto id = producer.enqueue(payload); !id) {
    return fail(id.error().message);
  }

  long rows = 0, transactions = 0;
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  while (rows < max_rows && seconds_since(t0) < max_seconds) {
    if (auto e = exec(h, "BEGIN IMMEDIATE"); !e.empty()) return fail(e);
    for (long i = 0; i < batch; ++i) {
      if (target == "raw") {
        if (auto s = raw_insert.bind(1, std::string_view(payload)).run(); !s) return fail(s.error().message);
      } else if (auto id = producer.enqueue(payload); !id) {
        return fail(id.error().message);
      }
    }
    if (auto e = exec(h, "COMMIT"); !e.empty()) return fail(e);
    rows += batch;
    ++transactions;
  }
  const double seconds = seconds_since(t0);
  const double cpu = cpu_seconds() - cpu0;
  std::printf(
      "{\"target\":\"%s\",\"synchronous\":\"%s\",\"batch\":%ld,\"rows\":%ld,\"transactions\":%ld,\"seconds\":%.6f,"
      "\"rows_per_s\":%.1f,\"us_per_row\":%.2f,\"cpu_us_per_row\":%.2f}\n",
      target.c_str(), sync.c_str(), batch, rows, transactions, seconds, static_cast<double>(rows) / seconds,
      seconds * 1e6 / static_cast<double>(rows), cpu * 1e6 / static_cast<double>(rows));
  return 0;
}

// The busy handler a producer gets from sqlite3_busy_timeout (the same sleeps as SQLite's
// default handler), counting the calls: any call means the write lock was held by someone else.
struct BusyCounter {
  long calls = 0;   // sleeps in the handler
  long waits = 0;   // statements that found the lock taken (first call of a wait)
  int timeout_ms = 5000;

  static int handler(void* self, int count) {
    static constexpr int kDelays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    static constexpr int kTotals[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};
    constexpr int kSteps = static_cast<int>(sizeof kDelays / sizeof kDelays[0]);
    auto* b = static_cast<BusyCounter*>(self);
    ++b->calls;
    if (count == 0) ++b->waits;
    int delay = 0, prior = 0;
    if (count < kSteps) {
      delay = kDelays[count];
      prior = kTotals[count];
    } else {
      delay = kDelays[kSteps - 1];
      prior = kTotals[kSteps - 1] + delay * (count - (kSteps - 1));
    }
    if (prior + delay > b->timeout_ms) {
      delay = b->timeout_ms - prior;
      if (delay <= 0) return 0;  // give up: the statement returns SQLITE_BUSY
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    return 1;
  }
};

long file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : 0;
}

double percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

int producer(const Args& args, const std::string& payload) {
  const std::string path = args.get("db");
  const double rate = args.number("rate", 0);
  const double duration = args.number("seconds", 0);
  const std::string sync = args.get("synchronous", "full");
  if (path.empty() || rate <= 0 || duration <= 0 || (sync != "full" && sync != "normal")) {
    return usage("producer needs --db, --rate > 0, --seconds > 0");
  }
  metrix::OpenOptions options;  // a producer's ordinary connection: WAL, 5 s busy timeout
  options.synchronous = sync == "full" ? metrix::Synchronous::full : metrix::Synchronous::normal;
  auto db = metrix::Database::open(path, options);
  if (!db) return fail(db.error().message);
  sqlite3* h = db->handle();
  BusyCounter busy;
  sqlite3_busy_handler(h, &BusyCounter::handler, &busy);
  metrix::Producer producer(h);
  if (auto id = producer.enqueue(payload); !id) return fail(id.error().message);  // prepares, untimed

  const std::string wal = path + "-wal";
  long wal_max = file_size(wal);
  long busy_errors = 0;
  std::vector<double> latency_ms;
  std::vector<double> delay_ms;  // from when the transaction was due
  const auto period = std::chrono::duration<double>(1.0 / rate);
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  auto next = t0;
  // Paced by a schedule, and stopped by the clock: a producer that cannot keep up with the
  // schedule commits back to back, and still stops after `--seconds`.
  while (next < end && Clock::now() < end) {
    // Sample the WAL while waiting: it grows while the relay writes, not only at our commits.
    while (Clock::now() < next) {
      wal_max = std::max(wal_max, file_size(wal));
      std::this_thread::sleep_for(std::min<Clock::duration>(next - Clock::now(), std::chrono::milliseconds(2)));
    }
    const auto begin = Clock::now();
    bool ok = false;
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      auto id = producer.enqueue(payload);
      if (id) {
        rc = sqlite3_exec(h, "COMMIT", nullptr, nullptr, nullptr);
        ok = rc == SQLITE_OK;
      } else if (id.error().code != metrix::Errc::busy) {
        return fail(id.error().message);
      } else {
        rc = SQLITE_BUSY;
      }
    }
    if (!ok) {
      if ((rc & 0xff) != SQLITE_BUSY) return fail(std::string("producer transaction: ") + sqlite3_errmsg(h));
      ++busy_errors;
      if (!sqlite3_get_autocommit(h)) sqlite3_exec(h, "ROLLBACK", nullptr, nullptr, nullptr);
    } else {
      const auto end_of_commit = Clock::now();
      latency_ms.push_back(std::chrono::duration<double, std::milli>(end_of_commit - begin).count());
      delay_ms.push_back(std::chrono::duration<double, std::milli>(end_of_commit - next).count());
    }
    wal_max = std::max(wal_max, file_size(wal));
    next += std::chrono::duration_cast<Clock::duration>(period);
  }
  const double seconds = seconds_since(t0);
  std::sort(latency_ms.begin(), latency_ms.end());
  std::sort(delay_ms.begin(), delay_ms.end());
  std::printf(
      "{\"commits\":%zu,\"seconds\":%.3f,\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
      "\"max_ms\":%.3f,\"sched_p50_ms\":%.3f,\"sched_p99_ms\":%.3f,\"sched_max_ms\":%.3f,"
      "\"busy_waits\":%ld,\"busy_calls\":%ld,\"busy_errors\":%ld,\"wal_max_bytes\":%ld}\n",
      latency_ms.size(), seconds, static_cast<double>(latency_ms.size()) / seconds, percentile(latency_ms, 0.50),
      percentile(latency_ms, 0.90), percentile(latency_ms, 0.99), latency_ms.empty() ? 0.0 : latency_ms.back(),
      percentile(delay_ms, 0.50), percentile(delay_ms, 0.99), delay_ms.empty() ? 0.0 : delay_ms.back(), busy.waits,
      busy.calls, busy_errors, wal_max);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage("a subcommand is required");
  const std::string command = argv[1];
  Args args;
  for (int i = 2; i < argc; i += 2) {
    std::string flag = argv[i];
    if (flag.rfind("--", 0) != 0 || i + 1 >= argc) return usage("flags are --name value pairs: " + flag);
    args.values[flag.substr(2)] = argv[i + 1];
  }
  std::string payload;
  if (!read_file(args.get("payload-file"), payload) || payload.empty()) return usage("--payload-file is required");
  if (command == "fill") return fill(args, payload);
  if (command == "enqueue") return enqueue(args, payload);
  if (command == "producer") return producer(args, payload);
  return usage("unknown subcommand " + command);
}
