// Relay::run(): one turn of the loop takes in a finished write round, sends what is ready,
// waits for answers, and starts the next round when the pacer says so; stopping drains what
// is in flight and records everything before it returns.
#include "relay/loop.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <unistd.h>

#include "storage/postgres/connection.h"
#include "storage/time_text.h"
#include "relay/log.h"

namespace metrix {

PacerSettings pacer_settings(const RelayConfig& config) {
  return PacerSettings{config.commit_interval_ms, config.poll_interval_ms, config.concurrency};
}

Relay::Relay(const RelayConfig& config, RelayStore& store, std::unique_ptr<HttpClient> http, std::unique_ptr<RelayStore> writer_store,
             const RelayControl& control, Metrics& metrics)
    : config_(config),
      outbox_(store),
      http_(std::move(http)),
      writer_(std::make_unique<Writer>(std::move(writer_store), [http = http_.get()] { http->wakeup(); })),
      control_(control),
      metrics_(metrics),
      rng_(std::random_device{}()),
      pacer_(pacer_settings(config)) {}

LoopLoad Relay::load(bool stopping) const {
  return LoopLoad{.in_flight = http_->in_flight(),
                  .ready = ready_count_,
                  .outcomes = !outcomes_.empty(),
                  .other_writes = beat_due_ || !pause_writes_.empty(),
                  .stopping = stopping,
                  .round_running = writer_->busy()};
}

int Relay::run() {
  if (auto pauses = outbox_.pauses(); pauses) {
    for (auto& p : *pauses) {
      log::warning({.app_id = p.app_id, .error = p.reason},
                   "app {} is paused since an earlier run ({}); probing with one row every {}", p.app_id, p.reason,
                   describe_duration(p.interval_ms));
      stored_pauses_[p.app_id] = p;
    }
  } else {
    log::error({}, "cannot read app pauses: {}", pauses.error().message);
    return 1;
  }
  log::info({}, "relaying {} to {} with {} requests in flight{}", pg::redact(config_.db_path), config_.endpoint, config_.concurrency,
            config_.until_idle ? ", until no row is pending" : "");
  last_progress_at_ = now_ms();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  heartbeat_.host = host;
  heartbeat_.pid = getpid();
  heartbeat_.started_at = heartbeat_.beat_at = last_progress_at_;
  heartbeat_.interval_ms = config_.progress_interval_ms;
  heartbeat_.relay_id = fmt::format("{}:{}:{}", heartbeat_.host, heartbeat_.pid, heartbeat_.started_at);
  if (auto s = outbox_.beat(heartbeat_); !s) log::warning({}, "cannot write the heartbeat: {}", s.error().message);
  publish_readiness();
  // The database is open, its schema checked, the keys read and the configuration valid.
  notifier_.ready(service_status(outbox_.unfinished_count()));

  std::int64_t stop_deadline = 0;
  int exit_code = 0;

  for (;;) {
    std::int64_t now = now_ms();
    // The watchdog hears from every turn of this loop, unless a write round has run longer
    // than a wait for the database lock can last (--busy-timeout) and then some: that round
    // hangs (a stalled disk), and systemd should restart the relay.
    const std::int64_t round_us = writer_->busy() ? monotonic_us() - round_started_us_ : 0;
    if (round_us < (config_.busy_timeout_ms + kHungRoundMarginMs) * 1000) {
      notifier_.watchdog(monotonic_us());
      metrics_.loop_turn_us.store(monotonic_us(), std::memory_order_relaxed);  // GET /livez
    }
    if (control_.reload && control_.reload->exchange(false) && !stop_deadline) reload(now);
    if (control_.stop->load() && stop_deadline == 0) {
      notifier_.stopping();
      stop_deadline = now + config_.shutdown_timeout_ms;
      log::info({}, "stopping: no new claims; waiting up to {} for {} requests in flight",
                describe_duration(config_.shutdown_timeout_ms), http_->in_flight());
      hand_back_ready(now);
    }
    if (stop_deadline) {
      if (http_->in_flight() == 0) break;
      if (now >= stop_deadline) {
        abandon_in_flight(now);
        break;
      }
    }

    // A finished write round: its claims can go out, and the next round may start.
    if (auto done = writer_->busy() ? writer_->take() : std::nullopt) {
      RoundReport round{.claim_limit = round_claim_limit_,
                        .claimed = done->claims.size(),
                        .had_outcomes = done->recorded.recorded + done->recorded.fenced > 0,
                        .others_wrote = done->others_wrote,
                        .lock_us = done->lock_us,
                        .next_due_at = done->next_due_at};
      const bool was_writable = last_write_ok_;
      const auto status = finish_round(std::move(*done));
      round.found_apps = round_found_apps_;
      now = now_ms();
      if (stop_deadline) {
        hand_back_ready(now);  // claimed while stopping
      }
      if (status && !was_writable) log::info({}, "writing to the outbox again");
      if (!status) {
        if (status.error().code == Errc::schema) {
          // A corrupt or replaced database file: waiting will not mend it, and writing more
          // could make it worse. Stop; rows in flight are sent again after their lease.
          log::error({}, "stopping: the database is damaged: {}; check it with 'PRAGMA integrity_check'",
                    status.error().message);
          exit_code = 1;
          break;
        }
        // Said once per outage, not at every retry: a database down for an hour is one line.
        if (was_writable) {
          log::warning({}, "cannot write to the outbox ({} outcomes waiting): {}; retrying in 1s, and every second "
                       "until it can", outcomes_.size(), status.error().message);
        }
        pacer_.failed(now);
      } else if (pacer_.committed(now, round, empty_handed()) && config_.until_idle && empty_handed()) {
        // Nothing was due and this relay holds nothing: done, unless rows wait that cannot go.
        auto unfinished = outbox_.unfinished_count();
        if (unfinished && *unfinished == 0) break;
        if (auto reason = blocked_reason()) {
          log::error({}, "cannot finish: {} rows wait: {}", unfinished ? *unfinished : -1, *reason);
          exit_code = 1;
          break;
        }
      }
    }

    send_ready(now);
    int wait_ms = pacer_.wait_ms(now, load(stop_deadline != 0));
    wait_ms = std::min(wait_ms, rate_wait_ms());  // a row waiting for a --max-rate token
    auto results = http_->poll(wait_ms);
    if (!results) {
      log::error({}, "http: {}", results.error().message);
      exit_code = 1;
      break;
    }
    for (const auto& r : *results) on_answer(r);
    now = now_ms();
    send_ready(now);
    metrics_.in_flight.store(static_cast<std::int64_t>(http_->in_flight()), std::memory_order_relaxed);

    if (auto claim_limit = pacer_.round_to_start(now, load(stop_deadline != 0))) start_round(now, *claim_limit);
    progress(now, false);
  }

  // The round in progress, then the outcomes still waiting; rows claimed and not sent go back.
  if (writer_->busy()) {
    if (auto s = finish_round(writer_->wait()); !s) log::error({}, "cannot write to the outbox: {}", s.error().message);
  }
  hand_back_ready(now_ms());
  for (int tries = 0; !outcomes_.empty() || !pause_writes_.empty(); ++tries) {
    start_round(now_ms(), 0);
    if (auto s = finish_round(writer_->wait()); !s) {
      // A damaged file is not mended by waiting: say so at once.
      const bool damaged = s.error().code == Errc::schema;
      if (damaged || tries >= 10) {
        log::error({}, "{} {} outcomes: {}; those rows stay 'sending' and are sent again after their lease",
                  damaged ? "not recording" : "giving up on recording", outcomes_.size(), s.error().message);
        exit_code = 1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  if (!stop_deadline) notifier_.stopping();  // a run that ends by itself (--until-idle, an error)
  progress(now_ms(), true);
  if (auto s = outbox_.remove_heartbeat(heartbeat_.relay_id); !s) {
    log::warning({}, "cannot remove the heartbeat: {}", s.error().message);
  }
  return exit_code;
}

}  // namespace metrix
