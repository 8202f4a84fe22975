// fake-metrix: a local stand-in for the Metrix S2S endpoint, with fault
// injection, for tests, benchmarks, the README demo and offline trials.
// The behaviour is documented in server.h (answers, routes, stats) and
// faults.h (settings); this file turns flags into a ServerConfig and runs it.
//
// Exit codes: 0 stopped by SIGINT/SIGTERM (or --help), 1 runtime failure
// (the port cannot be bound), 2 bad flags or configuration.

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "tools/fake-metrix/faults.h"
#include "tools/fake-metrix/result.h"
#include "tools/fake-metrix/server.h"

namespace fake_metrix {
namespace {

constexpr const char* kKeysVariable = "FAKE_METRIX_KEYS";

constexpr const char* kDescription = R"(fake-metrix: a local Metrix S2S endpoint with fault injection.

Serves POST /inappevent/{appId} the way https://analytics.metrix.ir does (same
validation, same error names), records every accepted event, and misbehaves on
request: latency, 5xx, 429 with Retry-After, answers lost after the event was
accepted, S2S disabled per app, a scripted sequence of answers.

Dev keys are never flags (flags show in `ps`): they come from the environment
variable FAKE_METRIX_KEYS="app1=key1,app2=key2" and/or --keys-file (lines
app=key, # comments). They are never printed, logged or recorded. With --app,
only the listed apps exist; without, every app that has a key does.

Once listening, prints one line to stdout:
  fake-metrix listening on http://127.0.0.1:PORT
)";

constexpr const char* kFooter = R"(
Run-time endpoints:
  GET  /__stats                 counters as JSON: requests, accepted, dropped,
                                by_status, connections (TCP connections accepted),
                                max_concurrent_requests, ...
  POST /__control?KEY=VALUE&... change fault settings (loopback only); keys are
                                the fault flags' names without "--": latency-ms,
                                latency-slug, error-rate, rate-429, retry-after, drop-rate,
                                drop-style, s2s-disabled, slugs, script, seed

Script steps (--script, comma separated, used by the next requests in order):
  500, 503, 429, 404:EVENT_TYPE_DOES_NOT_EXIST   answer that (429 with Retry-After)
  200 (any 2xx)     handle normally: a valid event is recorded and answered so
  drop              handle normally, record the event if accepted, then lose
                    the answer the --drop-style way; drop-partial, drop-close:
                    that way

Drop styles (--drop-style), as libcurl sees them:
  partial (default) "200" status line and headers, then the body is cut:
                    CURLE_PARTIAL_FILE. Always an error: the in-doubt case.
  close             connection closed before any byte: CURLE_GOT_NOTHING on a
                    fresh connection; on a reused keep-alive one libcurl resends
                    the request by itself, so the event arrives twice.

Record file (--record, appended, one JSON line per accepted event):
  {"app_id":"app1","body":"<raw body>","received_at":<ms>,"dropped":false}

Examples:
  # try an integration offline: any app, any non-empty key, port 8080
  fake-metrix --any-key --port 8080
  curl -H 'Authorization: anything' -d '{"metrixUserId":"u1","advertisingId":"a1","eventSlug":"buy"}' \
       http://127.0.0.1:8080/inappevent/myapp

  # two apps, keys from the environment, record what arrives
  FAKE_METRIX_KEYS='app1=k1,app2=k2' fake-metrix --port 8080 --record received.ndjson

  # a flaky Metrix: 10% 5xx, 5% 429 (Retry-After: 2), 2% answers lost, reproducible
  fake-metrix --any-key --error-rate 0.1 --rate-429 0.05 --retry-after 2 --drop-rate 0.02 --seed 7

  # the first three requests fail, then normal service; later, add latency
  fake-metrix --any-key --script 503,429,drop
  curl -X POST 'http://127.0.0.1:PORT/__control?latency-ms=2000&error-rate=0'

Exit codes: 0 stopped by SIGINT or SIGTERM, 1 runtime failure, 2 bad flags.
)";

