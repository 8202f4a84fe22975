#include "storage/report.h"

#include <fmt/format.h>

#include "storage/query.h"

namespace metrix {

Result<std::vector<ReportRow>> sent_report(Database& db, const ReportOptions& options) {
  const char* time = options.time == ReportTime::event_time ? "event_time" : "sent_at";
  // SQLite uses metrix_outbox_status, a partial index of finished rows, for status = 'sent':
  // the term implies one branch of the index's OR condition.
  std::string sql = fmt::format(
      "SELECT strftime('%Y-%m-%d', {0} / 1000, 'unixepoch') AS day, app_id, event_slug, "
      " json_extract(payload, '$.customAttributes._currency') AS currency, count(*), "
      " CAST(sum(json_extract(payload, '$.customMetrics._revenue')) AS TEXT) "
      "FROM metrix_outbox WHERE status = 'sent' AND {0} >= ?1 AND {0} < ?2 "
      "GROUP BY day, app_id, event_slug, currency "
      "ORDER BY day, app_id IS NOT NULL, app_id, event_slug, currency",
      time);
  auto s = db.prepare(sql);
  if (!s) return s.error();
  s->bind(1, options.since.value_or(INT64_MIN)).bind(2, options.until.value_or(INT64_MAX));
  std::vector<ReportRow> rows;
  auto st = for_each_row(*s, [&](const Statement& r) {
    std::string day = r.text(0);
    std::optional<std::string> app = r.optional_text(1);
    std::string slug = r.text(2);
    if (rows.empty() || rows.back().day != day || rows.back().app_id != app || rows.back().slug != slug) {
      rows.push_back(ReportRow{day, app, slug, 0, {}});
    }
    rows.back().events += r.int64(4);
    if (auto currency = r.optional_text(3)) rows.back().revenue[*currency] = r.text(5);
  });
  if (!st) return st.error();
  return rows;
}

}  // namespace metrix
