#include "storage/time_text.h"

#include <cctype>
#include <ctime>

#include <fmt/format.h>

namespace metrix {

std::string utc_time(std::int64_t ms) {
  // Floor division: the second a negative time falls in starts before it.
  const std::int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms - seconds * 1000);
}

std::string describe_duration(std::int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return fmt::format("{}ms", ms);
  const std::int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

namespace {

// The milliseconds of a fraction of a second, ".123456" -> 123; nullptr if `p` holds none.
const char* read_fraction(const char* p, int& millis) {
  if (*p != '.') return p;
  ++p;
  if (*p < '0' || *p > '9') return nullptr;
  for (int scale = 100; *p >= '0' && *p <= '9'; ++p, scale /= 10) millis += (*p - '0') * scale;
  return p;
}

}  // namespace

std::optional<std::int64_t> parse_utc_time(std::string_view text) {
  const std::string s(text);  // strptime reads a C string
  // strptime skips white space before a number and takes one-digit fields; this format has
  // neither: white space only as the one separator of date and time, and fixed field widths.
  if (s.size() < 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  for (size_t i = 0; i < s.size(); ++i) {
    if (std::isspace(static_cast<unsigned char>(s[i])) && !(i == 10 && s[i] == ' ')) return std::nullopt;
  }
  std::tm tm{};
  const char* p = strptime(s.c_str(), "%Y-%m-%d", &tm);
  if (p != s.c_str() + 10) return std::nullopt;
  const int day = tm.tm_mday;
  int millis = 0;
  long offset_s = 0;
  if (*p == 'T' || *p == ' ') {
    const char* hm = p + 1;
    if (*hm < '0' || *hm > '9' || !(p = strptime(hm, "%H:%M", &tm)) || p != hm + 5) return std::nullopt;
    if (*p == ':') {
      const char* sec = p + 1;
      if (!(p = strptime(sec, "%S", &tm)) || p != sec + 2 || !(p = read_fraction(p, millis))) return std::nullopt;
    }
    if (*p == 'Z') {
      ++p;
    } else if (*p == '+' || *p == '-') {
      std::tm zone{};
      if (!(p = strptime(p, "%z", &zone))) return std::nullopt;
      offset_s = zone.tm_gmtoff;
    }
  }
  if (*p != '\0') return std::nullopt;
  const std::time_t seconds = timegm(&tm);
  if (tm.tm_mday != day) return std::nullopt;  // 2026-02-30, which timegm rolls over into March
  return static_cast<std::int64_t>(seconds - offset_s) * 1000 + millis;
}

}  // namespace metrix
