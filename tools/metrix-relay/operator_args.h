// What the operator commands (status, list, show, requeue, purge, import, report) share:
// reading times, id ranges and row filters from flags, and printing rows as a table, CSV or
// JSON. No SQL here: the queries are in storage/ (rows.h, status.h, report.h, repair.h, import.h).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "storage/result.h"
#include "storage/row_filter.h"
#include "storage/rows.h"

namespace metrix::cli {

// A point in time, as an operator types it:
//   2026-11-25, 2026-11-25T10:00:00Z, 2026-11-25T13:30:00+03:30   see parse_utc_time()
//   24h, 30m, 7d, 1h30m         that long before `now_ms`
//   now
//   1764064800000               milliseconds since the Unix epoch
// Errc::invalid_argument with an example of each form otherwise.
Result<std::int64_t> parse_time(std::string_view text, std::int64_t now_ms);

// "42", "10-20", "5,7,10-20" (ranges inclusive).
Result<std::vector<IdRange>> parse_ids(std::string_view text);

// The row filter flags of list and requeue.
struct FilterFlags {
  std::vector<std::string> statuses;
  std::string app_id, slug, error, since, until;
  std::vector<std::string> ids;
};
void add_filter_flags(CLI::App& cmd, FilterFlags& flags);
Result<RowFilter> to_filter(const FilterFlags& flags, std::int64_t now_ms);
// True when at least one flag narrows the selection.
bool narrows(const FilterFlags& flags);

// utc_time() without milliseconds, for tables: 2026-11-25T10:00:00Z.
std::string short_time(std::int64_t ms);

// One CSV field (RFC 4180): quoted when it holds a comma, quote, CR, LF or edge spaces.
std::string csv_field(std::string_view text);
void print_csv_row(std::FILE* out, const std::vector<std::string>& fields);

// A plain text table: columns padded to their widest cell, numbers right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  bool empty() const { return rows_.empty(); }
  void print(std::FILE* out, const std::string& indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Cuts text for a table cell: one line, at most `width` characters.
std::string cell(std::string_view text, size_t width = 60);

// An outbox row for machine output: the contract's column names, NULLs as null, the payload
// as a JSON object (as text if it is not valid JSON).
nlohmann::ordered_json row_json(const OutboxRow& row);
// The same columns, in that order, for CSV.
const std::vector<std::string>& row_csv_header();
std::vector<std::string> row_csv(const OutboxRow& row);
// The list table: id, app, status, slug, user, attempts, created, last answer, error.
Table rows_table(const std::vector<OutboxRow>& rows);

enum class Format { table, json, csv };
// --json and --csv; both at once is refused by CLI11.
void add_format_flags(CLI::App& cmd, bool& json, bool* csv);

// Prints the JSON value to stdout with a final newline.
void print_json(const nlohmann::ordered_json& value);

}  // namespace metrix::cli
