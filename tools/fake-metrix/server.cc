#include "tools/fake-metrix/server.h"

#include <chrono>
#include <thread>

#include <sys/socket.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "tools/fake-metrix/answer.h"
#include "tools/fake-metrix/event_check.h"
#include "storage/clock.h"

namespace fake_metrix {
namespace {

constexpr size_t kMaxBodyBytes = 1 << 20;
// Requests served on one connection before httplib closes it. httplib's
// default is 5, which would hide keep-alive from the clients under test; the
// value is sent in the Keep-Alive header, so keep it readable.
constexpr size_t kKeepAliveMaxRequests = 100'000'000;

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

bool is_loopback(const std::string& address) {
  return address.rfind("127.", 0) == 0 || address == "::1" || address.rfind("::ffff:127.", 0) == 0;
}

void send_json(httplib::Response& response, int status, const std::string& body) {
  response.status = status;
  response.set_content(body, "application/json");
}

// Counts the S2S requests being handled, for max_concurrent_requests.
class InFlight {
 public:
  InFlight(std::atomic<uint64_t>& in_flight, std::atomic<uint64_t>& max_in_flight) : in_flight_(in_flight) {
    raise_to(max_in_flight, in_flight_.fetch_add(1) + 1);
  }
  ~InFlight() { in_flight_.fetch_sub(1); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<uint64_t>& in_flight_;
};

}  // namespace

struct S2sServer::Decision {
  Answer answer;
  bool accept = false;             // record the event
  std::optional<DropStyle> drop;  // lose the answer instead of sending it
  std::string slug;                // the event's, when it got that far

  static Decision answer_only(Answer answer) { return Decision{std::move(answer), false, std::nullopt, {}}; }
};

S2sServer::S2sServer(ServerConfig config)
    : config_(std::move(config)), settings_(std::make_shared<Settings>()), dice_(config_.seed) {}

S2sServer::~S2sServer() = default;

Result<std::unique_ptr<S2sServer>> S2sServer::bind(ServerConfig config, const Change& initial) {
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    return Error{"--tls-cert and --tls-key go together", true};
  }
  std::unique_ptr<S2sServer> server(new S2sServer(std::move(config)));
  const ServerConfig& c = server->config_;
  if (!c.tls_cert.empty()) {
    server->http_ = std::make_unique<httplib::SSLServer>(c.tls_cert.c_str(), c.tls_key.c_str());
    if (!server->http_->is_valid()) {
      return Error{"cannot load the TLS certificate " + c.tls_cert + " or its key " + c.tls_key, true};
    }
  } else {
    server->http_ = std::make_unique<httplib::Server>();
  }
  if (!c.record_path.empty()) {
    Result<std::unique_ptr<Recorder>> recorder = Recorder::open(c.record_path);
    if (!recorder.ok()) return Error{recorder.error().message, true};
    server->recorder_ = std::move(recorder.value());
  }
  server->apply(initial);
  server->install_routes();

  httplib::Server& http = *server->http_;
  http.new_task_queue = [s = server.get()] { return new CountingTaskQueue(s->config_.threads, s->stats_.connections); };
  http.set_keep_alive_max_count(kKeepAliveMaxRequests);
  // The status line and headers go out in one write and the body in another:
  // without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to every answer.
  // (Set on the listening socket; Linux copies it to accepted ones.)
  http.set_tcp_nodelay(true);
  http.set_payload_max_length(kMaxBodyBytes);
  http.set_socket_options([s = server.get()](socket_t fd) {
    // SO_REUSEADDR only: a restart may reuse a port in TIME_WAIT, but a second server on a
    // port one listens on is refused. httplib's default, SO_REUSEPORT, let both listen and
    // the kernel split the connections (and the counters) between them.
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    s->listen_fd_ = fd;  // only the listening socket passes here
  });

