#include "storage/postgres/import.h"
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

#include <fmt/format.h>

#include "storage/import_checkers.h"
#include "storage/import_loop.h"
#include "storage/rule_message.h"

namespace metrix::pg {

namespace {

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
      payloads_.emplace_back(std::move(line.row.payload));
      keys_.emplace_back(std::move(line.row.dedup_key));
      apps_.emplace_back(std::move(line.row.app_id));
    }
    return {};
  }

  // Sends the open chunk's pending rows: one statement, ids in input order; a row whose key
  // is taken (committed, earlier in the chunk, or earlier in these rows) is not inserted.
  Status flush() {
    if (payloads_.empty()) return {};
    assert(state_ == State::open);
    const auto sent = static_cast<std::int64_t>(payloads_.size());
    auto done = db_.exec(
        "INSERT INTO metrix_outbox (payload, dedup_key, app_id) "
        "SELECT payload, dedup_key, app_id FROM unnest($1::text[], $2::text[], $3::text[]) "
        "WITH ORDINALITY AS line (payload, dedup_key, app_id, n) ORDER BY n "
        "ON CONFLICT (dedup_key) DO NOTHING",
        {array_literal(payloads_), array_literal(keys_), array_literal(apps_)});
    payloads_.clear();
    keys_.clear();
    apps_.clear();
    if (!done) {
      if (done.error().code != Errc::invalid_event) return done.error();
      return Error{Errc::io, fmt::format("the database refused a line this build accepts ({}); its rules are not "
                                         "this metrix-relay's: upgrade one or the other",
                                         done.error().message)};
    }
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
    payloads_.clear();
    keys_.clear();
    apps_.clear();
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
  std::vector<Param> payloads_, keys_, apps_;          // the open chunk's rows not sent yet
  ImportReport report_;
  std::optional<Database> names_;
};

}  // namespace

Result<ImportReport> import_ndjson(Connection& db, const LineReader& next_line, const ImportOptions& options,
                                   const std::function<void(const ImportProgress&)>& progress) {
  ChunkWriter writer(db, options.chunk_lines);
  CheckPool pool(checker_threads(options), /*target_path=*/"", /*validate=*/true);
  return run_import(writer, pool, next_line, options, progress);
}

}  // namespace metrix::pg
