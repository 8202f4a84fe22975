// Rows: reading metrix_outbox rows as stored, for list and show: the rows a RowFilter
// selects, how many there are, and one row with its whole attempt history.
//
// Reads only: they never take the write lock, and each call reads one consistent snapshot.
// One call at a time per Database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/result.h"
#include "storage/row_filter.h"
#include "storage/row_status.h"

namespace metrix {

// One metrix_outbox row, as stored.
struct OutboxRow {
  std::int64_t id = 0;
  std::optional<std::string> app_id;
  std::string payload;
  std::optional<std::string> dedup_key;
  std::int64_t created_at = 0;
  RowStatus status = RowStatus::pending;
  std::int64_t attempts = 0;
  std::int64_t next_attempt_at = 0;
  std::optional<std::int64_t> event_time;
  std::optional<std::int64_t> last_http_status;
  std::optional<std::string> last_error;
  std::optional<std::int64_t> sent_at;
  std::optional<std::string> event_slug;
  std::int64_t lease_expiries = 0;  // claims in a row whose relay stopped before an answer
};

// One metrix_outbox_attempt row.
struct AttemptRow {
  std::int64_t attempt = 0;
  std::int64_t started_at = 0;
  std::int64_t finished_at = 0;
  std::optional<std::int64_t> http_status;
  std::optional<std::string> error;
  std::optional<std::string> response;
};

// Matching rows in id order, at most `limit` of them (0: all).
Result<std::vector<OutboxRow>> list_rows(Database& db, const RowFilter& filter, std::int64_t limit);
Result<std::int64_t> count_rows(Database& db, const RowFilter& filter);

// One row and its whole attempt history, oldest attempt first. Errc::not_found if no such id.
struct RowHistory {
  OutboxRow row;
  std::vector<AttemptRow> attempts;
};
Result<RowHistory> row_history(Database& db, std::int64_t id);

}  // namespace metrix
