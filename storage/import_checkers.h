// Import checkers: the lines of an import, judged by the validation trigger on threads of
// their own, before the writer (storage/import.cc) puts them into the outbox. Internal to the
// import; producers use storage/import.h.
//
// Why: the trigger costs ~60 us of CPU per line, far more than the insert itself, so lines
// are checked in parallel, each thread on a private in-memory outbox created by this build's
// migrations. Nothing but the trigger judges a payload: this build's trigger, in such an
// outbox (a batch in one multi-row INSERT, or one row at a time), or the target database's
// own triggers, when the writer leaves them on because they are not exactly this build's.
//
// Errors: a refusal by the trigger is a property of the line (CheckedLine::problem). Any other
// failure of SQLite (out of memory, the target's file unreadable, busy) is an Error value,
// never a line's problem.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "storage/database.h"
#include "storage/import_lines.h"
#include "storage/result.h"

namespace metrix {

// One line of the input, as the checkers hand it to the writer.
struct CheckedLine {
  std::int64_t number = 0;  // 1-based
  bool blank = false;
  ImportLine row;
  std::optional<std::string> problem;  // "field: rule", from the line parser or the trigger
  bool present = false;  // its dedup_key was in the outbox when checked: not judged (the writer looks again)
};

// Consecutive lines of the input: `text` as read, `lines` once checked (text is then freed).
struct LineBatch {
  std::int64_t first_line = 0;
  std::vector<std::string> text;
  std::vector<CheckedLine> lines;
};

// A private in-memory outbox with this build's migrations. Inserting rows into it runs the
// validation trigger; every insert is rolled back, so the table stays empty. One thread at
// a time (it is one SQLite connection).
class TriggerCheck {
 public:
  static Result<TriggerCheck> open();

  // Sets `problem` on every line of `lines` the trigger refuses (skipping blank lines, lines
  // with a problem already and lines marked present). The batch goes in as ONE multi-row
  // INSERT first: the trigger still judges every row, but the statement's fixed costs are
  // paid once per batch instead of once per row (a third of the time per line, measured).
  // Only when it is refused -- the error names the first bad line only -- are the lines
  // inserted again one by one, to find every bad line and its rule.
  Status judge(std::vector<CheckedLine>& lines);

  // The trigger's verdict on one line: its "field: rule", or nullopt if it accepts it.
  Result<std::optional<std::string>> verdict(const ImportLine& row);

 private:
  TriggerCheck(Database db, Statement fill, Statement all, Statement one)
      : db_(std::move(db)), fill_(std::move(fill)), all_(std::move(all)), one_(std::move(one)) {}
  // verdict() inside a transaction the caller rolls back.
  Result<std::optional<std::string>> refusal(const ImportLine& row);

  Database db_;
  Statement fill_, all_, one_;  // declared after db_: destroyed before it
};

// Marks the lines of a batch whose dedup_key the target already holds (CheckedLine::present),
// for a target that is not an SQLite file. Each pool thread makes its own with a KeyLookupMaker
// on its first batch and uses it only there.
using KeyLookup = std::function<Status(std::vector<CheckedLine>& lines)>;
using KeyLookupMaker = std::function<Result<KeyLookup>()>;

// Threads that parse and check batches of lines, in any order; the caller takes the results
// in the order it submitted them, through the futures.
//
// With `validate`, each thread judges lines with its own TriggerCheck, and first looks each
// line's dedup_key up in the database at `target_path` (its own read-only snapshot, one per
// batch): a line whose key is there is marked present instead of judged, so re-running an
// import costs a lookup per line, not a validation. An empty `target_path` (a target that is
// not an SQLite file): the lookups are those `lookups` makes, and without it there are none
// and every line is judged. Without `validate`, lines are only parsed
// (the writer's database judges them).
class CheckPool {
 public:
  CheckPool(int threads, std::string target_path, bool validate, KeyLookupMaker lookups = {});
  // Abandons the batches not started, waits for those being checked, joins the threads.
  ~CheckPool();
  CheckPool(const CheckPool&) = delete;
  CheckPool& operator=(const CheckPool&) = delete;

  // Checks `batch` on some thread. The future holds the error of a failure (the batch's lines
  // are then not to be used), or success: every line of batch->lines is filled in.
  std::future<Status> submit(std::shared_ptr<LineBatch> batch);

 private:
  struct Job {
    std::shared_ptr<LineBatch> batch;
    std::promise<Status> done;
  };
  void work();

  const std::string target_path_;
  const bool validate_;
  const KeyLookupMaker lookups_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;  // last: started once everything above exists
};

}  // namespace metrix