std::string trim(std::string text) {
  const char* space = " \t\r\n";
  size_t first = text.find_first_not_of(space);
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

// Adds one "app=key" entry. Messages say where the entry is, never what it is.
Status add_key(std::map<std::string, std::string>& keys, const std::string& entry, const std::string& where) {
  size_t equals = entry.find('=');
  std::string app = trim(entry.substr(0, equals));
  std::string key = equals == std::string::npos ? "" : trim(entry.substr(equals + 1));
  if (app.empty() || key.empty()) return Error{where + " is not of the form app=key"};
  keys[app] = key;
  return ok_status();
}

Status read_keys_variable(std::map<std::string, std::string>& keys) {
  const char* value = std::getenv(kKeysVariable);
  if (value == nullptr) return ok_status();
  std::string text(value);
  size_t index = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string entry = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    ++index;
    if (!trim(entry).empty()) {
      Status added = add_key(keys, entry, fmt::format("entry {} of {}", index, kKeysVariable));
      if (!added.ok()) return added;
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ok_status();
}

Status read_keys_file(std::map<std::string, std::string>& keys, const std::string& path) {
  std::ifstream file(path);
  if (!file) return Error{"cannot read the keys file " + path + ": " + std::strerror(errno)};
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    std::string entry = trim(line);
    if (entry.empty() || entry[0] == '#') continue;
    Status added = add_key(keys, entry, fmt::format("line {} of {}", number, path));
    if (!added.ok()) return added;
  }
  if (file.bad()) return Error{"cannot read the keys file " + path};
  return ok_status();
}

Status write_port_file(const std::string& path, int port) {
  // Written aside and renamed, so that a reader polling for the file never
  // sees it empty or half written.
  std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << port << '\n';
    file.close();
    if (!file) return Error{"cannot write the port file " + temporary};
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error{"cannot rename " + temporary + " to " + path + ": " + std::strerror(errno)};
  }
  return ok_status();
}

// Thread-per-connection: every keep-alive connection holds a descriptor.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// A validator that checks but does not add its description to --help
// ("FILE:FILE", "INT in [0 - 65535]"), which the option texts already say.
CLI::Validator quiet(CLI::Validator validator) { return validator.description(""); }

int usage_error(const std::string& message) {
  fmt::print(stderr, "fake-metrix: {}\nRun 'fake-metrix --help' for usage.\n", message);
  return 2;
}

