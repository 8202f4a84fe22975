// Inside storage/: completing the validation trigger's messages. Not part of the producer API.
#pragma once

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "storage/event.h"

namespace metrix {

// Splits a trigger message "field: rule" into a Violation ("payload" when it has no field).
Violation parse_violation(std::string_view message);

// The trigger cannot name the key at fault (SQLite 3.40's RAISE takes a fixed text). For the
// rules about keys ("unknown key", "must not repeat a key"), this finds it in the payload and
// adds it: `... (here: "deviceId")`, `... (here: "a", in customAttributes)`. Any other
// message is returned as it is. `db` is any open connection: it only runs JSON functions.
std::string with_key_named(sqlite3* db, std::string_view payload, std::string message);

}  // namespace metrix
