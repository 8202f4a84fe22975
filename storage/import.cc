#include "storage/import.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "storage/event.h"
#include "storage/migrate.h"

namespace metrix {

namespace {

// A fixed set of threads running jobs in any order; futures give the results back in the
// order the caller wants them. The destructor finishes the queued jobs, then joins.
class CheckPool {
 public:
  explicit CheckPool(int threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~CheckPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : workers_) t.join();
  }
  CheckPool(const CheckPool&) = delete;
  CheckPool& operator=(const CheckPool&) = delete;

  std::future<void> submit(std::function<void()> job) {
    std::packaged_task<void()> task(std::move(job));
    auto done = task.get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    return done;
  }

 private:
  void work() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();  // an exception is kept in the future
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

struct Item {
  std::int64_t line = 0;
  bool blank = false;
  ImportLine row;
  std::optional<std::string> problem;  // "field: rule"
  bool present = false;  // its dedup_key was in the outbox when checked: not judged by the pool
};

struct Batch {
  std::vector<std::string> text;
  std::int64_t first_line = 0;
  std::vector<Item> items;
};

// A private in-memory outbox with this build's migrations: inserting a row into it runs the
// very validation trigger the real outbox runs. One per checking thread. Rows are inserted
// inside a transaction that is rolled back after each batch, so the table stays empty.
//
// A batch goes in as ONE multi-row INSERT first: the trigger still judges every row, but the
// statement's fixed costs are paid once per batch instead of once per row (a third of the
// time per line, measured). Only when that statement is refused -- some line is bad, and
// the error names the first one only -- is the batch inserted again row by row, to find
// every bad line and its rule. (storage/event.h's validate_payload is the one-row version.)
class BatchValidator {
 public:
  // `target`: the database being imported into, read to skip lines already there.
  static BatchValidator& for_this_thread(const std::string& target) {
    thread_local std::unique_ptr<BatchValidator> validator;
    if (!validator) validator = std::make_unique<BatchValidator>(make(target));
    return *validator;
  }

  // Sets item.problem on every item the trigger refuses, and item.present (instead of
  // judging it) on every item whose dedup_key the target already holds: the writer skips
  // those, so re-running an import costs a lookup per line, not a validation.
  void check(std::vector<Item>& items) {
    mark_present(items);
    if (all_accepted(items)) return;
    run("BEGIN");
    for (Item& item : items) {
      if (item.blank || item.problem || item.present) continue;
      if (auto problem = trigger_verdict(item)) item.problem = std::move(problem);
    }
    run("ROLLBACK");
  }

  BatchValidator(Database db, Statement fill, Statement all, Statement one, Database target, Statement exists)
      : db_(std::move(db)),
        fill_(std::move(fill)),
        all_(std::move(all)),
        one_(std::move(one)),
        target_(std::move(target)),
        exists_(std::move(exists)) {}

 private:
  static BatchValidator make(const std::string& target_path) {
    auto target = Database::open(target_path);
    if (!target) throw std::runtime_error(target.error().message);
    auto exists = target->prepare("SELECT 1 FROM metrix_outbox WHERE dedup_key = ?1");
    if (!exists) throw std::runtime_error(exists.error().message);
    auto db = Database::open_memory();
    if (!db) throw std::runtime_error(db.error().message);  // out of memory: nothing to recover
    if (auto m = migrate(*db); !m) throw std::runtime_error(m.error().message);
    // No column types: values keep the type they were bound with, as NEW.x does in the trigger.
    if (auto s = db->exec(
            "CREATE TEMP TABLE batch (metrix_import_line INTEGER PRIMARY KEY, payload, dedup_key, app_id)");
        !s) {
      throw std::runtime_error(s.error().message);
    }
    auto prepare = [&](std::string_view sql) {
      auto stmt = db->prepare(sql);
      if (!stmt) throw std::runtime_error(stmt.error().message);
      return std::move(*stmt);
    };
    Statement fill =
        prepare("INSERT INTO temp.batch (metrix_import_line, payload, dedup_key, app_id) VALUES (?4, ?1, ?2, ?3)");
    // "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint. A dedup_key
    // seen earlier in the input is no error: the writer skips it.
    Statement all = prepare(
        "INSERT INTO main.metrix_outbox (payload, dedup_key, app_id) SELECT payload, dedup_key, app_id "
        "FROM temp.batch WHERE true ORDER BY metrix_import_line ON CONFLICT (dedup_key) DO NOTHING");
    Statement one = prepare(
        "INSERT INTO main.metrix_outbox (payload, dedup_key, app_id) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (dedup_key) DO NOTHING");
    return BatchValidator(std::move(*db), std::move(fill), std::move(all), std::move(one), std::move(*target),
                          std::move(*exists));
  }

