// The relay's log: one line per event worth an operator's attention, on stderr, with a
// UTC timestamp. Nothing that reaches the log may contain a dev key.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace metrix::log {

void set_verbose(bool verbose);
bool verbose();
void write(std::string_view line);

// A time in milliseconds since the epoch as the log writes it: 2026-11-25T14:03:07.412Z.
std::string utc(std::int64_t ms);

template <class... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  write(fmt::format(format, std::forward<Args>(args)...));
}

template <class... Args>
void detail(fmt::format_string<Args...> format, Args&&... args) {
  if (verbose()) write(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace metrix::log
