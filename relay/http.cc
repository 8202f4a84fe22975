#include "relay/http.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "storage/clock.h"

namespace metrix {

namespace {

// libcurl's global state, initialised once before any handle exists.
struct CurlGlobal {
  CURLcode rc;
  CurlGlobal() : rc(curl_global_init(CURL_GLOBAL_DEFAULT)) {}
  ~CurlGlobal() { curl_global_cleanup(); }
};

Status curl_global() {
  static CurlGlobal global;
  if (global.rc != CURLE_OK) return Error{Errc::io, fmt::format("curl_global_init: {}", curl_easy_strerror(global.rc))};
  return {};
}

std::string transport_error_name(CURLcode code, const char* detail) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "connection refused";
    case CURLE_COULDNT_RESOLVE_HOST: return "cannot resolve host";
    case CURLE_GOT_NOTHING: return "connection closed without an answer";
    case CURLE_PARTIAL_FILE: return "connection closed mid-answer";
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: return "connection reset";
    case CURLE_PEER_FAILED_VERIFICATION: return fmt::format("tls: certificate not trusted ({})", detail);
    case CURLE_SSL_CONNECT_ERROR: return fmt::format("tls: handshake failed ({})", detail);
    default: return fmt::format("{} ({})", curl_easy_strerror(code), detail);
  }
}

}  // namespace

struct HttpClient::Transfer {
  CurlEasy easy;
  HttpRequest request;
  std::string answer_body;
  std::size_t max_answer_bytes = 0;
  std::optional<std::int64_t> retry_after_ms;
  std::int64_t started_at = 0;
  std::chrono::steady_clock::time_point started;
  char error[CURL_ERROR_SIZE] = {};

  static size_t on_body(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    size_t n = size * count;
    size_t room = t->max_answer_bytes - std::min(t->max_answer_bytes, t->answer_body.size());
    t->answer_body.append(data, std::min(n, room));
    return n;  // the rest is read and dropped; the total timeout bounds a huge answer
  }

  static size_t on_header(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    size_t n = size * count;
    std::string_view line(data, n);
    constexpr std::string_view kRetryAfter = "retry-after:";
    if (line.size() > kRetryAfter.size() &&
        std::equal(kRetryAfter.begin(), kRetryAfter.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      t->retry_after_ms = parse_retry_after_ms(line.substr(kRetryAfter.size()), now_ms());
    }
    return n;
  }
};

Result<CurlHeaders> make_request_headers(const std::string& dev_key) {
  CurlHeaders headers;
  for (const std::string& line :
       {"Authorization: " + dev_key, std::string("Content-Type: application/json"), std::string("Expect:")}) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (!next) return Error{Errc::io, "curl_slist_append: out of memory"};
    (void)headers.release();
    headers.reset(next);
  }
  return headers;
}

Result<std::unique_ptr<HttpClient>> HttpClient::create(const HttpOptions& options) {
  if (auto s = curl_global(); !s) return s.error();
  std::unique_ptr<HttpClient> client(new HttpClient(options));
  client->multi_.reset(curl_multi_init());
  if (!client->multi_) return Error{Errc::io, "curl_multi_init failed"};
  if (CURLMcode rc = curl_multi_setopt(client->multi_.get(), CURLMOPT_PIPELINING, long{CURLPIPE_MULTIPLEX});
      rc != CURLM_OK) {
    return Error{Errc::io, fmt::format("curl_multi_setopt: {}", curl_multi_strerror(rc))};
  }
  if (auto s = client->set_max_connections(options.max_connections); !s) return s.error();
  return client;
}

Status HttpClient::set_max_connections(int max_connections) {
  const long connections = std::max(1, max_connections);
  for (auto option : {CURLMOPT_MAX_HOST_CONNECTIONS, CURLMOPT_MAX_TOTAL_CONNECTIONS, CURLMOPT_MAXCONNECTS}) {
    if (CURLMcode rc = curl_multi_setopt(multi_.get(), option, connections); rc != CURLM_OK) {
      return Error{Errc::io, fmt::format("curl_multi_setopt: {}", curl_multi_strerror(rc))};
    }
  }
  options_.max_connections = static_cast<int>(connections);
  return {};
}

HttpClient::HttpClient(const HttpOptions& options) : options_(options) {}

HttpClient::~HttpClient() {
  for (auto& t : active_) curl_multi_remove_handle(multi_.get(), t->easy.get());
}

