// bench-curl-floor: phase L of tools/bench/run-bench, the libcurl floor.
//
// POSTs one body N times with the libcurl multi interface, `--concurrency` requests in flight
// over kept-alive connections, and nothing else: no database, no JSON, no classification.
// It is what the relay could reach if its own work cost nothing, so the relay's events/s and
// CPU per event are compared with this program's, measured the same way (run-bench reads the
// CPU time of both from wait4()).
//
// The request is the relay's: the same URL, body bytes, and headers (Authorization from
// METRIX_DEV_KEY, Content-Type: application/json, an empty Expect).
//
// Prints one JSON object on stdout:
//   {"requests":N,"ok":N2xx,"errors":E,"seconds":S,"connections":C,"per_s":R,"mean_request_ms":M}
// (M: the mean time from the start of a request to its answer, CURLINFO_TOTAL_TIME)
// Exit codes: 0 every request answered 2xx, 1 some did not (or a libcurl call failed), 2 usage.
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

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

struct Options {
  std::string url;
  std::string body_file;
  int concurrency = 64;
  long requests = 10000;
};

int usage(const char* why) {
  std::fprintf(stderr,
               "bench-curl-floor: %s\n"
               "usage: METRIX_DEV_KEY=KEY bench-curl-floor --url URL --body-file FILE [--concurrency C] "
               "[--requests N]\n",
               why);
  return 2;
}

// The answer body is read and dropped: the floor keeps nothing.
size_t discard(char*, size_t size, size_t count, void*) { return size * count; }

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) return usage("every flag takes a value");
    const char* value = argv[++i];
    if (flag == "--url") options.url = value;
    else if (flag == "--body-file") options.body_file = value;
    else if (flag == "--concurrency") options.concurrency = std::atoi(value);
    else if (flag == "--requests") options.requests = std::atol(value);
    else return usage("unknown flag");
  }
  if (options.url.empty() || options.body_file.empty()) return usage("--url and --body-file are required");
  if (options.concurrency < 1 || options.requests < 1) return usage("--concurrency and --requests must be positive");
  const char* key = std::getenv("METRIX_DEV_KEY");
  if (!key || !*key) return usage("METRIX_DEV_KEY is not set");

  std::ifstream in(options.body_file, std::ios::binary);
  if (!in) return usage("cannot read --body-file");
  const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::fprintf(stderr, "bench-curl-floor: curl_global_init failed\n");
    return 1;
  }
  CurlHeaders headers;
  for (const std::string& line : {std::string("Authorization: ") + key, std::string("Content-Type: application/json"),
                                  std::string("Expect:")}) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (!next) {
      std::fprintf(stderr, "bench-curl-floor: curl_slist_append: out of memory\n");
      return 1;
    }
    (void)headers.release();
    headers.reset(next);
  }

  CurlMulti multi(curl_multi_init());
  if (!multi) {
    std::fprintf(stderr, "bench-curl-floor: curl_multi_init failed\n");
    return 1;
  }
  const long connections = options.concurrency;
  for (auto [option, value] : {std::pair{CURLMOPT_MAX_HOST_CONNECTIONS, connections},
                               std::pair{CURLMOPT_MAX_TOTAL_CONNECTIONS, connections},
                               std::pair{CURLMOPT_MAXCONNECTS, connections}}) {
    if (CURLMcode rc = curl_multi_setopt(multi.get(), option, value); rc != CURLM_OK) {
      std::fprintf(stderr, "bench-curl-floor: curl_multi_setopt: %s\n", curl_multi_strerror(rc));
      return 1;
    }
  }

  // One easy handle per request in flight, reused: a reused handle keeps its options, and the
  // multi handle's connection cache keeps the connections alive between requests.
  std::vector<CurlEasy> handles;
  for (int i = 0; i < options.concurrency; ++i) {
    CurlEasy easy(curl_easy_init());
    if (!easy) {
      std::fprintf(stderr, "bench-curl-floor: curl_easy_init failed\n");
      return 1;
    }
    CURL* h = easy.get();
    CURLcode rc = CURLE_OK;
    auto set = [&](CURLoption option, auto value) {
      if (rc == CURLE_OK) rc = curl_easy_setopt(h, option, value);
    };
    set(CURLOPT_URL, options.url.c_str());
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_POST, 1L);
    set(CURLOPT_HTTPHEADER, headers.get());
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    set(CURLOPT_POSTFIELDS, body.data());
    set(CURLOPT_WRITEFUNCTION, &discard);
    if (rc != CURLE_OK) {
      std::fprintf(stderr, "bench-curl-floor: curl_easy_setopt: %s\n", curl_easy_strerror(rc));
      return 1;
    }
    handles.push_back(std::move(easy));
  }

  long started = 0, finished = 0, ok = 0, errors = 0, connects_total = 0;
  curl_off_t request_us_total = 0;  // from the start of each request to its answer
  auto start = [&](CURL* h) -> bool {
    if (CURLMcode rc = curl_multi_add_handle(multi.get(), h); rc != CURLM_OK) {
      std::fprintf(stderr, "bench-curl-floor: curl_multi_add_handle: %s\n", curl_multi_strerror(rc));
      return false;
    }
    ++started;
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& h : handles) {
    if (started >= options.requests) break;
    if (!start(h.get())) return 1;
  }
  while (finished < options.requests) {
    int running = 0;
    if (CURLMcode rc = curl_multi_perform(multi.get(), &running); rc != CURLM_OK) {
      std::fprintf(stderr, "bench-curl-floor: curl_multi_perform: %s\n", curl_multi_strerror(rc));
      return 1;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* h = msg->easy_handle;
      long status = 0, connects = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) connects_total += connects;
      if (curl_off_t us = 0; curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK) request_us_total += us;
      if (msg->data.result == CURLE_OK && status >= 200 && status < 300) ++ok;
      else ++errors;
      ++finished;
      curl_multi_remove_handle(multi.get(), h);
      if (started < options.requests && !start(h)) return 1;
    }
    if (finished >= options.requests) break;
    if (CURLMcode rc = curl_multi_poll(multi.get(), nullptr, 0, 100, nullptr); rc != CURLM_OK) {
      std::fprintf(stderr, "bench-curl-floor: curl_multi_poll: %s\n", curl_multi_strerror(rc));
      return 1;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  handles.clear();  // before the multi handle and the header list they point to
  std::printf("{\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.6f,\"connections\":%ld,\"per_s\":%.1f,"
              "\"mean_request_ms\":%.3f}\n",
              finished, ok, errors, seconds, connects_total, static_cast<double>(finished) / seconds,
              static_cast<double>(request_us_total) / 1000.0 / static_cast<double>(std::max(finished, 1L)));
  curl_global_cleanup();
  return errors == 0 ? 0 : 1;
}
