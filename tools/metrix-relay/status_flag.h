// The --status flag of list, requeue and purge: the statuses an operator types, read into
// RowStatus values, with messages that name the flag.
#pragma once

#include <string>
#include <vector>

#include "storage/result.h"
#include "storage/row_status.h"

namespace metrix::cli {

// "failed", "dead", ... (each one a status, as CLI11 split them at commas). Errc::invalid_argument
// "--status X: not a status; the statuses are pending, sending, sent, failed, dead, held".
Result<std::vector<RowStatus>> parse_status_flag(const std::vector<std::string>& texts);

}  // namespace metrix::cli
