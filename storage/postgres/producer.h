// The producer API on PostgreSQL: add an event to the outbox on the caller's own libpq
// connection, inside the caller's own transaction. The twin of storage/producer.h, with the
// same Event builder, options, error codes and messages.
//
//   PGconn* conn = ...;                       // the application's connection
//   metrix::pg::Producer producer(conn);      // keep it beside the connection
//   PQclear(PQexec(conn, "BEGIN"));
//   ... the business change ...
//   auto id = producer.enqueue(metrix::Event::revenue("user-1", "purchase", 53.7, metrix::Currency::IRR)
//                                  .advertising_id("38400000-8cf0-11bd-b23e-10b96e40000d"),
//                              {.dedup_key = "order-1234"});
//   if (!id) { ... PQexec(conn, "ROLLBACK"), report id.error().message ... }
//   PQclear(PQexec(conn, "COMMIT"));
//
// enqueue() never begins or commits a transaction: in an open transaction the event commits
// or rolls back with it; in autocommit mode the single INSERT is its own transaction.
//
// A refused event changes nothing, and the caller's transaction stays open and usable. On
// PostgreSQL a failed statement aborts the whole transaction, so a refusal must never be a
// failed statement: the event is checked here first, by the very rules of the SQLite trigger
// (validate_payload()), so an invalid event never reaches the server; and a duplicate
// dedup_key is an INSERT that inserts nothing (ON CONFLICT DO NOTHING), not an error. The
// server's own rules (the schema's trigger) still refuse invalid events from any other
// client; they refuse nothing this check accepts while both come from the same release. If
// the server's rules are newer and refuse an event this build accepts, the statement fails,
// and then, as for any failed statement, the caller's transaction is aborted.
//
// Threads: as the connection (libpq: one thread at a time per PGconn). The Producer keeps no
// state on the server (no prepared statement), so it may be made and dropped at will, and
// survives PQreset().
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <string_view>

#include "storage/event.h"
#include "storage/producer.h"
#include "storage/result.h"

namespace metrix::pg {

class Producer {
 public:
  // Does not own `conn`; destroy the Producer before closing the connection.
  explicit Producer(PGconn* conn) : conn_(conn) {}

  // Returns the new row id, or:
  //   Errc::invalid_event  the event breaks a rule; the message is "field: rule"; nothing sent
  //   Errc::duplicate      dedup_key is already in the outbox (committed, or earlier in this
  //                        transaction); nothing written, the transaction is usable
  //   Errc::busy           the connection was lost, or the server is shutting down: retry the
  //                        whole transaction on a new connection
  //   Errc::io             the statement failed (no outbox: run migrate; or the server's
  //                        rules refused the event, see above); the transaction is aborted
  Result<std::int64_t> enqueue(std::string_view payload, const EnqueueOptions& options = {});
  Result<std::int64_t> enqueue(const Event& event, const EnqueueOptions& options = {}) {
    return enqueue(event.payload(), options);
  }

 private:
  PGconn* conn_;
};

}  // namespace metrix::pg
