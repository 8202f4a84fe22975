// A PostgreSQL connection (libpq) with errors as values: the one place storage/postgres/ talks
// to libpq. Statements are sent with PQexecParams, every parameter as text (NULL for nullopt),
// so nothing a caller passes is ever spliced into SQL.
//
// A value of --db starting with postgresql:// or postgres:// is a libpq connection URI; libpq
// reads what it leaves out from its environment (PGHOST, PGPASSWORD, ~/.pgpass, ...), so
// "postgresql://" alone means "everything from the environment". Unless the URI says otherwise,
// TCP keepalives (idle 30 s, then every 10 s, 3 tries) and tcp_user_timeout (60 s) make a dead
// network an error within about a minute rather than a hang. The URI's password is never
// part of a message: messages name the database by redact(uri).
//
// Errors: a refused event (SQLSTATE 23514, check_violation, raised by the schema's rules)
// is Errc::invalid_event with the rule's "field: rule" message; 23505 on dedup_key is
// Errc::duplicate; a lost connection, a server shutting down or a serialization failure is
// Errc::busy (try again); anything else is Errc::io.
//
// Threads: one Connection per thread.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/result.h"

namespace metrix::pg {

// True when `db` names a PostgreSQL database rather than an SQLite file.
bool is_uri(std::string_view db);

// The URI with its password (if any) replaced by "***": the form every message uses.
std::string redact(std::string_view uri);

// A statement's parameter: text, or NULL.
using Param = std::optional<std::string>;

// One statement's result rows. Values are read as text (libpq's text format).
class Rows {
 public:
  Rows() = default;
  explicit Rows(PGresult* result) : result_(result, &PQclear) {}

  int size() const { return result_ ? PQntuples(result_.get()) : 0; }
  bool null(int row, int col) const { return PQgetisnull(result_.get(), row, col) != 0; }
  std::string text(int row, int col) const;
  std::int64_t int64(int row, int col) const;
  std::optional<std::string> optional_text(int row, int col) const;
  std::optional<std::int64_t> optional_int64(int row, int col) const;
  bool boolean(int row, int col) const;  // 't' or 'f'
  // Rows changed by an INSERT, UPDATE or DELETE without RETURNING.
  std::int64_t affected() const;

 private:
  std::shared_ptr<PGresult> result_;
};

class Connection {
 public:
  // libpq's keyword/value settings a connection was made with (PQconninfo): the server, the
  // database, the role and its password however found (URI, environment, password file).
  using Settings = std::vector<std::pair<std::string, std::string>>;

  // Connects to `uri` (see above). The error names the database by redact(uri).
  static Result<Connection> open(const std::string& uri);
  // Another connection like one already open: its settings() and its name(), and the same
  // session settings. For a thread of its own: settings() is read on the connection's thread.
  static Result<Connection> open(const Settings& settings, std::string name);

  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&&) noexcept = default;

  // Runs one statement. `sql` numbers its parameters $1, $2, ...
  Result<Rows> exec(std::string_view sql, const std::vector<Param>& params = {});
  // Runs a script of several statements without parameters (a migration).
  Status exec_script(std::string_view sql);

  // False once the server closed the connection or it broke. reconnect() tries once to
  // connect again (the caller paces its attempts).
  bool alive() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  Status reconnect();

  PGconn* handle() const { return conn_.get(); }
  const std::string& name() const { return name_; }  // redact(uri)
  Settings settings() const;

 private:
  Connection(PGconn* conn, std::string name) : conn_(conn, &PQfinish), name_(std::move(name)) {}
  // `conn`, once connected, with the session settings every connection here has.
  static Result<Connection> ready(PGconn* conn, std::string name);

  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
  std::string name_;
};

// A transaction on a Connection: begun by begin() with `sql` ("BEGIN", or one naming an
// isolation level), rolled back by the destructor unless commit() succeeded, so that every
// return before the commit leaves nothing half done (a lost connection has nothing to roll back).
class Transaction {
 public:
  static Result<Transaction> begin(Connection& db, std::string_view sql = "BEGIN");
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  Status commit();

 private:
  explicit Transaction(Connection& db) : db_(&db) {}
  Connection* db_;  // null once committed or moved from
};

// The error of a failed statement `result` (or of the connection when `result` is null),
// mapped as described above. Exposed for the producer API, which runs on the caller's PGconn.
Error error_of(PGconn* conn, const PGresult* result, std::string_view database);

// "text[]" literal of `values` for an array parameter ({"a","b",NULL}), quoted as PostgreSQL's
// array input wants.
std::string array_literal(const std::vector<Param>& values);

}  // namespace metrix::pg