  if (c.port == 0) {
    server->port_ = http.bind_to_any_port(c.host);
    if (server->port_ < 0) return Error{"cannot listen on " + c.host + " (an ephemeral port)"};
  } else {
    if (!http.bind_to_port(c.host, c.port)) {
      return Error{"cannot listen on " + c.host + ":" + std::to_string(c.port) + " (in use, or not a local address?)"};
    }
    server->port_ = c.port;
  }
  // The packaged library listens with a backlog of 5: hundreds of clients
  // connecting at once would see SYNs dropped and retried a second later.
  // listen(2) on a listening socket just updates its backlog.
  if (server->listen_fd_ >= 0) ::listen(server->listen_fd_, SOMAXCONN);
  return server;
}

std::string S2sServer::url() const {
  std::string host = config_.host.find(':') != std::string::npos ? "[" + config_.host + "]" : config_.host;
  return fmt::format("{}://{}:{}", config_.tls_cert.empty() ? "http" : "https", host, port_);
}

Status S2sServer::serve() {
  bool clean = http_->listen_after_bind();
  serving_done_ = true;
  if (!clean) return Error{"the accept loop failed"};
  return ok_status();
}

void S2sServer::stop() {
  // httplib's stop() does nothing until the accept loop runs: wait for it.
  while (!http_->is_running() && !serving_done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!serving_done_) http_->stop();
  // Workers idle in keep-alive would otherwise wait out the keep-alive timeout (5 s).
  half_close_connections(port_);
}

std::shared_ptr<const Settings> S2sServer::settings() const {
  std::lock_guard lock(settings_mutex_);
  return settings_;
}

void S2sServer::apply(Change change) {
  {
    std::lock_guard lock(settings_mutex_);
    settings_ = std::make_shared<const Settings>(std::move(change.settings));
  }
  if (change.script) {
    std::lock_guard lock(script_mutex_);
    script_.assign(change.script->begin(), change.script->end());
  }
  if (change.seed) dice_.reseed(*change.seed);
}

std::optional<ScriptStep> S2sServer::next_script_step() {
  std::lock_guard lock(script_mutex_);
  if (script_.empty()) return std::nullopt;
  ScriptStep step = std::move(script_.front());
  script_.pop_front();
  return step;
}

void S2sServer::install_routes() {
  httplib::Server& http = *http_;
  http.Post(R"(/inappevent/([^/]+))",
            [this](const httplib::Request& request, httplib::Response& response) { handle_event(request, response); });
  // The admin routes are answered before httplib reads a body: `curl -X
  // POST URL/__control?...` sends no Content-Length, and httplib would wait
  // out its read timeout for a body and then answer 400.
  // A body sent anyway is left unread, so such a connection is closed rather
  // than parsed on as the next request.
  http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
    bool control = request.path == "/__control" && (request.method == "POST" || request.method == "GET");
    bool stats = request.path == "/__stats" && request.method == "GET";
    if (!control && !stats) return httplib::Server::HandlerResponse::Unhandled;
    if (control) {
      handle_control(request, response);
    } else {
      handle_stats(response);
    }
    bool has_body = request.has_header("Transfer-Encoding") ||
                    (request.has_header("Content-Length") && request.get_header_value("Content-Length") != "0");
    if (has_body) response.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib calls the error handler for every answer >= 400, ours included:
  // fill in only the bodies it left empty (no route, body too large, ...).
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
    // A content provider is a drop in progress (partial style): leave it be.
    if (!response.body.empty() || response.content_provider_ || response.status < 400) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    Answer answer = error_answer(response.status);
    answer.message = response.status == 404
                         ? "no such route: fake-metrix serves POST /inappevent/{appId}, GET /__stats, POST /__control"
                         : "fake-metrix: request refused by the HTTP layer";
    if (response.status == 404) answer.error = "NOT_FOUND";
    send_json(response, response.status, answer_body(answer));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_json(response, 500, answer_body(Answer{500, "INTERNAL_SERVER_ERROR", "fake-metrix bug: " + what}));
  });
}

S2sServer::Decision S2sServer::decide(const httplib::Request& request, const std::string& app_id,
                                      const Settings& settings, const Roll& roll,
                                      const std::optional<ScriptStep>& step) const {
  if (step && step->kind == ScriptStep::Kind::answer) return Decision::answer_only(step->answer);
  if (!step) {
    if (roll.rate_429 < settings.rate_429) return Decision::answer_only(error_answer(429));
    if (roll.error < settings.error_rate) {
      static constexpr int kErrors[] = {500, 502, 503};
      return Decision::answer_only(error_answer(kErrors[roll.error_pick]));
    }
  }

  Decision decision;
  if (step && step->kind == ScriptStep::Kind::drop) decision.drop = step->drop_style.value_or(settings.drop_style);

  const std::string& key = request.get_header_value("Authorization");
  bool authorized;
  if (config_.any_key) {
    authorized = !key.empty();
  } else {
    auto known = config_.dev_keys.find(app_id);
    authorized = known != config_.dev_keys.end() && !key.empty() && key == known->second;
  }
  if (!authorized) {
    // Never quote the key received: it may be a real one sent to the wrong place.
    decision.answer = Answer{403, kInvalidParameters, "unknown appId or wrong dev key in Authorization"};
    return decision;
  }
  if (settings.s2s_disabled.count(app_id) != 0) {
    decision.answer = Answer{403, kS2sDisabled, "S2S is not enabled for this app"};
    return decision;
  }
  std::variant<CheckedEvent, Answer> checked = check_event(request.body);
  if (auto* rejection = std::get_if<Answer>(&checked)) {
    decision.answer = std::move(*rejection);
    return decision;
  }
  const std::string& slug = std::get<CheckedEvent>(checked).event_slug;
  decision.slug = slug;
  if (!settings.slugs.empty() && settings.slugs.count(slug) == 0) {
    decision.answer = Answer{404, kNoSuchEvent, "no event type with this slug"};
    return decision;
  }
  decision.accept = true;
  decision.answer = Answer{step ? step->answer.status : 200, "", "event accepted"};
  if (!step && roll.drop < settings.drop_rate) decision.drop = settings.drop_style;
  return decision;
}

