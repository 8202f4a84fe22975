#include "storage/postgres/connection.h"

#include <fmt/format.h>

#include <charconv>
#include <utility>

namespace metrix::pg {

bool is_uri(std::string_view db) { return db.starts_with("postgresql://") || db.starts_with("postgres://"); }

std::string redact(std::string_view uri) {
  if (!is_uri(uri)) return std::string(uri);
  // Parsed by libpq itself, so that what it reads as a password is what is left out, however
  // the URI spells it (percent-encoded, an unencoded '/' in it, ?sslpassword=...). Only the
  // fields that say which database it is are shown; libpq's own parse errors quote the whole
  // URI, so none is ever shown either.
  const std::string text(uri);
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (error) PQfreemem(error);
  if (!options) return "postgresql://(an invalid connection URI)";
  std::string user, host, port, dbname;
  bool secret = false;
  for (PQconninfoOption* o = options; o->keyword; ++o) {
    if (!o->val || !*o->val) continue;
    const std::string_view keyword = o->keyword;
    if (keyword == "user") user = o->val;
    else if (keyword == "host") host = o->val;
    else if (keyword == "port") port = o->val;
    else if (keyword == "dbname") dbname = o->val;
    else if (keyword == "password" || keyword == "sslpassword") secret = true;
  }
  PQconninfoFree(options);
  std::string out = "postgresql://";
  if (!user.empty() || secret) out += user + (secret ? ":***" : "") + "@";
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (!port.empty()) out += ":" + port;
  if (!dbname.empty()) out += "/" + dbname;
  return out;
}

std::string Rows::text(int row, int col) const {
  return std::string(PQgetvalue(result_.get(), row, col), static_cast<std::size_t>(PQgetlength(result_.get(), row, col)));
}

std::int64_t Rows::int64(int row, int col) const {
  const char* v = PQgetvalue(result_.get(), row, col);
  std::int64_t out = 0;
  std::from_chars(v, v + PQgetlength(result_.get(), row, col), out);
  return out;
}

std::optional<std::string> Rows::optional_text(int row, int col) const {
  if (null(row, col)) return std::nullopt;
  return text(row, col);
}

std::optional<std::int64_t> Rows::optional_int64(int row, int col) const {
  if (null(row, col)) return std::nullopt;
  return int64(row, col);
}

bool Rows::boolean(int row, int col) const { return PQgetvalue(result_.get(), row, col)[0] == 't'; }

std::int64_t Rows::affected() const {
  const char* n = PQcmdTuples(result_.get());
  std::int64_t out = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), out);
  return out;
}

Error error_of(PGconn* conn, const PGresult* result, std::string_view database) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  if (sqlstate == "23514") {
    // The schema's rule: its message alone is "field: rule".
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    return Error{Errc::invalid_event, primary ? primary : "check_violation"};
  }
  std::string message = result ? PQresultErrorMessage(result) : "";
  if (message.empty() && conn) message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (sqlstate == "23505") return Error{Errc::duplicate, message};
  const bool lost = !conn || PQstatus(conn) != CONNECTION_OK;
  if (lost || sqlstate.starts_with("08") || sqlstate.starts_with("57P") || sqlstate == "40001" ||
      sqlstate == "40P01" || sqlstate == "55P03") {
    return Error{Errc::busy, fmt::format("{}: {} (the connection will be tried again)", database,
                                         message.empty() ? "connection lost" : message)};
  }
  return Error{Errc::io, fmt::format("{}: {}", database, message)};
}

// Times and text the same whatever the server's or the role's defaults; and no NOTICE (such as
// "relation ... already exists, skipping") on the user's stderr, where libpq prints them.
constexpr const char* kSessionSettings =
    "SET client_encoding = 'UTF8'; SET TIME ZONE 'UTC'; SET client_min_messages = warning";

