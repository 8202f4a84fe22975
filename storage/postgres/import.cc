#include "storage/postgres/import.h"

#include "storage/postgres/copy.h"
#include "storage/postgres/text.h"

#include <algorithm>
#include <cassert>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "storage/import_checkers.h"
#include "storage/import_loop.h"
#include "storage/rule_message.h"

namespace metrix::pg {

namespace {

// The session's staging table: the rows of a batch arrive here by COPY, then go into the outbox
// in one statement. Temporary (no WAL, no other session sees it, gone with the connection);
// made outside any transaction and dropped when the import ends, on every path.
class Staging {
 public:
  static Result<Staging> create(Connection& db) {
    if (auto s = db.exec_script(
            "CREATE TEMP TABLE IF NOT EXISTS metrix_import_staging "
            "(line bigint NOT NULL, payload text NOT NULL, dedup_key text, app_id text)");
        !s) {
      return Error{s.error().code, fmt::format("creating the import's temporary table (the role needs TEMPORARY on "
                                               "the database): {}", s.error().message)};
    }
    return Staging(db);
  }
  Staging(Staging&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Staging& operator=(Staging&&) = delete;
  ~Staging() {
    // Best effort: a connection that broke has lost the table with its session anyway.
    if (db_) (void)db_->exec_script("DROP TABLE IF EXISTS pg_temp.metrix_import_staging");
  }

 private:
  explicit Staging(Connection& db) : db_(&db) {}
  Connection* db_;
};

// Writes the checked lines in input order, a transaction per chunk: the state machine of the
// SQLite import's ChunkWriter (storage/import.cc), with the rows of each batch sent at once.
//
//   between --a line--> open --the chunk ends--> between       (committed)
//   between, open --a bad line--> doomed                       (rolled back at once)
//   doomed --the chunk ends, chunked--> stopped                (nothing more is read)
class ChunkWriter {
 public:
  enum class State { between, open, doomed, stopped };

  ChunkWriter(Connection& db, std::int64_t chunk_lines)
      : db_(db),
        chunk_lines_(chunk_lines),
        chunk_end_(chunk_lines > 0 ? chunk_lines : std::numeric_limits<std::int64_t>::max()) {
    report_.triggers_bypassed = true;  // see import.h: the checks ran here, in parallel
  }
  ~ChunkWriter() {
    // An error left the chunk open: nothing of it is written.
    if (state_ == State::open) (void)db_.exec_script("ROLLBACK");
  }
  ChunkWriter(const ChunkWriter&) = delete;
  ChunkWriter& operator=(const ChunkWriter&) = delete;

  // Takes the next lines of the input, up to the end or until the import stops; the open
  // chunk's good lines among them are sent in one statement.
  Status write(std::vector<CheckedLine>& lines) {
    if (auto s = look_again(lines); !s) return s;
    for (CheckedLine& line : lines) {
      if (auto s = take(line); !s) return s;
      if (state_ == State::stopped) break;
    }
    return flush();
  }

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
    assert(line.number == report_.lines + 1);
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
      if (auto s = db_.exec_script("BEGIN"); !s) return s;
      state_ = State::open;
    }
    if (line.present) {
      // Its key is in the outbox (look_again() made sure): skipped, and not judged.
      ++open_skipped_;
      return {};
    }
    if (!line.problem) line.problem = text_rule(line.row.payload, line.row.app_id, line.row.dedup_key);
    if (line.problem) {
      if (line.row.dedup_key && text_prefix(*line.row.dedup_key) == line.row.dedup_key->size()) {
        // Already in the outbox (an earlier run, or earlier in this chunk): skipped, and not
        // reported, as import.h promises.
        auto found = already_there(*line.row.dedup_key);
        if (!found) return found.error();
        if (*found) {
          ++open_skipped_;
          return {};
        }
      }
      report_.problems.push_back(LineProblem{line.number, with_key_named(names(), line.row.payload, *line.problem)});
      if (state_ == State::open) return doom();
      return {};
    }
    if (state_ == State::open) {
      if (line.row.dedup_key) chunk_keys_.insert(*line.row.dedup_key);
      pending_.field(line.number).field(line.row.payload).field(line.row.dedup_key).field(line.row.app_id).end_row();
      ++pending_rows_;
    }
    return {};
  }

