// A throwaway PostgreSQL 15 server for a test: a fresh cluster (initdb) in a temporary
// directory, listening on 127.0.0.1 on a free port, stopped and removed by the destructor.
//
// initdb refuses to run as root: as root, the cluster is made and run by the 'postgres' user
// (Debian's postgresql-common creates it) through runuser. The server's programs come from
// METRIX_PG_BINDIR, else /usr/lib/postgresql/15/bin (Debian's postgresql-15). Failures throw
// std::runtime_error with the server's own output, which fails the test case with it.
//
// The cluster trusts local connections as superuser 'metrix'; uri() names the database
// 'postgres', uri(name) another one, made by create_database(name).
#pragma once

#include <string>
#include <vector>

#include "tests/support/process.h"

namespace metrix::test {

class PgServer {
 public:
  // `settings`: extra server settings, e.g. {"synchronous_commit=off"}.
  explicit PgServer(const std::vector<std::string>& settings = {});
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  std::string uri(const std::string& database = "postgres") const;
  int port() const { return port_; }

  // CREATE DATABASE `name` (a plain identifier).
  void create_database(const std::string& name);
  // Runs `sql` with psql on `database`; throws if it fails. Its output, unaligned, tuples only.
  std::string psql(const std::string& sql, const std::string& database = "postgres") const;

  void stop();   // a fast shutdown: connections are closed, the data stays
  void start();  // again, on the same port
  void restart() { stop(); start(); }

 private:
  std::vector<std::string> as_owner(std::vector<std::string> argv) const;  // runuser when root
  std::string bin(const std::string& program) const;
  std::string settings_text() const;

  TempDir dir_;
  std::string data_;
  std::vector<std::string> settings_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace metrix::test
