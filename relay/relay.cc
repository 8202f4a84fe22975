#include "relay/relay.h"

#include <algorithm>
#include <deque>
#include <cctype>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <unordered_map>

#include <unistd.h>

#include "relay/concurrency.h"
#include "relay/http.h"
#include "relay/admin.h"
#include "relay/log.h"
#include "relay/metrics.h"
#include "relay/notify.h"
#include "relay/rate.h"
#include "relay/writer.h"
#include "storage/migrate.h"

namespace metrix {

std::string request_body(const Claim& claim) {
  if (claim.payload_has_event_time) return claim.payload;
  // Insert "eventTime" as the first key, leaving every byte the producer wrote as it was.
  // A valid payload is an object with at least three keys, so a comma always follows.
  std::string body;
  size_t brace = claim.payload.find('{');
  body.reserve(claim.payload.size() + 32);
  body.append(claim.payload, 0, brace + 1);
  body.append("\"eventTime\":");
  body.append(std::to_string(claim.event_time));
  body.push_back(',');
  body.append(claim.payload, brace + 1, std::string::npos);
  return body;
}

namespace {

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : text) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kHex[ch >> 4]);
      out.push_back(kHex[ch & 15]);
    }
  }
  return out;
}

// How last_error starts for a poison row.
constexpr std::string_view kPoisonPrefix = "poison: ";

