// FakeMetrix: the real tools/fake-metrix binary, started on loopback for a
// test, and HttpClient, a small libcurl client to talk to it (or to anything).
//
// Everything here throws std::runtime_error when the test cannot go on (the
// binary does not start, /__stats does not answer): doctest reports the
// message and fails the test case. What a test asserts on -- an HTTP answer,
// including a transport error -- is returned as a value.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"

namespace metrix::test {

// One HTTP exchange as libcurl saw it.
struct HttpAnswer {
  CURLcode curl_code = CURLE_OK;  // not CURLE_OK: a transport error (status may still be set)
  std::string curl_error;         // libcurl's message for curl_code
  long status = 0;                // HTTP status, 0 if no status line arrived
  std::string body;
  std::multimap<std::string, std::string> headers;  // names lower-cased

  bool transport_ok() const { return curl_code == CURLE_OK; }
  // The first value of header `name` (any case), or "" if absent.
  std::string header(std::string_view name) const;
};

// A libcurl easy handle kept across requests, so that consecutive requests
// to the same host reuse one keep-alive connection, as a real client would.
// Not thread-safe; movable.
class HttpClient {
 public:
  HttpClient();
  HttpClient(HttpClient&&) noexcept = default;
  HttpClient& operator=(HttpClient&&) noexcept = default;
  ~HttpClient();

  // `headers` are "Name: value" lines, e.g. "Authorization: KEY".
  HttpAnswer post(const std::string& url, const std::string& body, const std::vector<std::string>& headers = {});
  HttpAnswer get(const std::string& url);

  // For https: trust the PEM certificate(s) in `path` ("" restores the
  // system store), or do not verify at all (loopback admin calls only).
  void set_ca_file(std::string path) { ca_file_ = std::move(path); }
  void set_verify_tls(bool verify) { verify_tls_ = verify; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  struct EasyDeleter {
    void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
  };
  HttpAnswer perform(const std::string& url, const std::string* post_body, const std::vector<std::string>& headers);

  std::unique_ptr<CURL, EasyDeleter> easy_;
  std::string ca_file_;
  bool verify_tls_ = true;
  std::chrono::milliseconds timeout_ = std::chrono::seconds(30);
};

// A running fake-metrix. Destroying it kills the process (SIGKILL).
class FakeMetrix {
 public:
  // Starts fake-metrix recording to dir.file("received.ndjson") on an
  // ephemeral loopback port, with `extra_args` appended, and waits (up to
  // 15 s) for its "listening on" line. If no key source is given (no
  // --any-key or --keys-file in extra_args, no FAKE_METRIX_KEYS in env),
  // --any-key is added so that FakeMetrix::start(dir) just works.
  static FakeMetrix start(const TempDir& dir, const std::vector<std::string>& extra_args = {},
                          const std::map<std::string, std::string>& env = {});

  std::string url() const { return url_; }  // "http://127.0.0.1:PORT" (https with --tls-cert)
  int port() const { return port_; }
  std::filesystem::path record_file() const { return record_file_; }

  // Every record in the record file, in order (see tools/fake-metrix/record.h);
  // a last line still being written is left out. Records of earlier runs on
  // the same dir are included: the file is appended to.
  std::vector<nlohmann::json> records() const;
  // GET /__stats.
  nlohmann::json stats() const;
  // POST /__control?`query`, e.g. control("error-rate=0.5&latency-ms=10");
  // throws with fake-metrix's message if the query is refused.
  void control(const std::string& query) const;
  // Waits until the record file holds at least `n` records; false on timeout.
  bool wait_for_accepted(size_t n, std::chrono::milliseconds timeout) const;

  Process& process() { return process_; }

 private:
  FakeMetrix(Process process, std::string url, int port, std::filesystem::path record_file)
      : process_(std::move(process)), url_(std::move(url)), port_(port), record_file_(std::move(record_file)) {}
  HttpAnswer admin_request(const std::string& path, bool post) const;

  Process process_;
  std::string url_;
  int port_ = 0;
  std::filesystem::path record_file_;
};

}  // namespace metrix::test
