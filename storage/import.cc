#include "storage/import.h"

#include <algorithm>
#include <cassert>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "storage/event.h"
#include "storage/rule_message.h"
#include "storage/import_checkers.h"
#include "storage/import_loop.h"
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

// Switches the connection's triggers off for its lifetime, and puts the caller's setting
// back after.
class TriggersOff {
 public:
  explicit TriggersOff(sqlite3* db) : db_(db) {
    int was = 0, now = 1;
    if (sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &was) != SQLITE_OK) return;
    active_ = sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &now) == SQLITE_OK && now == 0;
    restore_ = was == 1;  // a caller's connection with triggers off already keeps them off
  }
  ~TriggersOff() {
    if (active_ && restore_) sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, nullptr);
  }
  TriggersOff(const TriggersOff&) = delete;
  TriggersOff& operator=(const TriggersOff&) = delete;
  bool active() const { return active_; }

 private:
  sqlite3* db_;
  bool active_ = false;   // triggers are off for the import
  bool restore_ = false;  // they were on before it
};

// Sets the connection's page cache for its lifetime, and puts the caller's setting back after.
class CacheSize {
 public:
  static Result<CacheSize> set(Database& db, std::int64_t kib) {
    auto read = db.prepare("PRAGMA cache_size");
    if (!read) return read.error();
    auto row = read->step();
    if (!row) return row.error();
    assert(*row);  // the pragma always answers with one row
    CacheSize guard(db, read->int64(0));
    if (auto s = db.exec(fmt::format("PRAGMA cache_size = {}", -kib)); !s) return s.error();
    return guard;
  }
  CacheSize(CacheSize&& other) noexcept : db_(std::exchange(other.db_, nullptr)), previous_(other.previous_) {}
  CacheSize& operator=(CacheSize&&) = delete;
  ~CacheSize() {
    // Only a number changes, with no I/O: it can fail only for want of memory, and then the
    // connection keeps a larger cache, which is slower to give back but never wrong.
    if (db_) (void)db_->exec(fmt::format("PRAGMA cache_size = {}", previous_));
  }

 private:
  CacheSize(Database& db, std::int64_t previous) : db_(&db), previous_(previous) {}
  Database* db_;
  std::int64_t previous_;  // as the pragma gives it: pages if positive, KiB if negative
};

// Writes the checked lines into the outbox, in input order, a transaction per chunk (all or
// nothing: one chunk that ends with the input), and counts what it did.
//
//   between --a line--> open --the chunk ends--> between       (committed)
//   between, open --a bad line--> doomed                       (rolled back at once)
//   doomed --the chunk ends, chunked--> stopped                (nothing more is read)
class ChunkWriter {
 public:
  enum class State {
    between,  // no transaction: the next line that is not blank begins the chunk's
    open,     // the chunk's transaction is open; its good lines are written as they come
    doomed,   // the chunk has a bad line: nothing of it is written, its other lines are only checked
    stopped,  // a chunk was doomed in a chunked import: it ends there
  };

  ChunkWriter(Database& db, Statement insert, Statement exists, bool triggers_bypassed, std::int64_t chunk_lines)
      : db_(db),
        insert_(std::move(insert)),
        exists_(std::move(exists)),
        bypass_(triggers_bypassed),
        chunk_lines_(chunk_lines),
        chunk_end_(chunk_lines > 0 ? chunk_lines : std::numeric_limits<std::int64_t>::max()) {
    report_.triggers_bypassed = triggers_bypassed;
  }

  // Takes the next lines of the input, up to the end or until the import stops.
  Status write(std::vector<CheckedLine>& lines) {
    for (CheckedLine& line : lines) {
      if (auto s = take(line); !s) return s;
      if (state_ == State::stopped) break;
    }
    return {};
  }

  // The input ended: the last chunk ends there.
  Result<ImportReport> finish() {
    if (state_ != State::stopped) {
      if (auto s = end_chunk(report_.lines); !s) return s.error();
    }
    if (!report_.problems.empty() && chunk_lines_ == 0) {
      report_.inserted = report_.skipped = 0;
      report_.committed_lines = 0;
    }
    return report_;
  }

  State state() const { return state_; }

  ImportProgress progress() const {
    ImportProgress p;
    p.lines = report_.lines;
    p.inserted = report_.inserted + open_inserted_;
    p.skipped = report_.skipped + open_skipped_;
    p.problems = static_cast<std::int64_t>(report_.problems.size());
    p.committed_lines = report_.committed_lines;
    return p;
  }

