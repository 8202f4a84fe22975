// ConcurrencyWindow: how many requests one app may have in flight, adapted to how Metrix
// answers. The relay's congestion control, in the way of TCP's AIMD with slow start, Vector's
// adaptive request concurrency and Netflix's concurrency-limits. Pure: the caller passes the
// clock and the random draws; no I/O. One per app, used from the relay's loop thread.
//
// The rule, judged once per interval of one round-trip time (the last measured), on the answers to
// requests sent since the last decrease (so one burst of trouble shrinks the window once):
// - shrink by half when the app is really pushing back:
//   - a 429 came back (Metrix asked for less traffic);
//   - failures (408, 429, 5xx, timeouts, connection errors) are more than the app's recent
//     failure share explains by chance: more than n·p + 4·sqrt(n·p·(1-p)) + 1 of n answers,
//     p being the share over about the last ten intervals. A steady random share, 1% or 20%,
//     passes; a rising one does not;
//   - at least three answers in a row failed, and every answer of the interval did (judged at
//     once when a whole window's answers failed: the way down costs a round trip a halving);
//   - answers slow down: the interval's mean answer time is twice the recent mean or more, and
//     above it by 2.5 standard deviations and 5 ms (less is scheduling noise on a busy host,
//     not a server slowing down);
// - otherwise grow, if the window was full at some moment of the interval: double up to the
//   slow-start threshold (the window of the last decrease), then one more per interval;
// - bounds: 1 to `max`. A window of 1 whose last three answers failed opens the circuit: no
//   request but one probe per probe interval (exponential, with jitter, from `probe_base_ms`
//   to `probe_max_ms`, 1 s at most). The first good answer closes it, and the window doubles per interval
//   back to what it was before the trouble began.
//
// A good answer is any answer that is not a failure: 2xx, and the refusals of one event (400,
// 404, ...), which say the server is answering. A 403 pause is the relay's business, not the
// window's: it is not reported here.
#pragma once

#include <cstdint>
#include <string>

namespace metrix {

inline constexpr std::int64_t kProbeMaxMs = 1'000;

struct WindowSettings {
  int max = 64;                         // --concurrency
  std::int64_t probe_base_ms = 100;     // --backoff-base
  // --backoff-max, but at most kProbeMaxMs: the probe interval is how long delivery may lag
  // behind Metrix's return, and one request a second is no load at all.
  std::int64_t probe_max_ms = kProbeMaxMs;
};

enum class Reply {
  good,       // the server answered the request (2xx, or a refusal of the event itself)
  failed,     // 408, 5xx, timeout, connection error: the request should be tried again
  throttled,  // 429: failed, and Metrix asked for less traffic
};

class ConcurrencyWindow {
 public:
  explicit ConcurrencyWindow(WindowSettings settings);

  // Requests the app may have in flight at `now_us`: the window, or while the circuit is
  // open 1 once a probe is due and 0 before. The caller keeps the count of its requests.
  int limit(std::int64_t now_us) const;

  // A request went out and the app now has `in_flight` requests: the window was full if that
  // reached it (evidence that a larger one would be used).
  void sent(int in_flight);

  // One answer to a request sent at `sent_us`, received at `now_us`. `rtt_known`: it was an
  // HTTP answer (a transport error says nothing about the server's answer time).
  // `unit_random` in [0, 1) jitters the next probe.
  void answered(Reply reply, std::int64_t sent_us, std::int64_t now_us, bool rtt_known, double unit_random);

  // New limits (a reload): a window above the new maximum comes down to it at once; one
  // below it grows as usual.
  void set_settings(WindowSettings settings);

  int window() const { return window_; }
  int max() const { return settings_.max; }
  bool circuit_open() const { return open_; }
  std::int64_t next_probe_us() const { return next_probe_us_; }  // meaningful while open
  std::int64_t rtt_us() const { return static_cast<std::int64_t>(rtt_mean_us_); }  // 0: none seen
  // Why the window last shrank, for the log: "a 429", "failures rising: 9 of 40", ...
  const std::string& shrink_reason() const { return shrink_reason_; }

 private:
  void judge(std::int64_t now_us);
  void start_interval(std::int64_t start_us);  // -1: at the next answer judged
  void shrink(std::int64_t now_us, std::string reason);
  void open(std::int64_t now_us, double unit_random);

  WindowSettings settings_;
  int window_;
  int slow_start_until_;        // the slow-start threshold
  int window_before_trouble_;   // the window before the decreases that led to an open circuit
  std::string shrink_reason_;
  bool calm_ = true;            // the last interval judged did not shrink the window
  bool open_ = false;
  std::int64_t opened_us_ = 0;
  std::int64_t next_probe_us_ = 0;
  int failed_probes_ = 0;
  int failure_streak_ = 0;      // failed answers in a row, of any request
  std::int64_t shrunk_us_ = -1; // answers to requests sent before this are not judged again

  // The recent failure share, as decayed counts, starting from a prior of 1 in 20.
  double recent_failures_ = 1.0;
  double recent_answers_ = 20.0;
  // The answer time's exponentially weighted mean and variance, over intervals.
  double rtt_mean_us_ = 0;
  double last_rtt_us_ = 0;  // the last interval's mean: how long the next interval lasts
  double rtt_var_us2_ = 0;

  // The interval being measured.
  std::int64_t interval_start_us_ = -1;  // -1: no answer seen yet
  int answers_ = 0;
  int failures_ = 0;
  bool throttled_ = false;
  bool full_ = false;
  bool all_failed_ = true;
  double rtt_sum_us_ = 0;
  int rtt_count_ = 0;
};

}  // namespace metrix
