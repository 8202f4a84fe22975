// TokenBucket: the --max-rate cap of one app. At most `rate` events per second, over any
// window of a second or more (at most rate·T + 1 in a window of T >= 1 s, the one being the
// event on the window's closing edge), however large the backlog and however the relay's
// loop is scheduled.
//
// The bucket holds up to `burst` tokens (one below 30/s; two, or 10 ms of the rate from
// 200/s), so a loop that wakes a little after a token is due still reaches the rate; to keep
// the bound above it refills at rate - (burst - 1) per second: within 3.3% of the rate.
// Pure: the caller passes the time (monotonic microseconds).
#pragma once

#include <cstdint>

namespace metrix {

class TokenBucket {
 public:
  // rate <= 0: unlimited. A new rate starts from a full bucket.
  void set_rate(double per_second, std::int64_t now_us);
  double rate() const { return rate_; }
  bool limited() const { return rate_ > 0; }
  // Takes a token if one is there: true means the event may go now.
  bool take(std::int64_t now_us);
  // When take() succeeds next: now_us if a token is there (or unlimited).
  std::int64_t next_token_us(std::int64_t now_us);

 private:
  void refill(std::int64_t now_us);

  double rate_ = 0;
  double burst_ = 1;
  double refill_per_us_ = 0;
  double tokens_ = 0;
  std::int64_t at_us_ = 0;
};

}  // namespace metrix
