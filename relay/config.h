// The relay's configuration: command-line flags, an optional TOML file, and the
// environment, merged into one validated RelayConfig. Flags win over the file.
//
// Dev keys never come from a flag value (flags show in `ps`): the default app's key comes
// from METRIX_DEV_KEY or --dev-key-file, further apps' keys from the config file's
// [apps."APP_ID"] tables (dev-key-file = "...", or dev-key = "..." in a file only its
// owner can read). Nothing here prints a key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "relay/log.h"
#include "storage/database.h"
#include "storage/result.h"

namespace metrix {

enum class InDoubtPolicy { resend, hold };

struct RelayConfig {
  std::string db_path;
  std::string endpoint = "https://analytics.metrix.ir";
  std::optional<std::string> default_app_id;  // for rows whose app_id is NULL
  std::map<std::string, std::string> dev_keys; // app id -> dev key
  int concurrency = 64;
  std::int64_t lease_ms = 60'000;
  std::int64_t timeout_ms = 10'000;
  std::int64_t backoff_base_ms = 100;
  std::int64_t backoff_max_ms = 300'000;
  int max_attempts = 20;
  std::int64_t max_age_ms = 7LL * 24 * 3600 * 1000;
  std::int64_t pause_interval_ms = 60'000;
  std::int64_t pause_max_ms = 3'600'000;
  std::int64_t poll_interval_ms = 100;
  std::int64_t commit_interval_ms = 10;  // at most one write transaction per interval
  std::int64_t busy_timeout_ms = 10'000; // how long a write waits for a producer's lock
  std::int64_t progress_interval_ms = 10'000;
  std::int64_t shutdown_timeout_ms = 15'000;
  bool until_idle = false;
  log::Format log_format = log::Format::text;
  log::Level log_level = log::Level::info;  // --verbose: debug
  bool allow_insecure_http = false;
  std::string cacert;
  InDoubtPolicy in_doubt = InDoubtPolicy::resend;
  Synchronous synchronous = Synchronous::full;
  // A row whose lease expired this many times in a row without an answer (its relay died or
  // hung while sending it) is not sent again: it becomes dead, "poison: ...".
  int poison_after = 3;
  // Events per second per app at most (a token bucket); 0: unlimited. Per app, the config
  // file's [apps."ID"] max-rate wins.
  double max_rate = 0;
  std::map<std::string, double> app_max_rates;
  // The admin listener (/metrics, /livez, /readyz, /status): "HOST:PORT", empty for none.
  // Loopback only, unless admin_allow_remote.
  std::string admin_listen;
  bool admin_allow_remote = false;
};

// An address to listen on: "127.0.0.1:9464", "[::1]:9464", "localhost:9464"; port 0: any free one.
struct ListenAddress {
  std::string host;  // without brackets
  int port = 0;
  bool loopback = false;
};
Result<ListenAddress> parse_listen_address(std::string_view text);

// The rate cap of one app (events per second, 0: none).
double max_rate_of(const RelayConfig& config, const std::string& app_id);

// "250ms", "5s", "2m", "1h", "7d", or a sum such as "1h30m". A bare number is refused.
Result<std::int64_t> parse_duration_ms(std::string_view text);

// Reads a key file: the whole file, trailing whitespace removed. Refuses a file that
// group or others can read, and an empty one.
Result<std::string> read_key_file(const std::string& path);

// Fills every setting of `config` that `given` (flag names without dashes, e.g. "lease")
// does not already hold from the TOML file at `path`, and reads its [apps] keys.
Status apply_config_file(const std::string& path, const std::map<std::string, bool>& given, RelayConfig& config);

// What a reload may not change in a running relay (the database, its connections' settings,
// the HTTP client's): an error naming the first such setting and saying a restart is needed.
Status check_reloadable(const RelayConfig& running, const RelayConfig& reloaded);

// Cross-field checks: a usable endpoint (https, or http to loopback unless allowed), a
// lease longer than a request can take, positive limits. Errc::invalid_argument says which.
Status validate(const RelayConfig& config);

// What a valid configuration still does that an operator must hear about, to log at start:
// the dev key sent in clear over plain http to a host that is not loopback.
std::optional<std::string> insecure_warning(const RelayConfig& config);

}  // namespace metrix
