#include "relay/rate.h"

#include <algorithm>
#include <cmath>

namespace metrix {

void TokenBucket::set_rate(double per_second, std::int64_t now_us) {
  if (per_second == rate_) return;
  rate_ = per_second > 0 ? per_second : 0;
  burst_ = std::max(1.0, std::floor(rate_ / 100.0));
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
  return now_us + static_cast<std::int64_t>(std::ceil((1.0 - tokens_) / refill_per_us_));
}

}  // namespace metrix
