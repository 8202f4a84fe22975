// What the relay tells about itself as it runs: the progress line, systemd's STATUS= summary,
// and the figures the next write round puts in its heartbeat.
#include <algorithm>

#include "storage/time_text.h"
#include "relay/log.h"
#include "relay/loop.h"

namespace metrix {

std::string Relay::describe_windows(std::int64_t now) const {
  const std::int64_t now_us = monotonic_us();
  std::string text;
  for (const auto& [id, app] : apps_) {
    if (!app->headers || app->pause) continue;
    if (!text.empty()) text += ", ";
    if (app->window.circuit_open()) {
      text += fmt::format("{} circuit open, next probe in {}", id,
                          describe_duration(std::max<std::int64_t>(0, app->window.next_probe_us() - now_us) / 1000));
    } else {
      text += fmt::format("{} {}/{}", id, app->window.window(), app->window.max());
      if (now < app->held_until) text += fmt::format(" held {} by Retry-After", describe_duration(app->held_until - now));
    }
  }
  return text;
}

std::string Relay::service_status(const Result<std::int64_t>& backlog) const {
  std::string paused;
  for (const auto& [id, app] : apps_) {
    if (app->pause) paused += (paused.empty() ? "" : ", ") + id;
  }
  return fmt::format("sent {}, backlog {}{}{}", stats_.sent, backlog ? std::to_string(*backlog) : "?",
                     paused.empty() ? "" : "; paused: ", paused);
}

void Relay::progress(std::int64_t now, bool final) {
  if (!final && now - last_progress_at_ < config_.progress_interval_ms) return;
  std::int64_t done = stats_.sent + stats_.failed + stats_.dead + stats_.held;
  double seconds = std::max<double>(1, static_cast<double>(now - last_progress_at_)) / 1000.0;
  auto backlog = outbox_.unfinished_count();
  const std::string windows = describe_windows(now);
  log::info({}, "{}: sent {}, failed {}, dead {}, held {}, retrying {}, in flight {}, backlog {}, {:.0f} events/s, "
            "{} requests over {} connections, {} writes holding the lock {:.1f}% of the time{}{}{}",
            final ? "finished" : "progress", stats_.sent, stats_.failed, stats_.dead, stats_.held, stats_.retried,
            http_->in_flight(), backlog ? std::to_string(*backlog) : "?",
            static_cast<double>(done - last_progress_done_) / seconds, stats_.requests, http_->connections_opened(),
            write_rounds_, static_cast<double>(write_lock_us_) / (seconds * 10'000.0),
            stats_.rate_waits ? fmt::format(", {} requests waited for --max-rate", stats_.rate_waits) : "",
            windows.empty() ? "" : "; window ", windows);
  write_lock_us_ = 0;
  write_rounds_ = 0;
  last_progress_at_ = now;
  last_progress_done_ = done;
  heartbeat_.beat_at = now;
  heartbeat_.sent = stats_.sent;
  heartbeat_.windows = windows;
  if (!final) beat_due_ = true;  // written by the next write round (the last one removes it)
  if (!final) pause_sync_due_ = true;  // several relays on one outbox share their 403 pauses
  notifier_.status(service_status(backlog));
}

}  // namespace metrix
