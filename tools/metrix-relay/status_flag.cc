#include "tools/metrix-relay/status_flag.h"

namespace metrix::cli {

Result<std::vector<RowStatus>> parse_status_flag(const std::vector<std::string>& texts) {
  std::vector<RowStatus> statuses;
  for (const auto& text : texts) {
    auto status = parse_row_status(text);
    // Storage names the field ("status X: ..."); the flag is that field's name.
    if (!status) return Error{status.error().code, "--" + status.error().message};
    statuses.push_back(*status);
  }
  return statuses;
}

}  // namespace metrix::cli
