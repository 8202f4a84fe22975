#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <optional>

#include "relay/config.h"
#include "relay/relay.h"
#include "tools/metrix-relay/cli.h"

namespace metrix::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_stop_signal(int) { g_stop.store(true); }
void on_reload_signal(int) { g_reload.store(true); }

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  action.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// Flag values as typed; durations are parsed after the config file is merged.
struct RunFlags {
  std::string config_file, db, endpoint, app_id, dev_key_file, cacert, in_doubt, synchronous;
  std::string lease, timeout, backoff_base, backoff_max, max_age, pause_interval, pause_max, poll_interval, commit_interval, busy_timeout,
      progress_interval, shutdown_timeout;
  int concurrency = 0, max_attempts = 0, poison_after = 0;
  double max_rate = 0;
  std::string log_format, log_level, admin_listen;
  bool until_idle = false, verbose = false, allow_insecure_http = false, admin_allow_remote = false;
  std::map<std::string, bool> given;  // flag names without dashes: given on the command line
};

// The configuration from the flags, the config file, the key files and METRIX_DEV_KEY: at
// start, and again on each SIGHUP (the flags as at start, the files as they are now).
Result<RelayConfig> load_config(const RunFlags& f) {
  RelayConfig config;
  const auto& given = f.given;
  auto is_given = [&](const char* name) { return given.at(name); };
  auto invalid = [](std::string message) { return Error{Errc::invalid_argument, std::move(message)}; };
  std::optional<Error> bad;
  auto duration = [&](const char* flag, const std::string& text, std::int64_t& out) {
    if (!is_given(flag) || bad) return;
    if (auto ms = parse_duration_ms(text)) out = *ms;
    else bad = invalid(fmt::format("--{}: {}", flag, ms.error().message));
  };
  if (is_given("db")) config.db_path = f.db;
  if (is_given("endpoint")) config.endpoint = f.endpoint;
  if (is_given("app-id")) config.default_app_id = f.app_id;
  if (is_given("cacert")) config.cacert = f.cacert;
  if (is_given("concurrency")) config.concurrency = f.concurrency;
  if (is_given("max-attempts")) config.max_attempts = f.max_attempts;
  if (is_given("until-idle")) config.until_idle = f.until_idle;
  if (is_given("allow-insecure-http")) config.allow_insecure_http = f.allow_insecure_http;
  if (is_given("poison-after")) config.poison_after = f.poison_after;
  if (is_given("max-rate")) config.max_rate = f.max_rate;
  if (is_given("admin-listen")) config.admin_listen = f.admin_listen;
  if (is_given("admin-allow-remote")) config.admin_allow_remote = f.admin_allow_remote;
  if (is_given("in-doubt")) {
    if (f.in_doubt == "resend") config.in_doubt = InDoubtPolicy::resend;
    else if (f.in_doubt == "hold") config.in_doubt = InDoubtPolicy::hold;
    else return invalid("--in-doubt must be resend or hold");
  }
  if (is_given("synchronous")) {
    if (f.synchronous == "full") config.synchronous = Synchronous::full;
    else if (f.synchronous == "normal") config.synchronous = Synchronous::normal;
    else return invalid("--synchronous must be full or normal");
  }
  if (is_given("log-format")) {
    auto format = log::parse_format(f.log_format);
    if (!format) return invalid("--log-format must be text, json or journal");
    config.log_format = *format;
  }
  if (is_given("log-level")) {
    auto level = log::parse_level(f.log_level);
    if (!level) return invalid("--log-level must be debug, info, warning or error");
    config.log_level = *level;
  }
  if (is_given("verbose") && f.verbose) config.log_level = log::Level::debug;
  duration("lease", f.lease, config.lease_ms);
  duration("timeout", f.timeout, config.timeout_ms);
  duration("backoff-base", f.backoff_base, config.backoff_base_ms);
  duration("backoff-max", f.backoff_max, config.backoff_max_ms);
  duration("max-age", f.max_age, config.max_age_ms);
  duration("pause-interval", f.pause_interval, config.pause_interval_ms);
  duration("pause-max", f.pause_max, config.pause_max_ms);
  duration("poll-interval", f.poll_interval, config.poll_interval_ms);
  duration("commit-interval", f.commit_interval, config.commit_interval_ms);
  duration("busy-timeout", f.busy_timeout, config.busy_timeout_ms);
  duration("progress-interval", f.progress_interval, config.progress_interval_ms);
  duration("shutdown-timeout", f.shutdown_timeout, config.shutdown_timeout_ms);
  if (bad) return *bad;
  if (!f.config_file.empty()) {
    if (auto s = apply_config_file(f.config_file, given, config); !s) return s.error();
  }
  // The default app's key: --dev-key-file, else the config file's, else METRIX_DEV_KEY. The
  // app may be named by --app-id or by the config file.
  if (is_given("dev-key-file")) {
    if (!config.default_app_id) {
      return invalid("--dev-key-file needs an app: give --app-id, or app-id in the config file");
    }
    auto key = read_key_file(f.dev_key_file);
    if (!key) return key.error();
    config.dev_keys[*config.default_app_id] = *key;
  } else if (config.default_app_id && !config.dev_keys.count(*config.default_app_id)) {
    if (const char* env = std::getenv("METRIX_DEV_KEY"); env && *env) config.dev_keys[*config.default_app_id] = env;
  }
  if (auto s = validate(config); !s) return s.error();
  return config;
}

}  // namespace