std::string describe_ms(std::int64_t ms) {
  if (ms % 3'600'000 == 0 && ms >= 3'600'000) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0 && ms >= 60'000) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0 && ms >= 1000) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

struct AppState;

// How much longer than --busy-timeout a write round may run before it is taken for hung.
constexpr std::int64_t kHungRoundMarginMs = 10'000;

// A claimed row waiting for a free request slot.
struct Ready {
  Claim claim;
  AppState* app;
  bool probe;  // the one row a paused app is probed with
  std::int64_t lease_until;  // when the claim's lease ends (ms): the lease as it was claimed
  bool waited_for_rate = false;  // counted once among the app's rate-limited waits
  // The app's headers the request went with, kept alive while it is in flight: a reload may
  // give the app new ones meanwhile.
  std::shared_ptr<const curl_slist> headers = {};
};

// Everything the relay knows about one Metrix app.
struct AppState {
  AppState(WindowSettings settings, AppMetrics& m, std::uint32_t i) : window(settings), metrics(m), index(i) {}

  std::string id;                 // the Metrix appId; empty when a row names none and there is no default
  std::string url;
  std::shared_ptr<const curl_slist> headers;  // null: no dev key, the app's rows are not sent
  std::string unroutable_reason;  // why rows of this app are not sent
  bool reported_unroutable = false;
  std::optional<AppPause> pause;
  bool probe_in_flight = false;
  ConcurrencyWindow window;       // how many of its requests may be in flight
  int in_flight = 0;
  std::deque<Ready> ready;        // claimed, not yet sent, oldest first
  std::int64_t held_until = 0;    // Retry-After: no request before this (ms)
  TokenBucket rate;               // --max-rate
  AppMetrics& metrics;
  std::uint32_t index;            // in Relay::apps_by_index_; the tag of its rows' outcomes
};

class Relay {
 public:
  Relay(const RelayConfig& config, Database& db, std::unique_ptr<HttpClient> http, Database writer_db,
        const RelayControl& control, Metrics& metrics)
      : config_(config),
        outbox_(db),
        http_(std::move(http)),
        writer_(std::make_unique<Writer>(std::move(writer_db), [http = http_.get()] { http->wakeup(); })),
        control_(control),
        metrics_(metrics),
        rng_(std::random_device{}()) {}

  int run();

 private:
  AppState& app_for(const std::optional<std::string>& app_value);
  // Sets the app's URL, headers and window limits from config_ (at first sight, on reload).
  void configure_app(AppState& app);
  // SIGHUP: loads the configuration again and, if it is valid and may change now, uses it.
  void reload(std::int64_t now);
  // The summary systemd shows (STATUS=): sent, backlog, paused apps.
  std::string service_status(const Result<std::int64_t>& backlog) const;
  // Starts a write round on the writer thread: the outcomes so far, and claims of up to
  // `claim_limit` rows from the apps that may be sent to now.
  void start_round(std::int64_t now, int claim_limit);
  // Takes in a finished round: its claims become ready (or are settled without a request:
  // stale, in doubt); a failed round's outcomes wait for the next one.
  Status finish_round(WriteDone done);
  // Rows of `app` a round may claim: what its window can put in flight before a claim's lease
  // runs short, less the rows it already holds; one probe while its circuit is open.
  int claim_gate(const AppState& app, int claim_limit, std::int64_t now_us) const;
  // Sends claimed rows, a row of each app in turn, while the app's window and the relay's
  // --concurrency have room; gives back the rows of an app that may not be sent now.
  void send_ready(std::int64_t now);
  void send(Ready ready);
  // Gives back every claimed row of `app` not sent yet, due at `due`.
  void hand_back_app(AppState& app, std::int64_t now, std::int64_t due);
  // Gives a claimed row back without an attempt (shutdown, paused app): pending, due at `due`.
  void hand_back(const Claim& claim, std::int64_t now, std::int64_t due);
  // Gives back every claimed row not sent yet, due at once (stopping).
  void hand_back_ready(std::int64_t now);
  void on_answer(const HttpResult& result);
  // Feeds an answer to the app's window of requests in flight, and honours a Retry-After.
  void adapt_window(AppState& app, const Classification& verdict, const HttpResult& result, std::int64_t now);
  // Each sendable app's window, for the progress line and the heartbeat: "app1 64/64".
  std::string describe_windows(std::int64_t now) const;
  void pause_app(AppState& app, const std::string& reason, bool after_probe, std::int64_t now);
  void resume_app(AppState& app, std::int64_t now);
  std::optional<std::string> blocked_reason();
  void progress(std::int64_t now, bool final);
  // A round saw another connection's commit within the second before `at`: pace the rounds.
  bool beside_producers(std::int64_t at) const { return at - producers_seen_at_ < 1000; }
  // How long until a row held back by --max-rate gets its token (50 when none waits).
  int rate_wait_ms();
  // Nothing in flight and no claimed row waiting for a request slot.
  bool nothing_to_send() const { return http_->in_flight() == 0 && ready_count_ == 0; }
  // Nothing to send and no outcome waiting to be recorded: every row this relay held is settled.
  bool empty_handed() const { return nothing_to_send() && outcomes_.empty(); }
  // Nothing to send and no producer to leave the write lock to: a write need not wait for the
  // commit interval.
  bool starving(std::int64_t now) const { return nothing_to_send() && !beside_producers(now); }
  double unit_random() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  // Adds committed outcomes to their apps' metrics (fenced ones were not committed).
  void count_committed(const std::vector<Outcome>& outcomes, const std::vector<std::int64_t>& fenced_ids);
  // What GET /readyz says: why no row can be delivered now, or "" when one can.
  void publish_readiness();

  RelayConfig config_;  // replaced by a reload
  // On this thread's connection: reads (pauses at start, counts) and the first and last
  // heartbeat; rounds write on the writer's connection.
  Outbox outbox_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<Writer> writer_;  // after http_: it wakes http_ until it stops
  const RelayControl& control_;
  ServiceNotifier notifier_;
  Metrics& metrics_;
  std::mt19937_64 rng_;

  std::map<std::string, std::unique_ptr<AppState>> apps_;  // by Metrix appId
  std::vector<AppState*> apps_by_index_;                   // by AppState::index
  std::string unready_;                                    // as last published (GET /readyz)
  // A suspect row (outbox.h) is claimed and not yet answered or handed back. One at
  // a time: when a relay stops while holding one, no other suspect's lease expires with it.
  bool suspect_held_ = false;
  bool last_write_ok_ = true;  // the last write round committed
  std::map<std::string, AppPause> stored_pauses_;
  std::vector<std::optional<std::string>> active_apps_;    // as of the last round
  size_t ready_count_ = 0;                                 // rows in the apps' ready queues
  std::string last_served_;                                // the app send_ready sent for last
  std::vector<AppState*> turns_;                           // send_ready's order of the apps, reused
  std::unordered_map<std::uint64_t, Ready> in_flight_;     // by request tag
  std::uint64_t next_tag_ = 1;
  std::vector<Outcome> outcomes_;       // decided, not yet committed
  // The round on the writer thread: when it was started and what it may claim.
  std::int64_t round_now_ = 0;
  std::int64_t round_started_us_ = 0;
  int round_claim_limit_ = 0;
  std::int64_t round_lease_ms_ = 0;  // the lease the round claims with (a reload may change config_'s)
  std::vector<AppState*> round_probes_;
  std::vector<AppState*> round_notes_;
  bool round_found_apps_ = false;       // it listed an app the round before did not
  std::int64_t storage_retry_at_ = 0;   // after a storage error: no writes before this
  std::int64_t producers_seen_at_ = -1'000'000;  // when a round last saw another connection's commit
  std::vector<std::pair<std::string, std::optional<AppPause>>> pause_writes_;  // for the next round
  // Outcomes as committed (fenced ones are not counted), and requests started.
  struct Counts {
    std::int64_t sent = 0, failed = 0, dead = 0, held = 0, retried = 0, requests = 0, rate_waits = 0;
  } stats_;
  std::int64_t last_progress_at_ = 0;
  std::int64_t last_progress_done_ = 0;
  Heartbeat heartbeat_;
  bool beat_due_ = false;  // heartbeat_ changed since a round last wrote it
  std::int64_t write_lock_us_ = 0;  // since the last progress line
  std::int64_t write_rounds_ = 0;
};

AppState& Relay::app_for(const std::optional<std::string>& app_value) {
  std::string id = app_value ? *app_value : config_.default_app_id.value_or("");
  auto it = apps_.find(id);
  if (it != apps_.end()) return *it->second;
  auto app = std::make_unique<AppState>(
      WindowSettings{config_.concurrency, config_.backoff_base_ms, std::min(config_.backoff_max_ms, kProbeMaxMs)},
      metrics_.app(id), static_cast<std::uint32_t>(apps_by_index_.size()));
  app->id = id;
  configure_app(*app);
  if (auto p = stored_pauses_.find(id); p != stored_pauses_.end()) {
    app->pause = p->second;
    metrics_.set_pause(app->metrics, p->second.reason);
  }
  apps_by_index_.push_back(app.get());
  return *apps_.emplace(id, std::move(app)).first->second;
}

void Relay::configure_app(AppState& app) {
  const std::string& id = app.id;
  std::string endpoint = config_.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  app.url = endpoint + "/inappevent/" + percent_encode(id);
  app.window.set_settings(
      WindowSettings{config_.concurrency, config_.backoff_base_ms, std::min(config_.backoff_max_ms, kProbeMaxMs)});
  app.rate.set_rate(max_rate_of(config_, id), monotonic_us());
  app.headers.reset();
  app.unroutable_reason.clear();
  if (id.empty()) {
    app.unroutable_reason = "not sent: the row has no app_id and the relay has no --app-id";
  } else if (auto key = config_.dev_keys.find(id); key == config_.dev_keys.end()) {
    app.unroutable_reason = fmt::format(
        "not sent: no dev key for app {} (set METRIX_DEV_KEY with --app-id {}, or add [apps.\"{}\"] to the config file)",
        id, id, id);
  } else if (auto headers = make_request_headers(key->second)) {
    app.headers = std::shared_ptr<const curl_slist>(std::move(*headers));
  } else {
    app.unroutable_reason = headers.error().message;
  }
}

int Relay::claim_gate(const AppState& app, int claim_limit, std::int64_t now_us) const {
  const int limit = app.window.limit(now_us);
  if (app.window.circuit_open()) return limit > 0 && app.in_flight == 0 && app.ready.empty() ? 1 : 0;
  // A row waits in the ready queue at most until its lease would end before its answer
  // (send_ready), so claim no more than the window can send by then: window / answer time.
  const double usable_ms = static_cast<double>(config_.lease_ms - config_.timeout_ms - 1000);
  const double rtt_ms = std::max(1.0, static_cast<double>(app.window.rtt_us()) / 1000.0);
  double sendable = limit * usable_ms / rtt_ms;
  // Under --max-rate, two seconds of the rate (one row at least): claimed rows wait for their
  // tokens, and more of them would hold the shared claim budget away from the other apps.
  if (app.rate.limited()) sendable = std::min(sendable, std::max(1.0, app.rate.rate() * 2.0));
  sendable -= static_cast<double>(app.ready.size());
  return static_cast<int>(std::clamp(sendable, 0.0, static_cast<double>(claim_limit)));
}

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
      if (int gate = claim_gate(app, claim_limit, now_us); gate > 0) job.gates[app_value] = gate;
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
  stats_.sent += done.recorded.sent;
  if (done.recorded.sent > 0) {
    heartbeat_.last_sent_at = round_now_;
    metrics_.last_sent_ms.store(round_now_, std::memory_order_relaxed);
  }
  stats_.failed += done.recorded.failed;
  stats_.dead += done.recorded.dead;
  stats_.held += done.recorded.held;
  stats_.retried += done.recorded.retried;
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
    Outcome o;
    o.id = c.id;
    o.lease_token = c.lease_token;
    o.attempted = false;
    o.started_at = o.finished_at = o.next_attempt_at = now;
    AppState& app = app_for(c.app_id);
    o.tag = app.index;
    if (now - c.created_at > config_.max_age_ms) {
      o.status = RowStatus::dead;
      o.error = fmt::format("stale: older than --max-age {}", describe_ms(config_.max_age_ms));
    } else if (c.lease_expiries >= config_.poison_after) {
      // Every relay that claimed it since its last answer died or hung while sending it (or
      // `check --repair` released its expired lease): do not let it stop this one too. An
      // operator can look at it and requeue it.
      o.status = RowStatus::dead;
      o.error = fmt::format(
          "{}the relay stopped {} times in a row while sending this row (its lease expired with no answer "
          "recorded); not sent again",
          kPoisonPrefix, c.lease_expiries);
      log::error({.app_id = app.id, .row_id = c.id, .outcome = "dead", .error = o.error}, "row {}: dead: {}", c.id,
                 o.error);
    } else if (c.lease_expired && config_.in_doubt == InDoubtPolicy::hold) {
      o.status = RowStatus::held;
      o.error = "in doubt: a relay claimed it and stopped before recording an answer";
    } else if (!app.headers) {
      // Claimed by a round that started before a reload removed the app's key: not sent.
      o.status = RowStatus::pending;
      o.error.clear();
    } else {
      bool probe = std::find(probes.begin(), probes.end(), &app) != probes.end();
      if (probe) app.probe_in_flight = true;
      if (c.lease_expiries > 0) suspect_held_ = true;
      app.ready.push_back(Ready{std::move(c), &app, probe, now + round_lease_ms_});
      ++ready_count_;
      continue;
    }
    outcomes_.push_back(std::move(o));
  }
  return {};
}

