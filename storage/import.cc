#include "storage/import.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <thread>

#include "storage/event.h"
#include "storage/import_checkers.h"
#include "storage/migrate.h"

namespace metrix {

namespace {

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
// the in-memory checkers accepted is a row the database would accept.
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
  std::optional<TriggerCheck> trigger;  // the writer's own, made when first needed

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

  auto write = [&](LineBatch& batch) -> Status {
    for (CheckedLine& item : batch.lines) {
      if (item.number > chunk_end) {
        if (auto s = end_chunk(chunk_end); !s) return s;
        if (stop) return {};
        chunk_end += chunk;
      }
      report.lines = item.number;
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
        // Judged here by the trigger, like every other line: validate_payload() would report
        // SQLite failing (out of memory) as the line's problem.
        if (!trigger) {
          auto made = TriggerCheck::open();
          if (!made) return made.error();
          trigger.emplace(std::move(*made));
        }
        auto verdict = trigger->verdict(item.row);
        if (!verdict) return verdict.error();
        item.problem = std::move(*verdict);
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
        report.problems.push_back(LineProblem{item.number, with_key_named(db.handle(), item.row.payload, *item.problem)});
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

  CheckPool pool(threads, db.path(), bypass);
  std::deque<std::pair<std::shared_ptr<LineBatch>, std::future<Status>>> in_flight;  // destroyed before the pool
  const size_t max_in_flight = static_cast<size_t>(threads) * 3;
  std::int64_t next_line_number = 1;
  bool eof = false;
  for (;;) {
    while (!eof && !stop && in_flight.size() < max_in_flight) {
      auto batch = std::make_shared<LineBatch>();
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
      auto checked = pool.submit(batch);
      in_flight.emplace_back(std::move(batch), std::move(checked));
    }
    if (in_flight.empty() || stop) break;
    auto [batch, checked] = std::move(in_flight.front());
    in_flight.pop_front();
    if (auto s = checked.get(); !s) return s.error();
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
