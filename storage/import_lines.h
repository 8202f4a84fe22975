// Import lines: one line of an NDJSON import, split into the event's payload and the
// wrapper's options. Pure text work: no database, no validation of the payload itself (the
// validation trigger judges that; see storage/import_checkers.h). Thread-safe.
//
// A line is either a bare S2S payload (a JSON object) or a wrapper
//   {"payload": {...}, "dedup_key": "order-1234", "app_id": "my-app"}
// (dedup_key and app_id optional, each a string or null).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace metrix {

// One line, understood.
struct ImportLine {
  std::string payload;  // the payload's bytes exactly as in the file
  std::optional<std::string> dedup_key;
  std::optional<std::string> app_id;
};

// Splits a line into payload and options. A line that is a JSON object with a "payload" key
// is a wrapper; anything else is a bare payload (judged by the validation rules). Errc::
// invalid_event with "field: rule" for a malformed wrapper (an unknown key, a dedup_key
// that is not a string, ...). Does not validate the payload itself.
Result<ImportLine> parse_import_line(std::string_view line);

// True for a line of blanks only (spaces, tabs, CR, LF), which an import skips.
bool is_blank_import_line(std::string_view line);

}  // namespace metrix
