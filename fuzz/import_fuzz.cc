// Fuzz target: the NDJSON import (storage/import.h): parse_import_line() and import_ndjson()
// into a real migrated outbox file.
//
// The input is the file being imported, read line by line as `metrix-relay import` reads it
// (split at '\n'; a last line without one counts). The input's length picks the mode, so a
// saved input replays the same way: all or nothing or chunks of 1..3 lines, batches of 1..3
// lines, and the database's triggers exactly this build's (the writer relies on the
// parallel checks) or not (an extra trigger: the writer lets the database check again).
//
// The expected outcome is computed line by line from the header's contract with
// parse_import_line() and validate_payload(): a dedup_key already present (earlier run or
// earlier line) is skipped, the first bad line dooms its chunk (all or nothing: everything),
// a doomed chunk stops a chunked import. Invariants: the first problem reported is the first
// bad line; the rows in the outbox are exactly the expected ones (payload byte for byte,
// app_id, dedup_key, in input order) and each passes validate_payload(); the report's counts
// agree with the rows; a wrapper's payload is a piece of its line.
#include <sqlite3.h>

#include <set>
#include <string>
#include <vector>

#include "fuzz/support.h"
#include "storage/database.h"
#include "storage/event.h"
#include "storage/import.h"
#include "storage/migrate.h"

namespace {

using metrix::fuzz::printable;

struct Row {
  std::string payload;
  std::optional<std::string> dedup_key;
  std::optional<std::string> app_id;
  bool operator==(const Row&) const = default;
};

struct Mode {
  std::int64_t chunk_lines;
  std::int64_t batch_lines;
  bool extra_trigger;
};

Mode mode_for(size_t size) {
  return Mode{static_cast<std::int64_t>(size % 4), static_cast<std::int64_t>(1 + (size / 4) % 3), (size / 12) % 2 == 1};
}

// The lines `metrix-relay import` reads (tools/metrix-relay/import_command.cc, getline).
std::vector<std::string> lines_of(std::string_view input) {
  std::vector<std::string> lines;
  while (!input.empty()) {
    size_t end = input.find('\n');
    lines.emplace_back(input.substr(0, end));
    input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
  }
  return lines;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

struct Expected {
  std::vector<Row> rows;                    // what the outbox holds after the import
  std::optional<std::int64_t> first_problem;  // the first bad line
  std::int64_t committed_lines = 0;
};

// The header's contract, one line after the other.
Expected expected_outcome(std::vector<std::string> lines, std::int64_t chunk) {
  Expected e;
  if (!lines.empty() && lines[0].rfind("\xEF\xBB\xBF", 0) == 0) lines[0].erase(0, 3);  // a UTF-8 BOM
  std::set<std::string> committed_keys, open_keys;
  std::vector<Row> open_rows;
  const auto total = static_cast<std::int64_t>(lines.size());
  for (std::int64_t number = 1; number <= total; ++number) {
    const std::string& text = lines[static_cast<size_t>(number - 1)];
    if (is_blank(text)) continue;
    auto parsed = metrix::parse_import_line(text);
    std::optional<std::string> problem;
    if (!parsed) {
      problem = parsed.error().message;
    } else {
      if (parsed->dedup_key && (committed_keys.count(*parsed->dedup_key) || open_keys.count(*parsed->dedup_key))) {
        continue;  // already in the outbox: skipped, not checked
      }
      auto v = metrix::validate_payload(parsed->payload, parsed->app_id, parsed->dedup_key);
      METRIX_FUZZ_REQUIRE(v.ok(), "the rules could not be checked: {}", v.error().message);
      if (*v) problem = (*v)->message();
    }
    if (problem) {
      e.first_problem = number;
      // The chunk holding this line is lost; a chunked import stops after it.
      e.committed_lines = chunk == 0 ? 0 : ((number - 1) / chunk) * chunk;
      return e;
    }
    open_rows.push_back(Row{parsed->payload, parsed->dedup_key, parsed->app_id});
    if (parsed->dedup_key) open_keys.insert(*parsed->dedup_key);
    if (chunk > 0 && number % chunk == 0) {
      e.rows.insert(e.rows.end(), open_rows.begin(), open_rows.end());
      open_rows.clear();
      committed_keys.insert(open_keys.begin(), open_keys.end());
      open_keys.clear();
    }
  }
  e.rows.insert(e.rows.end(), open_rows.begin(), open_rows.end());
  e.committed_lines = total;
  return e;
}

// Only in the expected rows of a doomed chunked import do the two differ: there the rows
// committed before the chunk stay.
std::vector<Row> expected_rows(const Expected& e, std::int64_t chunk, const std::vector<std::string>& lines) {
  if (!e.first_problem) return e.rows;
  if (chunk == 0) return {};
  // Rows of the chunks before the doomed one: recompute on the lines they cover.
  std::vector<std::string> kept(lines.begin(), lines.begin() + e.committed_lines);
  return expected_outcome(kept, chunk).rows;
}

class TargetOutbox {
 public:
  TargetOutbox() : db_(open(dir_.file("outbox.db"))) {}

  metrix::Database& db() { return db_; }

  // An empty outbox, with or without a trigger this build does not know.
  void reset(bool extra_trigger) {
    exec("DELETE FROM metrix_outbox_attempt; DELETE FROM metrix_outbox;");
    exec(extra_trigger ? "CREATE TRIGGER IF NOT EXISTS fuzz_extra AFTER INSERT ON metrix_outbox BEGIN SELECT 1; END;"
                       : "DROP TRIGGER IF EXISTS fuzz_extra;");
  }

  std::vector<Row> rows() {
    auto select = db_.prepare("SELECT payload, dedup_key, app_id, typeof(payload) FROM metrix_outbox ORDER BY id");
    METRIX_FUZZ_REQUIRE(select.ok(), "prepare: {}", select.error().message);
    std::vector<Row> rows;
    for (;;) {
      auto more = select->step();
      METRIX_FUZZ_REQUIRE(more.ok(), "select: {}", more.error().message);
      if (!*more) return rows;
      METRIX_FUZZ_REQUIRE(select->text(3) == "text", "a payload stored as {}", select->text(3));
      rows.push_back(Row{select->text(0), select->optional_text(1), select->optional_text(2)});
    }
  }

 private:
  static metrix::Database open(const std::string& path) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);  // as storage/import.h asks, before SQLite's first use
    auto db = metrix::Database::open(path, {.create = true, .synchronous = metrix::Synchronous::normal});
    METRIX_FUZZ_REQUIRE(db.ok(), "open {}: {}", path, db.error().message);
    auto migrated = metrix::migrate(*db);
    METRIX_FUZZ_REQUIRE(migrated.ok(), "migrate: {}", migrated.error().message);
    return std::move(*db);
  }
  void exec(std::string_view sql) {
    auto s = db_.exec(sql);
    METRIX_FUZZ_REQUIRE(s.ok(), "{}: {}", sql, s.error().message);
  }

