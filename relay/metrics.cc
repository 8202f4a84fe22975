#include "relay/metrics.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <sqlite3.h>

#include <cmath>

namespace metrix {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<std::int64_t>(v));
  return fmt::format("{}", v);
}

void escape_into(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
}

}  // namespace

void metric_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void metric_line(std::string& out, std::string_view name,
                 std::initializer_list<std::pair<std::string_view, std::string_view>> labels, double value) {
  out += name;
  if (labels.size() > 0) {
    out.push_back('{');
    bool first = true;
    for (const auto& [key, text] : labels) {
      if (!first) out.push_back(',');
      first = false;
      out += key;
      out += "=\"";
      escape_into(out, text);
      out.push_back('"');
    }
    out.push_back('}');
  }
  out.push_back(' ');
  out += number(value);
  out.push_back('\n');
}

Histogram::Histogram(std::initializer_list<double> bounds_s) : bounds_s_(bounds_s), counts_(bounds_s.size() + 1) {
  for (double b : bounds_s_) bounds_us_.push_back(static_cast<std::int64_t>(std::llround(b * 1e6)));
}

void Histogram::observe_us(std::int64_t us) {
  size_t i = 0;
  while (i < bounds_us_.size() && us > bounds_us_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  metric_header(out, name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_s_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < bounds_s_.size() ? fmt::format("{}", bounds_s_[i]) : "+Inf";
    metric_line(out, bucket, {{"le", le}}, static_cast<double>(cumulative));
  }
  metric_line(out, std::string(name) + "_sum", {}, static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6);
  metric_line(out, std::string(name) + "_count", {}, static_cast<double>(cumulative));
}

Metrics::Metrics()
    // A remote API answering within a 10 s timeout: from a fast LAN answer to the timeout.
    : request_duration({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      // One write round: a fsync on a fast disk, up to a wait behind a producer's lock.
      write_duration({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10}) {}

AppMetrics& Metrics::app(const std::string& app_id) {
  std::lock_guard lock(mutex_);
  const std::string label = app_id.empty() ? kNoAppLabel : app_id;
  for (auto& a : apps_) {
    if (a.app_id == label) return a;
  }
  return apps_.emplace_back(label);
}

void Metrics::set_pause(AppMetrics& app, const std::optional<std::string>& reason) {
  std::lock_guard lock(mutex_);
  app.paused = reason.has_value();
  app.pause_reason = reason.value_or("");
}

void Metrics::set_unready(std::string reason) {
  std::lock_guard lock(mutex_);
  unready_ = std::move(reason);
}

std::string Metrics::unready() const {
  std::lock_guard lock(mutex_);
  return unready_;
}

std::string Metrics::render() const {
  constexpr auto relaxed = std::memory_order_relaxed;
  auto d = [](auto v) { return static_cast<double>(v); };
  std::string out;
  out.reserve(8192);
  metric_header(out, "metrix_relay_build_info", "gauge", "Always 1; the version of the relay and of its libraries.");
  metric_line(out, "metrix_relay_build_info",
              {{"version", METRIX_RELAY_VERSION}, {"sqlite", sqlite3_libversion()},
               {"curl", curl_version_info(CURLVERSION_NOW)->version}},
              1);
  metric_header(out, "metrix_relay_start_time_seconds", "gauge", "When the relay started, seconds since the epoch.");
  metric_line(out, "metrix_relay_start_time_seconds", {}, d(start_time_ms.load(relaxed)) / 1000.0);

  std::lock_guard lock(mutex_);
  static constexpr std::string_view kOutcomes[kEventOutcomes] = {"sent", "failed", "dead", "held", "retried"};
  metric_header(out, "metrix_relay_events_total", "counter",
                "Outcomes this relay committed, by app and outcome (retried: pending again after an attempt).");
  for (const auto& a : apps_) {
    for (int i = 0; i < kEventOutcomes; ++i) {
      metric_line(out, "metrix_relay_events_total", {{"app_id", a.app_id}, {"outcome", kOutcomes[i]}},
                  d(a.events[i].load(relaxed)));
    }
  }
  metric_header(out, "metrix_relay_http_responses_total", "counter", "HTTP answers from Metrix, by app and status class.");
  static constexpr std::string_view kClasses[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (const auto& a : apps_) {
    for (int i = 0; i < 5; ++i) {
      metric_line(out, "metrix_relay_http_responses_total", {{"app_id", a.app_id}, {"code", kClasses[i]}},
                  d(a.answers[i].load(relaxed)));
    }
  }
  // A family with one sample per app, labelled by app_id alone.
  auto per_app = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    metric_header(out, name, type, help);
    for (const auto& a : apps_) metric_line(out, name, {{"app_id", a.app_id}}, value(a));
  };
  per_app("metrix_relay_http_transport_errors_total", "counter",
          "Requests that got no HTTP answer (timeout, refused or dropped connection, TLS), by app.",
          [&](const AppMetrics& a) { return d(a.transport_errors.load(relaxed)); });
  per_app("metrix_relay_poisoned_rows_total", "counter",
          "Rows made dead as poison: the relay stopped --poison-after times in a row while sending them.",
          [&](const AppMetrics& a) { return d(a.poisoned.load(relaxed)); });
  per_app("metrix_relay_rate_limited_waits_total", "counter",
          "Requests that waited for a --max-rate token before they were sent, by app.",
          [&](const AppMetrics& a) { return d(a.rate_limited_waits.load(relaxed)); });
  per_app("metrix_relay_app_window", "gauge",
          "Requests an app may have in flight now (its adaptive window; 0 while its circuit is open).",
          [&](const AppMetrics& a) { return d(a.window.load(relaxed)); });
  per_app("metrix_relay_app_circuit_open", "gauge", "1 while Metrix fails every request of the app and the relay only probes.",
          [&](const AppMetrics& a) { return a.circuit_open.load(relaxed) ? 1.0 : 0.0; });
  metric_header(out, "metrix_relay_app_paused", "gauge",
                "1 while an app is paused because Metrix answered 403; reason is the error name.");
  for (const auto& a : apps_) {
    metric_line(out, "metrix_relay_app_paused", {{"app_id", a.app_id}, {"reason", a.pause_reason}},
                a.paused.load(relaxed) ? 1 : 0);
  }

  // A family of one sample.
  auto single = [&](std::string_view name, std::string_view type, std::string_view help, double value) {
    metric_header(out, name, type, help);
    metric_line(out, name, {}, value);
  };
  single("metrix_relay_http_requests_in_flight", "gauge", "Requests sent and not yet answered.",
         d(in_flight.load(relaxed)));
  request_duration.render(out, "metrix_relay_http_request_duration_seconds",
                          "From sending a request to its answer (or its transport error).");
  single("metrix_relay_last_sent_timestamp_seconds", "gauge",
         "When this relay last committed a 'sent' outcome, seconds since the epoch; 0: not yet.",
         d(last_sent_ms.load(relaxed)) / 1000.0);
  single("metrix_relay_write_rounds_total", "counter", "Write transactions of the relay (outcomes, claims, heartbeat).",
         d(write_rounds.load(relaxed)));
  single("metrix_relay_write_round_failures_total", "counter",
         "Write transactions that failed (the database busy or failing); their outcomes are retried.",
         d(write_round_failures.load(relaxed)));
  single("metrix_relay_database_up", "gauge",
         "1 while the relay's last write round committed; 0 before the first, after a failed one and while it "
         "reconnects.",
         database_up.load(relaxed) ? 1 : 0);
  single("metrix_relay_write_lock_seconds_total", "counter",
         "Time the relay held the database's write lock; its rate is the lock's share of time.",
         d(write_lock_us.load(relaxed)) / 1e6);
  write_duration.render(out, "metrix_relay_write_round_duration_seconds",
                        "How long one write transaction took, commit included: on SQLite while it held the write "
                        "lock; on PostgreSQL one round trip (outcomes, heartbeat and claim pipelined), the claim's "
                        "round-trip time.");
  metric_header(out, "metrix_relay_config_reloads_total", "counter", "Reloads (SIGHUP), by result.");
  metric_line(out, "metrix_relay_config_reloads_total", {{"result", "success"}}, d(reloads_ok.load(relaxed)));
  metric_line(out, "metrix_relay_config_reloads_total", {{"result", "failure"}}, d(reloads_failed.load(relaxed)));
  return out;
}

}  // namespace metrix
