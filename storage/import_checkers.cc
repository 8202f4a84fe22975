#include "storage/import_checkers.h"

#include <algorithm>
#include <cassert>

#include <fmt/format.h>

#include "storage/migrate.h"

namespace metrix {

Result<TriggerCheck> TriggerCheck::open() {
  auto db = Database::open_memory();
  if (!db) return db.error();
  if (auto m = migrate(*db); !m) return m.error();
  // No column types: values keep the type they were bound with, as NEW.x does in the trigger.
  if (auto s = db->exec("CREATE TEMP TABLE batch (metrix_import_line INTEGER PRIMARY KEY, payload, dedup_key, app_id)");
      !s) {
    return s.error();
  }
  auto fill = db->prepare("INSERT INTO temp.batch (metrix_import_line, payload, dedup_key, app_id) VALUES (?4, ?1, ?2, ?3)");
  if (!fill) return fill.error();
  // "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint. A dedup_key seen
  // earlier in the input is no error: the writer skips that line.
  auto all = db->prepare(
      "INSERT INTO main.metrix_outbox (payload, dedup_key, app_id) SELECT payload, dedup_key, app_id "
      "FROM temp.batch WHERE true ORDER BY metrix_import_line ON CONFLICT (dedup_key) DO NOTHING");
  if (!all) return all.error();
  auto one = db->prepare(
      "INSERT INTO main.metrix_outbox (payload, dedup_key, app_id) VALUES (?1, ?2, ?3) ON CONFLICT (dedup_key) DO NOTHING");
  if (!one) return one.error();
  return TriggerCheck(std::move(*db), std::move(*fill), std::move(*all), std::move(*one));
}

namespace {

bool to_judge(const CheckedLine& line) { return !line.blank && !line.problem && !line.present; }

}  // namespace

Status TriggerCheck::judge(std::vector<CheckedLine>& lines) {
  if (std::none_of(lines.begin(), lines.end(), to_judge)) return {};
  {
    // Rolled back when it goes out of scope, accepted or not: the outbox stays empty.
    auto tx = Transaction::begin(db_.handle());
    if (!tx) return tx.error();
    for (const CheckedLine& line : lines) {
      if (!to_judge(line)) continue;
      fill_.bind(1, std::string_view(line.row.payload)).bind(2, line.row.dedup_key).bind(3, line.row.app_id);
      fill_.bind(4, line.number);
      if (auto s = fill_.run(); !s) return s;
    }
    auto accepted = all_.step();
    all_.reset();
    if (accepted) return {};
    if (accepted.error().code != Errc::invalid_event) return accepted.error();
  }
  auto tx = Transaction::begin(db_.handle());
  if (!tx) return tx.error();
  for (CheckedLine& line : lines) {
    if (!to_judge(line)) continue;
    auto refused = refusal(line.row);
    if (!refused) return refused.error();
    line.problem = std::move(*refused);
  }
  return {};
}

Result<std::optional<std::string>> TriggerCheck::verdict(const ImportLine& row) {
  auto tx = Transaction::begin(db_.handle());
  if (!tx) return tx.error();
  return refusal(row);
}

Result<std::optional<std::string>> TriggerCheck::refusal(const ImportLine& row) {
  one_.bind(1, std::string_view(row.payload)).bind(2, row.dedup_key).bind(3, row.app_id);
  auto done = one_.step();
  one_.reset();
  if (done) return std::optional<std::string>();
  // Only the trigger's RAISE is a verdict on the line; anything else is SQLite failing.
  if (done.error().code != Errc::invalid_event) return done.error();
  return std::optional<std::string>(done.error().message);
}

namespace {

// What one pool thread keeps for judging lines: its trigger and its own connection to the
// target, for the dedup keys.
struct Checker {
  TriggerCheck trigger;
  std::optional<Database> target;  // none: no lookups here (the target is not an SQLite file)
  Statement exists;  // declared after target: destroyed before it
  KeyLookup lookup;  // the caller's, for a target that is not an SQLite file (may be empty)

  static Result<Checker> open(const std::string& target_path, const KeyLookupMaker& lookups) {
    auto trigger = TriggerCheck::open();
    if (!trigger) return trigger.error();
    if (target_path.empty()) {
      KeyLookup lookup;
      if (lookups) {
        auto made = lookups();
        if (!made) return made.error();
        lookup = std::move(*made);
      }
      return Checker{std::move(*trigger), std::nullopt, Statement(), std::move(lookup)};
    }
    auto target = Database::open(target_path);
    if (!target) return target.error();
    auto exists = target->prepare("SELECT 1 FROM metrix_outbox WHERE dedup_key = ?1");
    if (!exists) return exists.error();
    return Checker{std::move(*trigger), std::move(*target), std::move(*exists), {}};
  }

  Status mark_present(std::vector<CheckedLine>& lines) {
    if (lookup) return lookup(lines);
    if (!target) return {};
    // One read transaction: one snapshot, and no lock taken per lookup.
    auto snapshot = Transaction::begin_read(target->handle());
    if (!snapshot) return snapshot.error();
    for (CheckedLine& line : lines) {
      if (line.blank || line.problem || !line.row.dedup_key) continue;
      exists.bind(1, std::string_view(*line.row.dedup_key));
      auto found = exists.step();
      exists.reset();
      if (!found) return found.error();
      line.present = *found;
    }
    return {};
  }
};

void parse(LineBatch& batch) {
  batch.lines.resize(batch.text.size());
  for (size_t i = 0; i < batch.text.size(); ++i) {
    CheckedLine& line = batch.lines[i];
    line.number = batch.first_line + static_cast<std::int64_t>(i);
    const std::string& text = batch.text[i];
    if (is_blank_import_line(text)) {
      line.blank = true;
      continue;
    }
    auto parsed = parse_import_line(text);
    if (!parsed) {
      line.problem = parsed.error().message;
      continue;
    }
    line.row = std::move(*parsed);
  }
  batch.text.clear();
  batch.text.shrink_to_fit();
}

Status check(LineBatch& batch, bool validate, const std::string& target_path, const KeyLookupMaker& lookups,
             std::optional<Checker>& checker) {
  parse(batch);
  if (!validate) return {};
  if (!checker) {
    auto made = Checker::open(target_path, lookups);
    if (!made) return made.error();
    checker.emplace(std::move(*made));
  }
  if (auto s = checker->mark_present(batch.lines); !s) return s;
  return checker->trigger.judge(batch.lines);
}

}  // namespace

CheckPool::CheckPool(int threads, std::string target_path, bool validate, KeyLookupMaker lookups)
    : target_path_(std::move(target_path)), validate_(validate), lookups_(std::move(lookups)) {
  assert(threads > 0);
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

CheckPool::~CheckPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();  // their futures are abandoned: nobody waits for them any more
  }
  ready_.notify_all();
  for (auto& t : workers_) t.join();
}

std::future<Status> CheckPool::submit(std::shared_ptr<LineBatch> batch) {
  Job job{std::move(batch), {}};
  auto done = job.done.get_future();
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
  }
  ready_.notify_one();
  return done;
}

void CheckPool::work() {
  std::optional<Checker> checker;  // made on this thread's first batch, used only here
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Status status;
    try {
      status = check(*job.batch, validate_, target_path_, lookups_, checker);
    } catch (const std::exception& e) {  // out of memory: the import fails, nothing else is wrong
      status = Error{Errc::io, e.what()};
    }
    if (!status) {
      status = Error{status.error().code, fmt::format("checking lines {}..: {}", job.batch->first_line, status.error().message)};
    }
    job.done.set_value(std::move(status));
  }
}

}  // namespace metrix
