// How the operator commands print: rows as a plain table, CSV (RFC 4180) or JSON, with the
// outbox contract's column names. No SQL here: the rows come from storage/operator_store.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "storage/rows.h"

namespace metrix::cli {

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