  // Sends the open chunk's pending rows: COPY into the staging table, then one INSERT ... SELECT
  // in input order (ids follow the lines). Every row sent was judged good here, and none whose
  // key the checking threads found in the outbox is sent (the server's BEFORE trigger would judge
  // it although ON CONFLICT then skips it): ON CONFLICT skips only a key that arrived since (a
  // producer's commit) or came earlier in this input.
  Status flush() {
    if (pending_rows_ == 0) return {};
    assert(state_ == State::open);
    const std::int64_t sent = pending_rows_;
    auto copied = copy_in(db_, "COPY pg_temp.metrix_import_staging (line, payload, dedup_key, app_id) FROM STDIN",
                          pending_);
    pending_.clear();
    pending_rows_ = 0;
    if (!copied) return copied.error();
    auto done = db_.exec(
        "INSERT INTO metrix_outbox (payload, dedup_key, app_id) "
        "SELECT payload, dedup_key, app_id FROM pg_temp.metrix_import_staging ORDER BY line "
        "ON CONFLICT (dedup_key) DO NOTHING");
    if (!done) {
      if (done.error().code != Errc::invalid_event) return done.error();
      return Error{Errc::io, fmt::format("the database refused a line this build accepts ({}); its rules are not "
                                         "this metrix-relay's: upgrade one or the other",
                                         done.error().message)};
    }
    // Emptied in place: after the chunk's first TRUNCATE gave the table a new file, the next
    // ones in the same transaction truncate that file rather than make another.
    if (auto s = db_.exec_script("TRUNCATE pg_temp.metrix_import_staging"); !s) return s;
    // Rows inserted: the others' keys were taken. Counted without RETURNING, which would
    // send a row back per line.
    const std::int64_t inserted = done->affected();
    open_inserted_ += inserted;
    open_skipped_ += sent - inserted;
    return {};
  }

  // Nothing of this chunk will be written: give its locks back now, and only check the rest
  // of the chunk for more bad lines.
  Status doom() {
    pending_.clear();
    pending_rows_ = 0;
    chunk_keys_.clear();
    state_ = State::doomed;
    open_inserted_ = open_skipped_ = 0;
    return db_.exec_script("ROLLBACK");
  }

