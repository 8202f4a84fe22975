#include "storage/postgres/pipeline.h"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>

namespace metrix::pg {

Result<std::vector<Rows>> run_pipeline(Connection& db, const std::vector<PreparedSql>& statements, std::set<std::string>& prepared,
                                       bool& broken) {
  PGconn* c = db.handle();
  if (PQenterPipelineMode(c) != 1 || PQsetnonblocking(c, 1) != 0) {
    broken = true;
    return error_of(c, nullptr, db.name());
  }
  bool sent = true;
  std::vector<const std::string*> preparing;  // per statement: the name it prepares first, or null
  for (const PreparedSql& s : statements) {
    const bool prepare = !prepared.count(s.name) &&
                         std::none_of(preparing.begin(), preparing.end(), [&](auto* n) { return n && *n == s.name; });
    preparing.push_back(prepare ? &s.name : nullptr);
    if (prepare && !PQsendPrepare(c, s.name.c_str(), s.text.c_str(), static_cast<int>(s.params.size()), nullptr)) {
      sent = false;
      break;
    }
    std::vector<const char*> values;
    std::vector<int> lengths;
    for (const Param& p : s.params) {
      values.push_back(p ? p->data() : nullptr);
      lengths.push_back(p ? static_cast<int>(p->size()) : 0);
    }
    if (!PQsendQueryPrepared(c, s.name.c_str(), static_cast<int>(values.size()), values.data(), lengths.data(), nullptr,
                             0)) {
      sent = false;
      break;
    }
  }
  if (sent) sent = PQpipelineSync(c) == 1;
  // Non-blocking while sending, reading what the server answers meanwhile: a server blocked on
  // writing answers nobody reads would stop reading the rest of the pipeline.
  for (int flushed = sent ? PQflush(c) : -1; sent && flushed != 0; flushed = PQflush(c)) {
    if (flushed < 0) {
      sent = false;
      break;
    }
    pollfd fd{PQsocket(c), POLLIN | POLLOUT, 0};
    if (poll(&fd, 1, 1000) < 0 || ((fd.revents & POLLIN) && !PQconsumeInput(c))) sent = false;
  }
  if (!sent || PQsetnonblocking(c, 0) != 0) {
    broken = true;
    return error_of(c, nullptr, db.name());
  }
  std::vector<Rows> out;
  std::optional<Error> first_error;
  for (std::size_t i = 0; i < statements.size() * 2; ++i) {
    const bool preparation = i % 2 == 0;
    if (preparation && !preparing[i / 2]) continue;
    PGresult* r = PQgetResult(c);
    if (!r) {
      broken = true;
      return error_of(c, nullptr, db.name());
    }
    Rows rows(r);
    const auto status = PQresultStatus(r);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      if (preparation) prepared.insert(*preparing[i / 2]);  // made, whatever becomes of the transaction
      else out.push_back(std::move(rows));
    } else if (!first_error) {
      first_error = error_of(c, r, db.name());
    }
    if (PGresult* end = PQgetResult(c)) {  // each statement's results end with a null
      PQclear(end);
      broken = true;
      return Error{Errc::io, fmt::format("{}: unexpected results in a pipeline", db.name())};
    }
  }
  PGresult* sync = PQgetResult(c);
  const bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  if (sync) PQclear(sync);
  if (!synced || PQexitPipelineMode(c) != 1) {
    broken = true;
    return first_error ? *first_error : error_of(c, nullptr, db.name());
  }
  if (first_error) return *first_error;
  return out;
}


}  // namespace metrix::pg
