// RowStatus: where a row of metrix_outbox is in its life, the six values of its `status`
// column (README "The outbox", enforced by a CHECK in 0001_outbox.sql).
//
// Storage APIs take and return RowStatus; the text is what SQL stores and what people and
// scripts read, so it is made at those edges only (row_status_name, parse_row_status).
// Pure functions; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string_view>

#include "storage/result.h"

namespace metrix {

enum class RowStatus {
  pending,  // waiting for its first or next attempt (next_attempt_at)
  sending,  // claimed by a relay, under a lease; in flight
  sent,     // Metrix answered 2xx
  failed,   // Metrix refused it for good (400, 404, another 4xx)
  dead,     // attempts or age exhausted, or poison
  held,     // in doubt, kept for an operator (the hold policy)
};

// Rows per status; the order of a std::map keyed by RowStatus is the order of the enum.
using StatusCounts = std::map<RowStatus, std::int64_t>;

// Every status, in the order the outbox moves through them.
const std::array<RowStatus, 6>& all_statuses();

// The text stored in metrix_outbox.status: "pending", "sending", "sent", "failed", "dead", "held".
const char* row_status_name(RowStatus status);

// The status whose text is exactly `text`; otherwise Errc::invalid_argument,
// "status X: not a status; the statuses are pending, sending, sent, failed, dead, held".
Result<RowStatus> parse_row_status(std::string_view text);

}  // namespace metrix
