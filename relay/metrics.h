// Metrics: what the relay counts, rendered for GET /metrics in the Prometheus text format
// (0.0.4). Names start with metrix_relay_, values are in base units (seconds, bytes), counters
// end in _total, and labels come from bounded sets only: an app id, an outcome, a status, an
// HTTP status class, a pause's error name -- never a row id, a user id or a dedup key.
//
// Threads: the relay's loop updates everything here (relaxed atomics: a counter costs an
// uncontended add on the hot path); the admin listener's thread renders. The loop adds an app
// the first time it sees one, under the mutex the renderer takes.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metrix {

// The steady clock in microseconds: the loop's turns, request and round durations, the rate
// buckets, /livez.
inline std::int64_t monotonic_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The app_id label of rows that name no app when the relay has no default app either.
inline constexpr const char* kNoAppLabel = "(none)";

// A histogram with fixed upper bounds in seconds, observed in microseconds.
class Histogram {
 public:
  explicit Histogram(std::initializer_list<double> bounds_s);
  void observe_us(std::int64_t us);
  // The family's _bucket, _sum and _count lines (HELP and TYPE included).
  void render(std::string& out, std::string_view name, std::string_view help) const;

 private:
  std::vector<double> bounds_s_;
  std::vector<std::int64_t> bounds_us_;
  std::deque<std::atomic<std::uint64_t>> counts_;  // per bucket, not cumulative; the last is +Inf
  std::atomic<std::int64_t> sum_us_{0};
};

// The outcomes a row's claim can end in, as committed (a row handed back without an attempt
// is none of them): sent, failed, dead, held, or pending again after an attempt (retried).
enum class EventOutcome { sent, failed, dead, held, retried };
inline constexpr int kEventOutcomes = 5;

struct AppMetrics {
  explicit AppMetrics(std::string label) : app_id(std::move(label)) {}
  const std::string app_id;  // the label: the Metrix appId, "(none)" when a row names none
  std::array<std::atomic<std::uint64_t>, kEventOutcomes> events{};
  std::array<std::atomic<std::uint64_t>, 5> answers{};  // by status class 1xx .. 5xx
  std::atomic<std::uint64_t> transport_errors{0};       // no HTTP answer
  std::atomic<std::uint64_t> poisoned{0};
  std::atomic<std::uint64_t> rate_limited_waits{0};     // requests that waited for a --max-rate token
  std::atomic<int> window{0};                           // requests it may have in flight now
  std::atomic<bool> circuit_open{false};
  std::atomic<bool> paused{false};
  std::string pause_reason;  // under Metrics' mutex: the 403's error name
};

class Metrics {
 public:
  Metrics();

  // The app's metrics, created on first use. The reference stays valid.
  AppMetrics& app(const std::string& app_id);
  void set_pause(AppMetrics& app, const std::optional<std::string>& reason);
  // Why the relay cannot deliver now ("" when it can): for GET /readyz.
  void set_unready(std::string reason);
  std::string unready() const;

  // The loop's own figures.
  std::atomic<std::int64_t> start_time_ms{0};
  std::atomic<std::int64_t> loop_turn_us{0};      // monotonic time of the loop's last turn
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> last_sent_ms{0};      // when a 'sent' outcome last committed; 0: never
  std::atomic<std::uint64_t> write_rounds{0};
  std::atomic<std::uint64_t> write_round_failures{0};
  // Whether the last write round committed: false before the first, after a failed one and
  // while the store reconnects (each round it cannot run fails).
  std::atomic<bool> database_up{false};
  std::atomic<std::int64_t> write_lock_us{0};     // write lock held, in all
  std::atomic<std::uint64_t> reloads_ok{0};
  std::atomic<std::uint64_t> reloads_failed{0};
  Histogram request_duration;
  Histogram write_duration;

  // The families above, in the text format.
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::deque<AppMetrics> apps_;  // guarded by mutex_ (its elements' atomics are not)
  std::string unready_;           // guarded by mutex_
};

// Text-format helpers, shared with the families read from the database (relay/admin.cc).
void metric_header(std::string& out, std::string_view name, std::string_view type, std::string_view help);
// `name{labels} value`; labels as "key", "value" pairs, values escaped.
void metric_line(std::string& out, std::string_view name,
                 std::initializer_list<std::pair<std::string_view, std::string_view>> labels, double value);

}  // namespace metrix