int run(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and the
  // stop signals reach only the sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that hangs up makes our next write fail with EPIPE; the default
  // SIGPIPE would kill the server instead.
  std::signal(SIGPIPE, SIG_IGN);

  ServerConfig config;
  std::vector<std::string> apps;
  std::string keys_file;
  std::string port_file;
  std::vector<std::string> slugs;
  std::vector<std::string> slug_lists;  // CLI11 assigns rather than appends: one vector per flag
  std::vector<std::string> disabled;
  std::string latency_ms, latency_slug, error_rate, rate_429, retry_after, drop_rate, drop_style, script, seed;

  CLI::App cli(kDescription, "fake-metrix");
  cli.footer(kFooter);
  cli.get_formatter()->column_width(34);
  cli.add_option("--host", config.host, "address to listen on")->capture_default_str();
  cli.add_option("--port", config.port, "port to listen on; 0 picks a free one")
      ->type_name("PORT")
      ->capture_default_str()
      ->check(quiet(CLI::Range(0, 65535)));
  cli.add_option("--port-file", port_file, "also write the port to FILE once listening")->type_name("FILE");
  cli.add_option("--app", apps, "an app id that exists (repeatable); needs a key unless --any-key")
      ->type_name("APP_ID");
  cli.add_option("--keys-file", keys_file, "dev keys, one app=key per line")
      ->type_name("FILE")
      ->check(quiet(CLI::ExistingFile));
  cli.add_flag("--any-key", config.any_key, "accept any non-empty Authorization for any app");
  cli.add_option("--slug", slugs, "a known event slug (repeatable); with none, every slug is known")
      ->type_name("SLUG");
  cli.add_option("--slugs", slug_lists, "known event slugs, comma separated")->type_name("A,B,...")->delimiter(',');
  cli.add_option("--s2s-disabled", disabled, "answer 403 S2S_FEATURE_NOT_AVAILABLE for APP (repeatable)")
      ->type_name("APP_ID")
      ->delimiter(',');
  cli.add_option("--latency-ms", latency_ms, "delay added to every S2S answer [0]")->type_name("N");
  cli.add_option("--latency-slug", latency_slug, "add --latency-ms only to events of this slug (a request that hangs)")
      ->type_name("SLUG");
  cli.add_option("--error-rate", error_rate, "fraction of requests answered 500/502/503 [0]")->type_name("P");
  cli.add_option("--rate-429", rate_429, "fraction of requests answered 429 [0]")->type_name("P");
  cli.add_option("--retry-after", retry_after, "Retry-After seconds sent with 429 [1]")->type_name("SECONDS");
  cli.add_option("--drop-rate", drop_rate, "fraction of accepted events whose answer is lost [0]")->type_name("P");
  cli.add_option("--drop-style", drop_style, "how answers are lost: partial or close [partial]")
      ->type_name("STYLE");
  cli.add_option("--script", script, "answers for the first requests, e.g. 500,429,404:EVENT_TYPE_DOES_NOT_EXIST,drop,200")
      ->type_name("STEPS");
  cli.add_option("--seed", seed, "seed of the fault randomness [random, shown by GET /__control]")->type_name("N");
  cli.add_option("--record", config.record_path, "append every accepted event to FILE (NDJSON)")->type_name("FILE");
  cli.add_option("--threads", config.threads, "connections served at once")
      ->type_name("N")
      ->capture_default_str()
      ->check(quiet(CLI::Range(1, 100000)));
  auto* cert = cli.add_option("--tls-cert", config.tls_cert, "serve https with this PEM certificate")
                   ->type_name("FILE")
                   ->check(quiet(CLI::ExistingFile));
  auto* key = cli.add_option("--tls-key", config.tls_key, "the certificate's PEM private key")
                  ->type_name("FILE")
                  ->check(quiet(CLI::ExistingFile));
  cert->needs(key);
  key->needs(cert);
  cli.add_flag("-v,--verbose", config.verbose, "log one line per S2S request to stderr (never the key)");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }

  // Fault flags go through the parser /__control uses, so both accept the same values.
  Change initial;
  std::vector<std::pair<const char*, const std::string*>> fault_flags = {
      {"latency-ms", &latency_ms}, {"latency-slug", &latency_slug}, {"error-rate", &error_rate}, {"rate-429", &rate_429},
      {"retry-after", &retry_after}, {"drop-rate", &drop_rate},   {"drop-style", &drop_style},
      {"script", &script},         {"seed", &seed}};
  for (const auto& [name, value] : fault_flags) {
    if (value->empty()) continue;
    Status applied = apply_setting(initial, name, *value);
    if (!applied.ok()) return usage_error("--" + applied.error().message);
  }
  initial.settings.slugs = std::set<std::string>(slugs.begin(), slugs.end());
  initial.settings.slugs.insert(slug_lists.begin(), slug_lists.end());
  initial.settings.s2s_disabled = std::set<std::string>(disabled.begin(), disabled.end());
  config.seed = initial.seed ? *initial.seed : std::random_device{}();
  initial.seed = config.seed;

  std::map<std::string, std::string> keys;
  if (Status read = read_keys_variable(keys); !read.ok()) return usage_error(read.error().message);
  if (!keys_file.empty()) {
    if (Status read = read_keys_file(keys, keys_file); !read.ok()) return usage_error(read.error().message);
  }
  if (!apps.empty()) {
    for (const std::string& app : apps) {
      auto found = keys.find(app);
      if (found != keys.end()) {
        config.dev_keys[app] = found->second;
      } else if (!config.any_key) {
        return usage_error(fmt::format("app '{}' has no dev key: set {}, use --keys-file, or pass --any-key", app,
                                       kKeysVariable));
      }
    }
  } else {
    config.dev_keys = std::move(keys);
  }
  if (config.dev_keys.empty() && !config.any_key) {
    return usage_error(fmt::format("no dev keys: set {}=app=key,..., use --keys-file, or pass --any-key",
                                   kKeysVariable));
  }

  raise_descriptor_limit();
  Result<std::unique_ptr<S2sServer>> bound = S2sServer::bind(config, initial);
  if (!bound.ok()) {
    fmt::print(stderr, "fake-metrix: {}\n", bound.error().message);
    return bound.error().bad_input ? 2 : 1;
  }
  S2sServer& server = *bound.value();

  // The port file first: whoever waits for the listening line may read the file at once.
  if (!port_file.empty()) {
    if (Status written = write_port_file(port_file, server.port()); !written.ok()) {
      fmt::print(stderr, "fake-metrix: {}\n", written.error().message);
      return 1;
    }
  }
  std::cout << "fake-metrix listening on " << server.url() << std::endl;

  std::atomic<bool> serve_returned{false};
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    if (serve_returned) return;  // woken by main below, not by a user
    fmt::print(stderr, "fake-metrix: {}, stopping\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
  });
  Status served = server.serve();
  serve_returned = true;
  pthread_kill(stopper.native_handle(), SIGTERM);  // no-op if it already got its signal
  stopper.join();
  if (!served.ok()) {
    fmt::print(stderr, "fake-metrix: {}\n", served.error().message);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace fake_metrix

int main(int argc, char** argv) {
  try {
    return fake_metrix::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fake-metrix: %s\n", e.what());
    return 1;
  }
}
