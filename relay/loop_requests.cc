// Claimed rows -> requests -> outcomes: the apps take turns for the request slots, each answer
// is classified and its row's outcome decided (relay/policy.h), and rows that may not go now
// are handed back.
#include <algorithm>
#include <deque>

#include "storage/time_text.h"
#include "relay/log.h"
#include "relay/loop.h"
#include "relay/policy.h"

namespace metrix {

void Relay::hand_back(const Ready& ready, std::int64_t now, std::int64_t due) {
  if (ready.claim.lease_expiries > 0) suspect_held_ = false;
  outcomes_.push_back(handed_back(ready.claim, now, due, ready.app->index));
}

void Relay::hand_back_app(AppState& app, std::int64_t now, std::int64_t due) {
  for (const Ready& r : app.ready) {
    if (r.probe) app.probe_in_flight = false;
    hand_back(r, now, due);
  }
  ready_count_ -= app.ready.size();
  app.ready.clear();
}

void Relay::hand_back_ready(std::int64_t now) {
  for (auto& [id, app] : apps_) hand_back_app(*app, now, now);
}

void Relay::abandon_in_flight(std::int64_t now) {
  for (std::uint64_t tag : http_->abort_all()) {
    auto it = in_flight_.find(tag);
    if (it == in_flight_.end()) continue;
    const Ready& r = it->second;
    if (r.claim.lease_expiries > 0) suspect_held_ = false;
    outcomes_.push_back(abandoned(r.claim, now, config_, r.app->index));
  }
  log::warning({}, "shutdown deadline passed: {} requests abandoned without an answer (in doubt)", in_flight_.size());
  in_flight_.clear();
}

void Relay::send_ready(std::int64_t now) {
  if (ready_count_ == 0) return;
  const std::int64_t now_us = monotonic_us();
  // Rows that may not go now go back, so that no lease runs out in the queue.
  for (auto& [id, app] : apps_) {
    if (app->ready.empty()) continue;
    if (app->pause) {
      // Paused after they were claimed: only the probe goes.
      std::deque<Ready> probes;
      for (Ready& r : app->ready) {
        if (r.probe) probes.push_back(std::move(r));
        else hand_back(r, now, app->pause->next_probe_at);
      }
      ready_count_ -= app->ready.size() - probes.size();
      app->ready = std::move(probes);
    } else if (now < app->held_until) {
      hand_back_app(*app, now, app->held_until);  // Metrix asked for a pause with Retry-After
    } else if (app->window.circuit_open() && app->window.limit(now_us) == 0) {
      hand_back_app(*app, now, now);  // claimed before the circuit opened; the gate holds them
    }
    // A row whose lease would end while its request may still run, and another relay could
    // then send it too, goes back to be claimed afresh; the oldest claims are in front. This is
    // done whether or not a slot is free, so that no app's rows outlive their lease waiting.
    while (!app->ready.empty() && now + config_.timeout_ms + 1000 > app->ready.front().lease_until) {
      if (app->ready.front().probe) app->probe_in_flight = false;
      hand_back(app->ready.front(), now, now);
      app->ready.pop_front();
      --ready_count_;
    }
  }
  // Sent only after the claim committed (finish_round): a claim that rolled back is not ours.
  // The apps take turns, starting after the one served last, so that a free slot does not
  // always go to the first app in the map.
  const auto slots = static_cast<size_t>(config_.concurrency);
  turns_.clear();
  const auto next = apps_.upper_bound(last_served_);
  for (auto it = next; it != apps_.end(); ++it) turns_.push_back(it->second.get());
  for (auto it = apps_.begin(); it != next; ++it) turns_.push_back(it->second.get());
  for (bool sent_one = true; sent_one && ready_count_ > 0;) {
    sent_one = false;
    for (AppState* app : turns_) {
      if (http_->in_flight() >= slots) return;
      if (app->ready.empty() || app->in_flight >= app->window.limit(now_us)) continue;
      if (!app->rate.take(now_us)) {
        // --max-rate: this app's next row waits for a token; the loop wakes for it.
        if (!std::exchange(app->ready.front().waited_for_rate, true)) {
          ++stats_.rate_waits;
          app->metrics.rate_limited_waits.fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      Ready r = std::move(app->ready.front());
      app->ready.pop_front();
      --ready_count_;
      sent_one = true;
      last_served_ = app->id;
      send(std::move(r));
    }
  }
}

void Relay::send(Ready ready) {
  HttpRequest request;
  request.tag = next_tag_++;
  request.url = ready.app->url;
  request.body = request_body(ready.claim);
  ready.headers = ready.app->headers;
  request.headers = ready.headers.get();
  std::uint64_t tag = request.tag;
  if (auto s = http_->send(std::move(request)); !s) {
    // Could not even start the request: the row stays leased and is retried after its lease.
    log::warning({.app_id = ready.app->id, .row_id = ready.claim.id, .error = s.error().message},
                 "cannot start a request for row {}: {}", ready.claim.id, s.error().message);
    if (ready.probe) ready.app->probe_in_flight = false;
    if (ready.claim.lease_expiries > 0) suspect_held_ = false;
    return;
  }
  ++stats_.requests;
  ready.app->window.sent(++ready.app->in_flight);
  if (ready.probe) {
    log::debug({.app_id = ready.app->id, .row_id = ready.claim.id}, "app {}: probing with row {}", ready.app->id,
               ready.claim.id);
  }
  in_flight_.emplace(tag, std::move(ready));
}

void Relay::on_answer(const HttpResult& result) {
  auto it = in_flight_.find(result.tag);
  if (it == in_flight_.end()) return;
  Ready flight = std::move(it->second);
  in_flight_.erase(it);
  AppState& app = *flight.app;
  --app.in_flight;
  if (flight.probe) app.probe_in_flight = false;
  if (flight.claim.lease_expiries > 0) suspect_held_ = false;
  const std::int64_t now = result.finished_at;

  Classification verdict = classify(result.answer);
  adapt_window(app, verdict, result, now);
  metrics_.request_duration.observe_us(result.elapsed_us);
  if (const int status = result.answer.http_status; status >= 100 && status < 600) {
    app.metrics.answers[static_cast<size_t>(status / 100 - 1)].fetch_add(1, std::memory_order_relaxed);
  } else {
    app.metrics.transport_errors.fetch_add(1, std::memory_order_relaxed);
  }
  // What the answer does to the app, before the row's outcome: a 2xx ends its pause, a 403
  // starts one (or, for a probe, puts the next probe off), a failed probe waits its interval.
  switch (verdict.verdict) {
    case Verdict::sent:
      if (app.pause) resume_app(app, now);
      break;
    case Verdict::pause:
      pause_app(app, verdict.error, flight.probe, now);
      break;
    case Verdict::retry:
      if (flight.probe && app.pause) app.pause->next_probe_at = now + app.pause->interval_ms;
      break;
    case Verdict::failed:
      break;
  }
  Outcome o = answered(
      AttemptAnswer{.claim = flight.claim,
                    .answer = result.answer,
                    .verdict = verdict,
                    .started_at = result.started_at,
                    .finished_at = now,
                    .next_probe_at = app.pause ? std::optional<std::int64_t>(app.pause->next_probe_at) : std::nullopt,
                    .unit_random = verdict.verdict == Verdict::retry ? unit_random() : 0.0,
                    .tag = app.index},
      config_);
  if (o.status != RowStatus::sent && log::enabled(log::Level::debug)) {
    const std::string_view outcome = row_status_name(o.status);
    log::debug({.app_id = app.id, .row_id = o.id, .http_status = result.answer.http_status,
                .attempt = flight.claim.attempts + 1, .outcome = outcome, .error = o.error},
               "row {}: {}: {}{}", o.id, outcome, o.error,
               o.status == RowStatus::pending ? "; retry in " + describe_duration(o.next_attempt_at - now) : "");
  }
  outcomes_.push_back(std::move(o));
}

void Relay::adapt_window(AppState& app, const Classification& verdict, const HttpResult& result, std::int64_t now) {
  if (verdict.verdict == Verdict::pause) return;  // the pause has its own probe
  const Reply reply = verdict.verdict != Verdict::retry ? Reply::good
                      : verdict.throttled                ? Reply::throttled
                                                         : Reply::failed;
  const std::int64_t now_us = monotonic_us();
  const bool was_open = app.window.circuit_open();
  const int was = app.window.window();
  app.window.answered(reply, now_us - result.elapsed_us, now_us, result.answer.http_status != 0, unit_random());
  if (app.window.window() < was && !app.window.circuit_open()) {
    log::debug({.app_id = app.id}, "app {}: window {} -> {} ({})", app.id, was, app.window.window(), app.window.shrink_reason());
  }
  if (!was_open && app.window.circuit_open()) {
    log::warning({.app_id = app.id, .error = verdict.error},
                 "app {}: every request fails ({}); circuit open: one probe at a time, the first in {}", app.id,
                 verdict.error, describe_duration((app.window.next_probe_us() - now_us) / 1000));
    hand_back_app(app, now, now);
  } else if (was_open && !app.window.circuit_open()) {
    log::info({.app_id = app.id}, "app {}: Metrix answers again; circuit closed, the window grows back from 1", app.id);
  }
  // Metrix asked the whole app to wait: no request of it before then (capped like a backoff).
  if (auto wait = app_wait_ms(result.answer, verdict, config_)) {
    const std::int64_t until = now + *wait;
    if (until > app.held_until) {
      log::debug({.app_id = app.id, .http_status = result.answer.http_status},
                 "app {}: {} with Retry-After; no request before {}", app.id, verdict.error, utc_time(until));
      app.held_until = until;
    }
  }
  app.metrics.window.store(app.window.window(), std::memory_order_relaxed);
  app.metrics.circuit_open.store(app.window.circuit_open(), std::memory_order_relaxed);
}

int Relay::rate_wait_ms() {
  // With every request slot taken, an answer wakes the loop first.
  if (http_->in_flight() >= static_cast<size_t>(config_.concurrency)) return 50;
  const std::int64_t now_us = monotonic_us();
  std::int64_t wait_us = 50'000;
  for (auto& [id, app] : apps_) {
    if (app->ready.empty() || !app->rate.limited() || app->in_flight >= app->window.limit(now_us)) continue;
    // At least a millisecond: the loop never spins.
    wait_us = std::min(wait_us, std::max<std::int64_t>(1000, app->rate.next_token_us(now_us) - now_us));
  }
  return static_cast<int>((wait_us + 999) / 1000);
}

}  // namespace metrix
