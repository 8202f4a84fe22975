#include "relay/config.h"

#include "storage/postgres/connection.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <optional>

namespace metrix {

Result<std::int64_t> parse_duration_ms(std::string_view text) {
  auto invalid = [&] {
    return Error{Errc::invalid_argument,
                 fmt::format("'{}' is not a duration: use a number and a unit (ms, s, m, h, d), e.g. 500ms, 30s, 1h30m",
                             text)};
  };
  if (text.empty()) return invalid();
  std::int64_t total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec != std::errc() || n < 0) return invalid();
    rest.remove_prefix(static_cast<size_t>(end - rest.data()));
    size_t unit_len = 0;
    while (unit_len < rest.size() && std::isalpha(static_cast<unsigned char>(rest[unit_len]))) ++unit_len;
    std::string_view unit = rest.substr(0, unit_len);
    rest.remove_prefix(unit_len);
    std::int64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    else return invalid();
    if (n > (INT64_MAX / 4) / scale) return invalid();
    total += n * scale;
    if (total > INT64_MAX / 4) return invalid();
  }
  return total;
}

namespace {

// A file to read, with the reason when it is not one: missing, a directory, unreadable.
Result<struct stat> regular_file(const std::string& path, std::string_view what) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Error{Errc::invalid_argument, fmt::format("{}{}: cannot read it: {}", what, path, std::strerror(errno))};
  }
  if (S_ISDIR(st.st_mode)) return Error{Errc::invalid_argument, fmt::format("{}{}: is a directory, not a file", what, path)};
  return st;
}

}  // namespace

