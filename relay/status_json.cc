#include "relay/status_json.h"

#include "relay/health_reason.h"
#include "storage/heartbeat.h"

namespace metrix {

namespace {

nlohmann::ordered_json counts_json(const StatusCounts& counts) {
  nlohmann::ordered_json j;
  std::int64_t total = 0;
  for (RowStatus s : all_statuses()) {
    j[row_status_name(s)] = counts.at(s);
    total += counts.at(s);
  }
  j["total"] = total;
  return j;
}

}  // namespace

nlohmann::ordered_json status_json(const StatusSnapshot& s, const Health& health, const HealthThresholds& t) {
  auto opt = [](const std::optional<std::int64_t>& v) -> nlohmann::ordered_json {
    if (v) return *v;
    return nullptr;
  };
  nlohmann::ordered_json j;
  j["now"] = s.now;
  j["counts"] = counts_json(s.counts);
  j["apps"] = nlohmann::ordered_json::array();
  for (const auto& a : s.apps) {
    nlohmann::ordered_json x;
    x["app_id"] = a.app_id ? nlohmann::ordered_json(*a.app_id) : nullptr;
    x["counts"] = counts_json(a.counts);
    j["apps"].push_back(std::move(x));
  }
  j["due"] = s.due;
  j["in_backoff"] = s.in_backoff;
  if (s.oldest_due) {
    j["oldest_due"] = {{"id", s.oldest_due->id},
                       {"app_id", s.oldest_due->app_id ? nlohmann::ordered_json(*s.oldest_due->app_id) : nullptr},
                       {"created_at", s.oldest_due->created_at},
                       {"due_since", s.oldest_due->due_since},
                       {"waiting_ms", s.now - s.oldest_due->due_since}};
  } else {
    j["oldest_due"] = nullptr;
  }
  j["oldest_unfinished_created_at"] = opt(s.oldest_unfinished_created_at);
  j["last_sent_at"] = opt(s.last_sent_at);
  j["paused_apps"] = nlohmann::ordered_json::array();
  for (const auto& p : s.pauses) {
    j["paused_apps"].push_back({{"app_id", p.app_id},
                                {"reason", p.reason},
                                {"since", p.since},
                                {"next_probe_at", p.next_probe_at},
                                {"interval_ms", p.interval_ms}});
  }
  j["errors"] = nlohmann::ordered_json::array();
  for (const auto& e : s.errors) j["errors"].push_back({{"status", row_status_name(e.status)}, {"error", e.error}, {"count", e.count}});
  bool running = false;
  j["relays"] = nlohmann::ordered_json::array();
  for (const auto& r : s.relays) {
    bool alive = relay_alive(r, s.now);
    running = running || alive;
    j["relays"].push_back({{"relay_id", r.relay_id},
                           {"host", r.host},
                           {"pid", r.pid},
                           {"started_at", r.started_at},
                           {"beat_at", r.beat_at},
                           {"interval_ms", r.interval_ms},
                           {"sent", r.sent},
                           {"last_sent_at", opt(r.last_sent_at)},
                           {"windows", r.windows},
                           {"alive", alive}});
  }
  j["relay_running"] = running;
  j["health"] = {{"ok", health.ok()},
                 {"reason", health_reason(s, t, health)},
                 {"max_backlog_age_ms", t.max_backlog_age_ms},
                 {"max_idle_ms", t.max_idle_ms}};
  return j;
}

}  // namespace metrix
