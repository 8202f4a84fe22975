#include "relay/rate.h"

#include <algorithm>
#include <cmath>

namespace metrix {

void TokenBucket::set_rate(double per_second, std::int64_t now_us) {
  if (per_second == rate_) return;
  rate_ = per_second > 0 ? per_second : 0;
  // One token below 30/s; from there two at least (10 ms of the rate from 200/s). A loop that
  // wakes up to a millisecond after a token is due loses that time with a one-token bucket
  // (3% at 30/s, 10% at 100/s); a second token keeps it, at the cost of refilling 1/s slower.
  burst_ = rate_ < 30 ? 1.0 : std::max(2.0, std::floor(rate_ / 100.0));
  refill_per_us_ = (rate_ - (burst_ - 1.0)) / 1e6;
  tokens_ = burst_;
  at_us_ = now_us;
}

void TokenBucket::refill(std::int64_t now_us) {
  if (now_us <= at_us_) return;
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_us - at_us_) * refill_per_us_);
  at_us_ = now_us;
}

bool TokenBucket::take(std::int64_t now_us) {
  if (!limited()) return true;
  refill(now_us);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

std::int64_t TokenBucket::next_token_us(std::int64_t now_us) {
  if (!limited()) return now_us;
  refill(now_us);
  if (tokens_ >= 1.0) return now_us;
  // At most an hour: validate() keeps the rate above 0.01/s, and a bound keeps the cast safe.
  return now_us + static_cast<std::int64_t>(std::min(3.6e9, std::ceil((1.0 - tokens_) / refill_per_us_)));
}

}  // namespace metrix
