#include "relay/concurrency.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace metrix {

namespace {

constexpr double kShrink = 0.5;           // TCP's multiplicative decrease
constexpr double kRecentDecay = 0.9;      // the failure share forgets over about ten intervals
constexpr double kRttWeight = 0.1;        // the answer time's mean, over about ten intervals
constexpr double kFailureDeviations = 4;  // by chance once in thousands of intervals
constexpr double kRttDeviations = 2.5;    // Vector's rtt_deviation_scale
constexpr double kRttGrowth = 2;          // answers taking twice as long as lately
constexpr double kRttNoiseUs = 5'000;     // a rise smaller than this is not a server slowing down
constexpr double kMinIntervalUs = 1'000;  // judged at most once a millisecond, however fast the answers
constexpr int kOutageStreak = 3;          // failed answers in a row that say nothing gets through

}  // namespace

ConcurrencyWindow::ConcurrencyWindow(WindowSettings settings)
    : settings_(settings),
      window_(std::max(1, settings.max)),
      slow_start_until_(window_),
      window_before_trouble_(window_) {}

void ConcurrencyWindow::set_settings(WindowSettings settings) {
  settings_ = settings;
  const int max = std::max(1, settings.max);
  window_ = std::min(window_, max);
  slow_start_until_ = std::min(slow_start_until_, max);
  window_before_trouble_ = std::min(window_before_trouble_, max);
}

int ConcurrencyWindow::limit(std::int64_t now_us) const {
  if (!open_) return window_;
  return now_us >= next_probe_us_ ? 1 : 0;
}

void ConcurrencyWindow::sent(int in_flight) {
  if (!open_ && in_flight >= window_) full_ = true;
}

void ConcurrencyWindow::answered(Reply reply, std::int64_t sent_us, std::int64_t now_us, bool rtt_known,
                                 double unit_random) {
  const bool failed = reply != Reply::good;
  failure_streak_ = failed ? failure_streak_ + 1 : 0;
  if (open_) {
    if (!failed) {
      // Metrix answers again: start at one request and double back to where the window was.
      open_ = false;
      failed_probes_ = 0;
      window_ = 1;
      slow_start_until_ = window_before_trouble_;
      recent_failures_ = 1.0;
      recent_answers_ = 20.0;
      shrunk_us_ = now_us;
      start_interval(-1);
    } else if (sent_us >= opened_us_) {
      // A probe failed (answers to requests sent before the circuit opened say nothing new).
      ++failed_probes_;
      open(now_us, unit_random);
    }
    return;
  }
  if (window_ == 1 && failure_streak_ >= kOutageStreak) {
    open(now_us, unit_random);
    return;
  }
  if (sent_us < shrunk_us_) return;  // judged already, by the decrease it caused

  const double rtt = static_cast<double>(now_us - sent_us);
  if (interval_start_us_ < 0) interval_start_us_ = now_us;
  // The first answer time known seeds the mean (a transport error has none).
  if (rtt_known && rtt_mean_us_ == 0) rtt_mean_us_ = last_rtt_us_ = rtt;
  ++answers_;
  if (failed) ++failures_;
  else all_failed_ = false;
  if (reply == Reply::throttled) throttled_ = true;
  if (rtt_known) {
    rtt_sum_us_ += rtt;
    ++rtt_count_;
  }
  // A 429, or a whole window failed since the last decrease: judge at once rather than at the
  // interval's end (these answers were all sent after that decrease, so it is still at most
  // once a round trip), so that the way down costs one round trip a halving. Otherwise an
  // interval lasts the latest measured round trip: the first answers, which paid for the
  // connections, must not stretch the intervals after them.
  const bool window_failed = all_failed_ && failures_ >= std::max(kOutageStreak, window_);
  if (throttled_ || window_failed ||
      static_cast<double>(now_us - interval_start_us_) >= std::max(last_rtt_us_, kMinIntervalUs)) {
    judge(now_us);
  }
}