Result<std::string> read_key_file(const std::string& path) {
  auto file = regular_file(path, "dev key file ");
  if (!file) return file.error();
  const struct stat& st = *file;
  if (st.st_mode & 0077) {
    return Error{Errc::invalid_argument,
                 fmt::format("dev key file {}: readable by others (mode {:o}); run 'chmod 600 {}'", path,
                             st.st_mode & 0777, path)};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error{Errc::invalid_argument, fmt::format("dev key file {}: cannot read it: {}", path, std::strerror(errno))};
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string key = buffer.str();
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  if (key.empty()) return Error{Errc::invalid_argument, fmt::format("dev key file {}: is empty", path)};
  if (key.find_first_of("\r\n") != std::string::npos) {
    return Error{Errc::invalid_argument, fmt::format("dev key file {}: must hold one line, the key", path)};
  }
  return key;
}

namespace {

Error file_error(const std::string& path, std::string_view key, std::string_view rule) {
  return Error{Errc::invalid_argument, fmt::format("{}: '{}' {}", path, key, rule)};
}

}  // namespace

Status apply_config_file(const std::string& path, const std::map<std::string, bool>& given, RelayConfig& config) {
  if (auto file = regular_file(path, ""); !file) return file.error();
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Error{Errc::invalid_argument,
                 fmt::format("{}:{}: {}", path, e.source().begin.line, std::string(e.description()))};
  }
  auto is_given = [&](const std::string& name) {
    auto it = given.find(name);
    return it != given.end() && it->second;
  };
  for (auto&& [raw_key, table_node] : table) {
    auto& node = table_node;  // a plain reference: lambdas below capture it (clang 14 cannot capture bindings)
    std::string key(raw_key.str());
    if (key == "apps") continue;
    if (is_given(key)) continue;  // the flag wins
    auto text = [&]() -> Result<std::string> {
      if (auto v = node.value<std::string>()) return *v;
      return file_error(path, key, "must be a string");
    };
    auto duration = [&](std::int64_t& out) -> Status {
      auto t = text();
      if (!t) return t.error();
      auto ms = parse_duration_ms(*t);
      if (!ms) return file_error(path, key, ms.error().message);
      out = *ms;
      return {};
    };
    auto integer = [&](int& out) -> Status {
      // as_integer(): only a TOML integer; value<int64_t>() would also convert a float, with
      // undefined behaviour when it is out of range.
      auto v = node.as_integer();
      if (!v) return file_error(path, key, "must be an integer");
      if (v->get() < 0 || v->get() > 1'000'000) return file_error(path, key, "must be between 0 and 1000000");
      out = static_cast<int>(v->get());
      return {};
    };
    auto rate = [&](double& out) -> Status {
      auto v = node.value<double>();  // a TOML integer or float; validate() checks the range
      if (!v) return file_error(path, key, "must be a number of events per second");
      out = *v;
      return {};
    };
    auto boolean = [&](bool& out) -> Status {
      auto v = node.value<bool>();
      if (!v) return file_error(path, key, "must be true or false");
      out = *v;
      return {};
    };
    Status s;
    if (key == "db") { auto t = text(); if (!t) return t.error(); config.db_path = *t; }
    else if (key == "endpoint") { auto t = text(); if (!t) return t.error(); config.endpoint = *t; }
    else if (key == "app-id") { auto t = text(); if (!t) return t.error(); config.default_app_id = *t; }
    else if (key == "cacert") { auto t = text(); if (!t) return t.error(); config.cacert = *t; }
    else if (key == "dev-key-file") {
      auto t = text();
      if (!t) return t.error();
      if (!config.default_app_id) return file_error(path, key, "needs app-id");
      auto k = read_key_file(*t);
      if (!k) return k.error();
      config.dev_keys.try_emplace(*config.default_app_id, *k);
    }
    else if (key == "in-doubt") {
      auto t = text();
      if (!t) return t.error();
      if (*t == "resend") config.in_doubt = InDoubtPolicy::resend;
      else if (*t == "hold") config.in_doubt = InDoubtPolicy::hold;
      else return file_error(path, key, "must be \"resend\" or \"hold\"");
    }
    else if (key == "synchronous") {
      auto t = text();
      if (!t) return t.error();
      if (*t == "full") config.synchronous = Synchronous::full;
      else if (*t == "normal") config.synchronous = Synchronous::normal;
      else return file_error(path, key, "must be \"full\" or \"normal\"");
    }
    else if (key == "concurrency") s = integer(config.concurrency);
    else if (key == "max-attempts") s = integer(config.max_attempts);
    else if (key == "lease") s = duration(config.lease_ms);
    else if (key == "timeout") s = duration(config.timeout_ms);
    else if (key == "backoff-base") s = duration(config.backoff_base_ms);
    else if (key == "backoff-max") s = duration(config.backoff_max_ms);
    else if (key == "max-age") s = duration(config.max_age_ms);
    else if (key == "pause-interval") s = duration(config.pause_interval_ms);
    else if (key == "pause-max") s = duration(config.pause_max_ms);
    else if (key == "poll-interval") s = duration(config.poll_interval_ms);
    else if (key == "commit-interval") s = duration(config.commit_interval_ms);
    else if (key == "busy-timeout") s = duration(config.busy_timeout_ms);
    else if (key == "progress-interval") s = duration(config.progress_interval_ms);
    else if (key == "shutdown-timeout") s = duration(config.shutdown_timeout_ms);
    else if (key == "until-idle") s = boolean(config.until_idle);
    else if (key == "verbose") {
      bool verbose = false;
      s = boolean(verbose);
      if (s && verbose && !is_given("log-level")) config.log_level = log::Level::debug;
    }
    else if (key == "log-level") {
      auto t = text();
      if (!t) return t.error();
      auto level = log::parse_level(*t);
      if (!level) return file_error(path, key, "must be \"debug\", \"info\", \"warning\" or \"error\"");
      if (!is_given("verbose")) config.log_level = *level;
    }
    else if (key == "log-format") {
      auto t = text();
      if (!t) return t.error();
      auto format = log::parse_format(*t);
      if (!format) return file_error(path, key, "must be \"text\", \"json\" or \"journal\"");
      config.log_format = *format;
    }
    else if (key == "allow-insecure-http") s = boolean(config.allow_insecure_http);
    else if (key == "poison-after") s = integer(config.poison_after);
    else if (key == "max-rate") s = rate(config.max_rate);
    else if (key == "admin-listen") { auto t = text(); if (!t) return t.error(); config.admin_listen = *t; }
    else if (key == "admin-allow-remote") s = boolean(config.admin_allow_remote);
    else if (key == "dev-key") {
      return file_error(path, key, "is not accepted at the top level: give the default app's key in "
                                   "METRIX_DEV_KEY or dev-key-file, or put it under [apps.\"APP_ID\"]");
    }
    else return file_error(path, key, "is not a setting (see 'metrix-relay run --help')");
    if (!s) return s;
  }

  if (auto apps = table["apps"].as_table()) {
    for (auto&& [raw_app, node] : *apps) {
      std::string app(raw_app.str());
      auto entry = node.as_table();
      if (!entry) return file_error(path, "apps." + app, "must be a table");
      for (auto&& [entry_key, value] : *entry) {
        if (entry_key != "dev-key-file" && entry_key != "dev-key" && entry_key != "max-rate") {
          return file_error(path, "apps." + app + "." + std::string(entry_key.str()),
                            "is not a setting of an app (dev-key-file, dev-key, max-rate)");
        }
      }
      if (auto* r = entry->get("max-rate")) {
        auto v = r->value<double>();  // validate() checks the range
        if (!v) return file_error(path, "apps." + app + ".max-rate", "must be a number of events per second");
        config.app_max_rates[app] = *v;
      }
      if (auto file = (*entry)["dev-key-file"].value<std::string>()) {
        auto k = read_key_file(*file);
        if (!k) return k.error();
        config.dev_keys[app] = *k;
      } else if (auto key = (*entry)["dev-key"].value<std::string>()) {
        // A key written in the config file is only as secret as the file.
        struct stat st {};
        if (stat(path.c_str(), &st) == 0 && (st.st_mode & 0077)) {
          return Error{Errc::invalid_argument,
                       fmt::format("{}: holds a dev key but is readable by others; run 'chmod 600 {}'", path, path)};
        }
        if (key->empty()) return file_error(path, "apps." + app + ".dev-key", "is empty");
        config.dev_keys[app] = *key;
      } else if (!entry->contains("max-rate")) {
        // (max-rate alone: the default app's key comes from dev-key-file or METRIX_DEV_KEY)
        return file_error(path, "apps." + app, "needs dev-key-file (or dev-key)");
      }
    }
  }
  return {};
}

