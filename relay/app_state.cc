#include "relay/app_state.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string_view>

#include "relay/http.h"

namespace metrix {
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

}  // namespace

WindowSettings window_settings(const RelayConfig& config) {
  return WindowSettings{config.concurrency, config.backoff_base_ms, std::min(config.backoff_max_ms, kProbeMaxMs)};
}

void configure_app(AppState& app, const RelayConfig& config) {
  const std::string& id = app.id;
  std::string endpoint = config.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  app.url = endpoint + "/inappevent/" + percent_encode(id);
  app.window.set_settings(window_settings(config));
  app.rate.set_rate(max_rate_of(config, id), monotonic_us());
  app.headers.reset();
  app.unroutable_reason.clear();
  if (id.empty()) {
    app.unroutable_reason = "not sent: the row has no app_id and the relay has no --app-id";
  } else if (auto key = config.dev_keys.find(id); key == config.dev_keys.end()) {
    app.unroutable_reason = fmt::format(
        "not sent: no dev key for app {} (set METRIX_DEV_KEY with --app-id {}, or add [apps.\"{}\"] to the config file)",
        id, id, id);
  } else if (auto headers = make_request_headers(key->second)) {
    app.headers = std::shared_ptr<const curl_slist>(std::move(*headers));
  } else {
    app.unroutable_reason = headers.error().message;
  }
}

int claim_gate(const AppState& app, int claim_limit, std::int64_t now_us, const RelayConfig& config) {
  const int limit = app.window.limit(now_us);
  if (app.window.circuit_open()) return limit > 0 && app.in_flight == 0 && app.ready.empty() ? 1 : 0;
  // A row waits in the ready queue at most until its lease would end before its answer
  // (send_ready), so claim no more than the window can send by then: window / answer time.
  const double usable_ms = static_cast<double>(config.lease_ms - config.timeout_ms - 1000);
  const double rtt_ms = std::max(1.0, static_cast<double>(app.window.rtt_us()) / 1000.0);
  double sendable = limit * usable_ms / rtt_ms;
  // Under --max-rate, two seconds of the rate (one row at least): claimed rows wait for their
  // tokens, and more of them would hold the shared claim budget away from the other apps.
  if (app.rate.limited()) sendable = std::min(sendable, std::max(1.0, app.rate.rate() * 2.0));
  sendable -= static_cast<double>(app.ready.size());
  return static_cast<int>(std::clamp(sendable, 0.0, static_cast<double>(claim_limit)));
}

}  // namespace metrix
