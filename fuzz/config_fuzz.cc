// Fuzz target: the duration and configuration parsers (relay/config.h).
//
// The input is a TOML configuration file (as `metrix-relay run --config` reads it), and each
// of its lines is also given to parse_duration_ms(). Invariants:
// - parse_duration_ms() accepts exactly the grammar (digits unit)+ with units ms, s, m, h, d
//   and a total up to INT64_MAX/4, and returns that sum: never negative, never wrapped;
// - apply_config_file() lets no exception escape (toml++ throws; the relay must not);
// - when it and validate() accept, every setting holds what the file says (no integer
//   silently truncated to fit), the durations are positive, and plain http goes only to a
//   loopback host, as curl will read the URL (userinfo and port included), unless
//   allow-insecure-http is set.
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <toml++/toml.h>

#include "fuzz/support.h"
#include "relay/config.h"

namespace {

using metrix::fuzz::printable;

constexpr std::int64_t kLongest = std::numeric_limits<std::int64_t>::max() / 4;

// An independent reading of the duration grammar; nullopt if the text is not a duration.
std::optional<std::int64_t> reference_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  __int128 total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t digits = i;
    // "-0s" reads as 0 (std::from_chars takes a sign): harmless, and left as the parser has it.
    bool negative = text[i] == '-';
    if (negative) ++digits;
    size_t end = digits;
    __int128 n = 0;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) {
      n = std::min<__int128>(n * 10 + (text[end] - '0'), __int128{1} << 100);
      ++end;
    }
    if (end == digits || (negative && n != 0)) return std::nullopt;
    size_t unit_end = end;
    while (unit_end < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_end]))) ++unit_end;
    std::string_view unit = text.substr(end, unit_end - end);
    __int128 scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000
                   : unit == "d" ? 86'400'000 : 0;
    if (scale == 0 || n * scale > kLongest) return std::nullopt;
    total += n * scale;
    if (total > kLongest) return std::nullopt;
    i = unit_end;
  }
  return static_cast<std::int64_t>(total);
}

void check_duration(std::string_view text) {
  auto parsed = metrix::parse_duration_ms(text);
  auto expected = reference_duration(text);
  METRIX_FUZZ_REQUIRE(parsed.ok() == expected.has_value(), "parse_duration_ms('{}') {} it, the grammar {}",
                      printable(text), parsed.ok() ? "accepts" : "refuses", expected ? "accepts" : "refuses");
  if (!parsed) return;
  METRIX_FUZZ_REQUIRE(*parsed >= 0 && *parsed == *expected, "parse_duration_ms('{}') = {}, not {}", printable(text),
                      *parsed, *expected);
}

// %XX decoded, as curl decodes a host name ('%6cocalhost' is localhost).
std::string percent_decoded(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// The host curl connects to for an http:// or https:// URL: after the last '@' of the
// authority, without the port, percent-decoded. curl takes one to three slashes after the
// scheme ('http:///[::1]').
std::string url_host(std::string_view url) {
  std::string_view authority = url.substr(url.find(':') + 1);
  authority.remove_prefix(std::min(authority.find_first_not_of('/'), authority.size()));
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority.front() == '[') return std::string(authority.substr(0, authority.find(']') + 1));
  return percent_decoded(authority.substr(0, authority.find(':')));
}