Result<Connection> Connection::open(const std::string& uri) {
  // libpq's message for a URI it cannot parse quotes the URI, password and all.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(uri.c_str(), &parse_error);
  if (parse_error) PQfreemem(parse_error);
  if (!parsed) {
    return Error{Errc::invalid_argument,
                 "--db: not a valid PostgreSQL connection URI (see libpq's \"Connection URIs\"; it is not shown "
                 "here, since it may hold a password)"};
  }
  PQconninfoFree(parsed);
  // Defaults for a dead network, before the URI so that the URI's own settings win (libpq
  // takes the last value of a keyword, and the URI's fields stand where dbname is): without
  // them a round whose packets are never acknowledged waits for the kernel's retransmission
  // limit, about 15 minutes, and an idle connection to a vanished server is never noticed.
  const char* const keywords[] = {"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                  "dbname", nullptr};
  const char* const values[] = {"30", "10", "3", "60000", uri.c_str(), nullptr};
  return ready(PQconnectdbParams(keywords, values, 1), redact(uri));
}

Result<Connection> Connection::open(const Settings& settings, std::string name) {
  std::vector<const char*> keywords, values;
  for (const auto& [keyword, value] : settings) {
    keywords.push_back(keyword.c_str());
    values.push_back(value.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  return ready(PQconnectdbParams(keywords.data(), values.data(), 0), std::move(name));
}

Result<Connection> Connection::ready(PGconn* conn, std::string name) {
  if (!conn) return Error{Errc::io, fmt::format("{}: out of memory", name)};
  Connection c(conn, std::move(name));
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    return Error{Errc::busy, fmt::format("{}: cannot connect: {}", c.name_, message)};
  }
  if (auto s = c.exec_script(kSessionSettings); !s) return s.error();
  return c;
}

Connection::Settings Connection::settings() const {
  Settings settings;
  if (PQconninfoOption* options = PQconninfo(conn_.get())) {
    for (const PQconninfoOption* o = options; o->keyword; ++o) {
      if (o->val && *o->val) settings.emplace_back(o->keyword, o->val);
    }
    PQconninfoFree(options);
  }
  return settings;
}

Status Connection::reconnect() {
  PQreset(conn_.get());
  if (PQstatus(conn_.get()) != CONNECTION_OK) return error_of(conn_.get(), nullptr, name_);
  return exec_script(kSessionSettings);
}

Result<Rows> Connection::exec(std::string_view sql, const std::vector<Param>& params) {
  // libpq sends a text parameter up to its first NUL, whatever its length: refuse rather than
  // store less than was given. (PostgreSQL's text cannot hold a NUL at all.)
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i] && params[i]->find('\0') != std::string::npos) {
      return Error{Errc::invalid_argument, fmt::format("{}: parameter ${} holds a NUL byte, which PostgreSQL text "
                                                       "cannot store", name_, i + 1)};
    }
  }
  std::vector<const char*> values;
  std::vector<int> lengths;
  values.reserve(params.size());
  lengths.reserve(params.size());
  for (const Param& p : params) {
    values.push_back(p ? p->data() : nullptr);
    lengths.push_back(p ? static_cast<int>(p->size()) : 0);
  }
  const std::string text(sql);
  PGresult* r = PQexecParams(conn_.get(), text.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                             lengths.data(), nullptr, 0);
  Rows rows(r);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return error_of(conn_.get(), r, name_);
  return rows;
}

Status Connection::exec_script(std::string_view sql) {
  const std::string text(sql);
  PGresult* r = PQexec(conn_.get(), text.c_str());
  Rows hold(r);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return error_of(conn_.get(), r, name_);
  return {};
}

std::string array_literal(const std::vector<Param>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    if (!values[i]) {
      out += "NULL";
      continue;
    }
    out.push_back('"');
    for (char c : *values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

Result<Transaction> Transaction::begin(Connection& db, std::string_view sql) {
  if (auto s = db.exec_script(sql); !s) return s.error();
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_) (void)db_->exec_script("ROLLBACK");
}

Status Transaction::commit() {
  Connection* db = std::exchange(db_, nullptr);
  return db->exec_script("COMMIT");
}

}  // namespace metrix::pg
