#include "relay/remedy.h"

#include <fmt/format.h>

#include "storage/postgres/connection.h"

namespace metrix {

Error with_remedy(Error error, const std::string& db) {
  const std::string db_path = pg::redact(db);  // a URI's password never enters a message
  switch (error.code) {
    case Errc::not_found: error.message += " (run 'metrix-relay migrate' first)"; break;
    case Errc::no_outbox: error.message += fmt::format("; create one with 'metrix-relay migrate --db {}'", db_path); break;
    case Errc::old_schema: error.message += fmt::format("; upgrade it with 'metrix-relay migrate --db {}'", db_path); break;
    default: break;
  }
  return error;
}

}  // namespace metrix
