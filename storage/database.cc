#include "storage/database.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include <fmt/format.h>

namespace metrix {

Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  const char* message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Errc code = Errc::io;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = Errc::busy; break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: code = Errc::schema; break;
    default: break;
  }
  std::string text = fmt::format("{}: {}", what, message);
  if (std::string_view(message) != sqlite3_errstr(rc)) text += fmt::format(" ({})", sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL: text += "; the disk may be full, failing, or past a file size limit; the transaction was rolled back"; break;
    case SQLITE_BUSY: text += "; another process holds the database lock"; break;
    case SQLITE_READONLY: text += "; the file or its directory is not writable"; break;
    default: break;
  }
  return Error{code, text};
}

Statement& Statement::bind(int index, std::int64_t value) {
  int rc = sqlite3_bind_int64(stmt_.get(), index, value);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  int rc = sqlite3_bind_text64(stmt_.get(), index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::string>& text) {
  return text ? bind(index, std::string_view(*text)) : bind_null(index);
}

Statement& Statement::bind(int index, const std::optional<std::int64_t>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

Statement& Statement::bind_null(int index) {
  int rc = sqlite3_bind_null(stmt_.get(), index);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Statement::step() {
  sqlite3* db = sqlite3_db_handle(stmt_.get());
  if (bind_rc_ != SQLITE_OK) {
    int rc = bind_rc_;
    bind_rc_ = SQLITE_OK;
    return sqlite_error(db, rc, "bind");
  }
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // Name the statement by its first words: "INSERT INTO metrix_outbox ...".
  std::string_view sql = sqlite3_sql(stmt_.get()) ? sqlite3_sql(stmt_.get()) : "statement";
  Error error = sqlite_error(db, rc, sql.size() > 40 ? std::string(sql.substr(0, 40)) + "..." : std::string(sql));
  // A trigger's RAISE(ABORT, 'field: rule') is the rule's own message, nothing else. The
  // extended code is asked for: a producer's connection may not have extended codes on.
  if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_TRIGGER) error = Error{Errc::invalid_event, sqlite3_errmsg(db)};
  sqlite3_reset(stmt_.get());
  return error;
}

Status Statement::run() {
  for (;;) {
    auto row = step();
    if (!row) return row.error();
    if (!*row) break;
  }
  reset();
  return {};
}

void Statement::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bind_rc_ = SQLITE_OK;
}

std::optional<std::int64_t> Statement::optional_int64(int column) const {
  if (is_null(column)) return std::nullopt;
  return int64(column);
}

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), column));
  if (!p) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), column)));
}

std::optional<std::string> Statement::optional_text(int column) const {
  if (is_null(column)) return std::nullopt;
  return text(column);
}

namespace {

// SQLite creates the -wal and -shm files with the database file's permissions, so a
// database created 0600 keeps device ids and IP addresses away from other users.
Status create_owner_only(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return {};
  }
  if (errno == EEXIST) return {};
  return Error{Errc::io, fmt::format("cannot create {}: {}", path, std::strerror(errno))};
}

}  // namespace

namespace {

// Why SQLite could open a WAL database's file but not use it: it creates PATH-wal and
// PATH-shm beside it, which takes a writable directory.
Error cannot_use(sqlite3* db, int rc, const std::string& path, std::string_view what) {
  Error error = sqlite_error(db, rc, fmt::format("{} {}", what, path));
  if ((rc & 0xff) == SQLITE_CANTOPEN) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (access(dir.c_str(), W_OK) != 0) {
      error.message += fmt::format("; the directory {} is not writable, and SQLite must create {}-wal and {}-shm in it",
                                   dir, path, path);
    }
  }
  return error;
}

}  // namespace

