// HttpClient: many POSTs in flight over kept-alive connections, with the libcurl multi
// interface, driven from one thread (the relay loop). Not thread-safe, but for wakeup().
//
// Each request gets connect and total timeouts, certificate verification for https, no
// "Expect: 100-continue" wait, and HTTP/2 where a TLS server offers it. An answer is only
// an answer when the whole transfer succeeded: a 200 status line followed by a dropped
// connection is a transport error, never a success.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "relay/classify.h"
#include "storage/result.h"

namespace metrix {

struct CurlEasyCleanup {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct CurlMultiCleanup {
  void operator()(CURLM* h) const { curl_multi_cleanup(h); }
};
struct CurlSlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyCleanup>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiCleanup>;
using CurlHeaders = std::unique_ptr<curl_slist, CurlSlistFree>;

// The headers of every request to one app: Authorization with its dev key, JSON content
// type, and an empty Expect (no 100-continue round trip). The key lives only in this list.
Result<CurlHeaders> make_request_headers(const std::string& dev_key);

struct HttpOptions {
  std::int64_t timeout_ms = 10000;         // whole request
  std::int64_t connect_timeout_ms = 5000;
  int max_connections = 64;                // requests in flight, and connections kept alive
  std::string cacert;                      // extra CA bundle (PEM), added to the system's
  std::size_t max_answer_bytes = 1024;     // kept of each answer body
};

struct HttpRequest {
  std::uint64_t tag = 0;                   // the caller's handle for the result
  std::string url;
  std::string body;
  const curl_slist* headers = nullptr;     // owned by the caller, must outlive the request
};

struct HttpResult {
  std::uint64_t tag = 0;
  Answer answer;
  std::int64_t started_at = 0;             // ms since the epoch
  std::int64_t finished_at = 0;
  std::int64_t elapsed_us = 0;             // from send() to the answer, by the monotonic clock
};

class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> create(const HttpOptions& options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  Status send(HttpRequest request);

  // Drives the transfers, waiting up to `wait_ms` for progress, and returns those finished.
  Result<std::vector<HttpResult>> poll(int wait_ms);

  // Makes a poll() in progress, or else the next one, return at once. The one method that
  // may be called from any thread (curl_multi_wakeup).
  void wakeup();

  std::size_t in_flight() const { return active_.size(); }

  // Changes HttpOptions::max_connections (a reload); transfers in flight go on.
  Status set_max_connections(int max_connections);

  // Abandons every transfer in flight (shutdown deadline); returns their tags.
  std::vector<std::uint64_t> abort_all();

  // Connections opened so far (to prove keep-alive).
  std::int64_t connections_opened() const { return connections_opened_; }

 private:
  struct Transfer;
  explicit HttpClient(const HttpOptions& options);
  Result<std::unique_ptr<Transfer>> new_transfer();

  HttpOptions options_;
  CurlMulti multi_;
  std::vector<std::unique_ptr<Transfer>> active_;
  std::vector<std::unique_ptr<Transfer>> idle_;  // easy handles kept for reuse
  std::int64_t connections_opened_ = 0;
};

}  // namespace metrix
