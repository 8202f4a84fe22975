// The relay's side of a write round (relay/writer.h runs it): what a round is asked to
// record and claim, and what becomes of what it claimed.
#include <algorithm>
#include <cassert>
#include <iterator>

#include "relay/log.h"
#include "relay/loop.h"
#include "relay/policy.h"

namespace metrix {

void Relay::start_round(std::int64_t now, int claim_limit) {
  const std::int64_t now_us = monotonic_us();
  WriteJob job;
  job.now = now;
  job.lease_ms = config_.lease_ms;
  job.claim_limit = claim_limit;
  job.outcomes = std::exchange(outcomes_, {});
  if (std::exchange(beat_due_, false)) job.heartbeat = heartbeat_;
  job.pauses = std::exchange(pause_writes_, {});
  job.claim_suspect = !suspect_held_;
  // Only apps the last round listed: an app new to this relay is claimed from the round after
  // the one that found it, once its state here says whether it may be sent to.
  for (const auto& app_value : active_apps_) {
    if (claim_limit <= 0) break;
    AppState& app = app_for(app_value);
    if (!app.headers) {
      if (!app.reported_unroutable) {
        log::warning({.app_id = app.id}, "{}; its rows stay pending", app.unroutable_reason);
        job.notes.emplace_back(app_value, app.unroutable_reason);
        app.reported_unroutable = true;
        round_notes_.push_back(&app);
      }
    } else if (app.pause) {
      if (app.probe_in_flight || now < app.pause->next_probe_at) continue;
      job.gates[app_value] = 1;  // one probe per pause interval
      app.probe_in_flight = true;
      round_probes_.push_back(&app);
    } else if (now >= app.held_until) {
      if (int gate = claim_gate(app, claim_limit, now_us, config_); gate > 0) job.gates[app_value] = gate;
    }
  }
  round_now_ = now;
  round_started_us_ = monotonic_us();
  round_claim_limit_ = claim_limit;
  round_lease_ms_ = job.lease_ms;
  writer_->submit(std::move(job));
}

Status Relay::finish_round(WriteDone done) {
  ++write_rounds_;
  write_lock_us_ += done.lock_us;
  metrics_.write_rounds.fetch_add(1, std::memory_order_relaxed);
  if (!done.status) metrics_.write_round_failures.fetch_add(1, std::memory_order_relaxed);
  metrics_.database_up.store(done.status.ok(), std::memory_order_relaxed);
  last_write_ok_ = done.status.ok();
  publish_readiness();
  for (AppState* app : round_probes_) app->probe_in_flight = false;  // set again below if claimed
  auto probes = std::exchange(round_probes_, {});
  auto notes = std::exchange(round_notes_, {});
  if (!done.status) {
    // Nothing of the round was written: its outcomes go into the next one, and the notes are
    // written again.
    outcomes_.insert(outcomes_.begin(), std::make_move_iterator(done.outcomes.begin()),
                     std::make_move_iterator(done.outcomes.end()));
    pause_writes_.insert(pause_writes_.begin(), std::make_move_iterator(done.unwritten_pauses.begin()),
                         std::make_move_iterator(done.unwritten_pauses.end()));
    for (AppState* app : notes) app->reported_unroutable = false;
    beat_due_ = true;  // the round's heartbeat, if it had one, was not written either
    return done.status;
  }
  // Counted once committed: an outcome fenced off, or not recorded at all, is not counted.
  metrics_.write_lock_us.fetch_add(done.lock_us, std::memory_order_relaxed);
  metrics_.write_duration.observe_us(done.lock_us);
  count_committed(done.outcomes, done.recorded.fenced_ids);
  if (done.recorded.sent > 0) {
    heartbeat_.last_sent_at = round_now_;
    metrics_.last_sent_ms.store(round_now_, std::memory_order_relaxed);
  }
  if (done.recorded.fenced) {
    log::warning({}, "{} outcomes not recorded: their rows were claimed again after this relay's lease expired",
              done.recorded.fenced);
  }
  round_found_apps_ = false;
  for (const auto& app_value : done.active_apps) {
    if (std::find(active_apps_.begin(), active_apps_.end(), app_value) == active_apps_.end()) round_found_apps_ = true;
  }
  active_apps_ = std::move(done.active_apps);
  const std::int64_t now = round_now_;
  for (Claim& c : done.claims) {
    AppState& app = app_for(c.app_id);
    if (auto settled = settled_before_sending(c, app.headers != nullptr, now, config_, app.index)) {
      if (is_poison(*settled)) {
        log::error({.app_id = app.id, .row_id = c.id, .outcome = "dead", .error = settled->error}, "row {}: dead: {}",
                   c.id, settled->error);
      }
      outcomes_.push_back(std::move(*settled));
      continue;
    }
    bool probe = std::find(probes.begin(), probes.end(), &app) != probes.end();
    if (probe) app.probe_in_flight = true;
    if (c.lease_expiries > 0) suspect_held_ = true;
    app.ready.push_back(Ready{std::move(c), &app, probe, now + round_lease_ms_});
    ++ready_count_;
  }
  // Between rounds, with this relay's own pause writes committed: the stored pauses are then
  // no older than its own view.
  if (pause_sync_due_ && pause_writes_.empty()) {
    pause_sync_due_ = false;
    sync_pauses();
  }
  return {};
}

void Relay::count_committed(const std::vector<Outcome>& outcomes, const std::vector<std::int64_t>& fenced_ids) {
  for (const Outcome& o : outcomes) {
    if (!fenced_ids.empty() && std::find(fenced_ids.begin(), fenced_ids.end(), o.id) != fenced_ids.end()) continue;
    AppMetrics& m = apps_by_index_[o.tag]->metrics;
    auto add = [&](EventOutcome e, std::int64_t& total) {
      m.events[static_cast<size_t>(e)].fetch_add(1, std::memory_order_relaxed);
      ++total;
    };
    switch (o.status) {
      case RowStatus::sent: add(EventOutcome::sent, stats_.sent); break;
      case RowStatus::failed: add(EventOutcome::failed, stats_.failed); break;
      case RowStatus::held: add(EventOutcome::held, stats_.held); break;
      case RowStatus::dead:
        add(EventOutcome::dead, stats_.dead);
        if (is_poison(o)) m.poisoned.fetch_add(1, std::memory_order_relaxed);
        break;
      case RowStatus::pending:
        if (o.attempted) add(EventOutcome::retried, stats_.retried);
        break;
      case RowStatus::sending: assert(false && "an outcome never leaves a row sending"); break;
    }
  }
}

}  // namespace metrix
