#include "relay/admin.h"

#include <fmt/format.h>
#include <httplib.h>

#include <sys/socket.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "relay/status_json.h"
#include "relay/remedy.h"
#include "storage/clock.h"
#include "storage/postgres/connection.h"
#include "storage/stores.h"

namespace metrix {

namespace {

// What the handlers share. Those that read the database hold `mutex` (one store, one read at
// a time); /livez reads an atomic only, so a slow read never delays a probe.
struct AdminState {
  AdminState(std::string path, std::optional<std::string> default_app_id, Metrics& m)
      : db_path(std::move(path)), default_app(std::move(default_app_id)), metrics(m) {}
  std::string db_path;
  bool sqlite = !pg::is_uri(db_path);  // only an SQLite file has a WAL file to measure
  std::optional<std::string> default_app;
  Metrics& metrics;
  std::mutex mutex;
  // Opened on first use, read-only (on PostgreSQL: READ ONLY transactions); under mutex.
  std::unique_ptr<OperatorStore> store;
  std::optional<Backlog> backlog;
  std::int64_t backlog_read_us = 0;   // monotonic; when it was last read
  double backlog_read_seconds = 0;    // how long that read took
  std::uint64_t backlog_read_failures = 0;

  // Opening the store checks the schema. A read that fails closes it, so the next request
  // opens it again and checks anew (a migration run meanwhile, a file replaced).
  Result<OperatorStore*> operator_store() {
    if (!store) {
      OpenOptions options;
      options.read_only = true;
      auto opened = open_operator_store(db_path, options);
      if (!opened) return with_remedy(opened.error(), db_path);
      store = std::move(*opened);
    }
    return store.get();
  }

  template <typename T>
  Result<T> read(const std::function<Result<T>(OperatorStore&)>& what) {
    auto s = operator_store();
    if (!s) return s.error();
    auto r = what(**s);
    if (!r) store.reset();
    return r;
  }

  void refresh_backlog() {
    const std::int64_t now_us = monotonic_us();
    if (backlog && now_us - backlog_read_us < std::chrono::microseconds(kBacklogReadInterval).count()) return;
    backlog_read_us = now_us;
    auto r = read<Backlog>([](OperatorStore& s) { return s.read_backlog(now_ms()); });
    backlog_read_seconds = static_cast<double>(monotonic_us() - now_us) / 1e6;
    if (r) backlog = std::move(*r);
    else ++backlog_read_failures;  // the last good read is served; the counter says it is old
  }

  // The backlog by the app the relay sends it as: rows with a NULL app_id are the default
  // app's (merged with rows that name it), "(none)" when the relay has no default app.
  std::map<std::string, AppBacklog> by_label() const {
    std::map<std::string, AppBacklog> apps;
    if (!backlog) return apps;
    for (const auto& a : backlog->apps) {
      AppBacklog& m = apps[a.app_id ? *a.app_id : default_app.value_or(kNoAppLabel)];
      for (const auto& [status, n] : a.rows) m.rows[status] += n;
      m.due += a.due;
      if (a.oldest_due_since && (!m.oldest_due_since || *a.oldest_due_since < *m.oldest_due_since)) {
        m.oldest_due_since = a.oldest_due_since;
      }
    }
    return apps;
  }

  std::string render_backlog() const {
    std::string out;
    const auto apps = by_label();
    metric_header(out, "metrix_relay_outbox_rows", "gauge", "Rows in the outbox, by app and status.");
    for (const auto& [label, a] : apps) {
      for (const auto& [status, n] : a.rows) {
        metric_line(out, "metrix_relay_outbox_rows", {{"app_id", label}, {"status", row_status_name(status)}},
                    static_cast<double>(n));
      }
    }
    std::string due, age;
    for (const auto& [label, a] : apps) {
      metric_line(due, "metrix_relay_outbox_rows_due", {{"app_id", label}}, static_cast<double>(a.due));
      const double waited = a.oldest_due_since ? static_cast<double>(now_ms() - *a.oldest_due_since) / 1000.0 : 0;
      metric_line(age, "metrix_relay_outbox_oldest_due_age_seconds", {{"app_id", label}}, std::max(0.0, waited));
    }
    metric_header(out, "metrix_relay_outbox_rows_due", "gauge",
                  "Rows due now (pending, or sending with an expired lease), by app.");
    out += due;
    metric_header(out, "metrix_relay_outbox_oldest_due_age_seconds", "gauge",
                  "How long the row due longest has waited since it became due, by app; 0 when none is due.");
    out += age;
    if (sqlite) {  // PostgreSQL's WAL belongs to the server, which exports its own metrics
      metric_header(out, "metrix_relay_database_wal_bytes", "gauge", "Size of the database's write-ahead log.");
      metric_line(out, "metrix_relay_database_wal_bytes", {}, backlog ? static_cast<double>(backlog->wal_bytes) : 0);
    }
    metric_header(out, "metrix_relay_outbox_read_duration_seconds", "gauge",
                  "How long the last read of the outbox's counts took (read at most every 5 s, when scraped).");
    metric_line(out, "metrix_relay_outbox_read_duration_seconds", {}, backlog_read_seconds);
    metric_header(out, "metrix_relay_outbox_read_failures_total", "counter",
                  "Reads of the outbox's counts that failed (the gauges above keep the last good read).");
    metric_line(out, "metrix_relay_outbox_read_failures_total", {}, static_cast<double>(backlog_read_failures));
    return out;
  }