void add_run(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("run", "Deliver the outbox to Metrix: claim due rows, POST them, record every outcome");
  cmd->footer(
      "The dev key of the default app comes from the environment variable METRIX_DEV_KEY or from\n"
      "--dev-key-file (a file only its owner can read); it is never a flag value and never printed.\n"
      "Keys of further apps, and every option above, can be given in a TOML file (--config):\n\n"
      "  db = \"/var/lib/app/app.db\"\n"
      "  app-id = \"my-app\"\n"
      "  dev-key-file = \"/etc/metrix/my-app.key\"\n"
      "  concurrency = 64\n"
      "  timeout = \"10s\"\n"
      "  [apps.\"other-app\"]\n"
      "  dev-key-file = \"/etc/metrix/other-app.key\"\n\n"
      "Durations take a unit: ms, s, m, h, d (e.g. 500ms, 30s, 1h30m). Flags win over the file.\n"
      "Pace: each app has a window of requests in flight, up to --concurrency. It halves when Metrix\n"
      "pushes back (a 429, failures rising above the app's usual share, answers twice as slow) and\n"
      "grows back while answers come back good; a steady share of errors costs only their retries.\n"
      "When every request fails, the app's circuit opens: one probe per interval (--backoff-base,\n"
      "doubling to 1s or --backoff-max) until Metrix answers again. Retry-After holds the whole app.\n"
      "Each failed row waits its own backoff (full jitter, --backoff-base doubling to --backoff-max).\n"
      "The progress line shows each app's window; --verbose logs every decrease and why.\n\n"
      "SIGINT/SIGTERM: stop claiming, let requests in flight finish (--shutdown-timeout), record them, exit 0.\n"
      "SIGHUP: read the config file and the key files again; apps, keys, limits, rates, intervals and the\n"
      "log settings change without a restart. A configuration with an error is not used (the log says why);\n"
      "db, synchronous, busy-timeout, timeout, cacert, admin-listen and until-idle need a restart.\n"
      "Admin listener (--admin-listen): GET /metrics (Prometheus text format), /livez (200 while the loop\n"
      "turns), /readyz (200 when the database is writable and an app can be sent to; else 503 and why),\n"
      "/status (the JSON that the status command prints with its JSON flag).\n"
      "Under systemd (NOTIFY_SOCKET), the relay reports READY=1, STATUS=, RELOADING=1, STOPPING=1 and\n"
      "watchdog pings (WATCHDOG_USEC) from its loop.\n"
      "Exit codes: 0 done, 1 runtime failure or (--until-idle) rows that cannot be delivered because\n"
      "their app is paused or has no dev key, 2 invalid options.\n\n"
      "Examples:\n"
      "  METRIX_DEV_KEY=... metrix-relay run --db app.db --app-id my-app\n"
      "  metrix-relay run --config /etc/metrix-relay.toml --until-idle");
  auto f = std::make_shared<RunFlags>();
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one wins
  cmd->add_option("--config", f->config_file, "TOML file with any of these options and [apps.\"ID\"] keys");
  cmd->add_option("--db", f->db, "outbox database: SQLite file or postgresql:// URI");
  cmd->add_option("--endpoint", f->endpoint, "Metrix S2S base URL (default https://analytics.metrix.ir)");
  cmd->add_option("--app-id", f->app_id, "the Metrix appId of rows whose app_id is NULL");
  cmd->add_option("--dev-key-file", f->dev_key_file, "file holding the --app-id app's dev key (else METRIX_DEV_KEY)");
  cmd->add_option("--concurrency", f->concurrency, "requests in flight at most, all apps together; each app's adaptive window is at most this (default 64)");
  cmd->add_option("--lease", f->lease, "how long a claimed row is reserved for this relay (default 60s)");
  cmd->add_option("--timeout", f->timeout, "per request, connection included (default 10s)");
  cmd->add_option("--backoff-base", f->backoff_base, "first retry delay ceiling (default 100ms)");
  cmd->add_option("--backoff-max", f->backoff_max, "largest retry delay, and the cap on Retry-After (default 5m)");
  cmd->add_option("--max-attempts", f->max_attempts, "attempts before a row is dead (default 20)");
  cmd->add_option("--max-age", f->max_age, "rows older than this are not sent but marked dead, 'stale' (default 7d)");
  cmd->add_option("--pause-interval", f->pause_interval, "first probe interval of an app paused by a 403 (default 60s)");
  cmd->add_option("--pause-max", f->pause_max, "largest probe interval of a paused app (default 1h)");
  cmd->add_option("--poll-interval", f->poll_interval, "how often an idle relay looks for new rows (default 100ms)");
  cmd->add_option("--commit-interval", f->commit_interval,
                  "at most one write transaction per interval: outcomes wait at most this long (default 10ms)");
  cmd->add_option("--busy-timeout", f->busy_timeout,
                  "SQLite only: how long a write waits while another process holds the database lock (default 10s)");
  cmd->add_option("--progress-interval", f->progress_interval, "how often a progress line is logged (default 10s)");
  cmd->add_option("--shutdown-timeout", f->shutdown_timeout, "how long requests in flight may finish at shutdown (default 15s)");
  cmd->add_option("--in-doubt", f->in_doubt,
                  "resend (default): send again a request that may have arrived without an answer (a duplicate is "
                  "possible); hold: mark such rows 'held' for an operator (a gap is possible)");
  cmd->add_option("--synchronous", f->synchronous, "SQLite only: full (default) or normal, the fsync policy for outcomes (PostgreSQL: the server's synchronous_commit)");
  cmd->add_option("--cacert", f->cacert, "extra CA certificate (PEM) to trust for https, besides the system's");
  cmd->add_flag("--until-idle", f->until_idle, "exit once no row is pending or sending");
  cmd->add_flag("--allow-insecure-http", f->allow_insecure_http, "allow plain http to a host that is not loopback");
  cmd->add_option("--log-format", f->log_format,
                  "text (default): lines on stderr; json: one JSON object a line on stderr; journal: native "
                  "journald fields (APP_ID, ROW_ID, ...)");
  cmd->add_option("--log-level", f->log_level, "debug, info (default), warning or error");
  cmd->add_flag("-v,--verbose", f->verbose, "log every retry, failure and probe (--log-level debug)");
  cmd->add_option("--poison-after", f->poison_after,
                  "a row whose relay stopped this many times in a row while sending it (its lease expired without "
                  "an answer) is not sent again: dead, 'poison' (default 3)");
  cmd->add_option("--max-rate", f->max_rate,
                  "events per second per app at most (a token bucket; [apps.\"ID\"] max-rate per app); default "
                  "unlimited");
  cmd->add_option("--admin-listen", f->admin_listen,
                  "serve /metrics (Prometheus), /livez, /readyz and /status on HOST:PORT, e.g. 127.0.0.1:9464 "
                  "(default off; loopback only)");
  cmd->add_flag("--admin-allow-remote", f->admin_allow_remote,
                "let --admin-listen bind an address other hosts can reach (it has no authentication)");

  cmd->callback([f, cmd, &exit_code] {
    for (const char* name : {"db", "endpoint", "app-id", "dev-key-file", "concurrency", "lease", "timeout",
                             "backoff-base", "backoff-max", "max-attempts", "max-age", "pause-interval", "pause-max",
                             "poll-interval", "commit-interval", "busy-timeout", "progress-interval", "shutdown-timeout",
                             "in-doubt", "synchronous", "cacert", "until-idle", "allow-insecure-http", "verbose",
                             "log-format", "log-level", "poison-after", "max-rate", "admin-listen",
                             "admin-allow-remote"}) {
      f->given[name] = cmd->count(std::string("--") + name) > 0;
    }
    auto config = load_config(*f);
    if (!config) {
      exit_code = fail(config.error());
      return;
    }
    install_signal_handlers();
    RelayControl control{&g_stop, &g_reload, [f] { return load_config(*f); }};
    exit_code = run_relay(*config, control);
  });
}

}  // namespace metrix::cli
