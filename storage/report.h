// Report: the events Metrix acknowledged, per UTC day, app and slug, with revenue summed
// per currency, to set beside the Metrix dashboard. Only 'sent' rows count.
//
// A read, in one statement (one snapshot); it never takes the write lock. One call at a
// time per Database.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"

namespace metrix {

enum class ReportTime { event_time, sent_at };

struct ReportOptions {
  ReportTime time = ReportTime::event_time;  // which time decides the day (and the range)
  std::optional<std::int64_t> since;         // >= (ms)
  std::optional<std::int64_t> until;         // <  (ms)
};

// Sent events of one UTC day, app and slug.
struct ReportRow {
  std::string day;                       // YYYY-MM-DD, UTC
  std::optional<std::string> app_id;
  std::string slug;
  std::int64_t events = 0;
  std::map<std::string, std::string> revenue;  // currency -> sum of _revenue, as SQLite prints it
};

// Ordered by day, app (NULL first), slug.
Result<std::vector<ReportRow>> sent_report(Database& db, const ReportOptions& options);

}  // namespace metrix