  Status end_chunk(std::int64_t last_line) {
    switch (state_) {
      case State::doomed:
        if (chunk_lines_ > 0) state_ = State::stopped;
        return {};
      case State::open:
        if (auto s = flush(); !s) return s;
        if (auto s = db_.exec_script("COMMIT"); !s) return s;
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
    chunk_keys_.clear();
    report_.committed_lines = last_line;
    return {};
  }

  // The checking threads saw these lines' keys in the outbox and did not judge them. A key
  // gone since (purged meanwhile) makes its line new again: judged here, as SQLite does. One
  // query for the batch, so a re-run costs two index probes a line on the server and no check.
  Status look_again(std::vector<CheckedLine>& lines) {
    std::vector<Param> keys;
    for (const CheckedLine& line : lines) {
      if (line.present && !line.problem) keys.emplace_back(*line.row.dedup_key);
    }
    if (keys.empty()) return {};
    auto gone = db_.exec("SELECT k FROM unnest($1::text[]) AS k "
                         "WHERE (SELECT 1 FROM metrix_outbox WHERE dedup_key = k LIMIT 1) IS NULL",
                         {array_literal(keys)});
    if (!gone) return gone.error();
    if (gone->size() == 0) return {};
    std::unordered_set<std::string> gone_keys;
    for (int i = 0; i < gone->size(); ++i) gone_keys.insert(gone->text(i, 0));
    for (CheckedLine& line : lines) {
      if (!line.present || line.problem || !gone_keys.contains(*line.row.dedup_key)) continue;
      line.present = false;
      auto verdict = judge_here(line.row);
      if (!verdict) return verdict.error();
      line.problem = std::move(*verdict);
    }
    return {};
  }

  // The trigger's verdict on a line, on an in-memory outbox of this thread (made when first
  // needed: most imports never need it).
  Result<std::optional<std::string>> judge_here(const ImportLine& row) {
    if (!trigger_) {
      auto made = TriggerCheck::open();
      if (!made) return made.error();
      trigger_.emplace(std::move(*made));
    }
    return trigger_->verdict(row);
  }

  Result<bool> already_there(const std::string& dedup_key) {
    if (chunk_keys_.contains(dedup_key)) return true;  // pending, not sent yet
    auto found = db_.exec("SELECT 1 FROM metrix_outbox WHERE dedup_key = $1", {dedup_key});
    if (!found) return found.error();
    return found->size() > 0;
  }

  // An SQLite connection for with_key_named(), which only runs JSON functions.
  sqlite3* names() {
    if (!names_) {
      auto made = Database::open_memory();
      if (!made) return nullptr;
      names_.emplace(std::move(*made));
    }
    return names_->handle();
  }

  Connection& db_;
  const std::int64_t chunk_lines_;  // 0: all or nothing
  std::int64_t chunk_end_;          // the last line of the current chunk
  State state_ = State::between;
  std::int64_t open_inserted_ = 0, open_skipped_ = 0;  // the open chunk's, not yet in report_
  std::unordered_set<std::string> chunk_keys_;         // the open chunk's keys of good lines
  CopyRows pending_;                                   // the open chunk's rows not sent yet
  std::int64_t pending_rows_ = 0;
  ImportReport report_;
  std::optional<Database> names_;
  std::optional<TriggerCheck> trigger_;
};

// At most this many checking threads, each with its connection (see import_ndjson).
constexpr int kMaxCheckerThreads = 4;

// The pool threads' lookups of dedup keys (storage/import_checkers.h): each thread its own
// connection like `db` (its settings read here, on the caller's thread), and one query per
// batch of lines.
KeyLookupMaker key_lookups(const Connection& db) {
  return [settings = db.settings(), name = db.name()]() -> Result<KeyLookup> {
    auto opened = Connection::open(settings, name);
    if (!opened) return opened.error();
    auto conn = std::make_shared<Connection>(std::move(*opened));  // a KeyLookup is copyable
    return KeyLookup([conn](std::vector<CheckedLine>& lines) -> Status {
      std::vector<Param> keys;
      for (const CheckedLine& line : lines) {
        // A key that is not text cannot be in the outbox (nor be sent as a parameter).
        if (line.blank || line.problem || !line.row.dedup_key) continue;
        if (text_prefix(*line.row.dedup_key) != line.row.dedup_key->size()) continue;
        keys.emplace_back(*line.row.dedup_key);
      }
      if (keys.empty()) return {};
      auto present = conn->exec("SELECT k FROM unnest($1::text[]) AS k "
                                "WHERE (SELECT 1 FROM metrix_outbox WHERE dedup_key = k LIMIT 1) IS NOT NULL",
                                {array_literal(keys)});
      if (!present) return present.error();
      if (present->size() == 0) return {};
      std::unordered_set<std::string> found;
      for (int i = 0; i < present->size(); ++i) found.insert(present->text(i, 0));
      for (CheckedLine& line : lines) {
        if (!line.blank && !line.problem && line.row.dedup_key) line.present = found.contains(*line.row.dedup_key);
      }
      return {};
    });
  };
}

}  // namespace

Result<ImportReport> import_ndjson(Connection& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress) {
  auto staging = Staging::create(db);
  if (!staging) return staging.error();
  ChunkWriter writer(db, options.chunk_lines);
  // Each checking thread holds a connection of its own. More than a few gain nothing here (the
  // server's one backend judging every new row is the import's pace) and would take
  // connections a busy server's relays and producers need.
  ImportOptions capped = options;
  capped.validators = std::min(checker_threads(options), kMaxCheckerThreads);
  CheckPool pool(capped.validators, /*target_path=*/"", /*validate=*/true, key_lookups(db));
  return run_import(writer, pool, next_line, capped, progress);
}

}  // namespace metrix::pg
