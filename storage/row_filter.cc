#include "storage/row_filter.h"

namespace metrix {

namespace {

std::string placeholders(size_t n) {
  std::string text;
  for (size_t i = 0; i < n; ++i) text += i ? ", ?" : "?";
  return text;
}

}  // namespace

SqlWhere::SqlWhere(const RowFilter& f) {
  if (!f.statuses.empty()) {
    terms_.push_back("status IN (" + placeholders(f.statuses.size()) + ")");
    for (RowStatus s : f.statuses) values_.emplace_back(std::string(row_status_name(s)));
  }
  if (f.app_id) {
    terms_.push_back("app_id IS ?");
    if (*f.app_id == kDefaultAppLabel) values_.emplace_back(nullptr);
    else values_.emplace_back(*f.app_id);
  }
  if (f.slug) {
    terms_.push_back("event_slug = ?");
    values_.emplace_back(*f.slug);
  }
  if (f.error) {
    terms_.push_back("instr(last_error, ?) > 0");
    values_.emplace_back(*f.error);
  }
  if (f.created_since) {
    terms_.push_back("created_at >= ?");
    values_.emplace_back(*f.created_since);
  }
  if (f.created_until) {
    terms_.push_back("created_at < ?");
    values_.emplace_back(*f.created_until);
  }
  if (!f.ids.empty()) {
    std::string any;
    for (const auto& r : f.ids) {
      any += any.empty() ? "id BETWEEN ? AND ?" : " OR id BETWEEN ? AND ?";
      values_.emplace_back(r.first);
      values_.emplace_back(r.last);
    }
    terms_.push_back(any);
  }
}

std::string SqlWhere::sql() const {
  if (terms_.empty()) return "1";
  std::string text;
  for (const auto& t : terms_) text += (text.empty() ? "(" : " AND (") + t + ")";
  return text;
}

int SqlWhere::bind(Statement& s, int first) const {
  int i = first;
  for (const auto& v : values_) {
    if (std::holds_alternative<std::nullptr_t>(v)) s.bind_null(i);
    else if (const auto* n = std::get_if<std::int64_t>(&v)) s.bind(i, *n);
    else s.bind(i, std::string_view(std::get<std::string>(v)));
    ++i;
  }
  return i;
}

}  // namespace metrix
