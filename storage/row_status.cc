#include "storage/row_status.h"

#include <fmt/format.h>

namespace metrix {

const std::array<RowStatus, 6>& all_statuses() {
  static constexpr std::array<RowStatus, 6> statuses = {RowStatus::pending, RowStatus::sending, RowStatus::sent,
                                                        RowStatus::failed,  RowStatus::dead,    RowStatus::held};
  return statuses;
}

const char* row_status_name(RowStatus status) {
  switch (status) {
    case RowStatus::pending: return "pending";
    case RowStatus::sending: return "sending";
    case RowStatus::sent: return "sent";
    case RowStatus::failed: return "failed";
    case RowStatus::dead: return "dead";
    case RowStatus::held: return "held";
  }
  return "?";
}

Result<RowStatus> parse_row_status(std::string_view text) {
  std::string names;
  for (RowStatus s : all_statuses()) {
    if (text == row_status_name(s)) return s;
    names += fmt::format("{}{}", names.empty() ? "" : ", ", row_status_name(s));
  }
  return Error{Errc::invalid_argument, fmt::format("status {}: not a status; the statuses are {}", text, names)};
}

}  // namespace metrix
