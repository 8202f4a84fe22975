// The relay's log: one record per event worth an operator's attention, written in one of
// three formats (--log-format):
//   text     a line on stderr: "2026-11-25T14:03:07.412Z metrix-relay: message"; when stderr
//            is the journal ($JOURNAL_STREAM names it) the time is left to the journal and the
//            line starts with its syslog priority ("<4>") instead;
//   json     one JSON object a line on stderr: time (RFC 3339 UTC, ms), level, msg, and the
//            record's fields (app_id, row_id, http_status, attempt, outcome, error);
//   journal  native journald fields through sd_journal_send (the text form on stderr when
//            there is no journal socket): MESSAGE, PRIORITY,
//            SYSLOG_IDENTIFIER, and APP_ID, ROW_ID, HTTP_STATUS, ATTEMPT, OUTCOME, ERROR.
// Records below the level (--log-level) are dropped. Nothing that reaches the log may contain
// a dev key. The log is configured once at start and again on a reload, both on the loop's
// thread, which is also the only thread that logs.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace metrix::log {

enum class Level { debug, info, warning, error };
enum class Format { text, json, journal };

std::optional<Level> parse_level(std::string_view text);    // "debug", "info", "warning", "error"
std::optional<Format> parse_format(std::string_view text);  // "text", "json", "journal"
std::string_view name(Level level);
std::string_view name(Format format);

// The stable fields of a record; empty or zero ones are left out.
// (Every member has an initializer, so that a designated initializer naming only some of them
// does not trip GCC 12's -Wmissing-field-initializers.)
struct Fields {
  std::string_view app_id{};
  std::int64_t row_id = 0;
  int http_status = 0;
  std::int64_t attempt = 0;
  std::string_view outcome{};  // the row's status after the record: sent, failed, dead, held, pending
  std::string_view error{};
};

void configure(Format format, Level level);
bool enabled(Level level);

// Writes one record. A record that cannot be written (stderr closed, a full disk) is lost, and
// the relay goes on: the outbox is the record, not the log.
void write(Level level, std::string_view message, const Fields& fields = {});

template <class... Args>
void debug(const Fields& fields, fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(format, std::forward<Args>(args)...), fields);
}
template <class... Args>
void info(const Fields& fields, fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(format, std::forward<Args>(args)...), fields);
}
template <class... Args>
void warning(const Fields& fields, fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::warning)) write(Level::warning, fmt::format(format, std::forward<Args>(args)...), fields);
}
template <class... Args>
void error(const Fields& fields, fmt::format_string<Args...> format, Args&&... args) {
  write(Level::error, fmt::format(format, std::forward<Args>(args)...), fields);
}

}  // namespace metrix::log