  // Why the relay is not ready, or "" when it is.
  std::string unready() {
    std::string reason = metrics.unready();
    if (!reason.empty()) return reason;
    if (auto s = operator_store(); !s) return "database: " + s.error().message;
    return {};
  }
};

}  // namespace

Result<std::unique_ptr<AdminServer>> AdminServer::start(const ListenAddress& address, const std::string& db_path,
                                                        const std::optional<std::string>& default_app,
                                                        Metrics& metrics) {
  std::unique_ptr<AdminServer> admin(new AdminServer());
  admin->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *admin->server_;
  // A few workers: an idle keep-alive connection (Prometheus keeps one) holds a worker until
  // it times out, and a probe must not wait for it. The reads of the database still go one
  // at a time (AdminState::mutex), so a flood of scrapes queues rather than multiplies them.
  server.new_task_queue = [] { return new httplib::ThreadPool(4); };
  server.set_keep_alive_timeout(5);
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_payload_max_length(4096);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which lets a second relay bind the
  // same port and answer half the scrapes instead of failing to start.
  server.set_socket_options([](int fd) {
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  auto state = std::make_shared<AdminState>(db_path, default_app, metrics);

  server.Get("/metrics", [state](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(state->mutex);
    std::string body = state->metrics.render();
    state->refresh_backlog();
    body += state->render_backlog();
    res.set_content(std::move(body), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/livez", [state](const httplib::Request&, httplib::Response& res) {
    const std::int64_t idle_us = monotonic_us() - state->metrics.loop_turn_us.load();
    if (idle_us < std::chrono::microseconds(kLivenessLimit).count()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(fmt::format("the relay's loop last turned {:.1f}s ago\n", static_cast<double>(idle_us) / 1e6),
                      "text/plain");
    }
  });
  server.Get("/readyz", [state](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(state->mutex);
    std::string reason = state->unready();
    if (reason.empty()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(reason + "\n", "text/plain");
    }
  });
  server.Get("/status", [state](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(state->mutex);
    auto snapshot = state->read<StatusSnapshot>([](OperatorStore& s) { return s.read_status(now_ms()); });
    if (!snapshot) {
      res.status = 503;
      res.set_content(snapshot.error().message + "\n", "text/plain");
      return;
    }
    HealthThresholds thresholds;
    auto json = status_json(*snapshot, evaluate_health(*snapshot, thresholds), thresholds);
    res.set_content(json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n",
                    "application/json");
  });

  const int port = address.port == 0 ? server.bind_to_any_port(address.host) : address.port;
  if (port <= 0 || (address.port != 0 && !server.bind_to_port(address.host, address.port))) {
    return Error{Errc::io, fmt::format("admin listener: cannot listen on {} port {} (is another process using it?)",
                                       address.host, address.port)};
  }
  admin->port_ = port;
  AdminServer* self = admin.get();
  admin->thread_ = std::thread([self, &server] {
    server.listen_after_bind();
    self->ended_ = true;
  });
  // Serving before start() returns: httplib's stop() does nothing to a server that has not
  // begun to listen, so a relay that exits at once would wait forever in the destructor.
  while (!server.is_running() && !admin->ended_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (admin->ended_) return Error{Errc::io, "admin listener: stopped as soon as it started"};
  return admin;
}

AdminServer::~AdminServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace metrix