 private:
  Status take(CheckedLine& line) {
    assert(state_ != State::stopped);
    assert(line.number == report_.lines + 1);  // every line once, in input order
    assert(tx_.has_value() == (state_ == State::open));
    if (line.number > chunk_end_) {
      if (auto s = end_chunk(chunk_end_); !s) return s;
      if (state_ == State::stopped) return {};
      chunk_end_ += chunk_lines_;
    }
    report_.lines = line.number;
    if (line.blank) {
      ++report_.blank;
      return {};
    }
    if (state_ == State::between) {
      auto begun = Transaction::begin(db_.handle());
      if (!begun) return begun.error();
      tx_.emplace(std::move(*begun));
      state_ = State::open;
    }
    // With the parallel checks on, a good line whose key they did not find needs no look
    // here: INSERT ... ON CONFLICT DO NOTHING skips it if the key arrived since.
    if (line.row.dedup_key && (!bypass_ || line.present || line.problem)) {
      // Already in the outbox (an earlier run, or earlier in this input): skipped, and not
      // checked, even when the line is bad: the event with this key is there, and this line
      // will not be written (as import.h promises; found by fuzzing).
      auto found = already_there(*line.row.dedup_key);
      if (!found) return found.error();
      if (*found) {
        ++open_skipped_;
        return {};
      }
    }
    if (!line.problem && (line.present || (state_ == State::doomed && !bypass_))) {
      // Lines the pool did not judge: a key that was present when checked and is gone now
      // (purged meanwhile), or -- with the database's triggers on and the chunk already
      // lost -- lines that will not be written but must still be reported if bad.
      auto verdict = judge_here(line.row);
      if (!verdict) return verdict.error();
      line.problem = std::move(*verdict);
    }
    if (!line.problem && state_ == State::open) {
      insert_.bind(1, std::string_view(line.row.payload)).bind(2, line.row.dedup_key).bind(3, line.row.app_id);
      auto done = insert_.step();
      insert_.reset();
      if (!done) {
        if (done.error().code != Errc::invalid_event) return done.error();
        line.problem = done.error().message;  // the database's own trigger refused it
      } else if (sqlite3_changes(db_.handle()) == 1) {
        ++open_inserted_;
      } else {
        ++open_skipped_;
      }
    }
    if (line.problem) {
      report_.problems.push_back(LineProblem{line.number, with_key_named(db_.handle(), line.row.payload, *line.problem)});
      // Nothing of this chunk will be written: give the lock back now, and only check the
      // rest of the chunk for more bad lines.
      if (state_ == State::open) doom();
    }
    return {};
  }

  void doom() {
    tx_.reset();
    state_ = State::doomed;
    open_inserted_ = open_skipped_ = 0;
  }

  // Ends the chunk of lines up to `last_line`: commits it, or leaves it unwritten if doomed.
  Status end_chunk(std::int64_t last_line) {
    switch (state_) {
      case State::doomed:
        if (chunk_lines_ > 0) state_ = State::stopped;
        return {};
      case State::open:
        if (auto s = tx_->commit(); !s) return s;
        tx_.reset();
        state_ = State::between;
        break;
      case State::between:
        break;
      case State::stopped:
        assert(false && "a stopped import ends no chunk");
        return {};
    }
    report_.inserted += open_inserted_;
    report_.skipped += open_skipped_;
    open_inserted_ = open_skipped_ = 0;
    report_.committed_lines = last_line;
    return {};
  }

  Result<bool> already_there(const std::string& dedup_key) {
    exists_.bind(1, std::string_view(dedup_key));
    auto found = exists_.step();
    exists_.reset();
    return found;
  }

  // The trigger's verdict on a line, on this thread's own in-memory outbox (made when first
  // needed: most imports never need it).
  Result<std::optional<std::string>> judge_here(const ImportLine& row) {
    if (!trigger_) {
      auto made = TriggerCheck::open();
      if (!made) return made.error();
      trigger_.emplace(std::move(*made));
    }
    return trigger_->verdict(row);
  }

  Database& db_;
  Statement insert_, exists_;
  const bool bypass_;
  const std::int64_t chunk_lines_;  // 0: all or nothing
  std::int64_t chunk_end_;          // the last line of the current chunk
  State state_ = State::between;
  std::optional<Transaction> tx_;   // open exactly in State::open
  std::int64_t open_inserted_ = 0, open_skipped_ = 0;  // the open chunk's, not yet in report_
  ImportReport report_;
  std::optional<TriggerCheck> trigger_;
};

}  // namespace

Result<ImportReport> import_ndjson(Database& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress) {
  auto known = triggers_are_known(db);
  if (!known) return known.error();
  std::optional<TriggersOff> triggers_off;
  if (*known) triggers_off.emplace(db.handle());
  const bool bypass = triggers_off && triggers_off->active();
  // A large transaction touches many index pages; keeping them in memory keeps it fast.
  auto cache = CacheSize::set(db, 65536);
  if (!cache) return cache.error();
  auto insert = db.prepare(
      "INSERT INTO metrix_outbox (payload, dedup_key, app_id) VALUES (?1, ?2, ?3) ON CONFLICT (dedup_key) DO NOTHING");
  if (!insert) return insert.error();
  auto exists = db.prepare("SELECT 1 FROM metrix_outbox WHERE dedup_key = ?1");
  if (!exists) return exists.error();
  ChunkWriter writer(db, std::move(*insert), std::move(*exists), bypass, options.chunk_lines);

  CheckPool pool(checker_threads(options), db.path(), bypass);
  return run_import(writer, pool, next_line, options, progress);
}

}  // namespace metrix