  // The trigger's verdict on one line: its message, or nullopt if it accepts the line.
  // Call inside a transaction that is rolled back.
  std::optional<std::string> trigger_verdict(const Item& item) {
    bind_row(one_, item);
    auto done = one_.step();
    one_.reset();
    if (done) return std::nullopt;
    if (done.error().code != Errc::invalid_event) {
      run("ROLLBACK");
      throw std::runtime_error(done.error().message);
    }
    return done.error().message;
  }

  void mark_present(std::vector<Item>& items) {
    // One read transaction: one snapshot, and no lock taken per lookup.
    auto snapshot = Transaction::begin_read(target_.handle());
    if (!snapshot) throw std::runtime_error(snapshot.error().message);
    for (Item& item : items) {
      if (item.blank || item.problem || !item.row.dedup_key) continue;
      exists_.bind(1, std::string_view(*item.row.dedup_key));
      auto found = exists_.step();
      exists_.reset();
      if (!found) throw std::runtime_error(found.error().message);
      item.present = *found;
    }
  }

  // Copies the lines still to be judged into temp.batch. Call inside a transaction that is
  // rolled back.
  void fill_batch(const std::vector<Item>& items) {
    for (const Item& item : items) {
      if (item.blank || item.problem || item.present) continue;
      bind_row(fill_, item);
      fill_.bind(4, item.line);
      if (auto s = fill_.run(); !s) {
        run("ROLLBACK");
        throw std::runtime_error(s.error().message);
      }
    }
  }

  void run(std::string_view sql) {
    if (auto s = db_.exec(sql); !s) throw std::runtime_error(s.error().message);
  }

  static void bind_row(Statement& s, const Item& item) {
    s.bind(1, std::string_view(item.row.payload)).bind(2, item.row.dedup_key).bind(3, item.row.app_id);
  }

  // True when the trigger accepts every line of the batch in one statement.
  bool all_accepted(const std::vector<Item>& items) {
    run("BEGIN");
    fill_batch(items);
    auto done = all_.step();
    all_.reset();
    run("ROLLBACK");
    if (done) return true;
    if (done.error().code != Errc::invalid_event) throw std::runtime_error(done.error().message);
    return false;
  }