void ConcurrencyWindow::judge(std::int64_t now_us) {
  const double n = answers_;
  const double p = recent_failures_ / recent_answers_;
  const bool rising = failures_ > n * p + kFailureDeviations * std::sqrt(n * p * (1 - p)) + 1;
  const bool outage = all_failed_ && failure_streak_ >= kOutageStreak;
  bool slower = false;
  const double previous_mean_us = rtt_mean_us_;
  double slower_rtt_us = 0;
  if (rtt_count_ > 0) {
    const double rtt = rtt_sum_us_ / rtt_count_;
    slower_rtt_us = rtt;
    last_rtt_us_ = rtt;
    slower = rtt > std::max({rtt_mean_us_ + kRttDeviations * std::sqrt(rtt_var_us2_), kRttGrowth * rtt_mean_us_,
                             rtt_mean_us_ + kRttNoiseUs});
    // Exponentially weighted mean and variance (West's incremental form).
    const double diff = rtt - rtt_mean_us_;
    rtt_mean_us_ += kRttWeight * diff;
    rtt_var_us2_ = (1 - kRttWeight) * (rtt_var_us2_ + kRttWeight * diff * diff);
  }
  recent_failures_ = kRecentDecay * recent_failures_ + failures_;
  recent_answers_ = kRecentDecay * recent_answers_ + n;

  if (throttled_) {
    shrink(now_us, "a 429");
  } else if (outage) {
    shrink(now_us, fmt::format("every answer failed: {} in a row", failure_streak_));
  } else if (rising) {
    shrink(now_us, fmt::format("failures rising: {} of {} answers, against {:.1f}% lately", failures_, answers_, 100 * p));
  } else if (slower) {
    shrink(now_us, fmt::format("answers slower: {:.1f} ms against {:.1f} ms lately", slower_rtt_us / 1000,
                               previous_mean_us / 1000));
  } else {
    calm_ = true;
    if (full_) {
      window_ = window_ < slow_start_until_ ? std::min(window_ * 2, slow_start_until_) : window_ + 1;
      window_ = std::min(window_, settings_.max);
    }
  }
  if (interval_start_us_ >= 0) start_interval(now_us);  // a decrease restarts it with the next answer
}

void ConcurrencyWindow::start_interval(std::int64_t start_us) {
  interval_start_us_ = start_us;
  answers_ = failures_ = rtt_count_ = 0;
  rtt_sum_us_ = 0;
  throttled_ = full_ = false;
  all_failed_ = true;
}

void ConcurrencyWindow::shrink(std::int64_t now_us, std::string reason) {
  shrink_reason_ = std::move(reason);
  if (calm_) window_before_trouble_ = window_;
  calm_ = false;
  window_ = std::max(1, static_cast<int>(window_ * kShrink));
  slow_start_until_ = window_;
  shrunk_us_ = now_us;
  start_interval(-1);  // the next interval starts with the first answer judged
}

void ConcurrencyWindow::open(std::int64_t now_us, double unit_random) {
  if (!open_ && calm_) window_before_trouble_ = window_;
  calm_ = false;
  open_ = true;
  opened_us_ = now_us;
  window_ = 1;
  // Equal jitter: half the interval fixed, so a dead Metrix is probed no more often than that.
  std::int64_t ceiling_ms = std::max<std::int64_t>(1, settings_.probe_base_ms);
  for (int i = 0; i < failed_probes_ && ceiling_ms < settings_.probe_max_ms; ++i) ceiling_ms *= 2;
  ceiling_ms = std::min(ceiling_ms, std::max<std::int64_t>(1, settings_.probe_max_ms));
  const double delay_ms = static_cast<double>(ceiling_ms) * (0.5 + 0.5 * unit_random);
  next_probe_us_ = now_us + static_cast<std::int64_t>(delay_ms * 1000);
}

}  // namespace metrix
