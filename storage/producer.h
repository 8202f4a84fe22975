// The producer API: add an event to the outbox on the caller's own connection, inside the
// caller's own transaction.
//
//   sqlite3* db = ...;                       // the application's connection
//   metrix::Producer producer(db);           // keep it beside the connection
//   sqlite3_exec(db, "BEGIN", ...);
//   ... the business change ...
//   auto id = producer.enqueue(metrix::Event::revenue("user-1", "purchase", 53.7, metrix::Currency::IRR)
//                                  .advertising_id("38400000-8cf0-11bd-b23e-10b96e40000d"),
//                              {.dedup_key = "order-1234"});
//   if (!id) { ... ROLLBACK, report id.error().message ... }
//   sqlite3_exec(db, "COMMIT", ...);
//
// enqueue() never begins or commits a transaction: in an open transaction the event commits
// or rolls back with it; in autocommit mode the single INSERT is its own transaction.
// A refused event changes nothing, and the caller's transaction stays open and usable.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "storage/database.h"
#include "storage/event.h"
#include "storage/result.h"

namespace metrix {

struct EnqueueOptions {
  std::optional<std::string> app_id = std::nullopt;     // NULL: the relay's default app
  std::optional<std::string> dedup_key = std::nullopt;  // a second event with the same key is refused
};

class Producer {
 public:
  // Does not own `db`; destroy the Producer before closing the connection.
  explicit Producer(sqlite3* db) : db_(db) {}

  // Returns the new row id, or:
  //   Errc::invalid_event  the event breaks a rule; the message is "field: rule"
  //   Errc::duplicate      dedup_key is already in the outbox
  //   Errc::busy           the database stayed locked past the busy timeout
  //   Errc::io / schema    the database failed, or has no outbox (run migrate)
  Result<std::int64_t> enqueue(std::string_view payload, const EnqueueOptions& options = {});
  Result<std::int64_t> enqueue(const Event& event, const EnqueueOptions& options = {}) {
    return enqueue(event.payload(), options);
  }

 private:
  sqlite3* db_;
  Statement insert_;  // prepared once: the validation trigger makes preparing it costly
};

}  // namespace metrix