  Database db_;
  Statement fill_, all_, one_;  // declared after db_: destroyed before it
  Database target_;
  Statement exists_;
};

// Parses (and, when `validate`, checks) every line of the batch. Runs on a pool thread;
// an exception (out of memory) reaches the caller through the batch's future.
void check_batch(Batch& batch, bool validate, const std::string& target) {
  batch.items.resize(batch.text.size());
  for (size_t i = 0; i < batch.text.size(); ++i) {
    Item& item = batch.items[i];
    item.line = batch.first_line + static_cast<std::int64_t>(i);
    const std::string& text = batch.text[i];
    if (is_blank_import_line(text)) {
      item.blank = true;
      continue;
    }
    auto parsed = parse_import_line(text);
    if (!parsed) {
      item.problem = parsed.error().message;
      continue;
    }
    item.row = std::move(*parsed);
  }
  batch.text.clear();
  batch.text.shrink_to_fit();
  if (!validate) return;
  BatchValidator::for_this_thread(target).check(batch.items);
}

Result<std::vector<std::string>> outbox_triggers(Database& db) {
  auto s = db.prepare(
      "SELECT name || char(10) || sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'metrix_outbox' "
      "UNION ALL SELECT name || char(10) || sql FROM sqlite_temp_schema WHERE type = 'trigger' "
      "ORDER BY 1");
  if (!s) return s.error();
  std::vector<std::string> triggers;
  for (;;) {
    auto row = s->step();
    if (!row) return row.error();
    if (!*row) return triggers;
    triggers.push_back(s->text(0));
  }
}

// True when the database's triggers on metrix_outbox are exactly this build's: then a row
// the in-memory validators accepted is a row the database would accept.
Result<bool> triggers_are_known(Database& db) {
  auto reference = Database::open_memory();
  if (!reference) return reference.error();
  if (auto m = migrate(*reference); !m) return m.error();
  auto expected = outbox_triggers(*reference);
  if (!expected) return expected.error();
  auto actual = outbox_triggers(db);
  if (!actual) return actual.error();
  return *expected == *actual;
}

// Switches the connection's triggers off for its lifetime, and back on after.
class TriggersOff {
 public:
  explicit TriggersOff(sqlite3* db) : db_(db) {
    int state = 1;
    active_ = sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &state) == SQLITE_OK && state == 0;
  }
  ~TriggersOff() {
    if (active_) sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, nullptr);
  }
  TriggersOff(const TriggersOff&) = delete;
  TriggersOff& operator=(const TriggersOff&) = delete;
  bool active() const { return active_; }

 private:
  sqlite3* db_;
  bool active_ = false;
};

}  // namespace

