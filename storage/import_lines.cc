#include "storage/import_lines.h"

#include <algorithm>
#include <cassert>
#include <vector>

#include <nlohmann/json.hpp>

namespace metrix {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

// The end of the JSON string starting at s[i] == '"', or npos.
size_t skip_string(std::string_view s, size_t i) {
  assert(i < s.size() && s[i] == '"');
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

// The end of the JSON value starting at s[i], or npos. Shallow: strings and nesting are
// followed so that the wrapper's keys are found; whether the value is valid JSON is judged
// later (by nlohmann for dedup_key and app_id, by the validation trigger for the payload).
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return std::string_view::npos;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        if (i == std::string_view::npos) return i;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return std::string_view::npos;
  }
  size_t start = i;
  while (i < s.size() && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
  return i > start ? i : std::string_view::npos;
}

struct Member {
  std::string key;
  std::string_view value;
};

// The top-level members of a JSON object text, or nullopt if the text is not shaped as one.
std::optional<std::vector<Member>> object_members(std::string_view s) {
  size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  i = skip_ws(s, i + 1);
  std::vector<Member> members;
  if (i < s.size() && s[i] == '}') {
    if (skip_ws(s, i + 1) != s.size()) return std::nullopt;
    return members;
  }
  for (;;) {
    if (i >= s.size() || s[i] != '"') return std::nullopt;
    size_t key_end = skip_string(s, i);
    if (key_end == std::string_view::npos) return std::nullopt;
    std::string_view raw_key = s.substr(i, key_end - i);
    std::string key(raw_key.substr(1, raw_key.size() - 2));
    if (key.find('\\') != std::string::npos) {  // escapes in a key: let a real parser decode it
      auto decoded = nlohmann::json::parse(raw_key, nullptr, false);
      if (decoded.is_discarded() || !decoded.is_string()) return std::nullopt;
      key = decoded.get<std::string>();
    }
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':') return std::nullopt;
    i = skip_ws(s, i + 1);
    size_t value_end = skip_value(s, i);
    if (value_end == std::string_view::npos) return std::nullopt;
    // A value is never empty: skip_value gives npos rather than an empty piece.
    assert(value_end > i);
    members.push_back(Member{std::move(key), s.substr(i, value_end - i)});
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',') {
      i = skip_ws(s, i + 1);
      continue;
    }
    if (i < s.size() && s[i] == '}') {
      if (skip_ws(s, i + 1) != s.size()) return std::nullopt;
      return members;
    }
    return std::nullopt;
  }
}

Error line_error(std::string field, std::string rule) {
  return Error{Errc::invalid_event, field + ": " + rule};
}

}  // namespace

bool is_blank_import_line(std::string_view line) { return std::all_of(line.begin(), line.end(), is_ws); }

Result<ImportLine> parse_import_line(std::string_view line) {
  // Surrounding whitespace (a CRLF file's \r included) is not part of the event.
  size_t begin = skip_ws(line, 0);
  size_t end = line.size();
  while (end > begin && is_ws(line[end - 1])) --end;
  line = line.substr(begin, end - begin);

  ImportLine out;
  auto members = object_members(line);
  bool wrapper = members && std::any_of(members->begin(), members->end(),
                                        [](const Member& m) { return m.key == "payload"; });
  if (!wrapper) {
    out.payload = std::string(line);
    return out;
  }
  bool seen_payload = false, seen_key = false, seen_app = false;
  for (const Member& m : *members) {
    bool* seen = m.key == "payload" ? &seen_payload : m.key == "dedup_key" ? &seen_key : m.key == "app_id" ? &seen_app : nullptr;
    if (!seen) {
      return line_error(m.key, "unknown key in an import line; a line is a payload, or "
                               "{\"payload\": {...}, \"dedup_key\": \"...\", \"app_id\": \"...\"}");
    }
    if (*seen) return line_error(m.key, "appears twice in the line");
    *seen = true;
    if (m.key == "payload") {
      out.payload = std::string(m.value);
      continue;
    }
    auto value = nlohmann::json::parse(m.value, nullptr, false);
    if (value.is_discarded() || !(value.is_string() || value.is_null())) {
      return line_error(m.key, "must be a string (or null) in an import line");
    }
    if (value.is_string()) (m.key == "dedup_key" ? out.dedup_key : out.app_id) = value.get<std::string>();
  }
  // A wrapper is a wrapper because it has a payload member, so the loop above took it.
  assert(seen_payload);
  return out;
}

}  // namespace metrix