void Relay::hand_back(const Claim& claim, std::int64_t now, std::int64_t due) {
  if (claim.lease_expiries > 0) suspect_held_ = false;
  Outcome o;
  o.id = claim.id;
  o.lease_token = claim.lease_token;
  o.status = RowStatus::pending;
  o.attempted = false;
  o.started_at = o.finished_at = now;
  o.next_attempt_at = due;
  outcomes_.push_back(std::move(o));
}

void Relay::hand_back_app(AppState& app, std::int64_t now, std::int64_t due) {
  for (const Ready& r : app.ready) {
    if (r.probe) app.probe_in_flight = false;
    hand_back(r.claim, now, due);
  }
  ready_count_ -= app.ready.size();
  app.ready.clear();
}

void Relay::hand_back_ready(std::int64_t now) {
  for (auto& [id, app] : apps_) hand_back_app(*app, now, now);
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
        else hand_back(r.claim, now, app->pause->next_probe_at);
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
      hand_back(app->ready.front().claim, now, now);
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

void Relay::pause_app(AppState& app, const std::string& reason, bool after_probe, std::int64_t now) {
  if (!app.pause) {
    app.pause = AppPause{app.id, reason, now, now + config_.pause_interval_ms, config_.pause_interval_ms};
    log::warning({.app_id = app.id, .http_status = 403, .error = reason},
                 "app {} paused: Metrix answered 403 {}; its rows stay pending; probing with one row every {}", app.id,
                 reason, describe_ms(app.pause->interval_ms));
  } else if (after_probe) {
    app.pause->interval_ms = std::min(app.pause->interval_ms * 2, config_.pause_max_ms);
    app.pause->next_probe_at = now + app.pause->interval_ms;
    app.pause->reason = reason;
    log::debug({.app_id = app.id, .http_status = 403, .error = reason}, "app {} still refused ({}); next probe in {}",
               app.id, reason, describe_ms(app.pause->interval_ms));
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
            describe_ms(std::max<std::int64_t>(0, (now - app.pause->since) / 1000 * 1000)), app.pause->reason);
  app.pause.reset();
  stored_pauses_.erase(app.id);
  pause_writes_.emplace_back(app.id, std::nullopt);
  metrics_.set_pause(app.metrics, std::nullopt);
  publish_readiness();
}

void Relay::count_committed(const std::vector<Outcome>& outcomes, const std::vector<std::int64_t>& fenced_ids) {
  for (const Outcome& o : outcomes) {
    if (!fenced_ids.empty() && std::find(fenced_ids.begin(), fenced_ids.end(), o.id) != fenced_ids.end()) continue;
    AppMetrics& m = apps_by_index_[o.tag]->metrics;
    auto add = [&](EventOutcome e) { m.events[static_cast<size_t>(e)].fetch_add(1, std::memory_order_relaxed); };
    switch (o.status) {
      case RowStatus::sent: add(EventOutcome::sent); break;
      case RowStatus::failed: add(EventOutcome::failed); break;
      case RowStatus::held: add(EventOutcome::held); break;
      case RowStatus::dead:
        add(EventOutcome::dead);
        if (o.error.starts_with(kPoisonPrefix)) m.poisoned.fetch_add(1, std::memory_order_relaxed);
        break;
      case RowStatus::pending:
        if (o.attempted) add(EventOutcome::retried);
        break;
      case RowStatus::sending: break;  // no outcome
    }
  }
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
  const std::int64_t attempt = flight.claim.attempts + 1;

  Classification verdict = classify(result.answer);
  adapt_window(app, verdict, result, now);
  metrics_.request_duration.observe_us(result.elapsed_us);
  if (const int status = result.answer.http_status; status >= 100 && status < 600) {
    app.metrics.answers[static_cast<size_t>(status / 100 - 1)].fetch_add(1, std::memory_order_relaxed);
  } else {
    app.metrics.transport_errors.fetch_add(1, std::memory_order_relaxed);
  }
  Outcome o;
  o.tag = app.index;
  o.id = flight.claim.id;
  o.lease_token = flight.claim.lease_token;
  o.started_at = result.started_at;
  o.finished_at = now;
  o.next_attempt_at = now;
  if (result.answer.http_status) o.http_status = result.answer.http_status;
  o.error = verdict.error;
  o.response = result.answer.body;

  switch (verdict.verdict) {
    case Verdict::sent:
      o.status = RowStatus::sent;
      if (app.pause) resume_app(app, now);
      break;
    case Verdict::failed:
      o.status = RowStatus::failed;
      break;
    case Verdict::pause:
      // The app's set-up is refused, not this event: the row waits for the pause to end and
      // never becomes dead through 403s.
      pause_app(app, verdict.error, flight.probe, now);
      o.status = RowStatus::pending;
      o.next_attempt_at = app.pause ? app.pause->next_probe_at : now + config_.pause_interval_ms;
      break;
    case Verdict::retry: {
      if (flight.probe && app.pause) app.pause->next_probe_at = now + app.pause->interval_ms;
      if (verdict.in_doubt && config_.in_doubt == InDoubtPolicy::hold) {
        o.status = RowStatus::held;
        o.error = "in doubt: " + verdict.error;
        break;
      }
      if (attempt >= config_.max_attempts) {
        o.status = RowStatus::dead;
        o.error = fmt::format("{} (gave up after {} attempts)", verdict.error, attempt);
        break;
      }
      std::int64_t delay = backoff_ms(attempt, config_.backoff_base_ms, config_.backoff_max_ms, unit_random());
      if (result.answer.retry_after_ms) {
        delay = std::max(delay, std::min(*result.answer.retry_after_ms, config_.backoff_max_ms));
      }
      o.status = RowStatus::pending;
      o.next_attempt_at = now + delay;
      break;
    }
  }
  if (o.status != RowStatus::sent && log::enabled(log::Level::debug)) {
    const std::string_view outcome = row_status_name(o.status);
    log::debug({.app_id = app.id, .row_id = o.id, .http_status = result.answer.http_status, .attempt = attempt,
                .outcome = outcome, .error = o.error},
               "row {}: {}: {}{}", o.id, outcome, o.error,
               o.status == RowStatus::pending ? "; retry in " + describe_ms(o.next_attempt_at - now) : "");
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
                 verdict.error, describe_ms((app.window.next_probe_us() - now_us) / 1000));
    hand_back_app(app, now, now);
  } else if (was_open && !app.window.circuit_open()) {
    log::info({.app_id = app.id}, "app {}: Metrix answers again; circuit closed, the window grows back from 1", app.id);
  }
  // Metrix asked the whole app to wait: no request of it before then (capped like a backoff).
  if (verdict.verdict == Verdict::retry && result.answer.retry_after_ms && *result.answer.retry_after_ms > 0) {
    const std::int64_t until = now + std::min(*result.answer.retry_after_ms, config_.backoff_max_ms);
    if (until > app.held_until) {
      log::debug({.app_id = app.id, .http_status = result.answer.http_status},
                 "app {}: {} with Retry-After; no request before {}", app.id, verdict.error, log::utc(until));
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

std::optional<std::string> Relay::blocked_reason() {
  auto active = outbox_.active_apps();
  if (!active) return std::nullopt;
  std::vector<std::string> reasons;
  for (const auto& app_value : *active) {
    AppState& app = app_for(app_value);
    if (!app.headers) reasons.push_back(app.unroutable_reason);
    else if (app.pause)
      reasons.push_back(fmt::format("app {} is paused since {} (Metrix answered 403 {})", app.id,
                                    log::utc(app.pause->since), app.pause->reason));
    else return std::nullopt;  // this app's rows can still go
  }
  if (reasons.empty()) return std::nullopt;
  std::string text;
  for (const auto& r : reasons) text += (text.empty() ? "" : "; ") + r;
  return text;
}

std::string Relay::describe_windows(std::int64_t now) const {
  const std::int64_t now_us = monotonic_us();
  std::string text;
  for (const auto& [id, app] : apps_) {
    if (!app->headers || app->pause) continue;
    if (!text.empty()) text += ", ";
    if (app->window.circuit_open()) {
      text += fmt::format("{} circuit open, next probe in {}", id,
                          describe_ms(std::max<std::int64_t>(0, app->window.next_probe_us() - now_us) / 1000));
    } else {
      text += fmt::format("{} {}/{}", id, app->window.window(), app->window.max());
      if (now < app->held_until) text += fmt::format(" held {} by Retry-After", describe_ms(app->held_until - now));
    }
  }
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
      configure_app(*app);
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
  notifier_.status(service_status(backlog));
}

int Relay::run() {
  if (auto pauses = outbox_.pauses(); pauses) {
    for (auto& p : *pauses) {
      log::warning({.app_id = p.app_id, .error = p.reason},
                   "app {} is paused since an earlier run ({}); probing with one row every {}", p.app_id, p.reason,
                   describe_ms(p.interval_ms));
      stored_pauses_[p.app_id] = p;
    }
  } else {
    log::error({}, "cannot read app pauses: {}", pauses.error().message);
    return 1;
  }
  log::info({}, "relaying {} to {} with {} requests in flight{}", config_.db_path, config_.endpoint, config_.concurrency,
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

  std::int64_t next_claim_at = 0;
  std::int64_t next_write_allowed = 0;
  std::int64_t stop_deadline = 0;
  int exit_code = 0;

  for (;;) {
    std::int64_t now = now_ms();
    // Claimed rows kept ready beyond the requests in flight, so that every request slot stays
    // fed while a round runs and the pause after it (at 20,000 events/s, 50 ms use 1,000 rows):
    // the window bounds the rows claimed and not yet answered.
    const int window = config_.concurrency + std::max(2048, config_.concurrency);
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
                describe_ms(config_.shutdown_timeout_ms), http_->in_flight());
      hand_back_ready(now);
    }
    if (stop_deadline) {
      if (http_->in_flight() == 0) break;
      if (now >= stop_deadline) {
        for (std::uint64_t tag : http_->abort_all()) {
          auto it = in_flight_.find(tag);
          if (it == in_flight_.end()) continue;
          if (config_.in_doubt == InDoubtPolicy::hold) {
            Outcome o;
            o.id = it->second.claim.id;
            o.lease_token = it->second.claim.lease_token;
            o.status = RowStatus::held;
            o.attempted = false;
            o.started_at = o.finished_at = o.next_attempt_at = now;
            o.error = "in doubt: the relay stopped before the answer came";
            o.tag = it->second.app->index;
            outcomes_.push_back(std::move(o));
          } else {
            hand_back(it->second.claim, now, now);
          }
        }
        log::warning({}, "shutdown deadline passed: {} requests abandoned without an answer (in doubt)", in_flight_.size());
        in_flight_.clear();
        break;
      }
    }

    // A finished write round: its claims can go out, and the next round may start.
    if (auto done = writer_->busy() ? writer_->take() : std::nullopt) {
      const int claim_limit = round_claim_limit_;
      const size_t claimed = done->claims.size();
      const bool had_outcomes = done->recorded.recorded + done->recorded.fenced > 0;
      const bool others_wrote = done->others_wrote;
      const std::int64_t lock_us = done->lock_us;
      const std::optional<std::int64_t> next_due_at = done->next_due_at;
      const auto status = finish_round(std::move(*done));
      now = now_ms();
      if (stop_deadline) {
        hand_back_ready(now);  // claimed while stopping
      }
      if (!status) {
        if (status.error().code == Errc::schema) {
          // A corrupt or replaced database file: waiting will not mend it, and writing more
          // could make it worse. Stop; rows in flight are sent again after their lease.
          log::error({}, "stopping: the database is damaged: {}; check it with 'PRAGMA integrity_check'",
                    status.error().message);
          exit_code = 1;
          break;
        }
        log::warning({}, "cannot write to the outbox ({} outcomes waiting): {}; retrying in 1s", outcomes_.size(),
                  status.error().message);
        storage_retry_at_ = now + 1000;
      } else {
        // Beside producers, pace the writes: after a round that held the lock for d, wait at
        // least 4·d, so the relay holds the write lock at most a fifth of the time however
        // fast it drains, and a producer's commit waits for one round at most. Alone (no other
        // connection committed for a second), the next round may start after the interval.
        if (others_wrote) producers_seen_at_ = now;
        next_write_allowed =
            now + std::max(config_.commit_interval_ms, beside_producers(now) ? 4 * lock_us / 1000 : 0);
        if (claim_limit > 0 && claimed == 0 && !round_found_apps_) {
          // Nothing was due: look again a poll interval later (for rows new to the outbox),
          // or when the next retry becomes due, if that is sooner.
          next_claim_at = std::min(now + config_.poll_interval_ms, next_due_at.value_or(INT64_MAX));
          if (config_.until_idle && empty_handed()) {
            auto unfinished = outbox_.unfinished_count();
            if (unfinished && *unfinished == 0) break;
            if (auto reason = blocked_reason()) {
              log::error({}, "cannot finish: {} rows wait: {}", unfinished ? *unfinished : -1, *reason);
              exit_code = 1;
              break;
            }
          }
        } else if (had_outcomes && empty_handed()) {
          // Its hands are empty: look for due rows at once, not a poll interval after the
          // last empty claim. An --until-idle run whose last outcomes are final then ends as
          // soon as they are recorded (before, up to --poll-interval later); one whose last
          // row waits to be retried ends as soon as that retry is answered (above).
          next_claim_at = now;
        }
      }
    }

    send_ready(now);
    // A starving relay may write before the commit interval passes (below), so it need not
    // wait for it either.
    const std::int64_t write_allowed_at = starving(now) ? now : next_write_allowed;
    std::int64_t next_write_at = (!outcomes_.empty() || (!stop_deadline && ready_count_ < size_t(window / 2)))
                                     ? std::max(write_allowed_at, next_claim_at)
                                     : now + 50;
    if (!outcomes_.empty()) next_write_at = std::min(next_write_at, write_allowed_at);
    next_write_at = std::max(next_write_at, storage_retry_at_);  // after a failed round: wait, not spin
    // While a round runs, the writer wakes the poll when it is done.
    int wait_ms = writer_->busy() ? 50 : static_cast<int>(std::clamp<std::int64_t>(next_write_at - now, 0, 50));
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

    // One write round per commit interval at most: outcomes are durable within
    // milliseconds (the duplicate window after a crash), and the write lock stays free for
    // producers nearly all the time. A relay with nothing to send writes at once, unless
    // producers are committing: beside them the pause holds even when every claimed row has
    // already been sent.
    bool interval_passed = now >= next_write_allowed;
    int claim_limit = 0;
    if (!stop_deadline && now >= next_claim_at && ready_count_ < size_t(window / 2)) {
      claim_limit = window - static_cast<int>(ready_count_ + http_->in_flight());
    }
    const bool to_record = !outcomes_.empty() || beat_due_ || !pause_writes_.empty();
    bool write = (to_record && (interval_passed || starving(now) || stop_deadline)) ||
                 (claim_limit > 0 && (interval_passed || starving(now)));
    if (write && !writer_->busy() && now >= storage_retry_at_) start_round(now, claim_limit);
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

}  // namespace

int run_relay(const RelayConfig& config, const RelayControl& control) {
  log::configure(config.log_format, config.log_level);
  if (auto s = validate(config); !s) {
    log::error({}, "{}", s.error().message);
    return 2;
  }
  if (auto warning = insecure_warning(config)) log::warning({}, "{}", *warning);
  OpenOptions options;
  options.synchronous = config.synchronous;
  options.busy_timeout_ms = static_cast<int>(config.busy_timeout_ms);
  auto db = Database::open(config.db_path, options);
  if (!db) {
    log::error({}, "{}", db.error().message);
    return 1;
  }
  if (auto s = check_schema(*db); !s) {
    log::error({}, "{}", s.error().message);
    return 1;
  }
  HttpOptions http_options;
  http_options.timeout_ms = config.timeout_ms;
  http_options.connect_timeout_ms = std::min<std::int64_t>(config.timeout_ms, 5000);
  http_options.max_connections = config.concurrency;
  http_options.cacert = config.cacert;
  auto http = HttpClient::create(http_options);
  if (!http) {
    log::error({}, "{}", http.error().message);
    return 1;
  }
  // The writer thread's own connection: the loop's stays free for pauses and the heartbeat.
  auto writer_db = Database::open(config.db_path, options);
  if (!writer_db) {
    log::error({}, "{}", writer_db.error().message);
    return 1;
  }
  Metrics metrics;
  metrics.start_time_ms = now_ms();
  metrics.loop_turn_us = monotonic_us();
  std::unique_ptr<AdminServer> admin;  // declared before the relay: it outlives the loop
  if (!config.admin_listen.empty()) {
    const ListenAddress address = *parse_listen_address(config.admin_listen);  // validate() checked it
    auto started = AdminServer::start(address, config.db_path, config.default_app_id, metrics);
    if (!started) {
      log::error({}, "{}", started.error().message);
      return 1;
    }
    admin = std::move(*started);
    if (!address.loopback) {
      log::warning({}, "the admin listener on {} is reachable from other hosts (--admin-allow-remote) and has no "
                   "authentication: keep it behind a firewall", config.admin_listen);
    }
    log::info({}, "admin listener on http://{}:{}/ (metrics, livez, readyz, status)",
              address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host, admin->port());
  }
  Relay relay(config, *db, std::move(*http), std::move(*writer_db), control, metrics);
  return relay.run();
}

}  // namespace metrix