void S2sServer::handle_event(const httplib::Request& request, httplib::Response& response) {
  InFlight in_flight(stats_.in_flight, stats_.max_in_flight);
  int64_t received_at = now_ms();
  stats_.requests.fetch_add(1);
  const std::string app_id = request.matches[1];
  std::shared_ptr<const Settings> settings = this->settings();
  Roll roll = dice_.roll();
  std::optional<ScriptStep> step = next_script_step();
  Decision decision = decide(request, app_id, *settings, roll, step);

  if (decision.accept && recorder_) {
    Status recorded = recorder_->append(app_id, request.body, received_at, decision.drop.has_value());
    if (!recorded.ok()) {
      // Not on disk means not accepted: answer so that the client retries.
      fmt::print(stderr, "fake-metrix: {}\n", recorded.error().message);
      decision = Decision::answer_only(Answer{500, "INTERNAL_SERVER_ERROR", "fake-metrix could not record the event"});
    }
  }
  if (decision.accept) stats_.accepted.fetch_add(1);

  if (settings->latency_ms > 0 && (settings->latency_slug.empty() || decision.slug == settings->latency_slug)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(settings->latency_ms));
  }

  if (decision.drop) {
    stats_.dropped.fetch_add(1);
    DropStyle style = *decision.drop;
    if (style == DropStyle::close) {
      if (std::optional<int> fd = find_connection_socket(request)) {
        // Before any byte of the answer, and shutdown rather than close:
        // httplib owns the descriptor and closes it when its write fails.
        ::shutdown(*fd, SHUT_RDWR);
        response.status = 200;
        response.set_header("Connection", "close");
      } else {
        fmt::print(stderr, "fake-metrix: connection socket not found, dropping with a partial answer instead\n");
        style = DropStyle::partial;
      }
    }
    if (style == DropStyle::partial) {
      // Status line and headers go out, then the chunked body ends early.
      response.status = decision.answer.status;
      response.set_chunked_content_provider("application/json",
                                            [](size_t, httplib::DataSink&) { return false; });
    }
    if (config_.verbose) {
      fmt::print(stderr, "fake-metrix: POST /inappevent/{} -> answer dropped ({}{})\n", app_id,
                 style == DropStyle::close ? "close" : "partial", decision.accept ? ", event recorded" : "");
    }
    return;
  }

  const Answer& answer = decision.answer;
  if (answer.status == 429) response.set_header("Retry-After", std::to_string(settings->retry_after_s));
  send_json(response, answer.status, answer_body(answer));
  if (answer.status >= 0 && static_cast<size_t>(answer.status) < stats_.by_status.size()) {
    stats_.by_status[static_cast<size_t>(answer.status)].fetch_add(1);
  }
  if (config_.verbose) {
    fmt::print(stderr, "fake-metrix: POST /inappevent/{} -> {} {}\n", app_id, answer.status,
               answer.error.empty() ? "accepted" : answer.error);
  }
}

void S2sServer::handle_control(const httplib::Request& request, httplib::Response& response) {
  if (!is_loopback(request.remote_addr)) {
    send_json(response, 403, answer_body(Answer{403, "FORBIDDEN", "/__control is for loopback clients only"}));
    return;
  }
  Change change;
  change.settings = *settings();
  // GET only reads; POST applies the query (an empty one changes nothing).
  // A key given twice is one list ("s2s-disabled=a&s2s-disabled=b" is "a,b");
  // for a single-valued key that is a parse error, as it should be.
  for (auto it = request.params.begin(); request.method == "POST" && it != request.params.end();) {
    auto [first, last] = request.params.equal_range(it->first);
    std::string value;
    for (auto p = first; p != last; ++p) value += (p == first ? "" : ",") + p->second;
    Status applied = apply_setting(change, it->first, value);
    if (!applied.ok()) {
      // Nothing is applied unless everything is valid.
      send_json(response, 400, answer_body(Answer{400, kBadRequest, applied.error().message}));
      return;
    }
    it = last;
  }
  apply(std::move(change));
  std::lock_guard lock(script_mutex_);
  send_json(response, 200, describe(*settings(), dice_.seed(), script_.size()));
}

void S2sServer::handle_stats(httplib::Response& response) const {
  nlohmann::json by_status = nlohmann::json::object();
  for (size_t status = 0; status < stats_.by_status.size(); ++status) {
    if (uint64_t n = stats_.by_status[status].load()) by_status[std::to_string(status)] = n;
  }
  nlohmann::json stats = {
      {"requests", stats_.requests.load()},
      {"accepted", stats_.accepted.load()},
      {"dropped", stats_.dropped.load()},
      {"by_status", by_status},
      {"in_flight", stats_.in_flight.load()},
      {"max_concurrent_requests", stats_.max_in_flight.load()},
      {"connections", stats_.connections.accepted.load()},
      {"open_connections", stats_.connections.open.load()},
      {"max_open_connections", stats_.connections.max_open.load()},
  };
  send_json(response, 200, stats.dump());
}

}  // namespace fake_metrix
