// AdminServer: the relay's --admin-listen listener, for Prometheus and for probes.
//
//   GET /metrics  the Prometheus text format (0.0.4): the loop's counters (relay/metrics.h)
//                 and the outbox's backlog per app (storage/backlog.h), the latter read at
//                 most every kBacklogReadInterval however often it is scraped. The size of the
//                 write-ahead log is an SQLite file's only: on PostgreSQL that gauge is left
//                 out (the server's WAL is the server's to export).
//   GET /livez    200 while the relay's loop turns (its last turn within kLivenessLimit),
//                 else 503. Never depends on Metrix or on the database.
//   GET /readyz   200 when the database is writable (the last write round committed), its
//                 schema is this version's, and at least one app can be sent to (it has a dev
//                 key and is not paused); else 503 with the reason as text. The schema is
//                 checked when the listener opens its store, and again after a read failed.
//   GET /status   the JSON of `metrix-relay status --json` (default health thresholds).
//
// Both backends alike: the listener reads through an OperatorStore of its own
// (storage/stores.h, read-only), one connection, one read at a time: a scrape never takes the
// write lock and never slows the loop beyond reading its atomics. On PostgreSQL each read is
// one REPEATABLE READ, READ ONLY transaction; a connection the server dropped is made again
// by the next read.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "relay/config.h"
#include "relay/metrics.h"
#include "storage/result.h"

namespace httplib {
class Server;
}

namespace metrix {

inline constexpr std::chrono::seconds kBacklogReadInterval{5};
inline constexpr std::chrono::seconds kLivenessLimit{5};

class AdminServer {
 public:
  // Binds the address (an error names it) and starts serving. Rows whose app_id is NULL are
  // counted under `default_app` (the relay's --app-id), as the relay's own metrics count them.
  static Result<std::unique_ptr<AdminServer>> start(const ListenAddress& address, const std::string& db_path,
                                                    const std::optional<std::string>& default_app, Metrics& metrics);
  ~AdminServer();  // stops serving and joins the thread
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  int port() const { return port_; }

 private:
  AdminServer() = default;

  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::atomic<bool> ended_{false};  // the serving thread returned
  std::thread thread_;
};

}  // namespace metrix
