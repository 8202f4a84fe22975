// S2sServer: the fake Metrix S2S endpoint over cpp-httplib.
//
// Routes:
//   POST /inappevent/{appId}   the S2S API (reference/metrix-s2s-integration.txt)
//   GET  /__stats              counters as JSON (below); no secret in them
//   POST /__control?KEY=VALUE  changes fault settings (faults.h); loopback
//                              clients only; answers the resulting settings
//   GET  /__control            the current settings
//
// How one S2S request is answered, first match wins:
//   1. the next --script step, if it is an error answer
//   2. (no script step) random 429 with Retry-After  (rate-429)
//   3. (no script step) random 500/502/503           (error-rate)
//   4. unknown app, wrong or missing Authorization   403 INVALID_PARAMETERS
//      (with any_key: any non-empty Authorization, any app)
//   5. app in s2s-disabled                           403 S2S_FEATURE_NOT_AVAILABLE
//   6. body rules (event_check.h)                    400 ...
//   7. slug not among known slugs                    404 EVENT_TYPE_DOES_NOT_EXIST
//   8. accepted: recorded, then answered 200 (or the script step's 2xx) -- or,
//      for a `drop` step or (no script step) with probability drop-rate, the
//      answer is lost (faults.h: drop styles). A drop step also loses the
//      answer of a rejected request, without recording it.
// latency-ms is slept after the decision (and the recording) and before the
// answer: a client that gives up during it leaves an event in doubt.
//
// /__stats fields: requests (S2S requests received), accepted (events
// recorded, dropped ones included), dropped (answers lost), by_status (answers
// sent, by HTTP status), in_flight and max_concurrent_requests (S2S requests
// being handled, now and at most), connections (TCP connections accepted,
// /__stats and /__control ones included; see connections.h for how they are
// counted), open_connections, max_open_connections.
//
// Threading: httplib serves each connection on one pool thread; everything
// shared between requests is atomic or behind a mutex.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <httplib.h>

#include "tools/fake-metrix/connections.h"
#include "tools/fake-metrix/faults.h"
#include "tools/fake-metrix/record.h"
#include "tools/fake-metrix/result.h"

namespace fake_metrix {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 0;          // 0: an ephemeral port
  size_t threads = 512;  // connections served at once
  std::string tls_cert;  // both set: https; both empty: http
  std::string tls_key;
  std::map<std::string, std::string> dev_keys;  // app id -> dev key; never logged
  bool any_key = false;
  std::string record_path;  // empty: events are not recorded
  bool verbose = false;     // one stderr line per S2S request
  uint64_t seed = 0;
};

class S2sServer {
 public:
  // Loads the TLS files, opens the record file, applies `initial` and binds
  // the port (not yet accepting). Errors name the file or address at fault;
  // unusable files are bad_input, an address that cannot be bound is not.
  static Result<std::unique_ptr<S2sServer>> bind(ServerConfig config, const Change& initial);

  S2sServer(const S2sServer&) = delete;
  S2sServer& operator=(const S2sServer&) = delete;
  ~S2sServer();

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:PORT" (https with TLS)

  // Accepts and serves connections until stop(). Call once.
  Status serve();

  // Makes serve() return: stops accepting, ends idle keep-alive connections,
  // lets requests being answered finish. Thread-safe; callable before serve()
  // has started accepting; call once.
  void stop();

 private:
  struct Decision;
  struct Stats {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> dropped{0};
    std::atomic<uint64_t> in_flight{0};
    std::atomic<uint64_t> max_in_flight{0};
    std::array<std::atomic<uint64_t>, 600> by_status{};
    ConnectionCounts connections;
  };

  explicit S2sServer(ServerConfig config);
  void install_routes();
  void handle_event(const httplib::Request& request, httplib::Response& response);
  void handle_control(const httplib::Request& request, httplib::Response& response);
  void handle_stats(httplib::Response& response) const;
  Decision decide(const httplib::Request& request, const std::string& app_id, const Settings& settings,
                  const Roll& roll, const std::optional<ScriptStep>& step) const;
  std::optional<ScriptStep> next_script_step();
  std::shared_ptr<const Settings> settings() const;
  void apply(Change change);

  ServerConfig config_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Recorder> recorder_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> serving_done_{false};

  // Settings are replaced whole and read by pointer copy: a request keeps
  // the snapshot it started with.
  mutable std::mutex settings_mutex_;
  std::shared_ptr<const Settings> settings_;
  std::mutex script_mutex_;
  std::deque<ScriptStep> script_;
  Dice dice_;
  Stats stats_;
};

}  // namespace fake_metrix
