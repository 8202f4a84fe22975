// The one text form of a time and of a duration, and the ISO 8601 forms an operator types.
#include <doctest/doctest.h>

#include "storage/time_text.h"

using namespace metrix;

TEST_CASE("a time prints as ISO 8601 UTC with milliseconds, before 1970 too") {
  CHECK(utc_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(utc_time(1764064800123) == "2025-11-25T10:00:00.123Z");
  CHECK(utc_time(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(utc_time(-1000) == "1969-12-31T23:59:59.000Z");
  CHECK(utc_time(-1001) == "1969-12-31T23:59:58.999Z");
}

TEST_CASE("a duration prints as its two largest units, rounded down") {
  CHECK(describe_duration(0) == "0ms");
  CHECK(describe_duration(250) == "250ms");
  CHECK(describe_duration(1999) == "1s");
  CHECK(describe_duration(42'000) == "42s");
  CHECK(describe_duration(192'000) == "3m12s");
  CHECK(describe_duration(15 * 60'000) == "15m00s");
  CHECK(describe_duration(2 * 3'600'000 + 5 * 60'000 + 59'000) == "2h05m");
  CHECK(describe_duration(24 * 3'600'000) == "1d00h");
  CHECK(describe_duration(28 * 3'600'000) == "1d04h");
  CHECK(describe_duration(-5) == "0ms");
}

TEST_CASE("a date, a UTC time and a time with an offset are read as ISO 8601") {
  const std::int64_t day = 1764028800000;  // 2025-11-25T00:00:00Z
  CHECK(parse_utc_time("2025-11-25") == day);
  CHECK(parse_utc_time("2025-11-25T10:00") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("2025-11-25T10:00:00Z") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("2025-11-25 10:00:00") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("2025-11-25T10:00:00.5Z") == day + 10 * 3'600'000 + 500);
  CHECK(parse_utc_time("2025-11-25T10:00:00.123456Z") == day + 10 * 3'600'000 + 123);
  CHECK(parse_utc_time("2025-11-25T13:30:00+03:30") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("2025-11-25T13:30:00+0330") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("2025-11-25T05:00:00-05:00") == day + 10 * 3'600'000);
  CHECK(parse_utc_time("1969-12-31T23:59:59Z") == -1000);
  CHECK(parse_utc_time(utc_time(1764064800123)) == 1764064800123);
}

TEST_CASE("anything else is not a time") {
  for (const char* text : {"", "now", "2025-11", "2025-1-25", "2025-11-5", "2025-13-01", "2025-02-30", "2025-11-25T",
                           "2025-11-25T1:00", "2025-11-25T10", "2025-11-25T10:00:0", "2025-11-25T25:00",
                           "2025-11-25T10:00:00.", "2025-11-25T10:00:00Zjunk", "2025-11-25T10:00:00+", " 2025-11-25",
                           "2025-11-25 ", "2025-11- 5", "2025-11-25x", "2025-11-25T10: 5Z", "2025-11-25T 1:00",
                           "2025-11-25T10:00: 5Z", "2025-11-25T10:00:00+03: 30", "2025-11-25\t10:00"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_utc_time(text).has_value());
  }
}
