// What the relay's loop knows about one Metrix app, and the claimed rows it holds for it.
// Used from the relay's loop thread only (relay/loop.h).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <curl/curl.h>

#include "relay/concurrency.h"
#include "relay/config.h"
#include "relay/metrics.h"
#include "relay/rate.h"
#include "storage/relay_store.h"

namespace metrix {

struct AppState;

// A claimed row waiting for a free request slot, then in flight.
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

// The window settings an app's ConcurrencyWindow takes from the configuration.
WindowSettings window_settings(const RelayConfig& config);

// Sets the app's URL, headers, window limits and rate from `config` (at first sight, on
// reload); an app without a usable dev key gets no headers and an unroutable_reason.
void configure_app(AppState& app, const RelayConfig& config);

// Rows of `app` a round may claim: what its window can put in flight before a claim's lease
// runs short, less the rows it already holds; one probe while its circuit is open.
int claim_gate(const AppState& app, int claim_limit, std::int64_t now_us, const RelayConfig& config);

}  // namespace metrix
