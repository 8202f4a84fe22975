// AdminServer: the relay's --admin-listen listener, for Prometheus and for probes.
//
//   GET /metrics  the Prometheus text format (0.0.4): the loop's counters (relay/metrics.h)
//                 and the outbox's backlog per app (storage/backlog.h), the latter read at
//                 most every kBacklogReadInterval however often it is scraped.
//   GET /livez    200 while the relay's loop turns (its last turn within kLivenessLimit),
//                 else 503. Never depends on Metrix or on the database.
//   GET /readyz   200 when the database is writable (the last write round committed), its
//                 schema is this version's, and at least one app can be sent to (it has a dev
//                 key and is not paused); else 503 with the reason as text.
//   GET /status   the JSON of `metrix-relay status --json` (default health thresholds).
//
// On a PostgreSQL outbox (a postgresql:// --db) the listener serves the loop's own counters
// only: /metrics leaves out the backlog gauges, /readyz judges the database by the relay's
// last write round, and /status answers 501. Reading them on PostgreSQL is a later change.
//
// A few threads serve; the database is read on one read-only connection of the listener's
// own, one read at a time: a scrape never takes the write lock and never slows the loop
// beyond reading its atomics.
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
