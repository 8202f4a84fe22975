#include "storage/postgres/producer.h"

#include <fmt/format.h>

#include <string>

#include "storage/postgres/connection.h"
#include "storage/postgres/text.h"

namespace metrix::pg {

Result<std::int64_t> Producer::enqueue(std::string_view payload, const EnqueueOptions& options) {
  auto violation = validate_payload(payload, options.app_id, options.dedup_key);
  if (!violation) return violation.error();
  if (*violation) return Error{Errc::invalid_event, (*violation)->message()};
  if (auto rule = text_rule(payload, options.app_id, options.dedup_key)) return Error{Errc::invalid_event, *rule};

  // Sent as text, with its length: the payload is stored byte for byte as the caller gave it.
  const std::string text(payload);
  const char* values[3] = {text.c_str(), options.app_id ? options.app_id->c_str() : nullptr,
                           options.dedup_key ? options.dedup_key->c_str() : nullptr};
  const int lengths[3] = {static_cast<int>(text.size()), options.app_id ? static_cast<int>(options.app_id->size()) : 0,
                          options.dedup_key ? static_cast<int>(options.dedup_key->size()) : 0};
  // ON CONFLICT: a duplicate key inserts no row instead of failing the statement, which
  // would abort the caller's transaction.
  PGresult* result = PQexecParams(conn_,
                                  "INSERT INTO metrix_outbox (payload, app_id, dedup_key) VALUES ($1, $2, $3) "
                                  "ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
                                  3, nullptr, values, lengths, nullptr, 0);
  const Rows rows(result);  // owns it
  if (!result || PQresultStatus(result) != PGRES_TUPLES_OK) {
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    if (state && std::string_view(state) == "42P01") {  // undefined_table
      return Error{Errc::schema, "this database has no metrix_outbox table; apply the outbox migrations first (migrate())"};
    }
    Error error = error_of(conn_, result, fmt::format("database {}", PQdb(conn_)));
    if (error.code == Errc::invalid_event) {
      // Only a server whose rules differ from this build's gets here, and the transaction is
      // now aborted: not the "nothing changed" of a refusal.
      return Error{Errc::io, fmt::format("the database refused an event this build accepts ({}); its rules are "
                                         "not this metrix-relay's: upgrade one or the other",
                                         error.message)};
    }
    return error;
  }
  if (rows.size() == 0) {
    return Error{Errc::duplicate, fmt::format("dedup_key: '{}' is already in the outbox", options.dedup_key.value_or(""))};
  }
  return rows.int64(0, 0);
}

}  // namespace metrix::pg
