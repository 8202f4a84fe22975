// What the operator commands (status, list, show, requeue, purge, import, report) read from
// their flags: times, id ranges and row filters. Printing is tools/metrix-relay/output.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "storage/result.h"
#include "storage/row_filter.h"

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

}  // namespace metrix::cli
