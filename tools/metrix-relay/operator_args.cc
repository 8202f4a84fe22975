#include "tools/metrix-relay/operator_args.h"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "relay/config.h"
#include "storage/time_text.h"
#include "tools/metrix-relay/status_flag.h"

namespace metrix::cli {

namespace {

Error time_error(std::string_view text) {
  return Error{Errc::invalid_argument,
               fmt::format("'{}' is not a time: use a date (2026-11-25), a UTC time (2026-11-25T10:00:00Z), a time "
                           "with an offset (2026-11-25T13:30:00+03:30), a duration ago (24h, 7d, 1h30m), or 'now'",
                           text)};
}

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

}  // namespace

Result<std::int64_t> parse_time(std::string_view text, std::int64_t now_ms) {
  if (text == "now") return now_ms;
  if (all_digits(text) && text.size() >= 11) {  // milliseconds since the epoch (a year is 11 digits of ms)
    std::int64_t ms = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec == std::errc() && end == text.data() + text.size()) return ms;
  }
  if (!text.empty() && text[0] >= '0' && text[0] <= '9' && text.find('-') == std::string_view::npos) {
    auto ago = parse_duration_ms(text);
    if (!ago) return time_error(text);
    return now_ms - *ago;
  }
  if (auto t = parse_utc_time(text)) return *t;
  return time_error(text);
}

Result<std::vector<IdRange>> parse_ids(std::string_view text) {
  std::vector<IdRange> ranges;
  auto invalid = [&] {
    return Error{Errc::invalid_argument, fmt::format("'{}' is not a list of ids: use 42, 10-20 or 5,7,10-20", text)};
  };
  auto number = [](std::string_view s, std::int64_t& out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size() && out >= 0;
  };
  std::string_view rest = text;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    IdRange r;
    size_t dash = part.find('-');
    if (dash == std::string_view::npos) {
      if (!number(part, r.first)) return invalid();
      r.last = r.first;
    } else {
      if (!number(part.substr(0, dash), r.first) || !number(part.substr(dash + 1), r.last) || r.last < r.first) {
        return invalid();
      }
    }
    ranges.push_back(r);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return ranges;
}

void add_filter_flags(CLI::App& cmd, FilterFlags& f) {
  cmd.add_option("--status", f.statuses, "only rows in these statuses (comma separated or repeated): "
                                         "pending, sending, sent, failed, dead, held")
      ->delimiter(',');
  cmd.add_option("--app-id", f.app_id, "only rows of this app ('(default)': rows with no app_id)");
  cmd.add_option("--slug", f.slug, "only rows with this eventSlug");
  cmd.add_option("--error", f.error, "only rows whose last_error contains this text, e.g. EVENT_TYPE_DOES_NOT_EXIST");
  cmd.add_option("--since", f.since, "only rows created at or after this time (2026-11-25, 2026-11-25T10:00:00Z, 24h = 24h ago)");
  cmd.add_option("--until", f.until, "only rows created before this time (same forms as --since)");
  cmd.add_option("--id", f.ids, "only these ids: 42, 10-20, 5,7,10-20 (repeatable)");
}

bool narrows(const FilterFlags& f) {
  return !f.statuses.empty() || !f.app_id.empty() || !f.slug.empty() || !f.error.empty() || !f.since.empty() ||
         !f.until.empty() || !f.ids.empty();
}

Result<RowFilter> to_filter(const FilterFlags& f, std::int64_t now_ms) {
  RowFilter filter;
  auto statuses = parse_status_flag(f.statuses);
  if (!statuses) return statuses.error();
  filter.statuses = std::move(*statuses);
  if (!f.app_id.empty()) filter.app_id = f.app_id;
  if (!f.slug.empty()) filter.slug = f.slug;
  if (!f.error.empty()) filter.error = f.error;
  if (!f.since.empty()) {
    auto t = parse_time(f.since, now_ms);
    if (!t) return Error{Errc::invalid_argument, "--since: " + t.error().message};
    filter.created_since = *t;
  }
  if (!f.until.empty()) {
    auto t = parse_time(f.until, now_ms);
    if (!t) return Error{Errc::invalid_argument, "--until: " + t.error().message};
    filter.created_until = *t;
  }
  if (filter.created_since && filter.created_until && *filter.created_since >= *filter.created_until) {
    return Error{Errc::invalid_argument,
                 fmt::format("--since {} is not before --until {}: no row can match", f.since, f.until)};
  }
  for (const auto& text : f.ids) {
    auto ranges = parse_ids(text);
    if (!ranges) return Error{Errc::invalid_argument, "--id: " + ranges.error().message};
    filter.ids.insert(filter.ids.end(), ranges->begin(), ranges->end());
  }
  return filter;
}

}  // namespace metrix::cli
