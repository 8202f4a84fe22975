// The relay's loop (relay/relay.h says what it guarantees): its state, and the steps run()
// takes. Private to relay/: run_relay() builds one and runs it.
//
// One thread runs everything here; the write rounds run on the Writer's thread and come back
// through take(). The steps live in files by what they are about:
//   loop.cc           run(): one turn of the loop, and stopping
//   loop_rounds.cc    a write round: what it records and claims, and what its claims become
//   loop_requests.cc  ready rows -> requests, in turn; an answer -> the row's outcome; hand-backs
//   loop_apps.cc      apps: routing, pauses after a 403, readiness, reload
//   loop_progress.cc  the progress line, systemd's status, the heartbeat's figures
// When a round starts and what it may claim is the Pacer's (relay/pacer.h); what becomes of
// a row is the policy's (relay/policy.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "relay/app_state.h"
#include "relay/classify.h"
#include "relay/config.h"
#include "relay/http.h"
#include "relay/metrics.h"
#include "relay/notify.h"
#include "relay/pacer.h"
#include "relay/relay.h"
#include "relay/writer.h"
#include "storage/clock.h"
#include "storage/relay_store.h"

namespace metrix {

// How much longer than --busy-timeout a write round may run before it is taken for hung.
constexpr std::int64_t kHungRoundMarginMs = 10'000;

// The outcomes committed, as the progress line counts them (fenced ones are not counted), and
// requests started.
struct RelayCounts {
  std::int64_t sent = 0, failed = 0, dead = 0, held = 0, retried = 0, requests = 0, rate_waits = 0;
};

class Relay {
 public:
  Relay(const RelayConfig& config, RelayStore& store, std::unique_ptr<HttpClient> http, std::unique_ptr<RelayStore> writer_store,
        const RelayControl& control, Metrics& metrics);

  // Until stopped, or (--until-idle) until no row is pending or sending. The exit code.
  int run();

 private:
  // loop_apps.cc
  AppState& app_for(const std::optional<std::string>& app_value);
  // SIGHUP: loads the configuration again and, if it is valid and may change now, uses it.
  void reload(std::int64_t now);
  void pause_app(AppState& app, const std::string& reason, bool after_probe, std::int64_t now);
  void resume_app(AppState& app, std::int64_t now);
  // Adopts the pauses and resumptions other relays on the outbox stored in metrix_app_pause;
  // called after a committed round once a progress line made it due, so that this relay's own
  // pause writes are in.
  void sync_pauses();
  // Why every app with unfinished rows cannot be sent to, or nullopt if one can.
  std::optional<std::string> blocked_reason();
  // What GET /readyz says: why no row can be delivered now, or "" when one can.
  void publish_readiness();

  // loop_rounds.cc
  // Starts a write round on the writer thread: the outcomes so far, and claims of up to
  // `claim_limit` rows from the apps that may be sent to now.
  void start_round(std::int64_t now, int claim_limit);
  // Takes in a finished round: its claims become ready (or are settled without a request:
  // stale, in doubt); a failed round's outcomes wait for the next one.
  Status finish_round(WriteDone done);
  // Adds committed outcomes to their apps' metrics and to stats_ (fenced ones were not
  // committed).
  void count_committed(const std::vector<Outcome>& outcomes, const std::vector<std::int64_t>& fenced_ids);

  // loop_requests.cc
  // Sends claimed rows, a row of each app in turn, while the app's window and the relay's
  // --concurrency have room; gives back the rows of an app that may not be sent now.
  void send_ready(std::int64_t now);
  void send(Ready ready);
  void on_answer(const HttpResult& result);
  // Feeds an answer to the app's window of requests in flight, and honours a Retry-After.
  void adapt_window(AppState& app, const Classification& verdict, const HttpResult& result, std::int64_t now);
  // Gives a claimed row back without an attempt (shutdown, paused app): pending, due at `due`.
  void hand_back(const Ready& ready, std::int64_t now, std::int64_t due);
  // Gives back every claimed row of `app` not sent yet, due at `due`.
  void hand_back_app(AppState& app, std::int64_t now, std::int64_t due);
  // Gives back every claimed row not sent yet, due at once (stopping).
  void hand_back_ready(std::int64_t now);
  // Settles the requests still in flight at the shutdown deadline (in doubt).
  void abandon_in_flight(std::int64_t now);
  // How long until a row held back by --max-rate gets its token (50 when none waits).
  int rate_wait_ms();

  // loop_progress.cc
  // The summary systemd shows (STATUS=): sent, backlog, paused apps.
  std::string service_status(const Result<std::int64_t>& backlog) const;
  // Each sendable app's window, for the progress line and the heartbeat: "app1 64/64".
  std::string describe_windows(std::int64_t now) const;
  void progress(std::int64_t now, bool final);

  // Nothing in flight and no claimed row waiting for a request slot.
  bool nothing_to_send() const { return http_->in_flight() == 0 && ready_count_ == 0; }
  // Nothing to send and no outcome waiting to be recorded: every row this relay held is settled.
  bool empty_handed() const { return nothing_to_send() && outcomes_.empty(); }
  // What the loop holds, for the pacer.
  LoopLoad load(bool stopping) const;
  double unit_random() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  RelayConfig config_;  // replaced by a reload
  // On this thread's connection: reads (pauses at start, counts) and the first and last
  // heartbeat; rounds write on the writer's connection.
  RelayStore& outbox_;  // the loop's connection: pauses, heartbeat, counts
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<Writer> writer_;  // after http_: it wakes http_ until it stops
  const RelayControl& control_;
  ServiceNotifier notifier_;
  Metrics& metrics_;
  std::mt19937_64 rng_;
  Pacer pacer_;

  std::map<std::string, std::unique_ptr<AppState>> apps_;  // by Metrix appId
  std::vector<AppState*> apps_by_index_;                   // by AppState::index
  std::string unready_;                                    // as last published (GET /readyz)
  // A suspect row (relay_store.h, WriteJob) is claimed and not yet answered or handed back.
  // One at a time: when a relay stops while holding one, no other suspect's lease expires
  // with it.
  bool suspect_held_ = false;
  bool last_write_ok_ = true;  // the last write round committed
  std::map<std::string, AppPause> stored_pauses_;
  bool pause_sync_due_ = false;  // sync_pauses() after the next committed round
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
  std::vector<std::pair<std::string, std::optional<AppPause>>> pause_writes_;  // for the next round
  RelayCounts stats_;
  std::int64_t last_progress_at_ = 0;
  std::int64_t last_progress_done_ = 0;
  Heartbeat heartbeat_;
  bool beat_due_ = false;  // heartbeat_ changed since a round last wrote it
  std::int64_t write_lock_us_ = 0;  // since the last progress line
  std::int64_t write_rounds_ = 0;
};

// The pacer's settings in a configuration.
PacerSettings pacer_settings(const RelayConfig& config);

}  // namespace metrix
