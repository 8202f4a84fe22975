// The relay's apps: each one's state at first sight, its pause after a 403 and its resumption,
// what GET /readyz says about them, and a reload that gives them new settings and keys.
#include <algorithm>

#include "storage/time_text.h"
#include "relay/log.h"
#include "relay/loop.h"

namespace metrix {

AppState& Relay::app_for(const std::optional<std::string>& app_value) {
  std::string id = app_value ? *app_value : config_.default_app_id.value_or("");
  auto it = apps_.find(id);
  if (it != apps_.end()) return *it->second;
  auto app = std::make_unique<AppState>(window_settings(config_), metrics_.app(id),
                                        static_cast<std::uint32_t>(apps_by_index_.size()));
  app->id = id;
  configure_app(*app, config_);
  if (auto p = stored_pauses_.find(id); p != stored_pauses_.end()) {
    app->pause = p->second;
    metrics_.set_pause(app->metrics, p->second.reason);
  }
  apps_by_index_.push_back(app.get());
  return *apps_.emplace(id, std::move(app)).first->second;
}

void Relay::pause_app(AppState& app, const std::string& reason, bool after_probe, std::int64_t now) {
  if (!app.pause) {
    app.pause = AppPause{app.id, reason, now, now + config_.pause_interval_ms, config_.pause_interval_ms};
    log::warning({.app_id = app.id, .http_status = 403, .error = reason},
                 "app {} paused: Metrix answered 403 {}; its rows stay pending; probing with one row every {}", app.id,
                 reason, describe_duration(app.pause->interval_ms));
  } else if (after_probe) {
    app.pause->interval_ms = std::min(app.pause->interval_ms * 2, config_.pause_max_ms);
    app.pause->next_probe_at = now + app.pause->interval_ms;
    app.pause->reason = reason;
    log::debug({.app_id = app.id, .http_status = 403, .error = reason}, "app {} still refused ({}); next probe in {}",
               app.id, reason, describe_duration(app.pause->interval_ms));
  } else {
    return;  // answers of requests sent before the pause: it is already recorded
  }
  stored_pauses_[app.id] = *app.pause;
  pause_writes_.emplace_back(app.id, *app.pause);
  metrics_.set_pause(app.metrics, app.pause->reason);
  publish_readiness();
}

void Relay::resume_app(AppState& app, std::int64_t now) {
  log::info({.app_id = app.id}, "app {} resumed: Metrix accepted an event after a pause of {} ({})", app.id,
            describe_duration(std::max<std::int64_t>(0, (now - app.pause->since) / 1000 * 1000)), app.pause->reason);
  app.pause.reset();
  stored_pauses_.erase(app.id);
  pause_writes_.emplace_back(app.id, std::nullopt);
  metrics_.set_pause(app.metrics, std::nullopt);
  publish_readiness();
}

void Relay::sync_pauses() {
  auto stored = outbox_.pauses();
  if (!stored) return;  // tried again after the next progress line
  std::map<std::string, AppPause> now_stored;
  for (AppPause& p : *stored) now_stored.emplace(p.app_id, std::move(p));
  for (auto& [id, app] : apps_) {
    auto found = now_stored.find(id);
    if (found != now_stored.end() && !app->pause) {
      app->pause = found->second;
      log::warning({.app_id = id, .error = found->second.reason},
                   "app {} paused by another relay on this outbox (Metrix answered 403 {}); probing with one row "
                   "every {}", id, found->second.reason, describe_duration(found->second.interval_ms));
      metrics_.set_pause(app->metrics, found->second.reason);
    } else if (found == now_stored.end() && app->pause && !app->probe_in_flight) {
      log::info({.app_id = id}, "app {} resumed: another relay on this outbox had an event accepted", id);
      app->pause.reset();
      metrics_.set_pause(app->metrics, std::nullopt);
    }
  }
  stored_pauses_ = std::move(now_stored);
  publish_readiness();
}

void Relay::publish_readiness() {
  std::string reason;
  if (!last_write_ok_) {
    reason = "database: the last write to the outbox failed (see the log)";
  } else if (config_.dev_keys.empty()) {
    reason = "no app has a dev key: no row can be sent";
  } else if (std::all_of(config_.dev_keys.begin(), config_.dev_keys.end(),
                         [&](const auto& key) { return stored_pauses_.count(key.first) > 0; })) {
    reason = "every app with a dev key is paused after a 403 from Metrix";
  }
  if (reason != unready_) metrics_.set_unready(unready_ = std::move(reason));
}

std::optional<std::string> Relay::blocked_reason() {
  auto active = outbox_.active_apps();
  if (!active) return std::nullopt;
  std::vector<std::string> reasons;
  for (const auto& app_value : *active) {
    AppState& app = app_for(app_value);
    if (!app.headers) reasons.push_back(app.unroutable_reason);
    else if (app.pause)
      reasons.push_back(fmt::format("app {} is paused since {} (Metrix answered 403 {})", app.id,
                                    utc_time(app.pause->since), app.pause->reason));
    else return std::nullopt;  // this app's rows can still go
  }
  if (reasons.empty()) return std::nullopt;
  std::string text;
  for (const auto& r : reasons) text += (text.empty() ? "" : "; ") + r;
  return text;
}

void Relay::reload(std::int64_t now) {
  notifier_.reloading(monotonic_us());
  log::info({}, "reloading: reading the configuration again (SIGHUP)");
  auto fresh = control_.load ? control_.load()
                             : Result<RelayConfig>(Error{Errc::invalid_argument, "no configuration to load"});
  Status usable = fresh ? check_reloadable(config_, *fresh) : Status(fresh.error());
  if (!usable) {
    log::error({.error = usable.error().message}, "reload refused, the configuration in force stays: {}",
               usable.error().message);
    metrics_.reloads_failed.fetch_add(1, std::memory_order_relaxed);
  } else {
    metrics_.reloads_ok.fetch_add(1, std::memory_order_relaxed);
    const RelayConfig before = std::exchange(config_, std::move(*fresh));
    pacer_.set_settings(pacer_settings(config_));
    log::configure(config_.log_format, config_.log_level);
    if (auto warning = insecure_warning(config_)) log::warning({}, "{}", *warning);
    if (auto s = http_->set_max_connections(config_.concurrency); !s) {
      log::warning({}, "cannot change the connection limit: {}", s.error().message);
    }
    for (const auto& [id, key] : config_.dev_keys) {
      auto old = before.dev_keys.find(id);
      if (old == before.dev_keys.end()) log::info({.app_id = id}, "app {}: added: its rows are sent from now on", id);
      else if (old->second != key) log::info({.app_id = id}, "app {}: new dev key, used from the next request on", id);
    }
    for (const auto& [id, key] : before.dev_keys) {
      if (!config_.dev_keys.count(id)) {
        log::warning({.app_id = id}, "app {}: removed: its rows stay pending; requests in flight finish", id);
      }
    }
    for (auto& [id, app] : apps_) {
      const bool could_send = app->headers != nullptr;
      configure_app(*app, config_);
      if (!app->headers) {
        hand_back_app(*app, now, now);  // claimed for a key that is gone
        if (could_send) app->reported_unroutable = false;  // say so, and note it on its rows
      }
    }
    heartbeat_.interval_ms = config_.progress_interval_ms;
    publish_readiness();
    log::info({}, "reloaded: {} apps with a dev key, {} requests in flight at most, log level {}",
              config_.dev_keys.size(), config_.concurrency, log::name(config_.log_level));
  }
  notifier_.ready(service_status(outbox_.unfinished_count()));
}

}  // namespace metrix