Result<Database> Database::open(const std::string& path, const OpenOptions& options) {
  // SQLite's own word for a directory is a disk I/O error or "unable to open".
  if (std::error_code ignored; std::filesystem::is_directory(path, ignored)) {
    return Error{Errc::io, fmt::format("cannot open database {}: {} is a directory, not a database file", path, path)};
  }
  if (options.create && !options.read_only) {
    if (auto s = create_owner_only(path); !s) return s.error();
  }
  int flags = (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Database db;
  db.db_.reset(raw);
  db.path_ = path;
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_CANTOPEN) {
      if (access(path.c_str(), F_OK) != 0) return Error{Errc::not_found, fmt::format("cannot open database {}: no such file", path)};
      return Error{Errc::io, fmt::format("cannot open database {}: permission denied", path)};
    }
    return sqlite_error(raw, rc, fmt::format("cannot open database {}", path));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);

  // Asked to open a file it cannot write, SQLite opens it read-only without a word, and
  // every write then fails; a process would wait on it forever, since this connection
  // stays read-only even after the file is made writable again.
  if (!options.read_only && sqlite3_db_readonly(raw, "main") == 1) {
    return Error{Errc::io, fmt::format("cannot open database {} for writing: the file is read-only (check its "
                                       "mode, owner, attributes and file system)",
                                       path)};
  }
  if (!options.read_only) {
    // journal_mode can only change when no other connection is mid-way; the busy handler
    // does not cover it, so wait here for up to the busy timeout.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.busy_timeout_ms);
    for (;;) {
      rc = sqlite3_exec(raw, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
      if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (rc != SQLITE_OK) {
      auto error = cannot_use(raw, rc, path, "cannot open database");
      if ((rc & 0xff) == SQLITE_NOTADB) error.message = fmt::format("{} is not an SQLite database", path);
      return error;
    }
  } else {
    // Reading the schema proves the file is a database at all.
    rc = sqlite3_exec(raw, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      if ((rc & 0xff) == SQLITE_NOTADB) return Error{Errc::schema, fmt::format("{} is not an SQLite database", path)};
      return cannot_use(raw, rc, path, "cannot read database");
    }
  }
  const char* sync = options.synchronous == Synchronous::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  if (auto s = db.exec(sync); !s) return s.error();
  return db;
}

Result<Database> Database::open_memory() {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  Database db;
  db.db_.reset(raw);
  db.path_ = ":memory:";
  if (rc != SQLITE_OK) return sqlite_error(raw, rc, "cannot open an in-memory database");
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Result<std::int64_t> Database::data_version() {
  auto stmt = prepare("PRAGMA data_version");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return stmt->int64(0);
}

Status Database::exec(std::string_view sql) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return {};
  Error error = sqlite_error(db_.get(), rc, "exec");
  if (message) {
    if ((rc & 0xff) == SQLITE_CONSTRAINT) error = Error{Errc::invalid_event, message};
    sqlite3_free(message);
  }
  return error;
}

Result<Statement> Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt,
                              nullptr);
  if (rc != SQLITE_OK) return sqlite_error(db_.get(), rc, fmt::format("prepare '{}'", sql.substr(0, 60)));
  return Statement(stmt);
}

Result<Transaction> Transaction::begin(sqlite3* db) {
  // Joining a transaction that has not taken the write lock would take it at the first write,
  // a lock upgrade that can fail with SQLITE_BUSY at once (another writer may wait for this
  // reader's snapshot) instead of waiting out the busy timeout as BEGIN IMMEDIATE does.
  if (!sqlite3_get_autocommit(db) && sqlite3_txn_state(db, nullptr) != SQLITE_TXN_WRITE) {
    return Error{Errc::invalid_argument,
                 "begin transaction: a transaction without the write lock is open on this connection; a write "
                 "cannot join it (commit or roll it back first)"};
  }
  return start(db, "BEGIN IMMEDIATE");
}

Result<Transaction> Transaction::begin_read(sqlite3* db) { return start(db, "BEGIN"); }

Result<Transaction> Transaction::start(sqlite3* db, const char* sql) {
  if (!sqlite3_get_autocommit(db)) return Transaction(nullptr);  // join the open transaction
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(db, rc, "begin transaction");
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_ && !sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Status Transaction::commit() {
  if (!db_) return {};
  int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sqlite_error(db_, rc, "commit");
  db_ = nullptr;
  return {};
}

}  // namespace metrix
