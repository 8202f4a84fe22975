// Helpers for the tests of the operator commands (status, list, show, requeue, purge,
// import, report): NDJSON files, SQL on the real outbox file, and a small CSV reader.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/outbox_fixture.h"

// Failed comparisons of whole result sets print the rows.
namespace doctest {
template <>
struct StringMaker<std::vector<std::vector<std::string>>> {
  static String convert(const std::vector<std::vector<std::string>>& rows) {
    std::string text = "{";
    for (const auto& row : rows) {
      text += "\n  {";
      for (size_t i = 0; i < row.size(); ++i) text += (i ? ", \"" : "\"") + row[i] + "\"";
      text += "}";
    }
    return (text + "}").c_str();
  }
};
template <>
struct StringMaker<std::vector<std::int64_t>> {
  static String convert(const std::vector<std::int64_t>& ids) {
    std::string text = "{";
    for (size_t i = 0; i < ids.size(); ++i) text += (i ? ", " : "") + std::to_string(ids[i]);
    return (text + "}").c_str();
  }
};
}  // namespace doctest

namespace metrix::test {

// Every row of `sql`, each column as text ("NULL" for NULL), for whole-value comparisons.
inline std::vector<std::vector<std::string>> rows(const std::string& path, const std::string& sql) {
  auto db = Database::open(path);
  REQUIRE(db);
  auto stmt = db->prepare(sql);
  REQUIRE_MESSAGE(stmt, sql);
  std::vector<std::vector<std::string>> out;
  for (;;) {
    auto row = stmt->step();
    REQUIRE_MESSAGE(row, sql);
    if (!*row) break;
    std::vector<std::string> line;
    for (int c = 0; c < sqlite3_column_count(stmt->handle()); ++c) line.push_back(stmt->is_null(c) ? "NULL" : stmt->text(c));
    out.push_back(std::move(line));
  }
  return out;
}

inline void exec(const std::string& path, const std::string& sql) {
  auto db = Database::open(path);
  REQUIRE(db);
  auto s = db->exec(sql);
  REQUIRE_MESSAGE(s, (sql + ": " + (s ? std::string() : s.error().message)));
}

// An import line: a wrapper with a dedup key, or (key empty) a bare payload.
inline std::string import_line(int i, const std::string& key = "", const std::string& slug = "taqsq") {
  std::string payload = valid_payload(i, slug);
  if (key.empty()) return payload;
  return "{\"payload\":" + payload + ",\"dedup_key\":\"" + key + "\"}";
}

// Writes lines 1..n, each with dedup key "key-<i>", to `path`.
inline void write_ndjson(const std::filesystem::path& path, int n) {
  std::ofstream out(path);
  for (int i = 1; i <= n; ++i) out << import_line(i, "key-" + std::to_string(i)) << '\n';
}

// Waits until `sql` (a count) reaches `n`; returns the last value.
inline std::int64_t wait_for_count(const std::string& db, const std::string& sql, std::int64_t n,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::int64_t value = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    value = scalar(db, sql);
    if (value >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return value;
}

// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF or LF line ends).
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, in_quotes = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"' && field.empty() && !quoted) {
      in_quotes = quoted = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
      quoted = false;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      record.push_back(field);
      records.push_back(record);
      record.clear();
      field.clear();
      quoted = false;
    } else {
      field.push_back(c);
    }
  }
  if (!field.empty() || !record.empty()) {
    record.push_back(field);
    records.push_back(record);
  }
  return records;
}

inline RunResult relay_cli(const std::vector<std::string>& args, const std::string& stdin_text = {}) {
  std::vector<std::string> argv = {relay_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, stdin_text, {}, std::chrono::seconds(120));
}

inline nlohmann::json json_of(const RunResult& r) {
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE_MESSAGE(!j.is_discarded(), (r.out + r.err));
  return j;
}

}  // namespace metrix::test
