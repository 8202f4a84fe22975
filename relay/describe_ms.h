// A duration as the relay's log lines and reasons write it, in the largest unit that divides
// it: "168h", "5m", "30s", "1500ms". Shared by the loop's files and relay/policy.cc.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace metrix {

inline std::string describe_ms(std::int64_t ms) {
  if (ms % 3'600'000 == 0 && ms >= 3'600'000) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0 && ms >= 60'000) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0 && ms >= 1000) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

}  // namespace metrix