namespace {

// The host curl will connect to, as curl parses the URL (userinfo, ports, brackets).
std::optional<std::string> url_host(const std::string& url, std::string& scheme) {
  CURLU* u = curl_url();
  if (!u) return std::nullopt;
  std::optional<std::string> host;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* h = nullptr;
    char* sch = nullptr;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h) host = h;
    if (curl_url_get(u, CURLUPART_SCHEME, &sch, 0) == CURLUE_OK && sch) scheme = sch;
    curl_free(h);
    curl_free(sch);
  }
  curl_url_cleanup(u);
  return host;
}

// Whether `host` (localhost, an IPv4 address, or an IPv6 one without brackets, in any
// spelling) is loopback; nullopt when it is none of these.
std::optional<bool> loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return std::nullopt;
}

// host as curl_url_get() gives it: an IPv6 address in brackets, without its zone.
bool is_loopback_host(const std::string& host) {
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  return loopback(bracketed ? host.substr(1, host.size() - 2) : host).value_or(false);
}

}  // namespace

Status validate(const RelayConfig& c) {
  auto invalid = [](std::string message) { return Error{Errc::invalid_argument, std::move(message)}; };
  if (c.db_path.empty()) return invalid("--db is required");
  std::string_view endpoint = c.endpoint;
  bool https = endpoint.substr(0, 8) == "https://";
  bool http = endpoint.substr(0, 7) == "http://";
  if (!https && !http) return invalid(fmt::format("--endpoint {}: must start with https:// or http://", c.endpoint));
  std::string scheme;
  auto host = url_host(c.endpoint, scheme);
  if (!host || host->empty()) return invalid(fmt::format("--endpoint {}: is not a valid URL with a host", c.endpoint));
  if (endpoint.find('@') != std::string_view::npos) {
    return invalid(fmt::format("--endpoint {}: must not contain user information ('@')", c.endpoint));
  }
  if (http && !is_loopback_host(*host) && !c.allow_insecure_http) {
    return invalid(fmt::format("--endpoint {}: plain http sends the dev key in clear; use https, or pass "
                               "--allow-insecure-http to do it anyway",
                               c.endpoint));
  }
  if (c.concurrency < 1 || c.concurrency > 4096) return invalid("--concurrency must be between 1 and 4096");
  if (c.max_attempts < 1) return invalid("--max-attempts must be at least 1");
  if (c.timeout_ms < 1) return invalid("--timeout must be positive");
  if (c.lease_ms < 2 * c.timeout_ms + 1000) {
    return invalid(fmt::format("--lease ({}ms) must be at least twice --timeout ({}ms) plus 1s, so a request never "
                               "outlives the lease that keeps other relays away from its row",
                               c.lease_ms, c.timeout_ms));
  }
  if (c.shutdown_timeout_ms >= c.lease_ms) return invalid("--shutdown-timeout must be shorter than --lease");
  if (c.backoff_base_ms < 1 || c.backoff_max_ms < c.backoff_base_ms) {
    return invalid("--backoff-base must be positive and at most --backoff-max");
  }
  if (c.pause_interval_ms < 1 || c.pause_max_ms < c.pause_interval_ms) {
    return invalid("--pause-interval must be positive and at most --pause-max");
  }
  if (c.max_age_ms < 1) return invalid("--max-age must be positive");
  if (c.poll_interval_ms < 1) return invalid("--poll-interval must be positive");
  if (c.progress_interval_ms < 1) return invalid("--progress-interval must be positive");
  if (c.commit_interval_ms < 0 || c.commit_interval_ms > 1000) return invalid("--commit-interval must be between 0 and 1s");
  if (c.busy_timeout_ms < 1 || c.busy_timeout_ms > 600'000) return invalid("--busy-timeout must be between 1ms and 10m");
  if (c.poison_after < 1) return invalid("--poison-after must be at least 1");
  auto rate_ok = [](double r) { return r == 0 || (r >= 0.01 && r <= 1e6); };
  if (!rate_ok(c.max_rate)) return invalid("--max-rate must be 0 (unlimited) or between 0.01 and 1000000 events per second");
  for (const auto& [app, rate] : c.app_max_rates) {
    if (!rate_ok(rate)) {
      return invalid(fmt::format("apps.\"{}\".max-rate must be 0 (unlimited) or between 0.01 and 1000000", app));
    }
  }
  if (!c.admin_listen.empty()) {
    auto address = parse_listen_address(c.admin_listen);
    if (!address) return invalid("--admin-listen " + c.admin_listen + ": " + address.error().message);
    if (!address->loopback && !c.admin_allow_remote) {
      return invalid(fmt::format("--admin-listen {}: not a loopback address; the admin listener has no "
                                 "authentication, so other hosts may reach it only with --admin-allow-remote",
                                 c.admin_listen));
    }
  }
  return {};
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
  auto invalid = [] {
    return Error{Errc::invalid_argument, "must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"};
  };
  ListenAddress a;
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return invalid();
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return invalid();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return invalid();  // an IPv6 address needs brackets
  }
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
  if (ec != std::errc() || end != port.data() + port.size() || a.port < 0 || a.port > 65535) {
    return Error{Errc::invalid_argument, "the port must be a number from 0 (any free port) to 65535"};
  }
  a.host = std::string(host);
  auto is_loopback = loopback(a.host);
  if (!is_loopback) return Error{Errc::invalid_argument, "the host must be an IP address or localhost"};
  a.loopback = *is_loopback;
  return a;
}