  metrix::fuzz::ScratchDir dir_;
  metrix::Database db_;
};

void check_line_parser(const std::string& line) {
  auto parsed = metrix::parse_import_line(line);
  if (!parsed) {
    METRIX_FUZZ_REQUIRE(parsed.error().code == metrix::Errc::invalid_event && !parsed.error().message.empty(),
                        "parse_import_line fails without a rule: {}", printable(line));
    return;
  }
  METRIX_FUZZ_REQUIRE(line.find(parsed->payload) != std::string::npos,
                      "parse_import_line's payload is not a piece of its line: {}", printable(line));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static TargetOutbox target;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const Mode mode = mode_for(size);
  const std::vector<std::string> lines = lines_of(input);
  for (const std::string& line : lines) check_line_parser(line);

  target.reset(mode.extra_trigger);
  size_t next = 0;
  metrix::LineReader reader = [&](std::string& line) -> metrix::Result<bool> {
    if (next == lines.size()) return false;
    line = lines[next++];
    return true;
  };
  metrix::ImportOptions options{.chunk_lines = mode.chunk_lines, .validators = 1, .batch_lines = mode.batch_lines};
  auto report = metrix::import_ndjson(target.db(), reader, options);
  METRIX_FUZZ_REQUIRE(report.ok(), "import_ndjson failed: {}", report.error().message);
  METRIX_FUZZ_REQUIRE(report->triggers_bypassed == !mode.extra_trigger, "triggers bypassed: {}, extra trigger: {}",
                      report->triggers_bypassed, mode.extra_trigger);

  const Expected expected = expected_outcome(lines, mode.chunk_lines);
  std::optional<std::int64_t> first_problem;
  if (!report->problems.empty()) first_problem = report->problems.front().line;
  auto line_name = [](std::optional<std::int64_t> line) { return line ? fmt::format("line {}", *line) : "none"; };
  METRIX_FUZZ_REQUIRE(first_problem == expected.first_problem,
                      "the first problem reported: {} ({}); the first bad line: {} (chunk {}, batch {}, triggers "
                      "bypassed {})",
                      line_name(first_problem), report->problems.empty() ? "" : report->problems.front().message,
                      line_name(expected.first_problem), mode.chunk_lines, mode.batch_lines, !mode.extra_trigger);
  std::int64_t previous = 0;
  for (const auto& p : report->problems) {
    METRIX_FUZZ_REQUIRE(p.line > previous && p.line <= static_cast<std::int64_t>(lines.size()) && !p.message.empty(),
                        "problem at line {} after line {}: '{}'", p.line, previous, p.message);
    previous = p.line;
  }

  std::vector<Row> rows = target.rows();
  std::vector<Row> wanted = expected_rows(expected, mode.chunk_lines, lines);
  METRIX_FUZZ_REQUIRE(rows == wanted, "the outbox holds {} rows, not the {} expected (chunk {}, batch {}, bypassed {})",
                      rows.size(), wanted.size(), mode.chunk_lines, mode.batch_lines, !mode.extra_trigger);
  for (const Row& row : rows) {
    auto v = metrix::validate_payload(row.payload, row.app_id, row.dedup_key);
    METRIX_FUZZ_REQUIRE(v.ok(), "the rules could not be checked: {}", v.error().message);
    METRIX_FUZZ_REQUIRE(!*v, "an imported row breaks a rule ({}): {}", (*v)->message(), printable(row.payload));
  }
  METRIX_FUZZ_REQUIRE(report->inserted == static_cast<std::int64_t>(rows.size()), "report says {} inserted, {} rows",
                      report->inserted, rows.size());
  METRIX_FUZZ_REQUIRE(report->committed_lines == expected.committed_lines, "committed_lines {}, expected {}",
                      report->committed_lines, expected.committed_lines);
  return 0;
}
