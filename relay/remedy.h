// What to do about an outbox that cannot be used, in the command line's words. The storage
// library says what is wrong (it is linked by producers, which have no metrix-relay command);
// the metrix-relay commands add the one that mends it.
#pragma once

#include <string>

#include "storage/result.h"

namespace metrix {

// `error` from opening the outbox at `db_path` (Database::open, check_schema), with the
// command that mends it appended when there is one: a missing file, a database that is not
// an outbox yet, or one at an older schema all call for `metrix-relay migrate`.
Error with_remedy(Error error, const std::string& db_path);

}  // namespace metrix
