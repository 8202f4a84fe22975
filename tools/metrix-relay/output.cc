#include "tools/metrix-relay/output.h"

#include <algorithm>
#include <cctype>

#include "storage/row_filter.h"
#include "storage/time_text.h"

namespace metrix::cli {

std::string short_time(std::int64_t ms) {
  std::string full = utc_time(ms);
  return full.substr(0, 19) + "Z";
}

std::string csv_field(std::string_view text) {
  bool quote = text.find_first_of(",\"\r\n") != std::string_view::npos ||
               (!text.empty() && (text.front() == ' ' || text.back() == ' '));
  if (!quote) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += "\"\"";
    else out.push_back(c);
  }
  out.push_back('"');
  return out;
}

void print_csv_row(std::FILE* out, const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line.push_back(',');
    line += csv_field(fields[i]);
  }
  line += "\r\n";  // RFC 4180 line ends
  std::fputs(line.c_str(), out);
}

namespace {

// A number as SQLite prints one: -12, 3.5, 1.0e+15 (a date such as 2026-11-25 is not).
bool numeric(const std::string& s) {
  size_t i = s.size() > 1 && s[0] == '-' ? 1 : 0;
  bool digits = false, dot = false, exponent = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits = true;
    } else if (c == '.' && !dot && !exponent) {
      dot = true;
    } else if (c == 'e' && digits && !exponent) {
      exponent = true;
      if (i + 1 < s.size() && (s[i + 1] == '+' || s[i + 1] == '-')) ++i;
    } else {
      return false;
    }
  }
  return digits;
}

}  // namespace

void Table::print(std::FILE* out, const std::string& indent) const {
  std::vector<size_t> width(headers_.size());
  // A column is right-aligned when it holds numbers (and dashes for "none") only.
  std::vector<bool> right(headers_.size(), false), text(headers_.size(), false);
  for (size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
      if (numeric(row[c])) right[c] = true;
      else if (row[c] != "-" && !row[c].empty()) text[c] = true;
    }
  }
  for (size_t c = 0; c < right.size(); ++c) right[c] = right[c] && !text[c];
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text = indent;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string& v = c < cells.size() ? cells[c] : std::string();
      bool last = c + 1 == width.size();
      if (right[c]) text += std::string(width[c] - v.size(), ' ') + v;
      else text += last ? v : v + std::string(width[c] - v.size(), ' ');
      if (!last) text += "  ";
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    text.push_back('\n');
    std::fputs(text.c_str(), out);
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
}

std::string cell(std::string_view text, size_t width) {
  std::string out;
  for (char c : text) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  if (out.size() > width) {
    // Cut on a UTF-8 character boundary.
    size_t cut = width - 3;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

nlohmann::ordered_json row_json(const OutboxRow& r) {
  auto opt = [](const auto& v) -> nlohmann::ordered_json {
    if (v) return *v;
    return nullptr;
  };
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j["app_id"] = opt(r.app_id);
  j["status"] = row_status_name(r.status);
  j["event_slug"] = opt(r.event_slug);
  j["dedup_key"] = opt(r.dedup_key);
  j["created_at"] = r.created_at;
  j["attempts"] = r.attempts;
  j["lease_expiries"] = r.lease_expiries;
  j["next_attempt_at"] = r.next_attempt_at;
  j["event_time"] = opt(r.event_time);
  j["last_http_status"] = opt(r.last_http_status);
  j["last_error"] = opt(r.last_error);
  j["sent_at"] = opt(r.sent_at);
  auto payload = nlohmann::ordered_json::parse(r.payload, nullptr, false);
  if (payload.is_discarded()) j["payload"] = r.payload;
  else j["payload"] = std::move(payload);
  return j;
}

const std::vector<std::string>& row_csv_header() {
  static const std::vector<std::string> header = {"id", "app_id", "status", "event_slug", "dedup_key", "created_at",
                                                  "attempts", "next_attempt_at", "event_time", "last_http_status",
                                                  "last_error", "sent_at", "payload"};
  return header;
}

std::vector<std::string> row_csv(const OutboxRow& r) {
  auto num = [](const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string(); };
  return {std::to_string(r.id), r.app_id.value_or(""), row_status_name(r.status), r.event_slug.value_or(""), r.dedup_key.value_or(""),
          std::to_string(r.created_at), std::to_string(r.attempts), std::to_string(r.next_attempt_at), num(r.event_time),
          num(r.last_http_status), r.last_error.value_or(""), num(r.sent_at), r.payload};
}

Table rows_table(const std::vector<OutboxRow>& rows) {
  Table t({"ID", "APP", "STATUS", "SLUG", "USER", "ATT", "STOPS", "CREATED", "HTTP", "LAST ERROR"});
  for (const auto& r : rows) {
    auto payload = nlohmann::json::parse(r.payload, nullptr, false);
    std::string user;
    if (!payload.is_discarded() && payload.is_object() && payload.contains("metrixUserId") &&
        payload["metrixUserId"].is_string()) {
      user = payload["metrixUserId"].get<std::string>();
    }
    t.add({std::to_string(r.id), cell(r.app_id.value_or(kDefaultAppLabel), 24), row_status_name(r.status),
           cell(r.event_slug.value_or("-"), 24), cell(user, 24), std::to_string(r.attempts),
           std::to_string(r.lease_expiries), short_time(r.created_at),
           r.last_http_status ? std::to_string(*r.last_http_status) : "-", cell(r.last_error.value_or("-"))});
  }
  return t;
}

void add_format_flags(CLI::App& cmd, bool& json, bool* csv) {
  auto* j = cmd.add_flag("--json", json, "machine-readable JSON on stdout");
  if (csv) {
    auto* c = cmd.add_flag("--csv", *csv, "CSV (RFC 4180, with a header line) on stdout");
    j->excludes(c);
  }
}

void print_json(const nlohmann::ordered_json& value) {
  std::string text = value.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  text.push_back('\n');
  std::fputs(text.c_str(), stdout);
}

}  // namespace metrix::cli
