#include "relay/log.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "storage/clock.h"
#include "storage/time_text.h"

namespace metrix::log {

namespace {

Format g_format = Format::text;
Level g_level = Level::info;
bool g_journal_stream = false;
bool g_journal_socket = false;

// sd_journal_send() reports success when there is no journal at all (it drops the record
// silently), so the journal's socket is looked for first.
bool journal_socket_exists() {
  struct stat st {};
  return stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
}

// systemd sets $JOURNAL_STREAM to "device:inode" of the stream it connected stderr to; it is
// the journal only while stderr is still that stream (not redirected by a parent).
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return fstat(2, &st) == 0 && static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

int priority(Level level) {  // syslog's: LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3
  switch (level) {
    case Level::debug: return 7;
    case Level::info: return 6;
    case Level::warning: return 4;
    case Level::error: return 3;
  }
  return 6;
}

std::string_view text_prefix(Level level) {
  return level == Level::warning ? "WARNING: " : level == Level::error ? "ERROR: " : "";
}


void write_stderr(const std::string& text) {
  // fmt::print would throw on a failed write and end the relay mid-drain.
  (void)std::fwrite(text.data(), 1, text.size(), stderr);
  (void)std::fflush(stderr);
  std::clearerr(stderr);
}

bool send_journal(Level level, std::string_view message, const Fields& f) {
  std::vector<std::string> items;
  items.push_back(fmt::format("MESSAGE={}", message));
  items.push_back(fmt::format("PRIORITY={}", priority(level)));
  items.push_back("SYSLOG_IDENTIFIER=metrix-relay");
  if (!f.app_id.empty()) items.push_back(fmt::format("APP_ID={}", f.app_id));
  if (f.row_id) items.push_back(fmt::format("ROW_ID={}", f.row_id));
  if (f.http_status) items.push_back(fmt::format("HTTP_STATUS={}", f.http_status));
  if (f.attempt) items.push_back(fmt::format("ATTEMPT={}", f.attempt));
  if (!f.outcome.empty()) items.push_back(fmt::format("OUTCOME={}", f.outcome));
  if (!f.error.empty()) items.push_back(fmt::format("ERROR={}", f.error));
  std::vector<iovec> iov;
  for (auto& item : items) iov.push_back(iovec{item.data(), item.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
}

// A record in the text or JSON form; `journal_stream`: stderr is the journal.
std::string render(Format format, Level level, std::int64_t time_ms, std::string_view message, const Fields& f,
                   bool journal_stream) {
  if (format == Format::json) {
    nlohmann::ordered_json record;
    record["time"] = utc_time(time_ms);
    record["level"] = name(level);
    record["msg"] = message;
    if (!f.app_id.empty()) record["app_id"] = f.app_id;
    if (f.row_id) record["row_id"] = f.row_id;
    if (f.http_status) record["http_status"] = f.http_status;
    if (f.attempt) record["attempt"] = f.attempt;
    if (!f.outcome.empty()) record["outcome"] = f.outcome;
    if (!f.error.empty()) record["error"] = f.error;
    // An answer body quoted in a message may not be UTF-8: replace, never throw.
    return record.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  }
  if (journal_stream) return fmt::format("<{}>{}{}\n", priority(level), text_prefix(level), message);
  return fmt::format("{} metrix-relay: {}{}\n", utc_time(time_ms), text_prefix(level), message);
}

}  // namespace

std::optional<Level> parse_level(std::string_view text) {
  for (Level l : {Level::debug, Level::info, Level::warning, Level::error}) {
    if (text == name(l)) return l;
  }
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view text) {
  for (Format f : {Format::text, Format::json, Format::journal}) {
    if (text == name(f)) return f;
  }
  return std::nullopt;
}

std::string_view name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warning: return "warning";
    case Level::error: return "error";
  }
  return "info";
}

std::string_view name(Format format) {
  switch (format) {
    case Format::text: return "text";
    case Format::json: return "json";
    case Format::journal: return "journal";
  }
  return "text";
}

void configure(Format format, Level level) {
  g_format = format;
  g_level = level;
  g_journal_stream = stderr_is_journal();
  g_journal_socket = format == Format::journal && journal_socket_exists();
}

bool enabled(Level level) { return level >= g_level; }


void write(Level level, std::string_view message, const Fields& fields) {
  if (!enabled(level)) return;
  if (g_format == Format::journal && g_journal_socket && send_journal(level, message, fields)) return;
  // No journal to send to (not under systemd): the text form on stderr, so nothing is lost.
  const Format format = g_format == Format::journal ? Format::text : g_format;
  write_stderr(render(format, level, now_ms(), message, fields, g_journal_stream));
}

}  // namespace metrix::log