Result<ImportReport> import_ndjson(Database& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress) {
  ImportReport report;
  auto known = triggers_are_known(db);
  if (!known) return known.error();
  std::optional<TriggersOff> triggers_off;
  if (*known) {
    triggers_off.emplace(db.handle());
    report.triggers_bypassed = triggers_off->active();
  }
  const bool bypass = report.triggers_bypassed;
  // A large transaction touches many index pages; keeping them in memory keeps it fast.
  if (auto s = db.exec("PRAGMA cache_size = -65536"); !s) return s.error();
  auto insert = db.prepare(
      "INSERT INTO metrix_outbox (payload, dedup_key, app_id) VALUES (?1, ?2, ?3) ON CONFLICT (dedup_key) DO NOTHING");
  if (!insert) return insert.error();
  auto exists = db.prepare("SELECT 1 FROM metrix_outbox WHERE dedup_key = ?1");
  if (!exists) return exists.error();

  int threads = options.validators > 0 ? options.validators
                                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const std::int64_t batch_lines = std::max<std::int64_t>(1, options.batch_lines);
  const std::int64_t chunk = options.chunk_lines;  // 0: everything is one chunk

  std::optional<Transaction> tx;
  bool doomed = false;          // the open chunk has a bad line: nothing of it is written
  bool stop = false;            // chunked: a chunk failed; read no further
  std::int64_t chunk_end = chunk > 0 ? chunk : INT64_MAX;
  std::int64_t open_inserted = 0, open_skipped = 0;
  ImportProgress seen;

  // Ends the chunk that covers lines up to `last_line`: commits it, or throws it away.
  auto end_chunk = [&](std::int64_t last_line) -> Status {
    if (doomed) {
      tx.reset();
      if (chunk > 0) stop = true;
      return {};
    }
    if (tx) {
      if (auto s = tx->commit(); !s) return s;
      tx.reset();
    }
    report.inserted += open_inserted;
    report.skipped += open_skipped;
    open_inserted = open_skipped = 0;
    report.committed_lines = last_line;
    return {};
  };

  auto write = [&](Batch& batch) -> Status {
    for (Item& item : batch.items) {
      if (item.line > chunk_end) {
        if (auto s = end_chunk(chunk_end); !s) return s;
        if (stop) return {};
        chunk_end += chunk;
      }
      report.lines = item.line;
      if (item.blank) {
        ++report.blank;
        continue;
      }
      if (!doomed && !tx) {
        auto begun = Transaction::begin(db.handle());
        if (!begun) return begun.error();
        tx.emplace(std::move(*begun));
      }
      // With the parallel checks on, a good line whose key they did not find needs no look
      // here: INSERT ... ON CONFLICT DO NOTHING skips it if the key arrived since.
      if (item.row.dedup_key && (!bypass || item.present || item.problem)) {
        // Already in the outbox (an earlier run, or earlier in this input): skipped, and not
        // checked, even when the line is bad: the event with this key is there, and this line
        // will not be written (as import.h promises; found by fuzzing).
        exists->bind(1, std::string_view(*item.row.dedup_key));
        auto found = exists->step();
        exists->reset();
        if (!found) return found.error();
        if (*found) {
          ++open_skipped;
          continue;
        }
      }
      if (!item.problem && (item.present || (doomed && !bypass))) {
        // Lines the pool did not judge: a key that was present when checked and is gone now
        // (purged meanwhile), or -- with the database's triggers on and the chunk already
        // lost -- lines that will not be written but must still be reported if bad.
        if (auto v = validate_payload(item.row.payload, item.row.app_id, item.row.dedup_key)) item.problem = v->message();
      }
      if (!item.problem && !doomed) {
        insert->bind(1, std::string_view(item.row.payload)).bind(2, item.row.dedup_key).bind(3, item.row.app_id);
        auto done = insert->step();
        insert->reset();
        if (!done) {
          if (done.error().code != Errc::invalid_event) return done.error();
          item.problem = done.error().message;  // the database's own trigger refused it
        } else if (sqlite3_changes(db.handle()) == 1) {
          ++open_inserted;
        } else {
          ++open_skipped;
        }
      }
      if (item.problem) {
        report.problems.push_back(LineProblem{item.line, with_key_named(db.handle(), item.row.payload, *item.problem)});
        if (!doomed) {
          // Nothing of this chunk will be written: give the lock back now, and only
          // check the rest of the chunk for more bad lines.
          doomed = true;
          tx.reset();
          open_inserted = open_skipped = 0;
        }
      }
    }
    return {};
  };

  CheckPool pool(threads);
  std::deque<std::pair<std::shared_ptr<Batch>, std::future<void>>> in_flight;
  const size_t max_in_flight = static_cast<size_t>(threads) * 3;
  std::int64_t next_line_number = 1;
  bool eof = false;
  for (;;) {
    while (!eof && !stop && in_flight.size() < max_in_flight) {
      auto batch = std::make_shared<Batch>();
      batch->first_line = next_line_number;
      batch->text.reserve(static_cast<size_t>(batch_lines));
      std::string line;
      while (static_cast<std::int64_t>(batch->text.size()) < batch_lines) {
        line.clear();
        auto more = next_line(line);
        if (!more) return more.error();
        if (!*more) {
          eof = true;
          break;
        }
        if (next_line_number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 BOM
        batch->text.push_back(std::move(line));
        ++next_line_number;
      }
      if (batch->text.empty()) break;
      auto future = pool.submit(
          [batch, bypass, target = db.path()] { check_batch(*batch, bypass, target); });
      in_flight.emplace_back(std::move(batch), std::move(future));
    }
    if (in_flight.empty() || stop) break;
    auto [batch, future] = std::move(in_flight.front());
    in_flight.pop_front();
    try {
      future.get();
    } catch (const std::exception& e) {
      return Error{Errc::io, fmt::format("checking lines {}..: {}", batch->first_line, e.what())};
    }
    if (auto s = write(*batch); !s) return s.error();
    if (progress) {
      seen.lines = report.lines;
      seen.inserted = report.inserted + open_inserted;
      seen.skipped = report.skipped + open_skipped;
      seen.problems = static_cast<std::int64_t>(report.problems.size());
      seen.committed_lines = report.committed_lines;
      progress(seen);
    }
  }
  if (!stop) {
    if (auto s = end_chunk(report.lines); !s) return s.error();
  }
  if (!report.problems.empty() && chunk == 0) {
    report.inserted = report.skipped = 0;
    report.committed_lines = 0;
  }
  return report;
}

}  // namespace metrix
