// RAII around sqlite3: one owner per connection and per statement, and
// BEGIN IMMEDIATE transactions that roll back unless committed.
//
// A Database is one connection: use it from one thread at a time.
// Every database this code opens is in WAL mode with a busy timeout, so producers,
// relays and operators can share the file; a file it creates is readable by its owner only.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace metrix {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// The error for a failed SQLite call: "what: sqlite message (code)". Maps
// SQLITE_BUSY/LOCKED to Errc::busy, NOTADB/CORRUPT to Errc::schema, the rest to Errc::io.
Error sqlite_error(sqlite3* db, int rc, std::string_view what);

// A prepared statement. Bind, step, read columns, reset. Destroy before its Database.
class Statement {
 public:
  Statement() = default;
  explicit Statement(sqlite3_stmt* s) : stmt_(s) {}

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, const std::optional<std::string>& text);
  Statement& bind(int index, const std::optional<std::int64_t>& value);
  Statement& bind_null(int index);

  // SQLITE_ROW -> true, SQLITE_DONE -> false, anything else -> the error.
  Result<bool> step();
  // Steps to completion, ignoring rows; then resets.
  Status run();
  void reset();

  std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  std::optional<std::int64_t> optional_int64(int column) const;
  std::string text(int column) const;
  std::optional<std::string> optional_text(int column) const;
  bool is_null(int column) const { return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL; }
  sqlite3_stmt* handle() const { return stmt_.get(); }

 private:
  std::unique_ptr<sqlite3_stmt, StatementFinalizer> stmt_;
  // Binding errors are kept and returned by the next step(), so call sites stay readable.
  int bind_rc_ = SQLITE_OK;
};

enum class Synchronous { normal, full };

struct OpenOptions {
  bool create = false;          // create the file (mode 0600) if it does not exist
  bool read_only = false;
  int busy_timeout_ms = 5000;   // how long a write waits for another writer
  Synchronous synchronous = Synchronous::full;
};

class Database {
 public:
  // Opens (or creates) the file, turns WAL on and sets the busy timeout. A file that is
  // not an SQLite database is refused with Errc::schema.
  static Result<Database> open(const std::string& path, const OpenOptions& options = {});
  // An in-memory database (for validation and tests).
  static Result<Database> open_memory();

  sqlite3* handle() const { return db_.get(); }
  const std::string& path() const { return path_; }

  // Runs one or more statements without results.
  Status exec(std::string_view sql);
  // A statement to keep and reuse (SQLITE_PREPARE_PERSISTENT).
  Result<Statement> prepare(std::string_view sql);
  // PRAGMA data_version: changes between two calls exactly when another connection
  // committed in between (this connection's own commits leave it alone).
  Result<std::int64_t> data_version();

 private:
  std::unique_ptr<sqlite3, SqliteCloser> db_;
  std::string path_;
};

// BEGIN IMMEDIATE ... COMMIT. The destructor rolls back unless commit() succeeded.
// Takes the write lock at begin, so it never fails later with a busy upgrade.
// Inside a transaction that already holds the write lock, it joins it: commit() and the
// destructor do nothing, and the outer transaction decides (so several steps can share one
// write). Inside one that does not (a read, or a deferred BEGIN), begin() is refused with
// Errc::invalid_argument: joining would mean that upgrade. begin_read() joins any transaction.
class Transaction {
 public:
  static Result<Transaction> begin(sqlite3* db);
  // A deferred BEGIN for reading: every statement until the destructor (which ends it) sees
  // one snapshot of the database, and no write lock is taken.
  static Result<Transaction> begin_read(sqlite3* db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();
  Status commit();

 private:
  static Result<Transaction> start(sqlite3* db, const char* sql);
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace metrix
