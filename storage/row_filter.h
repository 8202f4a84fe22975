// RowFilter: which rows of metrix_outbox an operator means (list, count, requeue), and the
// SQL WHERE clause that selects them. Values are always bound as parameters, never spliced
// into the SQL text. Plain values; no state, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "storage/database.h"
#include "storage/row_status.h"

namespace metrix {

// The name rows with a NULL app_id go by in filters and output (as in metrix_outbox_audit).
inline constexpr const char* kDefaultAppLabel = "(default)";

struct IdRange {
  std::int64_t first = 0;
  std::int64_t last = 0;  // inclusive
};

// Which rows. Empty members do not filter; the members that are set must all match.
struct RowFilter {
  std::vector<RowStatus> statuses;                  // any of these
  std::optional<std::string> app_id;                // kDefaultAppLabel matches NULL
  std::optional<std::string> slug;                  // event_slug, exactly
  std::optional<std::string> error;                 // last_error contains this text
  std::optional<std::int64_t> created_since;        // created_at >= (ms)
  std::optional<std::int64_t> created_until;        // created_at <  (ms)
  std::vector<IdRange> ids;                         // id in any of these ranges
};

// A WHERE clause with positional parameters: sql() goes into the statement's text, bind()
// then fills its parameters.
class SqlWhere {
 public:
  explicit SqlWhere(const RowFilter& filter);

  // "1" when nothing filters, else the terms joined by AND.
  std::string sql() const;
  // Binds the values from parameter `first` on; returns the next free index.
  int bind(Statement& s, int first = 1) const;

 private:
  using Value = std::variant<std::nullptr_t, std::int64_t, std::string>;
  std::vector<std::string> terms_;
  std::vector<Value> values_;
};

}  // namespace metrix