// Any spelling of ::1 in brackets ([::01], [0:0:0:0:0:0:0:1], with a zone) is loopback.
bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  if (host.size() > 2 && host.front() == '[') {
    std::string address = host.substr(1, host.find_first_of("%]") - 1);
    in6_addr v6{};
    return inet_pton(AF_INET6, address.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
  }
  in_addr address{};
  return inet_aton(host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

// The file's own values, read again with toml++: what the configuration must now hold.
void check_settings_match_file(std::string_view text, const metrix::RelayConfig& c) {
  toml::table table;
  try {
    table = toml::parse(text);
  } catch (const toml::parse_error&) {
    metrix::fuzz::broken("apply_config_file accepted a file toml++ cannot parse");
  }
  auto integer = [&](const char* key, std::int64_t actual) {
    // as_integer(), not value<std::int64_t>(): toml++ 3.3 converts a float to int64 before
    // checking its range, undefined behaviour for 1e19.
    if (const auto* v = table[key].as_integer()) {
      METRIX_FUZZ_REQUIRE(v->get() == actual, "'{} = {}' in the file, {} in the configuration", key, v->get(), actual);
    }
  };
  integer("concurrency", c.concurrency);
  integer("max-attempts", c.max_attempts);
  auto duration = [&](const char* key, std::int64_t actual) {
    if (auto v = table[key].value<std::string>()) {
      auto ms = metrix::parse_duration_ms(*v);
      METRIX_FUZZ_REQUIRE(ms.ok() && *ms == actual, "'{} = \"{}\"' in the file, {} ms in the configuration", key,
                          printable(*v), actual);
    }
  };
  duration("lease", c.lease_ms);
  duration("timeout", c.timeout_ms);
  duration("backoff-base", c.backoff_base_ms);
  duration("backoff-max", c.backoff_max_ms);
  duration("max-age", c.max_age_ms);
  duration("pause-interval", c.pause_interval_ms);
  duration("pause-max", c.pause_max_ms);
  duration("poll-interval", c.poll_interval_ms);
  duration("commit-interval", c.commit_interval_ms);
  duration("progress-interval", c.progress_interval_ms);
  duration("shutdown-timeout", c.shutdown_timeout_ms);
}

void check_valid_config(std::string_view text, const metrix::RelayConfig& c) {
  check_settings_match_file(text, c);
  for (std::int64_t ms : {c.lease_ms, c.timeout_ms, c.backoff_base_ms, c.backoff_max_ms, c.max_age_ms,
                          c.pause_interval_ms, c.pause_max_ms, c.poll_interval_ms, c.progress_interval_ms}) {
    METRIX_FUZZ_REQUIRE(ms > 0 && ms <= kLongest, "a validated duration is {} ms", ms);
  }
  METRIX_FUZZ_REQUIRE(c.commit_interval_ms >= 0 && c.shutdown_timeout_ms >= 0, "a validated duration is negative");
  METRIX_FUZZ_REQUIRE(c.concurrency >= 1 && c.max_attempts >= 1, "validated concurrency {} or max-attempts {}",
                      c.concurrency, c.max_attempts);
  METRIX_FUZZ_REQUIRE(c.lease_ms >= 2 * c.timeout_ms + 1000, "a lease shorter than two timeouts was accepted");
  if (c.endpoint.rfind("http://", 0) == 0 && !c.allow_insecure_http) {
    std::string host = url_host(c.endpoint);
    METRIX_FUZZ_REQUIRE(is_loopback(host), "plain http to '{}' (curl connects to '{}', not loopback) was accepted",
                        printable(c.endpoint), printable(host));
  }
}

// The file apply_config_file() reads: in a private directory, owner-only (a dev key may be in it).
const std::string& config_path() {
  static metrix::fuzz::ScratchDir dir;
  static const std::string path = dir.file("relay.toml");
  return path;
}

void write_file(const std::string& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  METRIX_FUZZ_REQUIRE(fd >= 0, "cannot write {}", path);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    METRIX_FUZZ_REQUIRE(n > 0, "cannot write {}", path);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (std::string_view rest = text; !rest.empty();) {
    size_t end = rest.find('\n');
    check_duration(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
  }

  const std::string& path = config_path();
  write_file(path, text);
  metrix::RelayConfig config;
  metrix::Status applied;
  try {
    applied = metrix::apply_config_file(path, {}, config);
  } catch (const std::exception& e) {
    metrix::fuzz::broken("apply_config_file let an exception escape: {}", e.what());
  }
  if (applied && metrix::validate(config)) check_valid_config(text, config);
  return 0;
}
