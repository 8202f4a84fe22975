// Times and durations as people read and type them: the one text form of each that the
// operator commands, the relay's log and its error texts share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace metrix {

// Milliseconds since the Unix epoch as ISO 8601 UTC with milliseconds:
// 2026-11-25T10:00:00.123Z. Times before 1970 too (-1 is 1969-12-31T23:59:59.999Z).
std::string utc_time(std::int64_t ms);

// A duration for people, its two largest units, rounded down: "250ms", "42s", "3m12s",
// "15m00s", "2h05m", "1d04h". Below one second in milliseconds, so that a threshold of 250ms
// does not read as "0s"; a negative duration reads as "0ms".
std::string describe_duration(std::int64_t ms);

// An ISO 8601 date or UTC time, as an operator types one, in milliseconds since the epoch:
//   2026-11-25                  midnight UTC of that day
//   2026-11-25T10:00:00Z        UTC (seconds, fraction and 'Z' optional; ' ' for 'T' too)
//   2026-11-25T13:30:00+03:30   with an offset from UTC (+0330 and +03 too)
// nullopt for anything else, and for a day the calendar does not have (2026-02-30).
std::optional<std::int64_t> parse_utc_time(std::string_view text);

}  // namespace metrix
