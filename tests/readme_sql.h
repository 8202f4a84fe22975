// The README's "Audit SQL" queries, for the tests that run them on each backend: by title (the
// query's first line, a comment), the SQL as the README prints it.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace metrix::test {

// A query titled "... (PostgreSQL)" is the PostgreSQL form of the query titled "...".
inline constexpr const char* kPostgresTitle = " (PostgreSQL)";

inline std::map<std::string, std::string> readme_audit_queries() {
  std::ifstream in(std::filesystem::path(__FILE__).parent_path().parent_path() / "README.md");
  REQUIRE(in);
  std::stringstream readme;
  readme << in.rdbuf();
  const std::string text = readme.str();
  const auto start = text.find("\n## Audit SQL");
  REQUIRE(start != std::string::npos);
  const std::string section = text.substr(start, text.find("\n## ", start + 1) - start);
  std::map<std::string, std::string> queries;
  for (size_t pos = section.find("```sql\n"); pos != std::string::npos; pos = section.find("```sql\n", pos)) {
    pos += 7;
    const size_t close = section.find("```", pos);
    const std::string sql = section.substr(pos, close - pos);
    queries[sql.substr(0, sql.find('\n'))] = sql;
    pos = close + 3;
  }
  return queries;
}

// The queries one backend runs: on SQLite every query but the PostgreSQL forms; on PostgreSQL
// the PostgreSQL form where there is one, under the common title.
inline std::map<std::string, std::string> readme_audit_queries(bool postgres) {
  std::map<std::string, std::string> all = readme_audit_queries(), chosen;
  const std::string suffix = kPostgresTitle;
  for (const auto& [title, sql] : all) {
    const bool pg_form = title.size() > suffix.size() && title.ends_with(suffix);
    if (!pg_form && !(postgres && all.count(title + suffix))) chosen[title] = sql;
    if (pg_form && postgres) chosen[title.substr(0, title.size() - suffix.size())] = sql;
  }
  return chosen;
}

}  // namespace metrix::test