Result<std::unique_ptr<HttpClient::Transfer>> HttpClient::new_transfer() {
  auto t = std::make_unique<Transfer>();
  t->easy.reset(curl_easy_init());
  if (!t->easy) return Error{Errc::io, "curl_easy_init failed"};
  CURL* h = t->easy.get();
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(h, option, value);
  };
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_POST, 1L);
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  set(CURLOPT_TCP_KEEPALIVE, 1L);
  set(CURLOPT_SSL_VERIFYPEER, 1L);
  set(CURLOPT_SSL_VERIFYHOST, 2L);
  set(CURLOPT_FOLLOWLOCATION, 0L);  // a redirect is not a delivery
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  if (!options_.cacert.empty()) {
    // With OpenSSL both are used: the given CA file and the system's CA directory.
    set(CURLOPT_CAINFO, options_.cacert.c_str());
    set(CURLOPT_CAPATH, "/etc/ssl/certs");
  }
  set(CURLOPT_WRITEFUNCTION, &Transfer::on_body);
  set(CURLOPT_WRITEDATA, t.get());
  set(CURLOPT_HEADERFUNCTION, &Transfer::on_header);
  set(CURLOPT_HEADERDATA, t.get());
  set(CURLOPT_ERRORBUFFER, t->error);
  set(CURLOPT_PRIVATE, t.get());
  if (rc != CURLE_OK) return Error{Errc::io, fmt::format("curl_easy_setopt: {}", curl_easy_strerror(rc))};
  t->max_answer_bytes = options_.max_answer_bytes;
  return t;
}

Status HttpClient::send(HttpRequest request) {
  std::unique_ptr<Transfer> t;
  if (!idle_.empty()) {
    t = std::move(idle_.back());
    idle_.pop_back();
  } else {
    auto created = new_transfer();
    if (!created) return created.error();
    t = std::move(*created);
  }
  t->request = std::move(request);
  t->answer_body.clear();
  t->retry_after_ms.reset();
  t->error[0] = '\0';
  t->started_at = now_ms();
  t->started = std::chrono::steady_clock::now();
  CURL* h = t->easy.get();
  CURLcode rc = curl_easy_setopt(h, CURLOPT_URL, t->request.url.c_str());
  if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->request.headers);
  // Over TLS, wait for the first connection's ALPN answer: with HTTP/2 every request then
  // shares it. Plain http is HTTP/1.1: one connection per request in flight, kept alive.
  if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_PIPEWAIT, t->request.url.rfind("https://", 0) == 0 ? 1L : 0L);
  if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->request.body.size()));
  if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->request.body.data());
  if (rc != CURLE_OK) return Error{Errc::io, fmt::format("curl_easy_setopt: {}", curl_easy_strerror(rc))};
  if (CURLMcode mrc = curl_multi_add_handle(multi_.get(), h); mrc != CURLM_OK) {
    return Error{Errc::io, fmt::format("curl_multi_add_handle: {}", curl_multi_strerror(mrc))};
  }
  active_.push_back(std::move(t));
  return {};
}

Result<std::vector<HttpResult>> HttpClient::poll(int wait_ms) {
  std::vector<HttpResult> done;
  auto drive = [&]() -> Status {
    int running = 0;
    if (CURLMcode rc = curl_multi_perform(multi_.get(), &running); rc != CURLM_OK) {
      return Error{Errc::io, fmt::format("curl_multi_perform: {}", curl_multi_strerror(rc))};
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* h = msg->easy_handle;
      CURLcode code = msg->data.result;
      Transfer* t = nullptr;
      curl_easy_getinfo(h, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      HttpResult r;
      r.tag = t->request.tag;
      r.started_at = t->started_at;
      r.finished_at = now_ms();
      r.elapsed_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t->started).count();
      long connects = 0;
      if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) connections_opened_ += connects;
      if (code == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        r.answer.http_status = static_cast<int>(status);
        r.answer.body = t->answer_body;
        r.answer.retry_after_ms = t->retry_after_ms;
        r.answer.request_sent = true;
      } else {
        long request_size = 0;
        curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_size);
        r.answer.transport_error = transport_error_name(code, t->error[0] ? t->error : curl_easy_strerror(code));
        r.answer.request_sent = request_size > 0 && code != CURLE_COULDNT_CONNECT && code != CURLE_COULDNT_RESOLVE_HOST;
        r.answer.body = t->answer_body;
      }
      curl_multi_remove_handle(multi_.get(), h);
      auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == t; });
      t->request.body.clear();
      idle_.push_back(std::move(*it));
      active_.erase(it);
      done.push_back(std::move(r));
    }
    return {};
  };
  if (auto s = drive(); !s) return s.error();
  if (!done.empty() || wait_ms <= 0) return done;
  if (CURLMcode rc = curl_multi_poll(multi_.get(), nullptr, 0, wait_ms, nullptr); rc != CURLM_OK) {
    return Error{Errc::io, fmt::format("curl_multi_poll: {}", curl_multi_strerror(rc))};
  }
  if (auto s = drive(); !s) return s.error();
  return done;
}

void HttpClient::wakeup() {
  // A failed wakeup costs at most the poll's timeout (50 ms in the relay loop), nothing more.
  (void)curl_multi_wakeup(multi_.get());
}

std::vector<std::uint64_t> HttpClient::abort_all() {
  std::vector<std::uint64_t> tags;
  for (auto& t : active_) {
    curl_multi_remove_handle(multi_.get(), t->easy.get());
    tags.push_back(t->request.tag);
  }
  active_.clear();
  return tags;
}

}  // namespace metrix
