#include "relay/relay.h"

#include <algorithm>
#include <cassert>
#include <memory>

#include "relay/admin.h"
#include "relay/http.h"
#include "relay/log.h"
#include "relay/loop.h"
#include "relay/metrics.h"
#include "relay/remedy.h"
#include "storage/clock.h"
#include "storage/stores.h"

namespace metrix {

std::string request_body(const Claim& claim) {
  if (claim.payload_has_event_time) return claim.payload;
  // Insert "eventTime" as the first key, leaving every byte the producer wrote as it was.
  // A valid payload is an object with at least three keys, so a comma always follows.
  std::string body;
  const size_t brace = claim.payload.find('{');
  [[maybe_unused]] const size_t first_key = claim.payload.find_first_not_of(" \t\r\n", brace + 1);
  assert(brace != std::string::npos && first_key != std::string::npos && claim.payload[first_key] == '"');
  body.reserve(claim.payload.size() + 32);
  body.append(claim.payload, 0, brace + 1);
  body.append("\"eventTime\":");
  body.append(std::to_string(claim.event_time));
  body.push_back(',');
  body.append(claim.payload, brace + 1, std::string::npos);
  return body;
}

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
  auto store = open_relay_store(config.db_path, options);
  if (!store) {
    log::error({}, "{}", with_remedy(store.error(), config.db_path).message);
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
  auto writer_store = open_relay_store(config.db_path, options);
  if (!writer_store) {
    log::error({}, "{}", with_remedy(writer_store.error(), config.db_path).message);
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
  Relay relay(config, **store, std::move(*http), std::move(*writer_store), control, metrics);
  return relay.run();
}

}  // namespace metrix
