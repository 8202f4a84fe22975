#include "storage/producer.h"

#include <fmt/format.h>

#include "storage/event.h"
#include "storage/rule_message.h"

namespace metrix {

Result<std::int64_t> Producer::enqueue(std::string_view payload, const EnqueueOptions& options) {
  if (!insert_.handle()) {
    sqlite3_stmt* stmt = nullptr;
    constexpr std::string_view sql = "INSERT INTO metrix_outbox (payload, app_id, dedup_key) VALUES (?1, ?2, ?3)";
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt,
                                nullptr);
    if (rc != SQLITE_OK) {
      if (rc == SQLITE_ERROR && sqlite3_errmsg(db_) == std::string_view("no such table: metrix_outbox")) {
        return Error{Errc::schema, "this database has no metrix_outbox table; apply the outbox migrations first (migrate())"};
      }
      return sqlite_error(db_, rc, "prepare enqueue");
    }
    insert_ = Statement(stmt);
  }
  insert_.bind(1, payload).bind(2, options.app_id).bind(3, options.dedup_key);
  auto done = insert_.step();
  int rc = sqlite3_extended_errcode(db_);
  insert_.reset();
  if (!done) {
    if (rc == SQLITE_CONSTRAINT_UNIQUE && options.dedup_key) {
      return Error{Errc::duplicate, fmt::format("dedup_key: '{}' is already in the outbox", *options.dedup_key)};
    }
    if (done.error().code == Errc::invalid_event) {
      return Error{Errc::invalid_event, with_key_named(db_, payload, done.error().message)};
    }
    return done.error();
  }
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_));
}

}  // namespace metrix