double max_rate_of(const RelayConfig& config, const std::string& app_id) {
  auto it = config.app_max_rates.find(app_id);
  return it != config.app_max_rates.end() ? it->second : config.max_rate;
}

Status check_reloadable(const RelayConfig& running, const RelayConfig& reloaded) {
  auto refuse = [](std::string_view setting, const std::string& was, const std::string& now) {
    return Error{Errc::invalid_argument,
                 fmt::format("{} cannot change on reload (running with {}, the new configuration says {}): restart "
                             "the relay to change it",
                             setting, was, now)};
  };
  auto ms = [](std::int64_t v) { return fmt::format("{}ms", v); };
  if (reloaded.db_path != running.db_path) return refuse("db", pg::redact(running.db_path), pg::redact(reloaded.db_path));
  if (reloaded.synchronous != running.synchronous) {
    auto name = [](Synchronous s) { return std::string(s == Synchronous::full ? "full" : "normal"); };
    return refuse("synchronous", name(running.synchronous), name(reloaded.synchronous));
  }
  if (reloaded.busy_timeout_ms != running.busy_timeout_ms) {
    return refuse("busy-timeout", ms(running.busy_timeout_ms), ms(reloaded.busy_timeout_ms));
  }
  if (reloaded.timeout_ms != running.timeout_ms) return refuse("timeout", ms(running.timeout_ms), ms(reloaded.timeout_ms));
  if (reloaded.cacert != running.cacert) return refuse("cacert", running.cacert, reloaded.cacert);
  if (reloaded.admin_listen != running.admin_listen || reloaded.admin_allow_remote != running.admin_allow_remote) {
    return refuse("admin-listen", running.admin_listen.empty() ? "none" : running.admin_listen,
                  reloaded.admin_listen.empty() ? "none" : reloaded.admin_listen);
  }
  if (reloaded.until_idle != running.until_idle) {
    return refuse("until-idle", running.until_idle ? "true" : "false", reloaded.until_idle ? "true" : "false");
  }
  return {};
}

std::optional<std::string> insecure_warning(const RelayConfig& c) {
  std::string scheme;
  auto host = url_host(c.endpoint, scheme);
  if (!host || scheme != "http" || is_loopback_host(*host)) return std::nullopt;
  return fmt::format("--allow-insecure-http: the dev key goes in clear over plain http to {}; anyone on the "
                     "path can read it and send events as you",
                     *host);
}

}  // namespace metrix
