#include "storage/postgres/row_filter.h"

namespace metrix::pg {

namespace {

std::string placeholders(std::size_t n) {
  std::string text;
  for (std::size_t i = 0; i < n; ++i) text += i ? ", ?" : "?";
  return text;
}

}  // namespace

RowWhere::RowWhere(const RowFilter& f) {
  // A list of plain values rather than "= ANY($n)": a statement sent with its values is
  // planned with them, so "status IN ('failed', 'dead')" is seen to imply a partial index's
  // predicate (metrix_outbox_status, metrix_outbox_due).
  if (!f.statuses.empty()) {
    terms_.push_back("status IN (" + placeholders(f.statuses.size()) + ")");
    for (RowStatus s : f.statuses) params_.emplace_back(std::string(row_status_name(s)));
  }
  if (f.app_id) {
    if (*f.app_id == kDefaultAppLabel) {
      terms_.push_back("app_id IS NULL");
    } else {
      terms_.push_back("app_id = ?");
      params_.emplace_back(*f.app_id);
    }
  }
  if (f.slug) {
    terms_.push_back("event_slug = ?");
    params_.emplace_back(*f.slug);
  }
  if (f.error) {
    terms_.push_back("strpos(last_error, ?) > 0");
    params_.emplace_back(*f.error);
  }
  if (f.created_since) {
    terms_.push_back("created_at >= ?");
    params_.emplace_back(std::to_string(*f.created_since));
  }
  if (f.created_until) {
    terms_.push_back("created_at < ?");
    params_.emplace_back(std::to_string(*f.created_until));
  }
  if (!f.ids.empty()) {
    std::string any;
    for (const auto& r : f.ids) {
      any += any.empty() ? "id BETWEEN ? AND ?" : " OR id BETWEEN ? AND ?";
      params_.emplace_back(std::to_string(r.first));
      params_.emplace_back(std::to_string(r.last));
    }
    terms_.push_back(any);
  }
}

std::string RowWhere::sql(int first_param) const {
  if (terms_.empty()) return "true";
  std::string text;
  int n = first_param;
  for (const auto& t : terms_) {
    text += text.empty() ? "(" : " AND (";
    for (char c : t) {
      if (c != '?') {
        text += c;
        continue;
      }
      text += '$';
      text += std::to_string(n++);
    }
    text += ")";
  }
  return text;
}

}  // namespace metrix::pg
