#include "tests/support/fake_metrix.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace metrix::test {
namespace {

using Clock = std::chrono::steady_clock;

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
  });
}

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// curl_easy_setopt, checked: an option libcurl refuses is a bug in the test
// support, not something to carry on without.
template <class T>
void set(CURL* easy, CURLoption option, T value) {
  CURLcode rc = curl_easy_setopt(easy, option, value);
  if (rc != CURLE_OK) {
    throw std::runtime_error(std::string("curl_easy_setopt(") + std::to_string(option) +
                             ") failed: " + curl_easy_strerror(rc));
  }
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t append_header(char* data, size_t size, size_t count, void* user) {
  auto& headers = *static_cast<std::multimap<std::string, std::string>*>(user);
  std::string_view line(data, size * count);
  // A new status line (after "100 Continue", say) starts a new set of headers.
  if (line.rfind("HTTP/", 0) == 0) {
    headers.clear();
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  headers.emplace(std::move(name), std::string(value));
  return size * count;
}

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

bool has_key_source(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  if (env.count("FAKE_METRIX_KEYS") != 0 || std::getenv("FAKE_METRIX_KEYS") != nullptr) return true;
  return std::any_of(args.begin(), args.end(), [](const std::string& arg) {
    return arg == "--any-key" || arg == "--keys-file" || arg.rfind("--keys-file=", 0) == 0;
  });
}

}  // namespace

std::string HttpAnswer::header(std::string_view name) const {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto found = headers.find(lower);
  return found == headers.end() ? "" : found->second;
}

HttpClient::HttpClient() {
  global_init_once();
  easy_.reset(curl_easy_init());
  if (!easy_) throw std::runtime_error("curl_easy_init failed");
}

HttpClient::~HttpClient() = default;

HttpAnswer HttpClient::post(const std::string& url, const std::string& body, const std::vector<std::string>& headers) {
  return perform(url, &body, headers);
}

HttpAnswer HttpClient::get(const std::string& url) { return perform(url, nullptr, {}); }

HttpAnswer HttpClient::perform(const std::string& url, const std::string* post_body,
                               const std::vector<std::string>& headers) {
  CURL* easy = easy_.get();
  // Reset clears the previous request's options but keeps the open
  // connections: keep-alive survives it.
  curl_easy_reset(easy);
  HttpAnswer answer;
  char error[CURL_ERROR_SIZE] = {};
  Slist header_list;
  auto add_header = [&header_list](const std::string& line) {
    // Returns the list's head: the old one, or a new one if it was empty.
    curl_slist* head = curl_slist_append(header_list.get(), line.c_str());
    if (head == nullptr) throw std::runtime_error("curl_slist_append failed");
    if (head != header_list.get()) header_list.reset(head);
  };
  for (const std::string& line : headers) add_header(line);
  // Without this, libcurl waits for "100 Continue" before sending large bodies.
  add_header("Expect:");

  set(easy, CURLOPT_URL, url.c_str());
  set(easy, CURLOPT_NOSIGNAL, 1L);
  set(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  set(easy, CURLOPT_ERRORBUFFER, error);
  set(easy, CURLOPT_HTTPHEADER, header_list.get());
  set(easy, CURLOPT_WRITEFUNCTION, append_body);
  set(easy, CURLOPT_WRITEDATA, &answer.body);
  set(easy, CURLOPT_HEADERFUNCTION, append_header);
  set(easy, CURLOPT_HEADERDATA, &answer.headers);
  set(easy, CURLOPT_SSL_VERIFYPEER, verify_tls_ ? 1L : 0L);
  set(easy, CURLOPT_SSL_VERIFYHOST, verify_tls_ ? 2L : 0L);
  if (!ca_file_.empty()) set(easy, CURLOPT_CAINFO, ca_file_.c_str());
  if (post_body != nullptr) {
    set(easy, CURLOPT_POST, 1L);
    set(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post_body->size()));
    set(easy, CURLOPT_POSTFIELDS, post_body->data());
  } else {
    set(easy, CURLOPT_HTTPGET, 1L);
  }

  answer.curl_code = curl_easy_perform(easy);
  if (answer.curl_code != CURLE_OK) {
    answer.curl_error = error[0] != '\0' ? error : curl_easy_strerror(answer.curl_code);
  }
  long status = 0;
  if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK) answer.status = status;
  // The error buffer and header list die with this frame: unhook them.
  set(easy, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
  set(easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  return answer;
}

FakeMetrix FakeMetrix::start(const TempDir& dir, const std::vector<std::string>& extra_args,
                             const std::map<std::string, std::string>& env) {
  std::filesystem::path record_file = dir.file("received.ndjson");
  std::vector<std::string> argv = {fake_metrix_binary(), "--record", record_file.string()};
  if (!has_key_source(extra_args, env)) argv.push_back("--any-key");
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  Process process = Process::start(argv, env);

  const std::string prefix = "fake-metrix listening on ";
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (true) {
    std::string out = process.out();
    size_t at = out.find(prefix);
    size_t end = at == std::string::npos ? std::string::npos : out.find('\n', at);
    if (end != std::string::npos) {
      std::string url = out.substr(at + prefix.size(), end - at - prefix.size());
      int port = std::atoi(url.substr(url.rfind(':') + 1).c_str());
      return FakeMetrix(std::move(process), std::move(url), port, std::move(record_file));
    }
    if (!process.running()) {
      throw std::runtime_error("fake-metrix exited (" + std::to_string(process.wait({}).value_or(-1)) +
                               ") before listening: " + process.err());
    }
    if (Clock::now() >= deadline) {
      throw std::runtime_error("fake-metrix did not print its listening line within 15 s: " + process.err());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<nlohmann::json> FakeMetrix::records() const {
  std::string text = read_whole(record_file_);
  std::vector<nlohmann::json> records;
  size_t start = 0;
  for (size_t end = text.find('\n'); end != std::string::npos; start = end + 1, end = text.find('\n', start)) {
    records.push_back(nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(start),
                                            text.begin() + static_cast<std::ptrdiff_t>(end)));
  }
  return records;
}

HttpAnswer FakeMetrix::admin_request(const std::string& path, bool post) const {
  HttpClient client;
  // Admin calls go to loopback and test nothing about TLS.
  client.set_verify_tls(false);
  client.set_timeout(std::chrono::seconds(10));
  HttpAnswer answer = post ? client.post(url_ + path, "") : client.get(url_ + path);
  if (!answer.transport_ok()) {
    throw std::runtime_error("fake-metrix " + path + ": " + answer.curl_error);
  }
  return answer;
}

nlohmann::json FakeMetrix::stats() const {
  HttpAnswer answer = admin_request("/__stats", false);
  if (answer.status != 200) throw std::runtime_error("fake-metrix /__stats answered " + std::to_string(answer.status));
  return nlohmann::json::parse(answer.body);
}

void FakeMetrix::control(const std::string& query) const {
  HttpAnswer answer = admin_request("/__control?" + query, true);
  if (answer.status != 200) {
    throw std::runtime_error("fake-metrix refused /__control?" + query + ": " + answer.body);
  }
}

bool FakeMetrix::wait_for_accepted(size_t n, std::chrono::milliseconds timeout) const {
  auto deadline = Clock::now() + timeout;
  while (true) {
    std::string text = read_whole(record_file_);
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= n) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace metrix::test
